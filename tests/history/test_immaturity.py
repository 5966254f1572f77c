"""How much a young cohort's conversion is trusted (forecaster.history.estimate.immaturity_variance).

A monthly cohort read on the as-of date has converted only the share of its deals whose
conversions could already show; what it says of its conversion carries an extra variance
tau^2 (1 - seen) / seen. tau^2 is read from the history itself: each cohort is read again
as it was one to three months earlier, and its revisions are normal with variance
dv + tau^2 w. The estimator is checked against its closed form and against revisions drawn
with a known tau^2; calibration is checked on histories whose young cohorts are honest
(tau^2 small, so a young export's conversion is not left three times too loose) and on one
whose young cohorts' early reads wander."""
from __future__ import annotations

import math
import re
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from deal_flows import draw_flow, export  # noqa: E402

import forecaster.history.estimate as estimate  # noqa: E402
from forecaster.history.estimate import IMMATURE_VAR, fit_candidates, revision_variance  # noqa: E402


def test_with_no_noise_from_the_counts_the_estimate_is_the_closed_form():
    rng = np.random.default_rng(0)
    w = rng.uniform(0.1, 5.0, 40)
    r2 = rng.uniform(0.0, 3.0, 40)
    assert revision_variance(r2, np.zeros(40), w) == pytest.approx(np.mean(r2 / w), rel=1e-4)


@pytest.mark.parametrize("tau2", [0.02, 0.3, 2.0])
def test_revisions_drawn_with_a_known_variance_give_it_back(tau2):
    rng = np.random.default_rng(7)
    n = 2000
    w = rng.uniform(0.1, 4.0, n)
    dv = rng.uniform(0.001, 0.05, n)
    r = rng.normal(0.0, np.sqrt(dv + tau2 * w))
    got = revision_variance(r * r, dv, w)
    # the ML estimate of a variance from n normal draws has sd about tau2 sqrt(2 / n) when
    # the counts' part is small; dv inflates it at tau2 = 0.02: 5 sd of the worse case
    assert abs(got - tau2) < 5 * math.sqrt(2 / n) * (tau2 + 0.025), got


def test_a_revision_that_its_own_counts_explain_says_little():
    # Olist's revisions on 2018-03-31: five calm ones and one of a tiny cohort read at 41%
    # seen (r = -3.23 with dv = 1.93 from its counts). The moment estimate (sum (r^2 - dv) +
    # prior) / (sum w + 1) would be 2.1, twice the prior, from that one cohort; the
    # likelihood weighs each revision by its noise
    r = np.array([0.12, -0.03, 0.05, -0.35, 0.04, -3.23])
    dv = np.array([0.012, 0.003, 0.031, 0.211, 0.028, 1.934])
    w = np.array([0.04, 0.11, 0.90, 0.15, 0.88, 1.43])
    r2, dv, w = np.r_[IMMATURE_VAR, r * r], np.r_[0.0, dv], np.r_[1.0, w]
    moment = np.sum(r2 - dv) / np.sum(w)
    assert moment > 2.0 and revision_variance(r2, dv, w) < 0.5


def _read(deals, as_of: date) -> tuple[float, float, float, int]:
    """The calibrated conversion level's p and sd (log-odds), tau^2 and the revisions, from
    the calibration's note."""
    cal = fit_candidates(deals, ["lead"], as_of, horizon_days=91, lost_observed=True)
    note = next(n for n in cal.notes if "young cohorts' extra variance" in n)
    found = re.search(r"latest level p = ([\d.]+) ± ([\d.]+).*extra variance ([\d.]+) per .* from (\d+) revisions", note)
    assert found, note
    p, sd, tau2, revisions = found.groups()
    return float(p), float(sd), float(tau2), int(revisions)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_young_export_whose_cohorts_are_honest_trusts_them(seed, monkeypatch):
    as_of = date(2024, 6, 30)  # six months: fewer than two inner cutoffs, nothing else to narrow with
    deals = export(draw_flow(np.random.default_rng(seed), 6, stall=None), as_of, ids="monthly")
    p, sd, tau2, revisions = _read(deals, as_of)
    assert revisions >= 10 and tau2 < 0.25
    assert abs(math.log(p / (1 - p)) - math.log(0.25 / 0.75)) < 3 * sd  # the truth inside
    monkeypatch.setattr(estimate, "revision_variance", lambda r2, dv, w: IMMATURE_VAR)  # the constant
    _, sd_constant, tau2_constant, _ = _read(deals, as_of)
    assert tau2_constant == IMMATURE_VAR and sd < 0.85 * sd_constant, (sd, sd_constant)


def test_cohorts_whose_early_reads_wander_stay_looser_than_honest_ones():
    as_of = date(2024, 10, 31)
    for seed in range(3):
        honest = export(draw_flow(np.random.default_rng(seed), 10, stall=None), as_of, ids="monthly")
        wander = export(draw_flow(np.random.default_rng(seed), 10, stall=None, fast_share=True), as_of, ids="monthly")
        honest, wander = _read(honest, as_of)[2], _read(wander, as_of)[2]
        assert wander > 1.3 * honest, (honest, wander)


def test_the_month_back_keeps_a_month_end_a_month_end():
    assert estimate._months_back(date(2017, 3, 31), 1) == date(2017, 2, 28)
    assert estimate._months_back(date(2017, 5, 31), 3) == date(2017, 2, 28)
    assert estimate._months_back(date(2024, 1, 31), 1) == date(2023, 12, 31)
    assert estimate._months_back(date(2024, 3, 15), 1) == date(2024, 2, 15)
    assert estimate._months_back(date(2024, 2, 29), 1) == date(2024, 1, 31)


def test_a_read_that_could_show_nothing_is_not_a_revision(monkeypatch):
    """On the 1st of a month the cohorts re-read at the start of earlier months are days-old
    or zero-day-old reads: their estimate is the prior's (log-odds near 0, variance near the
    grid's), so w would be about 1,000 for a revision the grid bounds, and pull tau^2 down."""
    seen: list = []

    def spy(r2, dv, w):
        seen.append(w.copy())
        return revision_variance(r2, dv, w)

    monkeypatch.setattr(estimate, "revision_variance", spy)
    as_of = date(2024, 7, 1)
    _read(export(draw_flow(np.random.default_rng(0), 7, stall=None), as_of, ids="monthly"), as_of)
    assert seen and max(np.max(w) for w in seen) < 500  # every counted read could show a deal's conversion
