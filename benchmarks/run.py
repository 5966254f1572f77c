"""forecaster's benchmarks: ``python benchmarks/run.py [--quick]``.

Measures, on ``../shared/bench/r1.yaml`` (or ``--scenario``):

* whole-process ``forecaster run`` time, cold (empty numba cache) and warm, as medians;
* engine throughput (trials per second) on 1 and 2 threads, with the JIT's compile time
  kept apart (the first call is timed on its own);
* the per-lead numpy baseline (``baseline_numpy.py``) in the same run, and the ratio.

Writes ``benchmarks/RESULTS.md`` (linked from the README) and prints it.
"""
from __future__ import annotations

import argparse
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
sys.path.insert(0, str(HERE))


def whole_process(scenario: Path, trials: int, cache_dir: str, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as out:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "forecaster", "run", str(scenario), "--out", out,
                            "--trials", str(trials), "--quiet"], check=True, env=env)
            times.append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", type=Path, default=ROOT.parent / "shared" / "bench" / "r1.yaml")
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = ap.parse_args()
    repeat = 2 if args.quick else 5

    import numpy as np

    import forecaster as fc
    from baseline_numpy import simulate_per_lead

    sc = fc.load_scenario(args.scenario)
    rows: list[tuple[str, str]] = []

    # whole process, cold then warm, each in its own empty numba cache
    cold, warm = [], []
    for _ in range(2 if args.quick else 3):
        cache = tempfile.mkdtemp(prefix="fc-numba-")
        try:
            cold += whole_process(args.scenario, args.trials, cache, 1)
            warm += whole_process(args.scenario, args.trials, cache, repeat)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    rows.append((f"`forecaster run` {args.trials:,} trials, cold (empty numba cache)", f"{statistics.median(cold):.2f} s"))
    rows.append((f"`forecaster run` {args.trials:,} trials, warm cache", f"{statistics.median(warm):.2f} s"))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import forecaster.cli.run, forecaster.simulation, forecaster.summary, "
                    "forecaster.outputs, forecaster.console"], check=True)
    rows.append(("of which: starting Python and importing forecaster", f"{time.perf_counter() - t:.2f} s"))

    # engine, in process: compile (or cache load) apart, then steady state
    t = time.perf_counter()
    fc.simulate(sc, trials=50, threads=1)
    rows.append(("first call in a process (JIT cache load or compile)", f"{time.perf_counter() - t:.2f} s"))
    rates = {}
    for threads in (1, 2):
        ts = []
        for _ in range(repeat):
            t = time.perf_counter()
            fc.simulate(sc, trials=args.trials, threads=threads)
            ts.append(time.perf_counter() - t)
        rates[threads] = args.trials / statistics.median(ts)
        rows.append((f"engine throughput, {threads} thread{'s' * (threads > 1)}", f"{rates[threads]:,.0f} trials/s"))

    # baseline in the same run
    n_base = 100 if args.quick else 300
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        simulate_per_lead(sc, n_base, seed=1)
        ts.append(time.perf_counter() - t)
    base = n_base / statistics.median(ts)
    rows.append(("per-lead numpy baseline (1 thread)", f"{base:,.0f} trials/s"))
    rows.append(("engine / per-lead baseline, 1 thread", f"{rates[1] / base:,.0f}x"))
    rows.append(("engine / per-lead baseline, 2 threads", f"{rates[2] / base:,.0f}x"))
    ds = fc.simulate(sc, trials=4000, threads=2)
    eng = ds["revenue"].sum("period").values
    ref = simulate_per_lead(sc, 1000, seed=2).sum(axis=1)
    se = np.sqrt(eng.var(ddof=1) / eng.size + ref.var(ddof=1) / ref.size)
    rows.append(("agreement: mean total revenue, engine vs baseline", f"{eng.mean():,.0f} vs {ref.mean():,.0f} "
                 f"({abs(eng.mean() - ref.mean()) / se:.1f} SE apart)"))

    import numba
    text = [f"# Benchmark results ({args.scenario.name})", "",
            f"Regenerate with `python benchmarks/run.py`{' --quick' if args.quick else ''}. Medians of "
            f"{repeat} runs; machine: {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}.", "",
            "| measure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    args.out.write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
