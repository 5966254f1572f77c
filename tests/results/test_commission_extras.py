"""v2 D: the commission extras (backdated bands, SPIFs, draws, clawbacks, commission expense)
against exact arithmetic and closed forms."""
from __future__ import annotations

import numpy as np
import pytest

from forecaster.results.commission import commission_per_quota_period, draws, expense_weights
from forecaster.scenario.model import Commission, Tier

# --- D.1 backdated bands -------------------------------------------------------------------------

HYBRID = (Tier(0.05, 0.5), Tier(0.10, 1.0, backdate=True), Tier(0.20))


@pytest.mark.parametrize("cap,tiers,expected", [
    (None, HYBRID, [500, 825, 1650.1, 2000, 4700]),
    (4500, HYBRID, [500, 825, 1650.1, 2000, 4500]),
    (None, HYBRID[:2] + (Tier(0.20, None, backdate=True),), [500, 825, 1650.1, 2000, 8000]),
    (None, tuple(Tier(t.rate, t.up_to) for t in HYBRID), [500, 825, 825.1, 1175, 3875]),  # v1: marginal
])
def test_backdated_bands_match_d1(cap, tiers, expected):
    bookings = np.array([10000, 16500, 16501, 20000, 40000.0])[None, None, :]
    got = commission_per_quota_period(bookings, np.full(5, 33000.0), Commission("month", tiers, cap))[0, 0]
    assert np.allclose(got, expected, rtol=1e-12, atol=0)


def test_backdated_band_is_rate_times_bookings_when_fully_retroactive():
    rng = np.random.default_rng(3)
    rates = (0.03, 0.06, 0.09, 0.15)
    tiers = tuple(Tier(r, (i + 1) * 0.4 if i < 3 else None, backdate=i > 0) for i, r in enumerate(rates))
    b = rng.uniform(0, 2.5e5, size=(50, 4, 3))
    q = np.array([50000.0, 80000.0, 100000.0])
    band = (b[..., None] > np.array([0.4, 0.8, 1.2]) * q[:, None]).sum(axis=-1)
    got = commission_per_quota_period(b, q, Commission("quarter", tiers))
    assert np.allclose(got, np.array(rates)[band] * b, rtol=1e-12)


def test_backdate_steps_only_at_the_backdated_edge():
    b = np.linspace(0, 60000, 6001)[None, :, None]
    c = commission_per_quota_period(b, np.array([33000.0]), Commission("month", HYBRID))[0, :, 0]
    jumps = np.flatnonzero(np.diff(c) > 0.20 * 10 + 1e-9)  # more than the top rate on one 10-unit step
    assert b[0, jumps + 1, 0].tolist() == [16510.0]          # the first step above 0.5 q


# --- D.3 draws -------------------------------------------------------------------------------------

@pytest.mark.parametrize("earnings,periods,recoverable,payouts,balances", [
    ([500, 3000], 2, True, [1500, 2000], 0),
    ([500, 3000], 2, False, [1500, 3000], 0),
    ([500, 2000, 0, 4000], 2, True, [1500, 1500, 0, 3500], 0),
    ([0, 1000, 0, 0], 2, True, [1500, 1500, 0, 0], 2000),
    ([0, 1000, 0, 0], 4, False, [1500, 1500, 1500, 1500], 0),
    ([2000, -500, 0], 1, True, [2000, 0, 0], 500),   # a clawback larger than the period's earnings is owed
])
def test_draws_match_d3(earnings, periods, recoverable, payouts, balances):
    e = np.array(earnings, float)[None, :, None]
    amount = np.zeros((e.shape[1], 1))
    amount[:periods] = 1500
    payout, balance = draws(e, amount, np.array([recoverable]), np.array([True]))
    assert payout[0, :, 0].tolist() == payouts and balance[0, 0] == balances


def test_a_recoverable_draw_pays_in_all_what_is_earned_plus_what_is_still_owed():
    rng = np.random.default_rng(8)
    e = rng.gamma(0.8, 1000, size=(500, 6, 3)) * (rng.random((500, 6, 3)) < 0.7)
    amount = np.repeat([[1200.0, 800.0, 0.0]], 6, axis=0)
    amount[4:, 0] = 0
    payout, balance = draws(e, amount, np.array([True, True, False]), np.array([True, True, True]))
    assert np.allclose(payout.sum(axis=1)[:, :2], e.sum(axis=1)[:, :2] + balance[:, :2])
    assert np.all(balance >= 0) and np.all(balance[:, 2] == 0)
    assert np.all(payout >= amount[None]) and np.allclose(payout[..., 2], e[..., 2])
    # a rep without a draw is paid what it earns
    payout, _ = draws(e, amount, np.array([True, True, False]), np.array([False, True, True]))
    assert np.array_equal(payout[..., 0], e[..., 0])


# --- D.5 commission expense ------------------------------------------------------------------------

def test_expense_weights_match_d5_and_sum_to_one_over_the_life():
    from datetime import date

    from forecaster.calendar import periods

    start, end = date(2027, 1, 1), date(2028, 12, 31)
    month = periods(start, end, "month")
    earn = [int(d) for d in month.last_day]
    w = expense_weights(earn, 12, start, (end - start).days + 1, month.of_day, len(month))
    # 1,000 earned 2027-01-31 and 2,000 earned 2027-02-28 with n = 12: 1,000/365 in January, 30,000/365 in
    # February, 93,000/365 in March
    assert np.allclose(np.array([1000, 2000]) @ w[:2, :3], np.array([1000, 30000, 93000]) / 365, rtol=1e-12)
    assert np.allclose(w[:12].sum(axis=1), 1.0)  # lives that end inside the horizon are expensed whole
    assert np.all(w[12:].sum(axis=1) < 1.0)      # the others up to end
    assert np.array_equal(expense_weights(earn, 0, start, 731, month.of_day, len(month)), np.eye(24))
