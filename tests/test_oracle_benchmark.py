"""The truth suite's oracle (benchmarks/oracle.py) against the generator it forecasts: over
many independent histories, what the generator then drew must look like draws from the
oracle's forecast (mean, spread, P10-P90, PIT), in regimes that exercise each of its parts:
the open deals' conditioning on their age, stalls, slips, a team's queue, a random walk."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_benchmark
from scipy.stats import kstest

ROOT = Path(__file__).resolve().parent.parent


def _oracle():
    synthetic_benchmark()  # loaded under its own name first; the oracle imports it as `synthetic`
    name = "forecaster_oracle_benchmark"
    if name not in sys.modules:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "oracle.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.mark.parametrize("regime", ["steady", "growth_ramp", "stalled_deals", "quarter_end_push", "saturated_team",
                                    "conversion_drift", "cycle_speeding_up", "losses_never_recorded",
                                    "young_growing_export"])
def test_the_generators_draws_look_like_draws_from_the_oracle(regime):
    """30 histories (seeds) of 14 months, cut at the end of month 9, 10 or 11 (every phase of
    a quarter), 3 months each: the actuals' standardised residuals have mean 0 and sd 1 (a
    few standard errors), about 80% fall inside P10-P90, and their PIT is uniform.
    Forgetting the stall share, the slips or the team's queue fails it (each was checked by
    breaking it once)."""
    oracle, syn = _oracle(), synthetic_benchmark()
    z, inside, pit = [], [], []
    for seed in range(30):
        history = syn.make_history(regime, 1000 + seed, 14)
        cutoff = syn.month_end(syn.START, 9 + seed % 3)
        samples = oracle.oracle_samples(history, cutoff, 3, draws=1000)
        actual = oracle.actual_wins(history, cutoff, 3)
        assert samples.shape == (1000, 3) and np.all(samples >= 0)
        for k in range(3):
            x = samples[:, k]
            z.append((actual[k] - x.mean()) / x.std())
            lo, hi = np.percentile(x, [10, 90])
            inside.append(lo <= actual[k] <= hi)
            pit.append(np.mean(x < actual[k]) + 0.5 * np.mean(x == actual[k]))
    z = np.array(z)
    # months of one history share its state (and a walk), so allow for ~half the 90 as independent
    assert abs(z.mean()) < 3 * np.sqrt(2 / z.size), z.mean()
    assert 0.75 < z.std() < 1.25, z.std()
    assert 0.65 <= np.mean(inside) <= 0.93, np.mean(inside)
    assert kstest(pit, "uniform").pvalue > 0.001


def test_the_oracle_does_not_foresee_a_one_off_month():
    """Before the bad cohort arrives, the oracle's forecast is the same whether the month will
    convert at half or as usual (a one-off is not foreseeable); once it has arrived, it knows."""
    oracle, syn = _oracle(), synthetic_benchmark()
    bad = syn.make_history("one_off_bad_month", 3, 14)                       # month index 5 converts at half
    usual = syn.make_history("one_off_bad_month", 3, 14, bad_factor=1.0)
    assert bad.truth["bad_month"] == "2023-06"
    before, after = syn.month_end(syn.START, 4), syn.month_end(syn.START, 7)  # May 31st, August 31st
    assert np.array_equal(oracle.oracle_samples(bad, before, 3, 500), oracle.oracle_samples(usual, before, 3, 500))
    assert oracle.oracle_samples(bad, after, 3, 500).mean() < oracle.oracle_samples(usual, after, 3, 500).mean() - 5


def test_the_oracle_refuses_slips_and_a_queue_together():
    oracle, syn = _oracle(), synthetic_benchmark()
    history = syn.make_history("steady", 1, 14, slip=0.3, capacity=90)
    with pytest.raises(ValueError, match="slips and a team's queue"):
        oracle.oracle_samples(history, syn.month_end(syn.START, 9), 3, 100)


def test_the_oracle_is_sharper_than_a_forecast_that_forgets_the_open_deals_ages():
    """The conditioning has teeth: with every open deal treated as a fresh lead of its cohort
    (age 0), the forecast of the first month is far off what the generator draws."""
    oracle, syn = _oracle(), synthetic_benchmark()
    history = syn.make_history("steady", 7, 14)
    cutoff = syn.month_end(syn.START, 10)
    right = oracle.oracle_samples(history, cutoff, 3, draws=2000)[:, 0].mean()
    fresh = dict(history.latent)
    fresh["offset"] = np.where(history.latent["offset"] < (cutoff - history.start).days + 1,
                               (cutoff - history.start).days, history.latent["offset"])  # age 1 day
    aged = syn.History(history.regime, history.seed, history.start, history.end, history.deals,
                       history.lost_observed, history.truth, {**fresh, "due": history.latent["due"],
                                                              "close": history.latent["close"]})
    wrong = oracle.oracle_samples(aged, cutoff, 3, draws=2000)[:, 0].mean()
    actual = oracle.actual_wins(history, cutoff, 3)[0]
    assert abs(actual - right) < 4 * np.sqrt(right), (actual, right)
    assert abs(wrong - right) > 15, (wrong, right)
