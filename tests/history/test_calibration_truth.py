"""Calibration against known truths: stalled deals (the format extension and its fit),
delayed entry, conversion separated from cycle speed, trends in arrivals, selection."""
from __future__ import annotations

import math
import tempfile
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

import forecaster as fc
from forecaster.history.fitting import StageData, fit_stage
from forecaster.history.readers import Deal


def _pipeline_scenario(stalled: dict | None, tmp: str, n: int = 200) -> fc.Scenario:
    doc = {"name": "t", "start": "2026-01-01", "end": "2026-12-31", "stages": ["s"], "seed": 1,
           "segments": {"a": {"leads": {"per_day": 0.0}, "deal_value": 1,
                              "funnel": {"s": {"convert": 0.5, "days": {"dist": "exponential", "mean": 10},
                                               "days_lost": {"dist": "exponential", "mean": 30}}}}},
           "pipeline": {"file": "p.csv"}}
    if stalled is not None:
        doc["stalled"] = stalled
    rows = "\n".join(f"d{i},a,s,2025-12-12" for i in range(n))  # age 20 days on start
    (Path(tmp) / "p.csv").write_text("deal_id,segment,stage,entered_stage\n" + rows + "\n")
    return fc.scenario_from_dict(doc, base_dir=tmp)


@pytest.mark.parametrize("sigma", [0.0, 0.3, 1.0])
def test_stalled_share_conditions_open_deals_exactly(sigma):
    """q = p S(a) / (p S(a) + (1 - p)(sigma + (1 - sigma) S_lost(a))), the contract's example
    (exponential 10 / 30 days, p = 0.5, a = 20) at sigma = 0 (0.209)."""
    trials, n = 4000, 200
    with tempfile.TemporaryDirectory() as tmp:
        won = fc.simulate(_pipeline_scenario({"s": sigma}, tmp, n), trials=trials, seed=1)["won_deals"].values
    share = won.sum(axis=1).mean() / n
    s_lost = sigma + (1 - sigma) * math.exp(-20 / 30)
    q = 0.5 * math.exp(-2) / (0.5 * math.exp(-2) + 0.5 * s_lost)
    se = math.sqrt(q * (1 - q) / (trials * n))
    assert abs(share - q) < 4 * se
    if sigma == 0.0:
        assert q == pytest.approx(0.209, abs=5e-4)


def test_stalled_changes_nothing_for_new_leads_and_is_refused_out_of_range():
    doc = {"name": "t", "start": "2026-01-01", "end": "2026-03-31", "stages": ["s"],
           "segments": {"a": {"leads": {"per_day": 5.0}, "deal_value": 1,
                              "funnel": {"s": {"convert": 0.3, "days": {"dist": "exponential", "mean": 10}}}}}}
    plain = fc.simulate(fc.scenario_from_dict(doc), trials=300, seed=2)["won_deals"].values
    stalled = fc.simulate(fc.scenario_from_dict({**doc, "stalled": {"s": 0.4}}), trials=300, seed=2)
    assert np.array_equal(plain, stalled["won_deals"].values)
    with pytest.raises(fc.ScenarioError, match=r"stalled\.s"):
        fc.scenario_from_dict({**doc, "stalled": {"s": 1.5}})
    with pytest.raises(fc.ScenarioError, match=r"stalled\.x.*not one of the stages"):
        fc.scenario_from_dict({**doc, "stalled": {"x": 0.1}})


def _stage_history(rng, n, p, sigma, median_won=30.0, median_lost=20.0, horizon=400, truncate_at=None):
    """Deals entering uniformly over ``horizon`` days, seen on day ``horizon``; a share
    ``sigma`` of the non-converting ones never leave. ``truncate_at``: an export that drops
    every deal closed before that day (delayed entry for the ones entered before it)."""
    entered = rng.uniform(0, horizon, n).astype(int)
    converts = rng.random(n) < p
    stalls = ~converts & (rng.random(n) < sigma)
    t = np.where(converts, rng.lognormal(math.log(median_won), 0.6, n), rng.lognormal(math.log(median_lost), 0.6, n))
    t = np.floor(t)
    t[stalls] = np.inf
    end = entered + t
    keep = np.ones(n, bool) if truncate_at is None else (end >= truncate_at)
    done = end < horizon
    entry = np.where(entered < (truncate_at or 0), (truncate_at or 0) - entered, 0)
    sel = lambda m: keep & m  # noqa: E731
    return StageData(t[sel(done & converts)], t[sel(done & ~converts)], (horizon - entered)[sel(~done)].astype(float),
                     converted_entry=entry[sel(done & converts)], lost_entry=entry[sel(done & ~converts)],
                     open_entry=entry[sel(~done)])


