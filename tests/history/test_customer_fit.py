"""Calibration of the after-sale models from customer history, against truth:

* the published BG/NBD estimates on the CDNOW sample (Fader, Hardie and Lee 2005), from the
  raw transactions through our reader and summary, and the cumulative tracking of repeat
  purchases in the holdout weeks 40-78;
* the published shifted-beta-geometric estimates of Fader and Hardie (2007);
* synthetic histories with known parameters (BG/NBD and sBG customers simulated with numpy,
  censored at an as-of date), across regimes;
* the readers, the summaries' definitions and censoring, the scenario keys and the
  installed base.
"""
from __future__ import annotations

import importlib.metadata
import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import beta as beta_law

from forecaster.errors import ScenarioError
from forecaster.history.customers import (
    CUSTOMER_MONTH_DAYS,
    BGNBDFit,
    Purchase,
    Term,
    add_months,
    bgnbd_log_likelihood,
    column_map,
    cumulative_tracking,
    customers_csv,
    fit_bgnbd,
    fit_renewal,
    fit_repeat,
    fit_sbg,
    fit_sbg_survivors,
    installed_repeat_rows,
    installed_subscription_rows,
    parse_term_outcomes,
    read_subscriptions,
    read_transactions,
    repeat_block,
    sbg_log_likelihood,
    subscription_block,
    summarize_purchases,
    summarize_terms,
)

# ----------------------------------------------------------------------------------------
# CDNOW (Fader, Hardie and Lee 2005)

CDNOW_AS_OF = date(1997, 9, 30)    # the end of the 39-week calibration period
CDNOW_ORIGIN = date(1997, 1, 1)    # week 1 starts here

# Cumulative repeat purchases (distinct purchase days after each customer's first) at the end
# of weeks 40-78, counted in the sample, and expected by the BG/NBD fit on weeks 1-39.
CDNOW_TRACKING = [
    (40, 2507, 2546.6), (41, 2563, 2598.5), (42, 2612, 2649.8), (43, 2671, 2700.3), (44, 2718, 2750.2),
    (45, 2803, 2799.4), (46, 2864, 2848.0), (47, 2923, 2896.0), (48, 2968, 2943.4), (49, 3038, 2990.3),
    (50, 3104, 3036.6), (51, 3153, 3082.4), (52, 3183, 3127.7), (53, 3234, 3172.4), (54, 3276, 3216.7),
    (55, 3329, 3260.5), (56, 3357, 3303.9), (57, 3404, 3346.8), (58, 3444, 3389.2), (59, 3490, 3431.2),
    (60, 3533, 3472.9), (61, 3598, 3514.1), (62, 3677, 3554.9), (63, 3727, 3595.3), (64, 3786, 3635.3),
    (65, 3844, 3675.0), (66, 3879, 3714.3), (67, 3915, 3753.3), (68, 3962, 3791.9), (69, 3991, 3830.2),
    (70, 4035, 3868.1), (71, 4077, 3905.7), (72, 4112, 3943.1), (73, 4141, 3980.1), (74, 4183, 4016.7),
    (75, 4231, 4053.1), (76, 4279, 4089.2), (77, 4311, 4125.1), (78, 4339, 4160.6),
]


def _cdnow_sample() -> Path:
    """The CDNOW sample's raw transactions as the ``lifetimes`` package ships them (a test
    dependency): customer id (master), id (sample), date YYYYMMDD, CDs, dollars."""
    try:
        dist = importlib.metadata.distribution("lifetimes")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the CDNOW sample comes with the 'lifetimes' package (pip install -e '.[test]')")
    path = Path(str(dist.locate_file("lifetimes/datasets/CDNOW_sample.txt")))
    if not path.is_file():
        pytest.skip(f"lifetimes is installed but has no {path.name}")
    return path


