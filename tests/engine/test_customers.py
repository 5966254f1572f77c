"""After the sale (scenario-format-v2.md, A): customers simulated from won deals and from the
installed base, checked against closed forms and exact identities.

The public checks (../shared/conformance-v2/test_after_sale.py) drive the command line;
these drive :func:`forecaster.simulate` and reach what they do not: the calendar arithmetic
of the kernels, cancellations of subscribers, commission on total bookings, installed repeat
buyers with each kind of heterogeneity, and the bit-identity of v1 outputs.
"""
from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pytest
from conftest import within

import forecaster as fc
from forecaster.engine import kernels
from forecaster.scenario.customers import add_months

CUSTOMER_MONTH = 365.25 / 12


def test_the_kernels_add_months_as_the_calendar_does():
    start = date(2027, 1, 1)
    start_days = (start - date(1970, 1, 1)).days
    rng = np.random.default_rng(3)
    for day, n in zip(rng.integers(-800, 3000, 400), rng.integers(-40, 40, 400)):
        d = start + timedelta(int(day))
        expected = (add_months(d, int(n)) - start).days
        assert kernels.add_months(int(day), int(n), start_days) == expected, (d, n)
    assert (add_months(date(2027, 1, 31), 1), add_months(date(2027, 3, 31), -1)) == (date(2027, 2, 28),
                                                                                     date(2027, 2, 28))


def _pipeline(tmp_path, segment: str, n: int, value, owner: str = "") -> None:
    rows = "".join(f"{i},{segment},close,2027-01-01,{value},{owner}\n" for i in range(n))
    (tmp_path / "deals.csv").write_text("deal_id,segment,stage,entered_stage,amount,owner\n" + rows)


def _scenario(tmp_path, body: str, *, end="2027-12-31", report_by="month", trials=2000, name="s.yaml"):
    path = tmp_path / name
    path.write_text(f"name: t\nstart: 2027-01-01\nend: {end}\nreport_by: {report_by}\ntrials: {trials}\nseed: 5\n"
                    + body)
    return fc.load_scenario(path)


ONE_STAGE = """\
stages: [close]
segments:
  s:
    leads: {per_day: 0}
    funnel:
      close: {convert: 1.0, days: 0}
    deal_value: 100
"""


def test_a_subscriber_cancelled_in_its_first_term_never_renews(tmp_path):
    """Cancel probability 1 on day floor(d), d ~ uniform(0, 20): every first term ends then,
    with refund 0.5 the recognised total is 50 a customer, and nobody renews."""
    N = 50
    _pipeline(tmp_path, "s", N, 100)
    sc = _scenario(tmp_path, ONE_STAGE + """\
    customer:
      subscription: {renew: 0.9}
      cancel: {probability: 1.0, days: {dist: uniform, low: 0, high: 20}, refund: 0.5}
pipeline: {file: deals.csv}
""".replace("\n    customer", "\n    customer", 1), trials=200)
    ds = fc.simulate(sc)
    assert np.allclose(ds["renewal_bookings"].values, 0)
    assert np.allclose(ds["recognised_revenue"].values.sum(axis=1), N * 50, rtol=1e-12)
    assert np.allclose(ds["cancellations"].values.sum(axis=1), N * 50)
    assert np.array_equal(ds["churned_customers"].values.sum(axis=1), np.full(200, N))
    assert np.array_equal(ds["active_customers"].values, np.zeros((200, 12), dtype=np.int32))


def test_a_cancellation_after_the_first_term_is_not_a_cancellation(tmp_path):
    N = 40
    _pipeline(tmp_path, "s", N, 100)
    sc = _scenario(tmp_path, ONE_STAGE + """\
    customer:
      subscription: {renew: 1.0}
      cancel: {probability: 1.0, days: 45}
pipeline: {file: deals.csv}
""", trials=50)
    ds = fc.simulate(sc)
    assert np.allclose(ds["cancellations"].values, 0)
    assert np.array_equal(ds["active_customers"].values[:, -1], np.full(50, N))
    assert np.allclose(ds["recognised_revenue"].values.sum(axis=1), N * 1200)


REPS = """\
team:
  reps:
    - {name: ana, segments: [s], quota: 1000}
commission:
  period: month
  tiers: [{up_to: 1.0, rate: 0.05}, {rate: 0.10}]
  base: total_bookings
"""