def test_fit_recovers_the_stalled_share():
    rng = np.random.default_rng(11)
    fit = fit_stage(_stage_history(rng, 6000, 0.4, 0.25))
    assert fit.stalled == pytest.approx(0.25, abs=0.04)
    assert fit.p == pytest.approx(0.4, abs=0.03)
    clean = fit_stage(_stage_history(np.random.default_rng(12), 6000, 0.4, 0.0))
    assert clean.stalled < 0.02


def test_delayed_entry_undoes_left_truncation():
    """An export that drops deals closed before day 300 keeps only the long-lived early ones:
    fitted as if seen from entry, the time to win looks far too slow."""
    data = _stage_history(np.random.default_rng(13), 12000, 0.5, 0.0, median_won=52.0, truncate_at=300)
    fit = fit_stage(data, families=("lognormal",), lost_families=("lognormal",))
    assert fit.days[1]["median"] == pytest.approx(52, rel=0.08)
    naive = StageData(data.converted, data.lost, data.open_ages)
    slow = fit_stage(naive, families=("lognormal",), lost_families=("lognormal",))
    assert slow.days[1]["median"] > 60  # what the truncation does without delayed entry


def _speed_history(rng, median_of_month, p_of_month, months=12, leads=400):
    """One stage; cohort m converts with p_of_month(m) after a lognormal time (sigma 0.5)
    with median_of_month(m) days, or is lost after an exponential 20 days."""
    deals = []
    for m in range(months):
        first = date(2025 + m // 12, m % 12 + 1, 1)
        for k in range(rng.poisson(leads)):
            entered = first + timedelta(days=int(rng.integers(0, 28)))
            won = rng.random() < p_of_month(m)
            days = rng.lognormal(math.log(median_of_month(m)), 0.5) if won else rng.exponential(20)
            closed = entered + timedelta(days=int(days))
            deals.append(Deal(f"{m}-{k}", "all", [entered], "won" if won else "lost", closed, 1.0))
    return deals


def _seen(deals, as_of):
    return [Deal(d.deal_id, d.segment, d.entered, d.outcome if d.closed <= as_of else "open",
                 d.closed if d.closed <= as_of else None, d.amount) for d in deals]


def test_each_cohort_reads_its_own_speed():
    """Cohort m's time to win is the first cohort's times 0.85**m: against the pooled law,
    the cohorts' log time scales fall by log 0.85 a month. (The pooled nonparametric law has
    no mass between the days it saw a conversion on, so without smoothing every cohort read
    exactly as fast as the pool, with a standard error near 0.)"""
    from forecaster.history.estimate import stage_data
    from forecaster.history.fitting import LogTimeLaw, cohort_conversion, conversion_cdf

    as_of = date(2025, 12, 31)
    deals = _seen(_speed_history(np.random.default_rng(8), lambda m: 60 * 0.85 ** m, lambda m: 0.5), as_of)
    pooled = stage_data(deals, 0, 1, as_of, True)
    law = LogTimeLaw.of(conversion_cdf(pooled), int(pooled.converted.size))
    months, est, var = [], [], []
    for m in range(8):  # cohorts at least four months old: their speed shows
        cohort = [d for d in deals if (d.entered[0].year, d.entered[0].month) == (2025, m + 1)]
        e = cohort_conversion(stage_data(cohort, 0, 1, as_of, True), law)
        months.append(m), est.append(e.log_scale), var.append(e.var_log_scale)
        assert math.sqrt(e.var_log_scale) > 0.02  # an honest standard error, not a collapsed one
        assert abs(e.logit_p) < 3 * math.sqrt(e.var_logit_p) + 0.05, (m, e)  # p = 0.5 throughout
    x, y, w = np.array(months, float), np.array(est), 1 / np.array(var)
    xm = (w @ x) / w.sum()
    slope = (w * (x - xm)) @ y / ((w * (x - xm)) @ (x - xm))
    se = math.sqrt(1 / ((w * (x - xm)) @ (x - xm)))
    assert abs(slope - math.log(0.85)) < 3 * se + 0.02, (slope, se)
    # and each cohort against the truth (its scale against the pool's median), within 3 sd
    pooled_median = math.exp(np.interp(0.5, law.F, law.log_t))
    for m, e, v in zip(months, est, var):
        assert abs(e - math.log(60 * 0.85 ** m / pooled_median)) < 3 * math.sqrt(v) + 0.05, (m, e, v)


@pytest.mark.parametrize("label, median, p, truth", [
    ("cycle speeds up, conversion stays", lambda m: 60 * 0.85 ** m, lambda m: 0.5, 0.5),
    ("cycle slows down, conversion stays", lambda m: 20 / 0.88 ** m, lambda m: 0.5, 0.5),
    ("conversion rises, speed stays", lambda m: 30, lambda m: 0.3 if m < 6 else 0.55, 0.55),
])
def test_conversion_is_not_confused_with_speed(label, median, p, truth):
    from forecaster.history.calibrate import calibrate

    as_of = date(2025, 12, 31)
    deals = _seen(_speed_history(np.random.default_rng(21), median, p), as_of)
    cal = calibrate(deals, ["x"], as_of, select=False)
    mean = cal.scenario["segments"]["all"]["funnel"]["x"]["convert"]["mean"]
    assert mean == pytest.approx(truth, abs=0.07), label


def test_local_trend_covers_the_next_level():
    """A log-linear ramp with noise: the trend's mean is unbiased for the next month and its
    80% interval covers it about 80% of the time (the flat local level lags behind)."""
    from forecaster.history.drift import local_level, local_trend

    rng = np.random.default_rng(5)
    inside, errors, flat_errors = [], [], []
    for _ in range(120):
        slope = rng.uniform(-0.08, 0.1)
        x = math.log(300) + slope * np.arange(13) + np.cumsum(rng.normal(0, 0.03, 13))
        y = x[:12] + rng.normal(0, 0.05, 12)
        t = local_trend(y, np.full(12, 0.05 ** 2))
        m, sd = t.mean(1), math.sqrt(t.variance(1))
        inside.append(abs(x[12] - m) <= 1.2816 * sd)
        errors.append(x[12] - m)
        flat_errors.append(x[12] - local_level(y, np.full(12, 0.05 ** 2)).m)
    # at least nominal: the allowance for a rare jump (drift.py) widens it when none comes
    assert np.mean(inside) >= 0.75
    assert abs(np.mean(errors)) < 0.02
    assert np.mean(np.abs(errors)) < np.mean(np.abs(flat_errors))


def test_a_deal_far_older_than_any_cycle_is_not_an_instant_win():
    """Lognormal times whose survivals both underflow at a 6-year-old deal: the lost tail is
    the heavier, so the deal cannot still be converting (the contract's "no mass: converts
    with p at time 0" rule is for bounded times; before, it was won half the time on day 0)."""
    doc = {"name": "t", "start": "2026-01-01", "end": "2026-03-31", "stages": ["s"],
           "segments": {"a": {"leads": {"per_day": 0.0}, "deal_value": 1,
                              "funnel": {"s": {"convert": 0.5, "days": {"dist": "lognormal", "median": 10, "sigma": 0.3},
                                               "days_lost": {"dist": "lognormal", "median": 10, "sigma": 0.6}}}}},
           "pipeline": {"file": "p.csv"}}
    means = []
    for rows in ("d1,a,s,2020-01-01\nd2,a,s,2025-12-20\n", "d2,a,s,2025-12-20\n"):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "p.csv").write_text("deal_id,segment,stage,entered_stage\n" + rows)
            won = fc.simulate(fc.scenario_from_dict(doc, base_dir=tmp), trials=4000, seed=1)["won_deals"].values
            means.append(won.sum(axis=1).mean())
    assert abs(means[0] - means[1]) < 4 * math.sqrt(0.25 / 4000)