@pytest.fixture(scope="module")
def cdnow(tmp_path_factory):
    """The CDNOW sample as a transaction log CSV (ISO dates, the shop's own column names),
    read by our reader: (purchases, customer summary in weeks, fit)."""
    rows = ["sample_id,purchase_day,cds,dollars"]
    for line in _cdnow_sample().read_text().splitlines():
        if line.strip():
            _, sample_id, day, cds, dollars = line.split()
            rows.append(f"{sample_id},{day[:4]}-{day[4:6]}-{day[6:]},{cds},{dollars}")
    log = tmp_path_factory.mktemp("cdnow") / "transactions.csv"
    log.write_text("\n".join(rows) + "\n")
    purchases = read_transactions(log, column_map(["customer_id=sample_id", "date=purchase_day",
                                                   "amount=dollars"], ("customer_id", "date", "amount", "segment")))
    history = summarize_purchases(purchases, CDNOW_AS_OF, unit_days=7)
    return purchases, history, fit_repeat(history)


def test_cdnow_summary_follows_the_standard_definitions(cdnow):
    """2,357 customers; 2,457 repeat purchases in weeks 1-39; a customer who first bought on
    1 January has T = 272 days = 38.86 weeks; customer 1 bought on 1997-01-01, 01-18, 08-02
    and 12-12: x = 2, t_x = 213 days = 30.43 weeks (the December purchase is after as-of)."""
    purchases, h, _ = cdnow
    assert len(purchases) == 6919
    assert h.n == 2357
    assert int(h.x.sum()) == 2457
    assert h.ignored_after == 1959
    i = h.customer_ids.index("0001")
    assert (h.x[i], round(h.t_x[i], 2), round(h.T[i], 2)) == (2, 30.43, 38.86)
    assert h.first[i] == date(1997, 1, 1) and h.last[i] == date(1997, 8, 2)
    assert h.T.max() == pytest.approx(272 / 7) and h.T.min() == pytest.approx((CDNOW_AS_OF - date(1997, 3, 25)).days / 7)


def test_cdnow_reproduces_the_published_bgnbd_estimates(cdnow):
    """r = 0.243, α = 4.414, a = 0.793, b = 2.426 (time in weeks; Fader, Hardie and Lee 2005),
    to the published rounding; log-likelihood −9,582.4."""
    _, _, fit = cdnow
    assert (round(fit.r, 3), round(fit.alpha, 3), round(fit.a, 3), round(fit.b, 3)) == (0.243, 4.414, 0.793, 2.426)
    assert fit.log_likelihood == pytest.approx(-9582.4, abs=0.05)
    assert fit.converged and not fit.homogeneous
    se = fit.se
    assert se is not None and all(0 < se[k] < v for k, v in fit.params.items())
    # the scenario's keys, in customer months
    assert fit.per_month == pytest.approx(0.243 / 4.414 * CUSTOMER_MONTH_DAYS / 7, rel=2e-3)
    assert fit.rate_cv == pytest.approx(1 / math.sqrt(0.2426), rel=1e-3)
    assert fit.dropout == pytest.approx(0.793 / (0.793 + 2.426), rel=1e-3)
    assert fit.dropout_concentration == pytest.approx(0.793 + 2.426, rel=1e-3)


def test_cdnow_tracks_cumulative_repeat_purchases_in_weeks_40_to_78(cdnow):
    """The standard cumulative tracking (Fader, Hardie and Lee 2005, fig. 2): actual counts
    exact, the fit's expectation within 0.5 of the table, and the model within 5% of the
    actual count every week of the 39-week holdout (at most 4.1%, week 78)."""
    purchases, _, fit = cdnow
    rows = cumulative_tracking(fit, purchases, CDNOW_AS_OF, CDNOW_ORIGIN, range(1, 79))
    assert rows[38].end == CDNOW_AS_OF and rows[38].actual == 2457
    assert rows[38].expected == pytest.approx(float(np.sum(fit.expected_repeat(cdnow[1].T))), rel=1e-12)
    print("\n| week | ends | actual | expected | expected - actual |\n|---:|---|---:|---:|---:|")
    for row in rows[39:]:
        print(f"| {row.period} | {row.end} | {row.actual:,} | {row.expected:,.1f} | {row.expected - row.actual:+,.1f} |")
    got = [(r.period, r.actual, round(r.expected, 1)) for r in rows[39:]]
    assert [g[:2] for g in got] == [t[:2] for t in CDNOW_TRACKING]
    for (_, _, e), (_, _, want) in zip(got, CDNOW_TRACKING):
        assert e == pytest.approx(want, abs=0.5)
    for r in rows[39:]:
        assert abs(r.expected - r.actual) / r.actual < 0.05


