"""How a sensitivity runs its levers: on a pool of threads, keeping per-trial totals only.

The numbers must be those of running each lever through :func:`forecaster.simulate` one
after the other, bit for bit, whatever the number of threads.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

import forecaster as fc
from forecaster.analysis import sensitivity as sens
from forecaster.analysis.compare import per_trial_metrics

SAAS = Path(__file__).resolve().parents[2] / "scenarios" / "saas-quarter.yaml"  # commission, pipeline, 3 segments


def test_a_runs_totals_are_those_of_simulate():
    sc = fc.load_scenario(SAAS)
    ds = fc.simulate(sc, trials=400, seed=9)
    run = sens._run(sc, 400, 9, keep_inputs=True)
    expected = {m: v.sum(axis=1) for m, v in per_trial_metrics(ds).items()}
    assert set(run.totals) == set(expected) == {"revenue", "won_deals", "commission"}
    for metric, values in expected.items():
        assert np.array_equal(run.totals[metric], values), metric
    assert np.array_equal(run.inputs, ds["inputs"].values)
    assert sens._variance_shares(run.totals["revenue"], run.inputs, sc.segment_names,
                                 ds["quantity"].values) == sens.variance_shares(ds, sc)


def _same(a, b) -> bool:
    """Equal, NaN included (json-like structures)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def test_the_summary_does_not_depend_on_the_threads():
    calls: list[tuple[int, int]] = []
    one, ds1 = sens.sensitivity(SAAS, trials=200, seed=4, threads=1)
    three, ds3 = sens.sensitivity(SAAS, trials=200, seed=4, threads=3, progress=lambda d, t: calls.append((d, t)))
    assert _same(one, three)
    for name in ds1.data_vars:
        assert np.array_equal(ds1[name].values, ds3[name].values, equal_nan=True), name
    runs = 2 * len(one["levers"]) - len(one["skipped"])
    assert [d for d, _ in calls] == list(range(1, runs + 1)) and {t for _, t in calls} == {2 * len(one["levers"])}
    assert all(math.isfinite(s["share"]) for s in one["variance_shares"])