def test_commission_on_total_bookings_counts_the_reps_renewals(tmp_path):
    """One rep owns every customer: her bookings in a month are the month's revenue plus
    renewal bookings, and the marginal tiers apply to that sum (computed here by hand)."""
    _pipeline(tmp_path, "s", 30, 100, owner="ana")
    body = ONE_STAGE + """\
    customer:
      subscription: {renew: 0.8}
pipeline: {file: deals.csv}
"""
    total = fc.simulate(_scenario(tmp_path, body + REPS, trials=300))
    plain = fc.simulate(_scenario(tmp_path, body + REPS.replace("  base: total_bookings\n", ""), trials=300,
                                  name="plain.yaml"))
    booked = total["revenue"].values + total["renewal_bookings"].values
    expected = 0.05 * np.minimum(booked, 1000) + 0.10 * np.maximum(booked - 1000, 0)
    assert np.allclose(total["commission"].values[:, :, 0], expected, rtol=1e-12)
    v1 = plain["revenue"].values
    assert np.allclose(plain["commission"].values[:, :, 0], 0.05 * np.minimum(v1, 1000)
                       + 0.10 * np.maximum(v1 - 1000, 0), rtol=1e-12)
    assert np.array_equal(total["revenue"].values, plain["revenue"].values)


def test_customer_keys_leave_v1_outputs_bit_identical(tmp_path):
    body = """\
stages: [lead, deal]
segments:
  s:
    leads: {per_day: 20}
    funnel:
      lead: {convert: {dist: beta, mean: 0.3, concentration: 60}, days: {dist: lognormal, median: 5, sigma: 0.5}}
      deal: {convert: 0.4, days: {dist: gamma, mean: 20, cv: 0.6}}
    deal_value: {dist: lognormal, median: 3000, sigma: 0.6}
"""
    after = body + """\
    customer:
      repeat: {per_month: 0.4, rate_cv: 1.0, dropout: 0.3, dropout_concentration: 4}
      cancel: {probability: 0.1, days: {dist: exponential, mean: 20}}
regular_from: 4
"""
    a = fc.simulate(_scenario(tmp_path, body, end="2027-06-30", trials=500))
    b = fc.simulate(_scenario(tmp_path, after, end="2027-06-30", trials=500, name="b.yaml"))
    for var in ("revenue", "won_deals", "revenue_by_segment", "won_deals_by_segment"):
        assert np.array_equal(a[var].values, b[var].values), var
    assert np.array_equal(a["inputs"].values, b["inputs"].values[:, :, :a.sizes["quantity"]])
    assert "recognised_revenue" not in a
    # exact identities in every trial and period
    tb = b["revenue"].values + b["renewal_bookings"].values + b["repeat_revenue"].values - b["cancellations"].values
    assert np.allclose(b["total_bookings"].values, tb, rtol=1e-12)
    act = b["active_customers"].values
    assert np.array_equal(np.cumsum(b["new_customers"].values - b["churned_customers"].values, axis=1), act)
    assert np.array_equal(b["new_customers"].values, b["won_deals"].values)
    assert np.all(b["regular_customers"].values.sum(axis=1) <= b["repeat_customers"].values.sum(axis=1))


INSTALLED = """\
stages: [close]
segments:
  buy:
    leads: {per_day: 0}
    funnel:
      close: {convert: 1.0, days: 0}
    deal_value: 200
    customer:
      repeat: %s
customers: {file: customers.csv}
"""


def _installed_repeat(tmp_path, n: int, first: date, last: date, x: int) -> None:
    rows = "".join(f"C{i},buy,{first},{last},{x}\n" for i in range(n))
    (tmp_path / "customers.csv").write_text("customer_id,segment,first_purchase,last_purchase,purchases\n" + rows)