def test_expected_repeat_purchases_match_their_integral(cdnow):
    """The closed form (hypergeometric) against E_p[(1 − (α/(α + p t))^r) / p] by
    quadrature, and the fallback for a = 1, where the closed form divides by zero."""
    _, _, fit = cdnow
    for f in (fit, BGNBDFit(0.5, 3.0, 1.0, 2.0, 0.0, 1, 7.0, None)):
        for t in (0.5, 5.0, 39.0, 78.0):
            want = integrate.quad(lambda p, t=t, f=f: (1 - (f.alpha / (f.alpha + p * t)) ** f.r) / p
                                  * beta_law.pdf(p, f.a, f.b), 0, 1, limit=200)[0]
            assert f.expected_repeat(t)[0] == pytest.approx(want, rel=1e-7)
    assert fit.expected_repeat([0.0, -1.0]).tolist() == [0.0, 0.0]


# ----------------------------------------------------------------------------------------
# sBG: Fader and Hardie (2007), "How to project customer retention"

# Survivors at the start of years 0-7 of two cohorts of 1,000 customers (the paper's data; it
# fits on these 8 numbers and projects years 8-12).
REGULAR = [1000, 631, 468, 382, 326, 289, 262, 241]
HIGH_END = [1000, 869, 743, 653, 593, 551, 517, 491]


@pytest.mark.parametrize("survivors, alpha, beta", [(REGULAR, 0.704, 1.182), (HIGH_END, 0.668, 3.806)],
                         ids=["regular", "high-end"])
def test_sbg_reproduces_fader_hardie_2007(survivors, alpha, beta):
    fit = fit_sbg_survivors(survivors)
    assert (round(fit.alpha, 3), round(fit.beta, 3)) == (alpha, beta)
    assert fit.n == 1000 and fit.churned == 1000 - survivors[-1]
    # the fitted survival curve follows the cohort it was fitted on
    np.testing.assert_allclose(1000 * fit.survival(np.arange(8)), survivors, rtol=0.03)


def test_sbg_projects_the_regular_cohorts_later_years():
    """Fitted on years 0-7, the regular cohort's survivors in years 8-12 (223, 207, 194, 183,
    173 in the paper) are projected within 3%."""
    fit = fit_sbg_survivors(REGULAR)
    projected = 1000 * fit.survival(np.arange(8, 13))
    np.testing.assert_allclose(projected, [223, 207, 194, 183, 173], rtol=0.03)


def test_fit_sbg_needs_a_churn():
    with pytest.raises(ValueError, match="no subscription churned"):
        fit_sbg([0, 3, 5], [False, False, False])


# ----------------------------------------------------------------------------------------
# Synthetic truth: BG/NBD


def simulate_bgnbd(rng, n, r, alpha, a, b, horizon, acquisition):
    """(x, t_x, T) of ``n`` BG/NBD customers (time in customer months) acquired uniformly
    over the first ``acquisition`` months, observed to ``horizon``."""
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    T = horizon - rng.uniform(0, acquisition, n)
    x, t_x, t = np.zeros(n), np.zeros(n), np.zeros(n)
    going = np.ones(n, dtype=bool)
    while going.any():
        idx = np.flatnonzero(going)
        t[idx] += rng.exponential(1 / lam[idx])
        bought = t[idx] <= T[idx]
        going[idx[~bought]] = False
        j = idx[bought]
        x[j] += 1
        t_x[j] = t[j]
        going[j[rng.uniform(size=j.size) < p[j]]] = False  # dropout right after a repeat purchase
    return x, t_x, T


BGNBD_REGIMES = {
    "heterogeneous, low dropout": dict(r=0.5, alpha=2.0, a=0.5, b=5.0),
    "heterogeneous, high dropout": dict(r=1.0, alpha=1.0, a=2.0, b=2.0),
    "nearly homogeneous": dict(r=20.0, alpha=20.0, a=30.0, b=270.0),
}


