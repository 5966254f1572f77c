"""The synthetic truth suite's generator (benchmarks/synthetic.py) honours its truths.

Fast: histories only, no calibration or backtest. Tolerances are a few standard errors
(4 unless noted), so a correct generator fails about once in 10^4 per check.
"""
from __future__ import annotations

import math
from collections import Counter
from datetime import date, timedelta

import numpy as np
import pytest
from conftest import synthetic_benchmark

syn = synthetic_benchmark()
SEED = 11


@pytest.fixture(scope="module")
def histories():
    return {regime: syn.make_history(regime, SEED) for regime in syn.REGIMES}


def _month_index(h, d: date) -> int:
    return (d.year - h.start.year) * 12 + d.month - h.start.month


def _cohorts(h, first: int, last: int) -> list:
    """Deals that entered in month indices first..last (inclusive)."""
    return [d for d in h.deals if first <= _month_index(h, d.entered[0]) <= last]


def _win_days(deals) -> np.ndarray:
    return np.array([(d.closed - d.entered[0]).days for d in deals if d.outcome == "won"], dtype=float)


def test_every_regime_has_a_sizeable_one_stage_export_as_known_on_its_end(histories):
    for regime, h in histories.items():
        months = syn.SPANS.get(regime, (24,))[0]  # the young export is 16 months long, the others 24
        assert h.start == date(2023, 1, 1) and h.end == syn.month_end(h.start, months)
        assert len(h.truth["months"]) == months
        assert len(h.deals) > months * 250 * 0.5, regime
        ids = [d.deal_id for d in h.deals]
        assert len(set(ids)) == len(ids)
        for d in h.deals:
            assert len(d.entered) == 1 and h.start <= d.entered[0] <= h.end
            assert d.outcome in ("won", "lost", "open") and d.segment == "all"
            assert d.amount is not None and d.amount > 0
            if d.outcome == "open":
                assert d.closed is None
            else:  # nothing closes after the export date, nor before the deal was created
                assert d.entered[0] <= d.closed <= h.end, (regime, d)


def test_unknown_regime_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown regime"):
        syn.make_history("nope", 0)


def test_same_seed_same_history_other_seed_another():
    a, b, c = syn.make_history("steady", 3), syn.make_history("steady", 3), syn.make_history("steady", 4)
    assert a.deals == b.deals and a.truth == b.truth
    assert a.deals != c.deals
    assert syn.make_history("steady", 3, months=12).end == date(2023, 12, 31)


@pytest.mark.parametrize("regime", ["steady", "growth_ramp", "decline", "stalled_deals"])
def test_arrivals_per_month_follow_the_rate(histories, regime):
    h = histories[regime]
    counts = Counter(_month_index(h, d.entered[0]) for d in h.deals)
    expected = np.array(h.truth["leads_per_month"])
    observed = np.array([counts.get(i, 0) for i in range(24)])
    z = (observed - expected) / np.sqrt(expected)
    assert np.all(np.abs(z) < 4.5), z
    assert abs(z.sum() / math.sqrt(24)) < 4  # and no bias over the whole history
    assert 250 <= expected.mean() <= 700 and expected.min() >= 150
    if regime == "growth_ramp":
        assert np.allclose(expected[1:] / expected[:-1] * np.array([len(_days(h, i)) for i in range(23)])
                           / np.array([len(_days(h, i + 1)) for i in range(23)]), 1.08)
    if regime == "decline":
        assert np.allclose(np.diff(np.log(h.truth["arrivals_per_day"])), math.log(0.95))


def _days(h, i: int) -> list:
    first = syn.add_months(h.start, i)
    return [first + timedelta(days=k) for k in range((syn.add_months(h.start, i + 1) - first).days)]


