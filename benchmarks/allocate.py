"""How many runs and how long ``forecaster allocate`` takes on the example:
``python benchmarks/allocate.py [--repeat 3] [--trials 5000]``.

Allocates scenarios/channel-budgets.yaml's 500,000 a month over its three bought channels
(expected revenue, then its P10), searching by source (each channel's source run alone and
kept: the default) and with whole runs, and times one whole run of the scenario in the same
process as the baseline. Reports the runs each search needed (source runs and whole runs),
the splits it evaluated, the found split and the median seconds of ``--repeat`` repeats (the
kernels are compiled before the first timing). Timings are reported, never asserted.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import forecaster as fc
from forecaster.analysis.allocate import allocate

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "scenarios" / "channel-budgets.yaml"
TOTAL = 500_000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    sc = fc.load_scenario(EXAMPLE)
    fc.simulate(sc, trials=50, seed=1)  # compile (or load) the kernels before timing
    whole = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        fc.simulate(sc, trials=args.trials, seed=sc.seed, threads=args.threads)
        whole.append(time.perf_counter() - t)
    one = statistics.median(whole)
    print(f"# allocate on {EXAMPLE.name}: {TOTAL:,.0f} a month, {args.trials:,} trials, median of {args.repeat}")
    print(f"one whole run: {one:.2f} s")
    print()
    print("| objective | search | runs (source + whole) | splits evaluated | best split (search, social, events) "
          "| seconds | × one run |")
    print("|---|---|---|---|---|---|---|")
    for quantile in (None, 0.1):
        for by_source in (True, False):
            seconds, summary = [], None
            for _ in range(args.repeat):
                t = time.perf_counter()
                summary = allocate(EXAMPLE, total_budget=TOTAL, quantile=quantile, trials=args.trials,
                                   threads=args.threads, by_source=by_source)
                seconds.append(time.perf_counter() - t)
            assert summary is not None
            s = summary["search"]
            split = ", ".join(f"{v:,.0f}" for v in summary["best"]["split"].values())
            med = statistics.median(seconds)
            print(f"| {summary['objective']} | {'by source' if by_source else 'whole runs'} | {s['runs']} "
                  f"({s['source_runs']} + {s['whole_runs']}) | {s['splits_evaluated']} | {split} | {med:.1f} "
                  f"| {med / one:.0f} |")


if __name__ == "__main__":
    main()