@pytest.mark.parametrize("regime", list(BGNBD_REGIMES))
def test_bgnbd_recovers_known_parameters(regime):
    """4,000 simulated customers acquired over a year, censored 24 months on: the truth is
    inside the likelihood's 99.9% confidence region (2 (ℓ_max − ℓ_truth) below χ²₄'s
    18.47), the scenario's per_month and dropout within 3.5 standard errors, and so is every
    parameter where customers differ; where they are nearly alike (the third regime) the
    heterogeneity may instead be read as none (r or a + b at least 10,000)."""
    truth = BGNBD_REGIMES[regime]
    rng = np.random.default_rng(20260613 + list(BGNBD_REGIMES).index(regime))
    x, t_x, T = simulate_bgnbd(rng, 4000, horizon=24.0, acquisition=12.0, **truth)
    fit = fit_bgnbd(x, t_x, T)
    se = fit.se
    assert se is not None and fit.converged
    lr = 2 * (fit.log_likelihood - bgnbd_log_likelihood(*truth.values(), x, t_x, T))
    assert -1e-6 < lr < 18.47
    per_month, dropout = truth["r"] / truth["alpha"], truth["a"] / (truth["a"] + truth["b"])
    assert fit.per_month_se is not None and fit.dropout_se is not None
    assert abs(fit.per_month - per_month) < 3.5 * fit.per_month_se
    assert abs(fit.dropout - dropout) < 3.5 * fit.dropout_se
    if regime != "nearly homogeneous":
        assert not fit.homogeneous
        for name, value in truth.items():
            assert abs(fit.params[name] - value) < 3.5 * se[name], (name, fit.params[name], value, se[name])
    else:  # alike: a purchase rate's cv and a dropout's spread read as small, whatever r and a + b
        assert fit.rate_cv < 0.5 and fit.dropout_concentration > 100
    print(f"\n{regime}: truth {truth}; {fit.summary()}; 2 (l_max - l_truth) = {lr:.2f}")


def test_bgnbd_from_a_simulated_transaction_log(tmp_path):
    """The whole path on dated purchases: BG/NBD customers (per_month 0.4, rate_cv 1, dropout
    0.2, dropout_concentration 5) buying from 2024 on, a log written with purchases after the
    as-of date too; read, summarised in customer months and fitted within 3.5 SE."""
    rng = np.random.default_rng(7)
    r, alpha, a, b = 1.0, 2.5, 1.0, 4.0
    n, origin, as_of = 3000, date(2024, 1, 1), date(2025, 12, 31)
    horizon = ((as_of - origin).days + 180) / CUSTOMER_MONTH_DAYS  # the log runs 180 days past as-of
    lam, p = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    lines = ["id,when,amount"]
    for i in range(n):
        start = rng.uniform(0, 12)
        t, times = start, [start]
        while True:
            t += rng.exponential(1 / lam[i])
            if t > horizon:
                break
            times.append(t)
            if rng.uniform() < p[i]:
                break
        for k, tt in enumerate(times):
            day = origin + timedelta(days=int(tt * CUSTOMER_MONTH_DAYS))
            lines.append(f"C{i},{day.isoformat()},{50 if k == 0 else 20}")
    log = tmp_path / "t.csv"
    log.write_text("\n".join(lines) + "\n")
    history = summarize_purchases(read_transactions(log, {"customer_id": "id", "date": "when"}), as_of)
    fit = fit_repeat(history)
    se = fit.se
    assert se is not None
    for name, value in {"r": r, "alpha": alpha, "a": a, "b": b}.items():
        assert abs(fit.params[name] - value) < 3.5 * se[name], (name, fit.params[name], value, se[name])
    block = repeat_block(fit, history)["repeat"]
    assert set(block) == {"per_month", "rate_cv", "dropout", "dropout_concentration", "value"}
    assert {v % 20 for v in block["value"]["values"]} == {0.0}  # 20 each, summed on days with two purchases
    rows = installed_repeat_rows(history, "shop")
    assert len(rows) == history.n == n
    assert all(row["last_purchase"] <= as_of.isoformat() for row in rows)


# ----------------------------------------------------------------------------------------
# Synthetic truth: sBG through a subscription log


