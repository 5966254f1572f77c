"""The cost of v2's funnels: moves (section B) and the opt-in counts (F1), one command:
``python benchmarks/funnel_v2.py [--trials N] [--repeat K]``.

Measured in the same run, as medians of ``--repeat`` runs of the engine in this process
(after one run that loads or compiles the kernels), 1 thread:

* ``scenarios/buying-journeys.yaml`` (two journeys with moves back and forth, open deals) with
  x1, x10 and x100 the leads at the top and the first stage's conversion divided by as much:
  the time should follow the won deals, not the leads, since only the leads to be won are
  drawn (Poisson thinning with the chain's eventual win probability). The won deals do not
  stay put here: the business journey's skip from its first stage takes a share of the
  leads that do not convert there, which grow with the leads; so the time per won deal is
  the figure to read;
* the same without its moves (each stage converting as before, every move removed): the
  price of the paths;
* the same with a conversion drift on every stage (v2 B.4): each calendar month's chain is
  solved per trial and each path is drawn from its arrival month's;
* ``outputs: {stage_entries, losses, cycle_days}`` on the journeys and on ``r1`` (the shared
  speed scenario) against the same files without: the counts draw every lead that is lost,
  whose number grows with the top of the funnel, which is why they are asked for.

Writes ``benchmarks/FUNNEL.md``.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import yaml

import forecaster as fc
from forecaster.engine.plan import build_plan
from forecaster.engine.simulation import run_trials
from forecaster.results.layout import Layout, MemorySink

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
JOURNEYS = ROOT / "scenarios" / "buying-journeys.yaml"
R1 = ROOT.parent / "shared" / "bench" / "r1.yaml"
COUNTS = {"stage_entries": True, "losses": True, "cycle_days": True}


def seconds(sc, trials: int) -> float:
    """One engine run of ``trials`` trials on 1 thread, into memory [s] (plan and run)."""
    sc = sc.with_run(trials, None)
    t = time.perf_counter()
    plan = build_plan(sc)
    run_trials(plan, sc, MemorySink(Layout.of(sc, plan)), chunk_trials=trials, threads=1)
    return time.perf_counter() - t


def median_seconds(sc, trials: int, repeat: int) -> float:
    seconds(sc, 10)  # the kernels loaded (or compiled) before the clock runs
    return statistics.median(seconds(sc, trials) for _ in range(repeat))


def load(data: dict, base: Path, name: str):
    return fc.scenario_from_dict(data, base_dir=base, name=name)


def volume(data: dict, factor: float) -> dict:
    """``factor`` x the leads at the top, the first stage's conversion / factor."""
    out = copy.deepcopy(data)
    first = out["stages"][0]
    for seg in out["segments"].values():
        leads = seg["leads"]
        key = next(k for k in ("per_day", "per_week", "per_month") if k in leads)
        rate = leads[key]
        leads[key] = {**rate, **{k: rate[k] * factor for k in ("low", "mode", "high") if k in rate}} \
            if isinstance(rate, dict) else rate * factor
        stage = seg["funnel"][first]
        stage["convert"] = stage["convert"] / factor
    return out


def without_moves(data: dict) -> dict:
    out = copy.deepcopy(data)
    for seg in out["segments"].values():
        for stage in seg["funnel"].values():
            stage.pop("moves", None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=4000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    T, K = args.trials, args.repeat
    journeys = yaml.safe_load(JOURNEYS.read_text())
    rows = []

    base = None
    for factor in (1, 10, 100):
        sc = load(volume(journeys, factor), JOURNEYS.parent, f"journeys x{factor}")
        s = median_seconds(sc, T, K)
        base = base or s
        won = float(fc.simulate(sc, trials=500)["won_deals"].sum("period").mean())
        rows.append(("moves", f"buying-journeys, leads x{factor} at the top (first conversion / {factor})",
                     f"{s:.2f} s", f"x{s / base:.2f}",
                     f"{won:,.0f} won deals a trial, {s / (T * won) * 1e6:.2f} µs a won deal"))
    plain = median_seconds(load(without_moves(journeys), JOURNEYS.parent, "journeys without moves"), T, K)
    rows.append(("moves", "buying-journeys without its moves (the same conversions, every move removed)",
                 f"{plain:.2f} s", f"x{plain / base:.2f}", "the price of the paths: the ratio's inverse"))
    drifting = {**journeys, "shocks": {"drift": {"convert": {s: 0.1 for s in journeys["stages"]}}}}
    drift = median_seconds(load(drifting, JOURNEYS.parent, "journeys with a conversion drift"), T, K)
    rows.append(("moves", "buying-journeys with a conversion drift of 0.1 a month on every stage (v2 B.4)",
                 f"{drift:.2f} s", f"x{drift / base:.2f}", "each month's chain, and each path drawn from its own"))
    for name, data, where in (("buying-journeys", journeys, JOURNEYS.parent),
                              ("r1", yaml.safe_load(R1.read_text()), R1.parent)):
        without = median_seconds(load(data, where, name), T, K)
        counted = median_seconds(load({**data, "outputs": COUNTS}, where, f"{name} counted"), T, K)
        rows.append(("counts", f"{name}: stage_entries, losses and cycle_days against none",
                     f"{without:.2f} s -> {counted:.2f} s", f"x{counted / without:.1f}", ""))

    lines = ["# The cost of v2's funnels", "",
             f"Generated by `python benchmarks/funnel_v2.py` ({T:,} trials, median of {K} runs, 1 thread, kernels "
             "loaded before timing). See the script's docstring for what each row measures.", "",
             "| part | run | time | ratio | note |", "|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    (HERE / "FUNNEL.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
