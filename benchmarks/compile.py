"""The kernels compile once, for every funnel shape: ``python benchmarks/compile.py``.

In a fresh numba cache folder, runs ``forecaster run`` (a whole process each) on a 3-stage,
then a 6-stage, then a 9-stage scenario, then each again warm. The first run compiles the
kernels; the 6- and 9-stage runs should compile nothing (no "compiling" line on stderr)
and take about the warm time. Each sequence is repeated in a fresh cache folder; the
table shows medians. Timings are reported, never asserted (see tests/engine/test_engine_compile.py
for the property itself).

    python benchmarks/compile.py [--repeat 3] [--trials 2000]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DAYS = ["{dist: lognormal, median: 4, sigma: 0.6}", "{dist: gamma, mean: 8, cv: 0.5}",
        "{dist: exponential, mean: 5}", "{dist: weibull, shape: 1.5, scale: 9}"]


def scenario(n_stages: int) -> str:
    """An r1-like scenario (two segments, lead rates, beta conversions) with ``n_stages`` stages."""
    stages = [f"s{i}" for i in range(n_stages)]
    convert = round(0.02 ** (1 / n_stages), 3)  # about the same won deals whatever the stages
    lines = [f"name: compile-{n_stages}-stages", "start: 2027-01-01", "end: 2027-03-31", "report_by: week",
             "seed: 1", f"stages: [{', '.join(stages)}]", "segments:"]
    for g, (rate, value) in enumerate([(400, 5000), (80, 40000)]):
        lines += [f"  g{g}:", f"    leads: {{per_week: {rate}}}", "    funnel:"]
        lines += [f"      {s}: {{convert: {{dist: beta, mean: {convert}, concentration: 200}}, days: {DAYS[i % 4]}}}"
                  for i, s in enumerate(stages)]
        lines.append(f"    deal_value: {{dist: lognormal, median: {value}, sigma: 0.8}}")
    return "\n".join(lines) + "\n"


def run(path: Path, trials: int, cache: str) -> tuple[float, bool]:
    """Wall time of one ``forecaster run`` process, and whether it said it compiled."""
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "forecaster", "run", str(path), "-o", out, "--trials", str(trials),
                            "--quiet"], env={**os.environ, "NUMBA_CACHE_DIR": cache}, capture_output=True, text=True)
        elapsed = time.perf_counter() - t
    if p.returncode:
        raise RuntimeError(f"forecaster run {path.name} failed:\n{p.stderr}")
    return elapsed, "compiling the simulation kernels" in p.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="fresh cache folders (each: the three runs, then warm)")
    ap.add_argument("--trials", type=int, default=2000)
    args = ap.parse_args()
    shapes = (3, 6, 9)
    first: dict[int, list[float]] = {n: [] for n in shapes}
    warm: dict[int, list[float]] = {n: [] for n in shapes}
    compiled: dict[int, list[bool]] = {n: [] for n in shapes}
    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for n in shapes:
            paths[n] = Path(folder) / f"stages-{n}.yaml"
            paths[n].write_text(scenario(n))
        for r in range(args.repeat):
            cache = tempfile.mkdtemp(prefix="fc-numba-")
            try:
                for n in shapes:  # in order: only the first should compile
                    secs, did = run(paths[n], args.trials, cache)
                    first[n].append(secs)
                    compiled[n].append(did)
                    print(f"  repeat {r + 1}: {n} stages, first run in this cache folder {secs:.2f} s"
                          f"{' (compiled)' if did else ''}", flush=True)
                for n in shapes:
                    for _ in range(2):
                        warm[n].append(run(paths[n], args.trials, cache)[0])
            finally:
                shutil.rmtree(cache, ignore_errors=True)
    print(f"\n`forecaster run`, {args.trials:,} trials, whole process; medians of {args.repeat} fresh cache folders")
    print(f"{'scenario':<10} {'first run':>10} {'compiled':>10} {'warm':>8} {'first - warm':>13}")
    for n in shapes:
        f, w = statistics.median(first[n]), statistics.median(warm[n])
        print(f"{f'{n} stages':<10} {f:>9.2f}s {f'{sum(compiled[n])}/{len(compiled[n])}':>10} {w:>7.2f}s "
              f"{f - w:>12.2f}s")
    # compiled again: said so, or (a version that says nothing) took seconds more than warm
    again = [n for n in shapes[1:] if any(compiled[n]) or
             statistics.median(first[n]) - statistics.median(warm[n]) > max(1.0, 0.5 * statistics.median(warm[n]))]
    print("\nthe 6- and 9-stage runs compiled " + ("nothing: one compile serves every funnel shape" if not again
                                                   else f"again ({', '.join(f'{n} stages' for n in again)}): the "
                                                   "kernels' types depend on the funnel's shape"))


if __name__ == "__main__":
    main()