def simulate_subscription_log(rng, n, renew, concentration, as_of, export, expansion=0.0):
    """A monthly subscription log of ``n`` customers acquired over the 24 months before
    ``as_of``, each with its own churn probability ~ Beta((1 − renew) κ, renew κ), exported on
    ``export`` (after ``as_of``: outcomes decided after as_of are in the log). Returns the
    log's lines and the number of customers active on as_of."""
    theta = rng.beta((1 - renew) * concentration, renew * concentration, n)
    lines, active = ["cust,start,end,status,mrr"], 0
    for i in range(n):
        won = as_of - timedelta(days=int(rng.integers(0, 730)))
        k = 0
        while True:
            s, e = add_months(won, k), add_months(won, k + 1)
            value = round(100 * (1 + expansion) ** k, 2)
            if e > export:
                lines.append(f"S{i},{s},{e},Active,{value}")
                active += s <= as_of < e
                break
            churn = rng.uniform() < theta[i]
            lines.append(f"S{i},{s},{e},{'Cancelled' if churn else 'Renewed'},{value}")
            if s <= as_of < e:
                active += 1
            if churn:
                break
            k += 1
    return lines, active


SBG_REGIMES = {
    "heterogeneous, high churn": (0.6, 2.0),
    "heterogeneous, low churn": (0.9, 20.0),
    "nearly homogeneous": (0.85, 500.0),
}


@pytest.mark.parametrize("regime", list(SBG_REGIMES))
def test_sbg_recovers_known_parameters_from_a_subscription_log(regime, tmp_path):
    """3,000 monthly subscribers, the log exported 6 months after as-of (so it records
    decisions made after as-of, which must be censored): the truth inside the likelihood's
    99.9% region, renew within 3.5 standard errors, and α, β too where customers differ;
    term_months 1; expansion 2%; the subscribers active on as-of are the installed base."""
    renew, kappa = SBG_REGIMES[regime]
    rng = np.random.default_rng(11 + list(SBG_REGIMES).index(regime))
    as_of = date(2026, 6, 30)
    lines, active = simulate_subscription_log(rng, 3000, renew, kappa, as_of, date(2026, 12, 31), expansion=0.02)
    log = tmp_path / "subs.csv"
    log.write_text("\n".join(lines) + "\n")
    terms = read_subscriptions(log, column_map(["customer_id=cust", "term_start=start", "term_end=end",
                                                "outcome=status", "value=mrr"], ("customer_id", "term_start",
                                                                                "term_end", "outcome", "value")),
                               parse_term_outcomes(["renewed=Renewed", "churned=Cancelled", "active=Active"]))
    history = summarize_terms(terms, as_of)
    fit = fit_renewal(history)
    se = fit.se
    assert se is not None and fit.renew_se is not None
    truth = {"alpha": (1 - renew) * kappa, "beta": renew * kappa}
    lr = 2 * (fit.log_likelihood - sbg_log_likelihood(truth["alpha"], truth["beta"], history.renewals, history.churned))
    assert -1e-6 < lr < 13.82  # chi-squared with 2 degrees of freedom, 99.9%
    assert abs(fit.renew - renew) < 3.5 * fit.renew_se
    if regime != "nearly homogeneous":
        assert not fit.homogeneous
        for name, value in truth.items():
            assert abs(getattr(fit, name) - value) < 3.5 * se[name], (name, getattr(fit, name), value, se[name])
    else:
        assert fit.concentration > 50  # a renewal probability's spread across customers below 0.05
    assert history.term_months == 1 and history.term_share == 1.0
    assert history.expansion == pytest.approx(0.02, abs=1e-3)
    rows = installed_subscription_rows(history, "saas")
    assert len(rows) == active
    assert all(r["term_end"] > as_of.isoformat() >= r["term_start"] for r in rows)
    block = subscription_block(fit, history)["subscription"]
    assert block["term_months"] == 1 and block["expansion"] == pytest.approx(0.02, abs=1e-3)
    assert block["renew"]["mean"] == pytest.approx(fit.renew, rel=1e-5)
    print(f"\n{regime}: truth renew {renew}, concentration {kappa}; {fit.summary()}; 2 (l_max - l_truth) = {lr:.2f}")


# ----------------------------------------------------------------------------------------
# Readers, summaries and the scenario's keys


