"""forecaster's benchmarks, one command: ``python benchmarks/run.py [--quick]``.

Everything is measured in the same run, as medians of repeats, with the JIT's compile time
kept apart (the first call is timed on its own):

* engine throughput on ``r1`` (trials per second), 1 and 2 threads;
* two numpy baselines (``baseline_numpy.py``): per lead, and the best vectorised one;
  ratios, and their statistical agreement with forecaster (means, two-sample KS test);
* a lower bound: the random draws an r1 trial cannot avoid, times the cost of one draw;
* whole-process ``forecaster run`` time, warm and cold (empty numba cache), with peak
  memory, and where a cold start spends its time; the best numpy implementation as a
  whole process (``numpy_process.py``), interleaved with warm runs;
* trials from 10^3 to 10^6, and lead volume at the top x1, x10, x100;
* Dask distributed: 1 and 2 local workers;
* 10^7 trials of ``minimal.yaml`` in bounded memory.

Writes ``benchmarks/RESULTS.md`` (linked from the README) and ``benchmarks/results.json``.
``--quick`` uses fewer repeats and skips the largest runs.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(HERE))

import numba  # noqa: E402
import numpy as np  # noqa: E402
from baseline_numpy import simulate_per_lead, simulate_vectorized  # noqa: E402
from scipy import stats  # noqa: E402

import forecaster as fc  # noqa: E402
from forecaster.engine.plan import build_plan  # noqa: E402
from forecaster.engine.simulation import run_trials  # noqa: E402
from forecaster.results.layout import Layout, MemorySink  # noqa: E402

ROWS: list[tuple[str, str, str]] = []
DATA: dict = {}


@numba.njit(cache=True)
def bare_lognormal(gen, mu, sigma, out):
    """The cheapest a draw can be: a lognormal in a tight loop, nothing else."""
    for i in range(out.shape[0]):
        out[i] = math.exp(mu + sigma * gen.standard_normal())


def record(section: str, measure: str, value: str, key: str | None = None, raw=None) -> None:
    ROWS.append((section, measure, value))
    print(f"{section:>10} | {measure}: {value}", flush=True)
    if key:
        DATA[key] = raw


def process(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """Wall time [s] and peak resident memory [MiB] of a child process."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - t
    if status != 0:
        raise RuntimeError(f"{cmd} failed ({status})")
    return elapsed, usage.ru_maxrss / 1024


def run_cli(scenario: Path, trials: int, *extra: str, env: dict | None = None) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as out:
        return process([sys.executable, "-m", "forecaster", "run", str(scenario), "--out", out,
                        "--trials", str(trials), "--quiet", *extra], env)


def engine_seconds(sc, trials: int, threads: int, client=None) -> float:
    """Time of the kernels alone for ``trials`` trials (no Dataset, no files)."""
    sc = sc.with_run(trials)
    plan = build_plan(sc)
    sink = MemorySink(Layout.of(sc, plan))
    runner = None
    if client is not None:
        from forecaster.engine.cluster import DaskRunner
        runner = DaskRunner(client)
    t = time.perf_counter()
    run_trials(plan, sc, sink, chunk_trials=trials, threads=threads, runner=runner)
    return time.perf_counter() - t


def median_rate(sc, trials: int, threads: int, repeat: int, client=None) -> float:
    return trials / statistics.median(engine_seconds(sc, trials, threads, client) for _ in range(repeat))