@pytest.mark.parametrize("heterogeneity", ["none", "rate", "dropout", "both"])
def test_installed_repeat_buyers_are_alive_with_their_posterior_probability(tmp_path, heterogeneity):
    """P(alive at start | x, t_x, T) from v2 A.5, computed here for each kind of
    heterogeneity, against the active customers at the end of the first day (less the
    dropouts of that day, e^(-λ p / 30.4375) for a customer of rate λ and dropout p)."""
    N, x, lam_bar, p_bar = 400, 3, 0.5, 0.2
    first, last = date(2026, 1, 15), date(2026, 9, 1)
    T, t_x = (date(2027, 1, 1) - first).days / CUSTOMER_MONTH, (last - first).days / CUSTOMER_MONTH
    c, kappa = 1.2, 6.0
    keys = {"none": "", "rate": f", rate_cv: {c}", "dropout": f", dropout_concentration: {kappa}",
            "both": f", rate_cv: {c}, dropout_concentration: {kappa}"}[heterogeneity]
    _installed_repeat(tmp_path, N, first, last, x)
    sc = _scenario(tmp_path, INSTALLED % f"{{per_month: {lam_bar}, dropout: {p_bar}, value: 10{keys}}}",
                   end="2027-01-01", report_by="day", trials=3000)
    ds = fc.simulate(sc)
    r, a, b = 1 / c ** 2, p_bar * kappa, (1 - p_bar) * kappa
    alpha = r / lam_bar
    odds_p = a / (b + x - 1) if heterogeneity in ("dropout", "both") else p_bar / (1 - p_bar)
    odds_l = (((alpha + T) / (alpha + t_x)) ** (r + x) if heterogeneity in ("rate", "both")
              else math.exp(lam_bar * (T - t_x)))
    alive = 1 / (1 + odds_p * odds_l)
    if heterogeneity == "none":
        assert math.isclose(1 / (1 + 0.25 * math.exp(lam_bar * (T - t_x))), alive)
    # survival of the first day: E[e^(-λ p h)] over the posterior of (λ, p) given alive
    h = 1 / CUSTOMER_MONTH
    rng = np.random.default_rng(0)
    lam = (rng.gamma(r + x, 1 / (alpha + T), 400_000) if heterogeneity in ("rate", "both")
           else np.full(400_000, lam_bar))
    p = rng.beta(a, b + x, 400_000) if heterogeneity in ("dropout", "both") else np.full(400_000, p_bar)
    share = alive * float(np.mean(np.exp(-lam * p * h)))
    active = ds["active_customers"].values[:, 0]
    within(active.mean(), N * share, math.sqrt(N * share * (1 - share) / active.size))
    assert np.all(ds["new_customers"].values == 0) and np.all(ds["revenue"].values == 0)


def test_installed_subscriber_recognises_its_current_term_from_start(tmp_path):
    (tmp_path / "customers.csv").write_text("customer_id,segment,term_end,value,renewals,term_start\n"
                                            "A,sub,2027-01-21,300,2,2026-12-22\n")
    sc = _scenario(tmp_path, """\
stages: [close]
segments:
  sub:
    leads: {per_day: 0}
    funnel:
      close: {convert: 1.0, days: 0}
    deal_value: 100
    customer:
      subscription: {renew: 1.0, expansion: 0.1}
customers: {file: customers.csv}
""", end="2027-02-20", report_by="day", trials=20)
    ds = fc.simulate(sc)
    rec = ds["recognised_revenue"].values[0]
    assert np.allclose(rec[:20], 300 / 30) and np.allclose(rec[20:], 330 / 31)  # next term 01-21 .. 02-20
    assert np.allclose(ds["renewal_bookings"].values[0, 20], 330)
    assert np.allclose(ds["mrr"].values[0, :20], 300) and np.allclose(ds["mrr"].values[0, 20:], 330)


CAPACITY_FUNNEL = """\
stages: [lead, deal]
segments:
  a:
    leads: {per_day: 6}
    funnel:
      lead: {convert: 0.5, days: {dist: exponential, mean: 5}}
      deal: {convert: 0.5, days: {dist: gamma, mean: 10, cv: 0.5}}
    deal_value: {dist: lognormal, median: 1000, sigma: 0.5}
  b:
    leads: {per_day: 3}
    funnel:
      lead: {convert: 0.6, days: 2}
      deal: {convert: 0.5, days: {dist: uniform, low: 1, high: 20}}
    deal_value: 500
"""