@pytest.mark.parametrize("regime", ["steady", "decline", "cycle_slowing_down", "stalled_deals", "conversion_drift"])
def test_old_resolved_cohorts_win_at_their_conversion(histories, regime):
    """The won share of the first 8 cohorts (resolved long before the export, except the
    stalled deals) against the truth's share ever won, cohort by cohort pooled."""
    h = histories[regime]
    deals = _cohorts(h, 0, 7)
    stall = h.truth["stall_share"]
    assert sum(d.outcome == "open" for d in deals) / len(deals) <= stall + 4 * math.sqrt(stall * (1 - stall) / len(deals)) + 0.002
    p = np.array([h.truth["convert_eventual"][_month_index(h, d.entered[0])] for d in deals])
    won = np.array([d.outcome == "won" for d in deals])
    assert abs(won.sum() - p.sum()) < 4 * math.sqrt((p * (1 - p)).sum())
    lost = sum(d.outcome == "lost" for d in deals)
    assert lost > 0.5 * len(deals)


def test_conversion_drift_walks_and_the_bad_month_halves_one_cohort(histories):
    walk = np.array(histories["conversion_drift"].truth["convert"])
    steps = np.diff(np.log(walk / (1 - walk)))
    assert 0.05 < steps.std() < 0.3 and len(set(np.round(walk, 6))) == 24
    h = histories["one_off_bad_month"]
    p = np.array(h.truth["convert"])
    bad = h.truth["months"].index(h.truth["bad_month"])
    assert bad == 15 and p[bad] == pytest.approx(0.125) and np.all(np.delete(p, bad) == 0.25)
    # the bad cohort (resolved by the export, 8 months on) wins at half the rate of its neighbours
    cohort = _cohorts(h, bad, bad)
    rate = sum(d.outcome == "won" for d in cohort) / len(cohort)
    assert abs(rate - 0.125) < 4 * math.sqrt(0.125 * 0.875 / len(cohort)) + 0.01


def _median_check(days: np.ndarray, true_median: float):
    """Median of whole days (floored) against a lognormal's: se of the log median ~ 1.2533 sigma / sqrt(n)."""
    se = 1.2533 * 0.8 / math.sqrt(days.size)
    assert abs(math.log(np.median(days) + 0.5) - math.log(true_median)) < 4 * se + 0.02, (np.median(days), true_median)


def test_time_to_win_has_the_true_median(histories):
    h = histories["steady"]
    days = _win_days(_cohorts(h, 0, 11))
    _median_check(days, 45.0)
    assert abs(np.log(days + 0.5).std() - 0.8) < 0.08  # sigma (flooring to days narrows it a little)


@pytest.mark.parametrize("regime, early, late", [("cycle_speeding_up", 60.0, 25.0), ("cycle_slowing_down", 25.0, 60.0)])
def test_cycle_trend_early_against_late_cohorts(histories, regime, early, late):
    h = histories[regime]
    medians = h.truth["win_median_days"]
    assert medians[0] == pytest.approx(early) and medians[-1] == pytest.approx(late)
    assert np.all(np.diff(medians) < 0) if early > late else np.all(np.diff(medians) > 0)
    windows = ((0, 3), (12, 15))  # cohorts resolved by the export (9+ months on), ~400 wins each
    for first, last in windows:
        _median_check(_win_days(_cohorts(h, first, last)), math.exp(np.mean(np.log(medians[first:last + 1]))))
    # the trend between them: observed against true log ratio of the medians, and its sign
    (a0, a1), (b0, b1) = windows
    early, late = _win_days(_cohorts(h, a0, a1)), _win_days(_cohorts(h, b0, b1))
    observed = math.log((np.median(late) + 0.5) / (np.median(early) + 0.5))
    true = np.mean(np.log(medians[b0:b1 + 1])) - np.mean(np.log(medians[a0:a1 + 1]))
    se = 1.2533 * 0.8 * math.sqrt(1 / early.size + 1 / late.size)
    assert abs(observed - true) < 4 * se + 0.02 and np.sign(observed) == np.sign(true) and abs(true) > 5 * se


def test_stalled_share(histories):
    h = histories["stalled_deals"]
    deals = _cohorts(h, 0, 11)  # resolved long ago but for the stalled
    share = sum(d.outcome == "open" for d in deals) / len(deals)
    assert h.truth["stall_share"] == 0.25
    assert abs(share - 0.25) < 4 * math.sqrt(0.25 * 0.75 / len(deals)) + 0.003  # + the few still resolving
    steady = histories["steady"]
    assert sum(d.outcome == "open" for d in _cohorts(steady, 0, 11)) < 0.005 * len(deals)


