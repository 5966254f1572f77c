"""The strong numpy implementation as a whole process, the yardstick of issue 12's
whole-process target (``benchmarks/run.py`` times it beside ``forecaster run``).

    python benchmarks/numpy_process.py SCENARIO OUT_DIR [--trials N]

Does what a user's numpy script would: reads the scenario (forecaster's format layer only,
which imports neither numba nor xarray), simulates its trials with
:func:`baseline_numpy.simulate_vectorized` (vectorised over trials, binomial thinning, stage
times only for won leads), and writes the per-trial revenue by period (``revenue.npy``)
and each period's and the total's mean and P10/P50/P90 (``summary.json``): the outputs a
forecast needs, without forecaster's NetCDF file.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_numpy import simulate_vectorized  # noqa: E402

from forecaster.scenario.loading import load_scenario  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario")
    ap.add_argument("out", type=Path)
    ap.add_argument("--trials", type=int, default=10_000)
    a = ap.parse_args()
    sc = load_scenario(a.scenario)
    revenue = simulate_vectorized(sc, a.trials, seed=sc.seed or 0)
    a.out.mkdir(parents=True, exist_ok=True)
    np.save(a.out / "revenue.npy", revenue)

    def stats(x: np.ndarray) -> dict:
        p10, p50, p90 = np.percentile(x, [10, 50, 90])
        return {"mean": float(x.mean()), "p10": float(p10), "p50": float(p50), "p90": float(p90)}

    summary = {"periods": [stats(revenue[:, k]) for k in range(revenue.shape[1])], "total": stats(revenue.sum(axis=1))}
    (a.out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