def test_transaction_summary_definitions():
    """x = distinct purchase days after the first (two purchases on one day are one), t_x
    and T from the first purchase, T to as-of, purchases after as-of ignored; a customer
    whose first purchase is after as-of is not there."""
    d = date
    ps = [Purchase("a", d(2026, 1, 1), 10.0), Purchase("a", d(2026, 1, 1), 5.0), Purchase("a", d(2026, 2, 1), 7.0),
          Purchase("a", d(2026, 2, 1), 1.0), Purchase("a", d(2026, 3, 3), 2.0), Purchase("a", d(2026, 9, 1), 9.0),
          Purchase("b", d(2026, 2, 15), None), Purchase("c", d(2026, 7, 1), 1.0)]
    h = summarize_purchases(ps, d(2026, 6, 30), unit_days=1.0)
    assert h.customer_ids == ["a", "b"]
    assert h.x.tolist() == [2, 0]
    assert h.t_x.tolist() == [(d(2026, 3, 3) - d(2026, 1, 1)).days, 0.0]
    assert h.T.tolist() == [(d(2026, 6, 30) - d(2026, 1, 1)).days, (d(2026, 6, 30) - d(2026, 2, 15)).days]
    assert h.ignored_after == 2 and h.same_day == 2
    assert sorted(h.repeat_values.tolist()) == [2.0, 8.0]
    rows = installed_repeat_rows(h, "shop")
    assert rows[1] == {"customer_id": "b", "segment": "shop", "first_purchase": "2026-02-15",
                       "last_purchase": "2026-02-15", "purchases": 0}
    text = customers_csv(rows)
    assert text.splitlines()[0] == ("customer_id,segment,term_end,value,renewals,term_start,first_purchase,"
                                    "last_purchase,purchases")
    assert text.splitlines()[1] == "a,shop,,,,,2026-01-01,2026-03-03,2"


def test_subscription_censoring_at_the_as_of_date():
    """Terms ending after as-of are censored whatever their outcome; a term starting after
    as-of is ignored; 'active' followed by a term counts as a renewal; a term after a churn
    starts a new subscription."""
    d = date
    terms = [
        # x: renewed twice, then churned at 2026-04-01 (known on as-of)
        Term("x", d(2026, 1, 1), d(2026, 2, 1), "renewed", 10.0), Term("x", d(2026, 2, 1), d(2026, 3, 1), "active", 10.0),
        Term("x", d(2026, 3, 1), d(2026, 4, 1), "churned", 11.0),
        # y: renewed once; its current term ends after as-of, recorded churned later: censored, active
        Term("y", d(2026, 4, 15), d(2026, 5, 15), "renewed", 20.0), Term("y", d(2026, 5, 15), d(2026, 6, 15),
                                                                          "churned", 20.0),
        Term("y", d(2026, 6, 15), d(2026, 7, 15), "renewed", 20.0),  # starts after as-of: ignored
        # z: churned, came back
        Term("z", d(2026, 1, 10), d(2026, 2, 10), "churned", 5.0), Term("z", d(2026, 3, 10), d(2026, 4, 10),
                                                                         "renewed", 5.0),
        Term("z", d(2026, 4, 10), d(2026, 5, 10), "renewed", 5.0),  # renewed, no following term: lapsed
    ]
    h = summarize_terms(terms, d(2026, 6, 1))
    got = [(s.customer_id, s.renewals, s.state) for s in h.subscriptions]
    assert got == [("x", 2, "churned"), ("y", 1, "active"), ("z", 0, "churned"), ("z", 2, "lapsed")]
    assert h.renewals.tolist() == [2, 1, 0, 2] and h.churned.tolist() == [True, False, True, False]
    assert h.term_months == 1
    assert h.expansion == pytest.approx((10 + 11 + 20 + 5) / (10 + 10 + 20 + 5) - 1)
    assert installed_subscription_rows(h, "s") == [{"customer_id": "y", "segment": "s", "term_end": "2026-06-15",
                                                     "value": 20.0, "renewals": 1, "term_start": "2026-05-15"}]
    assert any("starting after 2026-06-01 ignored" in n for n in h.notes)
    with pytest.raises(ValueError, match="overlapping"):
        summarize_terms([Term("o", d(2026, 1, 1), d(2027, 1, 1), "renewed", None),
                         Term("o", d(2026, 3, 1), d(2026, 4, 1), "renewed", None)], d(2026, 6, 1))