def test_left_truncation_drops_every_deal_closed_before_the_date_and_keeps_the_long_lived():
    cut = syn.make_history("left_truncated", SEED)
    full = syn.make_history("left_truncated", SEED, truncate_month=None)  # the same draws, before truncation
    when = date.fromisoformat(cut.truth["truncated_before"])
    assert when == date(2023, 7, 1) and full.truth["truncated_before"] is None
    assert all(d.closed is None or d.closed >= when for d in cut.deals)
    kept = [d for d in full.deals if d.closed is None or d.closed >= when]
    assert cut.deals == kept and len(kept) < len(full.deals)
    early = [d for d in cut.deals if d.entered[0] < when]
    assert len(early) > 200  # the long-lived early deals remain
    assert all(d.outcome != "open" or d.closed is None for d in early)
    # early on only long-lived deals appear: arrivals of the first month are a small share of the truth
    first = sum(1 for d in cut.deals if _month_index(cut, d.entered[0]) == 0)
    assert first < 0.2 * cut.truth["leads_per_month"][0]
    late = sum(1 for d in cut.deals if _month_index(cut, d.entered[0]) == 12)
    assert abs(late - cut.truth["leads_per_month"][12]) < 4.5 * math.sqrt(cut.truth["leads_per_month"][12])


def test_losses_never_recorded_stay_open():
    h = syn.make_history("losses_never_recorded", SEED)
    assert not h.lost_observed and not h.truth["lost_observed"]
    assert not any(d.outcome == "lost" for d in h.deals)
    recorded = syn.make_history("losses_never_recorded", SEED, record_losses=True)
    assert recorded.lost_observed
    # the same draws: exactly the recorded losses (and nothing else) turned open
    by_id = {d.deal_id: d for d in h.deals}
    for d in recorded.deals:
        mine = by_id[d.deal_id]
        if d.outcome == "lost":
            assert mine.outcome == "open" and mine.closed is None
        else:
            assert mine == d
    assert all(syn.make_history(r, SEED).lost_observed for r in syn.REGIMES if r != "losses_never_recorded")


def _third_month_share(h) -> tuple[float, int]:
    wins = [d.closed for d in h.deals if d.outcome == "won" and d.closed >= date(2023, 4, 1)]
    return sum((w.month - 1) % 3 == 2 for w in wins) / len(wins), len(wins)


def test_quarter_end_push_moves_wins_into_third_months(histories):
    h = histories["quarter_end_push"]
    share, n = _third_month_share(h)
    # a third of the wins fall in third months; 40% of the other two thirds slip there: 0.6
    assert abs(share - 0.6) < 4 * math.sqrt(0.6 * 0.4 / n) + 0.02
    base, _ = _third_month_share(histories["steady"])
    assert abs(base - 1 / 3) < 0.05
    # slipped wins land in the quarter's last 10 days
    wins = [d.closed for d in h.deals if d.outcome == "won" and d.closed >= date(2023, 4, 1)]
    last10 = sum((syn.add_months(w.replace(day=1), 1) - w).days <= 10 and (w.month - 1) % 3 == 2 for w in wins)
    assert last10 / len(wins) > 0.4 * 2 / 3 + 0.5 * 1 / 3 * 10 / 31 - 0.03