def lead_volume_variant(sc_path: Path, factor: float):
    """r1 with ``factor`` x the leads at the top and the first conversion divided by it."""
    import yaml
    data = yaml.safe_load(sc_path.read_text())
    for seg in data["segments"].values():
        seg["leads"]["per_week"] *= factor
        first = seg["funnel"][data["stages"][0]]["convert"]
        first["mean"] /= factor
    return fc.scenario_from_dict(data, name=f"{sc_path.name} x{factor:g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", type=Path, default=SHARED / "bench" / "r1.yaml")
    ap.add_argument("--quick", action="store_true", help="fewer repeats; skip the 10^6 and 10^7 runs")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = ap.parse_args()
    quick = args.quick
    repeat = 3 if quick else 5
    T = 10_000
    sc = fc.load_scenario(args.scenario)
    name = args.scenario.name

    # --- engine ------------------------------------------------------------------------
    t = time.perf_counter()
    fc.simulate(sc, trials=50, threads=1)
    record("engine", "first call in a process (numba cache load, or compile when cold)",
           f"{time.perf_counter() - t:.2f} s")
    rate = {th: median_rate(sc, 4 * T, th, repeat) for th in (1, 2)}
    for th in (1, 2):
        record("engine", f"{name} throughput, {th} thread{'s' * (th > 1)}", f"{rate[th]:,.0f} trials/s",
               f"engine_rate_{th}", rate[th])
    record("engine", "2 threads / 1 thread", f"{rate[2] / rate[1]:.2f}x")

    # --- baselines, same run ---------------------------------------------------------------
    per_lead_n = 100 if quick else 300
    per_lead = per_lead_n / statistics.median(
        [(lambda t0: (simulate_per_lead(sc, per_lead_n, seed=1), time.perf_counter() - t0)[1])(time.perf_counter())
         for _ in range(3)])
    vec = T / statistics.median(
        [(lambda t0: (simulate_vectorized(sc, T, seed=1), time.perf_counter() - t0)[1])(time.perf_counter())
         for _ in range(3)])
    record("baselines", "per-lead numpy (loop over trials, numpy over leads), 1 thread", f"{per_lead:,.0f} trials/s",
           "per_lead_rate", per_lead)
    record("baselines", "best numpy (vectorised over trials, binomial thinning), 1 thread",
           f"{vec:,.0f} trials/s", "vectorized_rate", vec)
    for th in (1, 2):
        record("baselines", f"engine ({th} thread{'s' * (th > 1)}) / per-lead baseline",
               f"{rate[th] / per_lead:,.0f}x", f"ratio_per_lead_{th}", rate[th] / per_lead)
        record("baselines", f"engine ({th} thread{'s' * (th > 1)}) / best numpy baseline",
               f"{rate[th] / vec:,.1f}x", f"ratio_vectorized_{th}", rate[th] / vec)
    engine_totals = fc.simulate(sc, trials=20_000, seed=3)["revenue"].sum("period").values
    for label, sample in (("per-lead", simulate_per_lead(sc, 1000 if quick else 2000, seed=5).sum(axis=1)),
                          ("best numpy", simulate_vectorized(sc, 20_000, seed=6).sum(axis=1))):
        se = math.sqrt(engine_totals.var(ddof=1) / engine_totals.size + sample.var(ddof=1) / sample.size)
        ks = stats.ks_2samp(engine_totals, sample)
        record("agreement", f"total revenue, forecaster vs {label}",
               f"means {engine_totals.mean():,.0f} vs {sample.mean():,.0f} ({abs(engine_totals.mean() - sample.mean()) / se:.1f} SE); "
               f"KS p = {ks.pvalue:.2f}")

    # --- lower bound -------------------------------------------------------------------------
    out = np.empty(4_000_000)
    gen = np.random.default_rng(0)
    bare_lognormal(gen, math.log(10.0), 0.6, out)  # compiles, and touches every page of `out`
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        bare_lognormal(gen, math.log(10.0), 0.6, out)
        times.append(time.perf_counter() - t0)
    t_draw = min(times) / out.size  # a floor: the fastest pass
    in_horizon = float(fc.simulate(sc, trials=5000, seed=4)["won_deals"].sum("period").mean())
    eventually, floor_draws = 0.0, 0.0
    for seg in sc.segments.values():
        p = np.prod([st.convert.mean() for st in seg.funnel.values()])
        won = seg.leads.per_week["value"] / 7 * sc.days * p
        eventually += won
        floor_draws += len(seg.funnel) + min(sc.days, won)   # conversions; arrival counts or days
    S = len(sc.stages)
    floor_draws += in_horizon * (S + 1) + (eventually - in_horizon) * 1
    floor_s = floor_draws * t_draw
    record("floor", f"draws an r1 trial cannot avoid (≈{eventually:.0f} deals that will be won, {in_horizon:.0f} of them "
                    f"inside the horizon: {S} stage times + a value each; 1 draw for each of the rest; "
                    "conversions; arrival counts)", f"{floor_draws:,.0f} draws")
    record("floor", "one draw (bare lognormal exp(mu + sigma Z) in a numba loop, PCG64)", f"{t_draw * 1e9:.1f} ns")
    record("floor", "floor per trial, 1 thread", f"{floor_s * 1e6:.1f} µs ({1 / floor_s:,.0f} trials/s)")
    record("floor", "engine per trial, 1 thread", f"{1e6 / rate[1]:.1f} µs: {1 / rate[1] / floor_s:.1f}x the floor",
           "floor_ratio", 1 / rate[1] / floor_s)

    # --- whole process -------------------------------------------------------------------------
    cold, warm, rss = [], [], []
    for _ in range(2 if quick else 3):
        cache = tempfile.mkdtemp(prefix="fc-numba-")
        try:
            cold.append(run_cli(args.scenario, T, env={"NUMBA_CACHE_DIR": cache})[0])
            for _ in range(repeat):
                w, m = run_cli(args.scenario, T, env={"NUMBA_CACHE_DIR": cache})
                warm.append(w)
                rss.append(m)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    record("process", f"`forecaster run` {name}, {T:,} trials, warm cache", f"{statistics.median(warm):.2f} s "
           f"(peak {statistics.median(rss):.0f} MiB)", "warm_run_s", statistics.median(warm))
    record("process", f"`forecaster run` {name}, {T:,} trials, cold (empty numba cache)",
           f"{statistics.median(cold):.2f} s", "cold_run_s", statistics.median(cold))
    # the strong numpy implementation as a whole process, interleaved with warm runs
    ours, theirs = [], []
    for _ in range(repeat):
        ours.append(run_cli(args.scenario, T)[0])
        with tempfile.TemporaryDirectory() as out:
            theirs.append(process([sys.executable, str(HERE / "numpy_process.py"), str(args.scenario), out,
                                   "--trials", str(T)])[0])
    record("process", f"best numpy as a whole process (numpy_process.py: read, simulate, write), {T:,} trials",
           f"{statistics.median(theirs):.2f} s against `forecaster run` {statistics.median(ours):.2f} s: "
           f"{statistics.median(theirs) / statistics.median(ours):.2f}x", "numpy_process_ratio",
           statistics.median(theirs) / statistics.median(ours))
    phases = subprocess.run([sys.executable, str(HERE / "phases.py"), str(args.scenario)], capture_output=True,
                            text=True, check=True, env={**os.environ, "NUMBA_CACHE_DIR": tempfile.mkdtemp()}).stdout
    record("process", "cold start: where the time goes", phases.strip().replace("\n", "; "))
    phases = subprocess.run([sys.executable, str(HERE / "phases.py"), str(args.scenario)], capture_output=True,
                            text=True, check=True).stdout
    record("process", "warm start: where the time goes", phases.strip().replace("\n", "; "))

    # --- scale -----------------------------------------------------------------------------------
    for trials in ([10**3, 10**4, 10**5] + ([] if quick else [10**6])):
        secs, mem = run_cli(args.scenario, trials)
        record("trials", f"{name}, {trials:,} trials (whole process)", f"{secs:.2f} s, peak {mem:.0f} MiB",
               f"run_{trials}", {"s": secs, "mib": mem})
    base = None
    for factor in (1, 10, 100):
        variant = lead_volume_variant(args.scenario, factor)
        median_rate(variant, 2000, 2, 1)
        r = median_rate(variant, 4 * T, 2, repeat)
        base = base or r
        record("volume", f"leads x{factor} at the top (first conversion / {factor}), 2 threads",
               f"{r:,.0f} trials/s (time x{base / r:.2f})", f"volume_{factor}", base / r)
    if not quick:
        secs, mem = run_cli(SHARED / "examples" / "minimal.yaml", 10**7)
        record("trials", "minimal.yaml, 10,000,000 trials (whole process, streamed)", f"{secs:.1f} s, peak {mem:.0f} MiB",
               "run_minimal_1e7", {"s": secs, "mib": mem})

    # --- Dask ---------------------------------------------------------------------------------------
    from distributed import Client, LocalCluster
    dask_trials = 40_000 if quick else 200_000
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster) as client:
            engine_seconds(sc, 4000, 1, client)  # workers load the kernels
            r = median_rate(sc, dask_trials, 1, 3 if not quick else 1, client)
        record("dask", f"{name} on a local Dask cluster, {workers} worker{'s' * (workers > 1)} (1 thread each)",
               f"{r:,.0f} trials/s", f"dask_{workers}", r)
    record("dask", "2 workers / 1 worker", f"{DATA['dask_2'] / DATA['dask_1']:.2f}x")

    lines = [f"# Benchmark results ({name})", "",
             f"Regenerate with `python benchmarks/run.py`{' --quick' if quick else ''} "
             f"(medians of {repeat} runs unless said). Machine: {platform.machine()}, {os.cpu_count()} cores; "
             f"Python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}.", "",
             "| section | measure | value |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in ROWS]
    args.out.write_text("\n".join(lines) + "\n")
    (args.out.with_name("results.json")).write_text(json.dumps(DATA, indent=2) + "\n")


if __name__ == "__main__":
    main()