def test_quarter_end_bunching_is_not_read_from_noisy_months():
    """Months that vary 10% beyond Poisson, no quarter-end effect: slips are fitted in about
    1% of histories at most (a plain Poisson likelihood ratio fitted them in 9%)."""
    from forecaster.history.parts import Calibration
    from forecaster.history.quarters import quarter_end_closing

    rng = np.random.default_rng(1)
    hits, short, n = 0, 0, 120
    for _ in range(n):
        deals = []
        for mi in range(24):
            first = date(2022 + mi // 12, mi % 12 + 1, 1)
            days = ((date(first.year + (first.month == 12), first.month % 12 + 1, 1)) - first).days
            for k in range(rng.poisson(10.0 * days * rng.lognormal(-0.005, 0.1))):
                won = first + timedelta(days=int(rng.integers(days)))
                deals.append(Deal(f"{mi}-{k}", "all", [won - timedelta(days=20)], "won", won, 1.0))
        hits += quarter_end_closing(deals, date(2023, 12, 31), Calibration({}, [])) is not None
        # early on: seven whole months of steady wins (February to August), three degrees of
        # freedom left for the months' dispersion
        early = [d for d in deals if d.entered[0] <= date(2022, 8, 31)]
        short += quarter_end_closing(early, date(2022, 8, 31), Calibration({}, [])) is not None
    assert hits <= 4  # 1% of 120 is 1.2; 4 or more has probability < 3% under the test's level
    assert short <= 4


def test_an_export_whose_every_deal_entered_before_its_first_close_is_calibrated_from_the_likelihood():
    """No deal counts in the exposure (all under delayed entry): the delayed-entry
    likelihood's p carries the estimate, not a prior of 0.5."""
    from forecaster.history.calibrate import calibrate

    rng = np.random.default_rng(0)
    deals = []
    for i in range(2000):
        e = date(2024, 1, 1) + timedelta(days=int(rng.integers(31)))
        t = 35 + int(rng.exponential(20))  # nothing closes within 35 days
        won = rng.random() < 0.1
        deals.append(Deal(str(i), "all", [e], "won" if won else "lost", e + timedelta(days=t), 100.0))
    cal = calibrate(deals, ["opportunity"], date(2024, 6, 30), select=False)
    assert cal.scenario["segments"]["all"]["funnel"]["opportunity"]["convert"]["mean"] == pytest.approx(0.1, abs=0.02)


def test_capacity_is_not_fitted_when_a_month_of_the_quarter_has_no_wins():
    from forecaster.history.parts import Calibration
    from forecaster.history.quarters import team_capacity

    deals = [Deal(f"{q}-{k}", "all", [date(2024, 3 * q + 3, 1)], "won", date(2024, 3 * q + 3, 10 + k % 15), 1.0)
             for q in range(4) for k in range(50)]  # every win in the quarter's third month
    cal = Calibration({}, [])
    assert team_capacity(deals, date(2024, 12, 31), cal) is None and "without wins" in cal.notes[-1]


def test_times_fitted_from_slipped_wins_are_unslipped_before_slipping_again():
    """Wins due in months 1 and 2 of a quarter slip (40%) to its last 10 days: the observed
    times are longer than the true ones (median 45 days). The closing part shrinks the fitted
    times so that slipping them again gives back what was seen, i.e. the true median."""
    from forecaster.history.quarters import unslipped_factor

    rng = np.random.default_rng(3)
    n = 20000
    entries = [date(2024, 1, 1) + timedelta(days=int(x)) for x in rng.integers(0, 366, n)]
    true = 45 * np.exp(0.8 * rng.standard_normal(n))
    seen = []
    for e, t in zip(entries, true):
        due = e + timedelta(days=float(t))
        q_end = date(due.year + (due.month > 9), (3 * ((due.month - 1) // 3) + 3) % 12 + 1, 1)
        if (due.month - 1) % 3 < 2 and rng.random() < 0.4:
            lo = max(due, q_end - timedelta(days=10))
            due = lo + (q_end - lo) * rng.random()
        seen.append((due - e).total_seconds() / 86400)
    seen = np.array(seen)
    assert np.median(seen) > 52  # the slips lengthen what is seen
    days = {"dist": "lognormal", "median": float(np.median(seen)), "sigma": float(np.std(np.log(seen)))}
    factor = unslipped_factor(days, {"slip": {1: 0.4, 2: 0.4}, "window_days": 10}, entries)
    assert factor * np.median(seen) == pytest.approx(45, rel=0.06)
    assert unslipped_factor(days, {"slip": {1: 0.0, 2: 0.0}, "window_days": 10}, entries) == 1.0


def test_cohorts_that_say_nothing_of_their_speed_do_not_break_calibration():
    """Three monthly cohorts, only the first with conversions: conversion has a level, the
    cycle's speed has none (two cohorts carry no information on it)."""
    from forecaster.history.calibrate import calibrate

    rng = np.random.default_rng(4)
    deals = []
    for m, p in ((1, 0.4), (2, 0.0), (3, 0.0)):
        for k in range(300):
            e = date(2025, m, 1) + timedelta(days=int(rng.integers(0, 28)))
            won = rng.random() < p
            closed = e + timedelta(days=int(rng.integers(1, 6)))
            deals.append(Deal(f"{m}-{k}", "all", [e], "won" if won else "lost", closed, 1.0))
    cal = calibrate(deals, ["x"], date(2025, 3, 31), select=False)
    assert any("too few cohorts old enough to measure their speed" in n for n in cal.notes)
    assert "speed" not in cal.mechanisms


def test_inner_cutoffs_reach_the_latest_month_ends_scored_on_the_months_known():
    from datetime import date

    from forecaster.history.readers import Deal
    from forecaster.history.selection import inner_cutoffs

    deals = [Deal("a", "all", [date(2024, 1, 3)], "open", None, None),
             Deal("b", "all", [date(2024, 1, 5)], "lost", date(2024, 1, 20), None)]
    assert inner_cutoffs(deals, date(2024, 12, 31), 3) == [
        (date(2024, 11, 30), 1), (date(2024, 10, 31), 2), (date(2024, 9, 30), 3), (date(2024, 8, 31), 3),
        (date(2024, 7, 31), 3)]
    # an as-of date inside a month: its last whole month is the one before
    assert inner_cutoffs(deals, date(2024, 12, 15), 2)[:3] == [
        (date(2024, 10, 31), 1), (date(2024, 9, 30), 2), (date(2024, 8, 31), 2)]
    # at least MIN_HISTORY_MONTHS (4) months after the first deal
    assert inner_cutoffs(deals, date(2024, 7, 31), 3) == [(date(2024, 6, 30), 1), (date(2024, 5, 31), 2)]
    # and MIN_CLOSED_MONTHS (3) after the first close: a history that records its first
    # resolutions late (Olist's wins) has no inner cutoffs before then
    late = deals[:1] + [Deal("b", "all", [date(2024, 1, 5)], "won", date(2024, 5, 2), None)]
    assert inner_cutoffs(late, date(2024, 9, 30), 3) == [(date(2024, 8, 31), 1)]
    assert inner_cutoffs(deals[:1], date(2024, 9, 30), 3) == []  # nothing closed yet


def test_the_synthetic_push_is_read_a_year_in_and_no_other_regime_shows_one():
    """The synthetic suite's histories a year in (December 31): two whole quarters of steady
    wins, eight whole months. The quarter-end push's 40% slip out of months 1 and 2 is found
    in each of three seeds (read by whole quarters, two degrees of freedom for the months'
    dispersion, it was missed); the steady flow, the growth ramp and the saturated team show
    no bunching."""
    from conftest import synthetic_benchmark

    from forecaster.history.parts import Calibration
    from forecaster.history.quarters import quarter_end_closing

    syn = synthetic_benchmark()
    for seed in range(3):
        cal = Calibration({}, [])
        pushed = syn.make_history("quarter_end_push", seed, 15)
        closing = quarter_end_closing(pushed.deals, date(2023, 12, 31), cal)
        assert closing is not None, cal.notes
        assert closing["slip"][1] == pytest.approx(0.4, abs=0.1) and closing["slip"][2] == pytest.approx(0.4, abs=0.1)
        assert closing["window_days"] == 10
        for regime in ("steady", "growth_ramp", "saturated_team"):
            h = syn.make_history(regime, seed, 15)
            assert quarter_end_closing(h.deals, date(2023, 12, 31), Calibration({}, [])) is None, regime