def test_annual_terms_are_inferred():
    d = date
    terms = [Term(f"c{i}", d(2024, 1 + i % 12, 1), d(2025, 1 + i % 12, 1), "renewed", 100.0) for i in range(20)]
    terms += [Term(f"c{i}", d(2025, 1 + i % 12, 1), d(2026, 1 + i % 12, 1), "churned" if i % 3 else "active", 110.0)
              for i in range(20)]
    h = summarize_terms(terms, d(2026, 12, 31))
    assert h.term_months == 12
    assert subscription_block(fit_renewal(h), h)["subscription"]["term_months"] == 12


def test_readers_report_every_problem_with_its_line(tmp_path):
    log = tmp_path / "t.csv"
    log.write_text("customer,day,amount\nA,2026-01-01,10\n,2026-01-02,5\nB,2026-13-01,5\nC,2026-01-03,-4\n")
    with pytest.raises(ScenarioError) as err:
        read_transactions(log, {"customer_id": "customer", "date": "day"})
    shown = str(err.value)
    assert "t.csv:3: customer_id (column 'customer') is blank" in shown
    assert "t.csv:4: date (column 'day')" in shown and "t.csv:5: amount (column 'amount')" in shown
    warnings: list[str] = []
    got = read_transactions(log, {"customer_id": "customer", "date": "day"}, warnings=warnings, drop_bad_rows=True)
    assert [p.customer_id for p in got] == ["A"] and "left out 3 rows" in warnings[0]
    with pytest.raises(ScenarioError, match="lacks date"):
        read_transactions(log, {"customer_id": "customer"})
    subs = tmp_path / "s.csv"
    subs.write_text("customer_id,term_start,term_end,outcome\nA,2026-01-01,2026-02-01,Renewed\n"
                    "A,2026-02-01,2026-01-15,renewed\nB,2026-01-01,2026-02-01,paused\n")
    with pytest.raises(ScenarioError) as err:
        read_subscriptions(subs)
    shown = str(err.value)
    assert "'paused': 1 row (first on line 4)" in shown and "s.csv:3: term_end 2026-01-15" in shown
    with pytest.raises(ValueError, match="not one of our names"):
        column_map(["when=day"], ("customer_id", "date"))
    with pytest.raises(ValueError, match="expected OUTCOME=VALUES"):
        parse_term_outcomes(["won=Yes"])


def test_scenario_keys_leave_out_heterogeneity_at_the_edge():
    """Customers that look alike drive the heterogeneity to the edge of the search: the
    block then has no concentration (every customer shares the trial's probability)."""
    rng = np.random.default_rng(3)
    churned_after = rng.geometric(0.2, 5000) - 1  # one churn probability, 0.2, for everyone
    censor = rng.integers(0, 30, 5000)
    k = np.minimum(churned_after, censor)
    fit = fit_sbg(k, churned_after < censor)
    assert fit.homogeneous
    block = subscription_block(fit)["subscription"]
    assert "concentration" not in block and block["term_months"] == 1
    assert fit.renew_se is not None and abs(block["renew"]["mean"] - 0.8) < 3.5 * fit.renew_se


@pytest.mark.parametrize("ends, polished, converged", [
    ((-10.0, -10.1, -30.0), False, True),    # two starts agree on the maximum: converged though none said so
    ((-10.0, -12.0, -30.0), False, False),   # one start alone near the best: no evidence
    ((-10.0, -12.0, -30.0), True, True),     # the polish converged
])
def test_a_fit_is_converged_when_two_starts_agree_on_the_maximum_even_if_every_line_search_failed(
        monkeypatch, ends, polished, converged):
    """scipy's L-BFGS-B can end every start on a flat ridge with a failed line search
    (``ABNORMAL``); starts that end within SAME_FIT of the best point agree where it is."""
    from types import SimpleNamespace

    import forecaster.history.customers as customers

    values = iter(ends)

    def fake_minimize(fun, x0, method, **_):
        if method == "Nelder-Mead":
            return SimpleNamespace(x=np.zeros(1), fun=-ends[0], success=polished)
        return SimpleNamespace(x=np.zeros(1), fun=-next(values), success=False)

    monkeypatch.setattr(customers, "minimize", fake_minimize)
    _, value, ok = customers._maximise(lambda phi: ends[0], [[0.0]] * 3, [(-1.0, 1.0)])
    assert value == ends[0] and ok is converged