@pytest.mark.parametrize("won_per_month", [20, 10_000])
def test_a_capacity_admits_customers_deal_by_deal(tmp_path, won_per_month):
    """v2 A.6: with customers, capacity admits the deals one by one, the earliest due first;
    as many are won each period as without customers (the same room, the same draws), every
    won deal creates a customer that day, and a capacity that never binds changes nothing."""
    cap = f"capacity: {{won_per_month: {won_per_month}, cv: 0.2}}\n"
    plain = fc.simulate(_scenario(tmp_path, CAPACITY_FUNNEL + cap, end="2027-06-30", trials=300))
    body = CAPACITY_FUNNEL.replace("    deal_value: 500\n", "    deal_value: 500\n    customer:\n"
                                   "      subscription: {renew: 0.8}\n")
    after = fc.simulate(_scenario(tmp_path, body + cap, end="2027-06-30", trials=300, name="c.yaml"))
    assert np.array_equal(after["won_deals"].values, plain["won_deals"].values)
    assert np.array_equal(after["won_deals_by_segment"].values.sum(axis=2), plain["won_deals"].values)
    assert np.array_equal(after["new_customers_by_segment"].values[:, :, 1],
                          after["won_deals_by_segment"].values[:, :, 1])
    if won_per_month > 1000:  # never binds: each deal is won on its due day, as without customers
        assert np.array_equal(after["won_deals_by_segment"].values, plain["won_deals_by_segment"].values)
        assert np.allclose(after["revenue_by_segment"].values, plain["revenue_by_segment"].values, rtol=1e-12)
    else:  # binds: the months are full; segment b's revenue is 500 a deal exactly
        assert (plain["won_deals"].values[:, 1:] >= 15).mean() > 0.9
        assert np.allclose(after["revenue_by_segment"].values[:, :, 1],
                           500 * after["won_deals_by_segment"].values[:, :, 1])
        # renewals follow the admitted deals: month k's renewals are at most the deals won the month before
        ren = after["renewal_bookings_by_segment"].values[:, :, 1] / 500
        won_b = after["won_deals_by_segment"].values[:, :, 1]
        assert np.all(ren[:, 1:] <= np.cumsum(won_b, axis=1)[:, :-1] + 1e-9)


def test_a_vanishing_concentration_gives_its_limit_law(tmp_path):
    """Beta(renew κ, (1 - renew) κ) tends to Bernoulli(renew) as κ -> 0: with κ = 5e-324
    (whose products underflow) each customer renews for ever with chance 0.7, else churns at
    the first renewal; the run ends (it looped for ever when a shape was 0)."""
    N = 100
    _pipeline(tmp_path, "s", N, 100)
    sc = _scenario(tmp_path, ONE_STAGE + """\
    customer:
      subscription: {renew: 0.7, concentration: 5e-324}
pipeline: {file: deals.csv}
""", end="2027-06-30", trials=400)
    ds = fc.simulate(sc)
    act = ds["active_customers"].values
    assert np.array_equal(act[:, 1], act[:, -1])  # nobody churns after the first renewal
    # CLV in the same limit: S(k) = 0.7 for every k >= 1 (it was NaN: j / κ overflowed)
    delta = 1.1 ** (-1 / 12)
    assert np.allclose(ds["clv"].values[:, 0], 100 * (1 + 0.7 * sum(delta ** k for k in range(1, 60))), rtol=1e-9)
    within(act[:, -1].mean(), 0.7 * N, math.sqrt(N * 0.21 / act.shape[0]))


@pytest.mark.parametrize("key, fragment", [
    ("subscription: {renew: 0.9, term_months: 1e15}", "customer.subscription.term_months"),
    ("subscription: {renew: 0.9, expansion: 1e308}", "customer.subscription.expansion"),
    ("subscription: {renew: 0.9, concentration: 1e300}", "customer.subscription.concentration"),
    ("repeat: {per_month: 1e9, dropout: 0.1}", "customer.repeat.per_month"),
    ("repeat: {per_month: 1, dropout: 0.1, value: 1e308}", "customer.repeat.value"),
    ("repeat: {per_month: 1, dropout: 0.1, rate_cv: 1e-300}", "customer.repeat.rate_cv"),
])
def test_after_sale_sizes_past_the_engine_are_refused_by_key(tmp_path, key, fragment):
    path = tmp_path / "s.yaml"
    path.write_text("name: t\nstart: 2027-01-01\nend: 2027-12-31\n" + ONE_STAGE + f"    customer:\n      {key}\n")
    with pytest.raises(fc.ScenarioError, match=fragment.replace(".", r"\.")):
        fc.load_scenario(path)
    path.write_text("name: t\nstart: 2027-01-01\nend: 2027-12-31\nregular_from: 1e30\n" + ONE_STAGE)
    with pytest.raises(fc.ScenarioError, match="regular_from"):
        fc.load_scenario(path)
