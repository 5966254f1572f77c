"""v2 D: the commission extras (backdated bands, SPIFs, draws, clawbacks, commission expense)
against exact arithmetic and closed forms."""
from __future__ import annotations

import numpy as np
import pytest

from forecaster.results.commission import commission_per_quota_period
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
