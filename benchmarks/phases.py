"""Where a ``forecaster run`` process spends its time, phase by phase (used by run.py).

    python benchmarks/phases.py SCENARIO [--trials N] [--threads T]

Does what ``forecaster run SCENARIO -o DIR`` does, in the same order, timing each phase:
the imports (numpy, numba, the command line and the modules a run loads), reading the
scenario, the plan and stream keys, loading the kernels (numba's runtime and the cached
machine code, without numba's full target-context refresh: see forecaster.engine._numba;
with ``FORECASTER_NUMBA_LIGHT_LOAD=0`` numba's own load, refresh included), or compiling
them when the cache is cold, the trials, and writing forecast.nc and summary.json. Run it with a fresh
``NUMBA_CACHE_DIR`` to see a cold start, or as is for a warm one; the interpreter's own
start-up is not in it (about 20 ms).
"""
import sys
import time

T0 = time.perf_counter()
MARKS: list[tuple[str, float]] = []


def mark(name: str) -> None:
    MARKS.append((name, time.perf_counter()))


import numpy  # noqa: E402,F401

mark("import numpy")
import numba  # noqa: E402,F401

mark("import numba")
import forecaster.cli.run  # noqa: E402,F401 (the command line, as `forecaster run` loads it)
from forecaster.present.console import print_summary  # noqa: E402,F401
from forecaster.results import outputs  # noqa: E402
from forecaster.scenario.loading import load_scenario  # noqa: E402

mark("import forecaster (command line, engine, results)")


def main_(argv: list[str]) -> None:
    import argparse
    import tempfile

    from forecaster.engine.blocks import prepare
    from forecaster.engine.plan import build_plan
    from forecaster.engine.seeding import stream_keys

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario")
    ap.add_argument("--trials", type=int)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args(argv)

    sc = load_scenario(args.scenario).with_run(args.trials, None)
    mark("read the scenario")
    plan = build_plan(sc)
    keys = stream_keys(plan, sc.seed)
    mark("plan and stream keys")
    prepare(plan, keys)
    mark("kernels: numba runtime, cache load (or compile)")
    trials = [0.0]
    run_trials = outputs.run_trials

    def timed(*a, **k):  # the trials alone, inside run_to_folder
        t = time.perf_counter()
        run_trials(*a, **k)
        trials[0] += time.perf_counter() - t

    outputs.run_trials = timed
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        outputs.run_to_folder(sc, out, threads=args.threads)
        rest = time.perf_counter() - t - trials[0]
    MARKS.append((f"{sc.trials:,} trials", MARKS[-1][1] + trials[0]))
    MARKS.append(("forecast.nc and summary.json", MARKS[-1][1] + rest))
    previous = T0
    for name, at in MARKS:
        print(f"{name:<50} {at - previous:6.2f} s")
        previous = at
    print(f"{'total (after the interpreter started)':<50} {previous - T0:6.2f} s")


if __name__ == "__main__":
    main_(sys.argv[1:])