def test_saturated_team_never_exceeds_its_cap_and_a_backlog_grows(histories):
    h = histories["saturated_team"]
    caps = h.truth["capacity_per_month"]
    assert h.truth["capacity_mean"] == 85 and len(caps) == 24 and 60 < np.mean(caps) < 110 and len(set(caps)) > 5
    wins = Counter(_month_index(h, d.closed) for d in h.deals if d.outcome == "won")
    assert all(wins[i] <= caps[i] for i in wins)
    assert sum(wins[i] == caps[i] for i in wins) >= 15  # the cap binds most months
    free = {d.deal_id: d for d in syn.make_history("saturated_team", SEED, capacity=None).deals}  # the same draws
    delays = {}
    for d in h.deals:
        f = free[d.deal_id]
        if d.outcome == "won":  # a win only waits: same deal, no earlier
            assert f.outcome == "won" and d.closed >= f.closed
            delays.setdefault(_month_index(h, d.entered[0]) // 4, []).append((d.closed - f.closed).days)
        elif f.outcome == "won":  # still in the queue on the export date
            assert d.outcome == "open" and d.closed is None
        else:
            assert d == f  # losses do not wait for the team
    backlog = sum(f.outcome == "won" for f in free.values()) - sum(wins.values())
    assert backlog > 100  # natural wins ~100 a month against a cap of 85
    assert np.mean(delays[4]) > np.mean(delays[1]) + 20  # later cohorts wait longer


def test_amounts_have_the_true_mean(histories):
    amounts = np.array([d.amount for d in histories["steady"].deals])
    sd = amounts.std()
    assert abs(amounts.mean() - 10_000) < 4 * sd / math.sqrt(amounts.size)


def test_cutoffs_run_from_the_middle_to_three_months_before_the_end():
    start = date(2023, 1, 1)
    full, quick = syn.cutoffs_for(24, start, 10), syn.cutoffs_for(24, start, 4)
    assert full[0] == quick[0] == date(2023, 12, 31) and full[-1] == quick[-1] == date(2024, 9, 30)
    assert len(full) == 10 and len(quick) == 4
    assert all((c + timedelta(days=1)).day == 1 for c in full)


def test_the_young_export_is_the_issues_and_is_walked_forward_from_its_fourth_month():
    h = syn.make_history("young_growing_export", SEED)  # its own span: 16 months
    assert len(h.truth["months"]) == 16
    # the runner's cutoffs, whatever --months says
    (months, full), (_, quick) = (syn.regime_cutoffs("young_growing_export", 30, h.start, n) for n in (10, 4))
    assert months == 16 and full[0] == quick[0] == date(2023, 4, 30) and full[-1] == quick[-1] == date(2024, 1, 31)
    assert len(full) == 10 and len(quick) == 4
    assert syn.regime_cutoffs("steady", 24, h.start, 10) == (24, syn.cutoffs_for(24, h.start, 10))
    t = h.truth
    # about 14,000 opportunities over its first 13 months, growing 6% a month
    assert 13_000 < sum(t["leads_per_month"][:13]) < 14_500
    assert math.isclose(t["leads_per_month"][12] / t["leads_per_month"][0], 1.06 ** 12, rel_tol=1e-9)
    # the export starts mid-stream: nothing closed before its 4th month
    assert t["truncated_before"] == "2023-04-01" and all(d.closed is None or d.closed >= date(2023, 4, 1)
                                                          for d in h.deals)
    # a quarter of the leads stall; 45% of a cohort is won in the end (60% of the rest)
    assert t["stall_share"] == 0.25 and np.allclose(t["convert_eventual"], 0.45)
    # of the deals that entered in months 4-6, seen for 10 months or more, the stalled quarter
    # is still open (and the few wins slower than that: about 0.45 x 3%); without stalls, 2%
    old = _cohorts(h, 3, 5)
    still_open = sum(d.outcome == "open" for d in old) / len(old)
    assert 0.22 < still_open < 0.30, still_open
    # later cohorts close faster: the median time to win falls from 70 to 30 days
    assert math.isclose(t["win_median_days"][0], 70.0) and math.isclose(t["win_median_days"][-1], 30.0)
    early, late = _win_days(_cohorts(h, 3, 4)), _win_days(_cohorts(h, 10, 11))
    assert np.median(late) < 0.75 * np.median(early)


def test_wilson_and_cluster_intervals():
    lo, hi = syn.wilson(8, 10)
    assert 0.49 < lo < 0.5 and 0.94 < hi < 0.95  # the textbook values
    out = syn.cluster_bootstrap([[1, 1, 0], [1, 0, 1], [1, 1, 1]])
    assert out["mean"] == pytest.approx(7 / 9) and out["ci"][0] <= 7 / 9 <= out["ci"][1] and out["groups"] == 3
    assert syn.cluster_bootstrap([]) is None
