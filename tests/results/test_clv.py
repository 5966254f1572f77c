"""Customer lifetime value (format v2, A.3) against truth: the figures of A.8 check 9, closed
forms, nested adaptive quadrature, and Monte Carlo simulations of explicit customers."""
from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest
from conftest import within
from scipy import integrate, special

from forecaster.results.clv import MONTH_DAYS, _CancelDays, _Kernel, clv_per_trial
from forecaster.scenario.distributions import Distribution, beta_shapes, pert_shapes
from forecaster.scenario.model import Cancel, Clv, Customer, Repeat, Subscription

F = Distribution.fixed
UNIFORM_0_60 = Distribution("uniform", {"low": 0, "high": 60})


def _delta(discount: float = 0.10) -> float:
    return (1.0 + discount) ** (-1.0 / 12.0)


def clv(customer, deal_value, settings=None, **draws):
    """clv_per_trial of one trial (scalars) or several (arrays) -> ndarray."""
    arrays = {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in draws.items()}
    return clv_per_trial(customer, deal_value, settings or Clv(), arrays)


# --- A.8 check 9 --------------------------------------------------------------------------

def test_check9_monthly_subscription():
    got = clv(Customer(subscription=Subscription(renew=F(0.9))), F(100), Clv(60, 0.10), renew=0.9, expansion=0.0)
    assert got.shape == (1,)
    assert got[0] == pytest.approx(932.491, abs=5e-4)
    assert got[0] == pytest.approx(sum(100 * (0.9 * _delta()) ** k for k in range(60)), rel=1e-13)


def test_check9_repeat_part_per_unit_of_value():
    customer = Customer(repeat=Repeat(per_month=F(0.5), dropout=F(0.2), value=F(1.0)))
    got = clv(customer, F(0.0), Clv(60, 0.10), per_month=0.5, dropout=0.2)[0]
    assert got == pytest.approx(4.624966, abs=5e-7)


def test_check9_one_off_with_a_cancellation():
    customer = Customer(cancel=Cancel(probability=F(0.2), days=F(45), refund=1.0))
    got = clv(customer, F(1000), Clv(60, 0.10), cancel_probability=0.2)[0]
    assert got == pytest.approx(802.335, abs=5e-4)
    assert got == pytest.approx(1000 * (1 - 0.2 * _delta() ** (45 / 30.4375)), rel=1e-14)


def test_check9_subscription_with_expansion_and_cancellation():
    customer = Customer(subscription=Subscription(renew=F(0.9), expansion=F(0.02)),
                        cancel=Cancel(probability=F(0.3), days=UNIFORM_0_60, refund=0.5))
    got = clv(customer, F(100), Clv(60, 0.10), renew=0.9, expansion=0.02, cancel_probability=0.3)[0]
    assert got == pytest.approx(953.961, abs=5e-4)
    # E_c(1) in closed form for the uniform law: ∫_0^30.4375 δ^(d/M) dd / 60
    g = math.log(1.1) / 12
    e_c = (1 - math.exp(-g)) / g * 30.4375 / 60
    u = 1.02 * _delta()
    renewals = sum((0.9 * u) ** k for k in range(1, 60))
    assert got == pytest.approx(100 * (1 - 0.3 * 0.5 * e_c + (1 - 0.3 * 30.4375 / 60) * renewals), rel=1e-13)


def test_check9_repeat_with_both_heterogeneities():
    customer = Customer(repeat=Repeat(per_month=F(0.5), dropout=F(0.2), rate_cv=1 / math.sqrt(2),
                                      dropout_concentration=5, value=F(40)))
    got = clv(customer, F(100), Clv(36, 0.10), per_month=0.5, dropout=0.2)[0]
    assert got == pytest.approx(335.0701, abs=5e-5)
    # r = 2, α = 4, a = 1, b = 4: E_p[2·4² / (4 + p m)³] in closed form over p ~ Beta(1, 4)
    # (density 4 (1 - p)³), then the integral over m by adaptive quadrature
    inner = lambda m: integrate.quad(lambda p: 4 * (1 - p) ** 3 * 32 / (4 + p * m) ** 3, 0, 1,  # noqa: E731
                                     epsabs=0, epsrel=1e-13)[0]
    truth = 100 + 40 * integrate.quad(lambda m: inner(m) * _delta() ** m, 0, 36, epsabs=0, epsrel=1e-13)[0]
    assert got == pytest.approx(truth, rel=1e-12)


# --- closed forms and per-trial variation --------------------------------------------------

@pytest.mark.parametrize("lam,p,horizon,discount", [
    (0.5, 0.2, 60, 0.10), (2.0, 0.05, 1200, 0.10), (0.01, 0.9, 1, 0.5), (0.5, 0.0, 36, 0.10),
    (0.5, 0.2, 36, 0.0), (0.5, 1.0, 24, 0.25),
])
def test_repeat_without_heterogeneity_is_the_closed_form(lam, p, horizon, discount):
    customer = Customer(repeat=Repeat(per_month=F(lam), dropout=F(p)))
    got = clv(customer, F(80), Clv(horizon, discount), per_month=lam, dropout=p)[0]
    k = lam * p + math.log1p(discount) / 12
    part = lam * horizon if k == 0 else lam * (-math.expm1(-k * horizon)) / k
    assert got == pytest.approx(80 + 80 * part, rel=1e-13)


def test_each_trial_has_its_own_closed_form():
    renew = np.array([0.0, 0.5, 0.8, 0.9, 0.95, 0.999, 1.0, 0.9])
    expansion = np.array([0.0, 0.0, 0.01, 0.02, -0.05, 0.0, 0.03, 0.02])
    customer = Customer(subscription=Subscription(renew=Distribution("beta", {"mean": 0.9, "concentration": 50}),
                                                  term_months=3, expansion=Distribution("normal", {"mean": 0.02, "sd": 0.01})))
    got = clv_per_trial(customer, F(250), Clv(40, 0.12), {"renew": renew, "expansion": expansion})
    d3 = _delta(0.12) ** 3
    for i in range(renew.size):  # K = ceil(40 / 3) = 14 terms, the first at month 0
        assert got[i] == pytest.approx(250 * sum((renew[i] * (1 + expansion[i]) * d3) ** k for k in range(14)), rel=1e-13)
    assert got[3] == got[7]
    assert len(set(got.tolist())) == 7

    lam, p = np.array([0.1, 0.5, 3.0, 0.5]), np.array([0.2, 0.2, 0.05, 0.0])
    got = clv_per_trial(Customer(repeat=Repeat(per_month=F(0.5), dropout=F(0.2))), F(10), Clv(60, 0.1),
                        {"per_month": lam, "dropout": p})
    k = lam * p + math.log(1.1) / 12
    np.testing.assert_allclose(got, 10 + 10 * lam * (-np.expm1(-k * 60)) / k, rtol=1e-13)


def test_shifted_beta_geometric_survival():
    """Check 2's law: renew 0.9, concentration 20 (α = 2, β = 18): S(k) = 18·19 / ((18 + k)(19 + k))."""
    customer = Customer(subscription=Subscription(renew=F(0.9), concentration=20))
    got = clv(customer, F(100), Clv(60, 0.10), renew=0.9, expansion=0.0)[0]
    assert got == pytest.approx(100 * sum(342 / ((18 + k) * (19 + k)) * _delta() ** k for k in range(60)), rel=1e-13)
    undiscounted = clv(customer, F(1), Clv(12, 0.0), renew=0.9, expansion=0.0)[0]
    assert undiscounted == pytest.approx(7.6, rel=1e-14)  # Σ_{k<12} S(k) = 342 (1/18 - 1/30)


def test_edge_cases():
    sub = lambda kappa=None: Customer(subscription=Subscription(renew=F(0.9), concentration=kappa))  # noqa: E731
    u = _delta()
    assert clv(sub(), F(100), renew=0.0, expansion=0.0)[0] == 100.0
    assert clv(sub(20), F(100), renew=0.0, expansion=0.0)[0] == 100.0
    assert clv(sub(20), F(100), renew=1.0, expansion=0.0)[0] == pytest.approx(100 * sum(u ** k for k in range(60)), rel=1e-13)
    plain = clv(sub(), F(100), renew=0.9, expansion=0.0)[0]
    for kappa in (1e12, 1e300):  # heterogeneity that vanishes
        assert clv(sub(kappa), F(100), renew=0.9, expansion=0.0)[0] == pytest.approx(plain, rel=1e-9)
    assert clv(sub(), F(100), Clv(1, 0.1), renew=0.9, expansion=0.0)[0] == 100.0  # H = 1: no renewal counts
    annual = Customer(subscription=Subscription(renew=F(0.9), term_months=12),
                      cancel=Cancel(F(1.0), F(400), refund=1.0))  # H < τ: τ' = H; day 400 is past H = 6
    assert clv(annual, F(100), Clv(6, 0.1), renew=0.9, expansion=0.0, cancel_probability=1.0)[0] == 100.0

    rep = lambda **kw: Customer(repeat=Repeat(per_month=F(0.5), dropout=F(0.2), value=F(1.0), **kw))  # noqa: E731
    for kw in ({}, {"rate_cv": 1.0}, {"dropout_concentration": 3.0}, {"rate_cv": 0.5, "dropout_concentration": 3.0}):
        assert clv(rep(**kw), F(100), per_month=0.0, dropout=0.2)[0] == 100.0  # no purchases
        # p = 0: nobody drops out; E[λ] δ^m integrated, whatever λ's spread
        got = clv(rep(**kw), F(0), Clv(60, 0.1), per_month=0.5, dropout=0.0)[0]
        g = math.log(1.1) / 12
        assert got == pytest.approx(0.5 * (-math.expm1(-60 * g)) / g, rel=1e-12)
        assert clv(rep(**kw), F(0), Clv(60, 0.0), per_month=0.5, dropout=0.0)[0] == pytest.approx(30.0, rel=1e-12)
        # p = 1: the first repeat purchase is the last
        got = clv(rep(**kw), F(0), Clv(60, 0.0), per_month=0.5, dropout=1.0)[0]
        truth = 1 - math.exp(-30) if "rate_cv" not in kw else 1 - (1 + 30 / (1 / kw["rate_cv"] ** 2)) ** -(1 / kw["rate_cv"] ** 2)
        assert got == pytest.approx(truth, rel=1e-12)

    one_off = Customer(cancel=Cancel(F(0.5), F(0.0), refund=1.0))  # cancelled on its win day
    assert clv(one_off, F(100), Clv(1, 0.1), cancel_probability=0.5)[0] == pytest.approx(50.0, rel=1e-15)
    assert clv(one_off, F(100), Clv(1, 0.0), cancel_probability=1.0)[0] == 0.0
    assert clv_per_trial(Customer(), F(70), Clv(), {}).tolist() == [70.0]
    assert clv_per_trial(Customer(), F(70), Clv(), {}, trials=3).tolist() == [70.0] * 3


def test_a_cancellation_at_the_first_renewal_does_not_end_it():
    """C(τ') = P(d < 30.4375 τ'), strictly: a cancellation at month exactly 1 is too late."""
    customer = Customer(subscription=Subscription(renew=F(0.9)), cancel=Cancel(F(1.0), F(30.4375), refund=1.0))
    got = clv(customer, F(100), Clv(60, 0.1), renew=0.9, expansion=0.0, cancel_probability=1.0)[0]
    assert got == pytest.approx(932.4912769432556, rel=1e-13)
    earlier = Customer(subscription=Subscription(renew=F(0.9)), cancel=Cancel(F(1.0), F(30.4), refund=1.0))
    got = clv(earlier, F(100), Clv(60, 0.1), renew=0.9, expansion=0.0, cancel_probability=1.0)[0]
    assert got == pytest.approx(100 * (1 - _delta() ** (30.4 / 30.4375)), rel=1e-12)


# --- the cancellation's days: every family -------------------------------------------------

def _e_c_truth(days: Distribution, x: float, discount: float) -> float:
    """E[δ^(d / M); d < M x] from the law's density (or atoms), by adaptive quadrature."""
    g = math.log1p(discount) / 12 / MONTH_DAYS  # per day
    top = MONTH_DAYS * x
    p = days.params
    if days.dist in ("fixed", "empirical"):
        v = np.asarray([p["value"]] if days.dist == "fixed" else p["values"], float)
        return float(np.mean(np.exp(-g * v) * (v < top)))
    if days.dist in ("beta", "pert"):  # algebraic singularities at the support's ends: QAWS
        a, b = beta_shapes(p["mean"], p["concentration"]) if days.dist == "beta" else pert_shapes(p["low"], p["mode"], p["high"])
        lo, w = (0.0, 1.0) if days.dist == "beta" else (p["low"], p["high"] - p["low"])
        s_top = (top - lo) / w
        if s_top <= 0:
            return 0.0
        if s_top >= 1:  # weight s^(a-1) (1 - s)^(b-1)
            f, wvar, s_top = (lambda s: math.exp(-g * (lo + w * s))), (a - 1, b - 1), 1.0
        else:  # weight s^(a-1), and (1 - s)^(b-1) is smooth on [0, s_top]
            f, wvar = (lambda s: math.exp(-g * (lo + w * s)) * (1 - s) ** (b - 1)), (a - 1, 0)
        return integrate.quad(f, 0, s_top, weight="alg", wvar=wvar, epsabs=0, epsrel=1e-13, limit=500)[0] / special.beta(a, b)
    frozen = days._scipy()
    lo, hi = days.support()
    lo, hi = max(lo, 0.0), min(hi, top)
    points = [p["mode"]] if days.dist == "triangular" and lo < p["mode"] < hi else None
    return integrate.quad(lambda d: math.exp(-g * d) * frozen.pdf(d), lo, hi, points=points, epsabs=0, epsrel=1e-13,
                          limit=500)[0]


DAYS = {
    "fixed": F(45),
    "fixed at 0": F(0.0),
    "empirical": Distribution("empirical", {"values": (0.0, 3.0, 10.0, 10.0, 45.5, 200.0, 2000.0)}),
    "uniform": UNIFORM_0_60,
    "uniform past H": Distribution("uniform", {"low": 20, "high": 3000}),
    "triangular": Distribution("triangular", {"low": 5, "mode": 20, "high": 90}),
    "pert": Distribution("pert", {"low": 3, "mode": 4, "high": 100}),
    "normal": Distribution("normal", {"mean": 30, "sd": 40}, lower=0.0),
    "lognormal": Distribution("lognormal", {"median": 20, "sigma": 1.5}),
    "gamma": Distribution("gamma", {"mean": 40, "cv": 2.5}),
    "exponential": Distribution("exponential", {"mean": 15}),
    "weibull": Distribution("weibull", {"shape": 0.4, "scale": 30}),
    "beta": Distribution("beta", {"mean": 0.3, "concentration": 0.7}),
}


@pytest.mark.parametrize("name", DAYS)
@pytest.mark.parametrize("horizon", [1, 36])
def test_one_off_cancellation_on_every_family(name, horizon):
    days = DAYS[name]
    customer = Customer(cancel=Cancel(F(1.0), days, refund=1.0))
    got = 1.0 - clv(customer, F(1.0), Clv(horizon, 0.5), cancel_probability=1.0)[0]  # = E_c(H)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        truth = _e_c_truth(days, horizon, 0.5)
    assert got == pytest.approx(truth, rel=1e-11, abs=1e-15)


def test_closed_forms_of_the_cancellation_terms():
    g = math.log(1.3) / 12  # per customer month
    one = lambda days, h: 1 - clv(Customer(cancel=Cancel(F(1.0), days)), F(1.0), Clv(h, 0.3), cancel_probability=1.0)[0]  # noqa: E731
    # exponential(mean 15 days): E[e^(-g d / M); d < M H] = 1/(1 + g s) (1 - e^-(1/s + g/M) M H), s = 15 / M
    s = 15 / MONTH_DAYS
    assert one(DAYS["exponential"], 7) == pytest.approx((1 - math.exp(-(1 / s + g) * 7)) / (1 + g * s), rel=1e-12)
    # gamma(mean 40, cv 2.5): shape k = 0.16, scale θ: (1 + g θ / M)^-k P(Gamma(k, θ / (1 + g θ / M)) < M H)
    k, theta = 0.16, 40 / 0.16
    tilt = 1 + g * theta / MONTH_DAYS
    assert one(DAYS["gamma"], 12) == pytest.approx(tilt ** -k * special.gammainc(k, 12 * MONTH_DAYS * tilt / theta), rel=1e-12)
    # empirical: an average over the values strictly below M H
    values = DAYS["empirical"]["values"]
    assert one(DAYS["empirical"], 2) == pytest.approx(np.mean([math.exp(-g * v / MONTH_DAYS) if v < 2 * MONTH_DAYS else 0
                                                                for v in values]), rel=1e-13)


# --- the repeat integral against nested adaptive quadrature -----------------------------------

def _repeat_truth(mu, pi, rate_cv, kappa, horizon, discount, days=None, q=0.0):
    """∫_0^H E[λ e^(-λ p m)] δ^m (1 - q C(m)) dm: E over λ in closed form, over p by QAWS."""
    g = math.log1p(discount) / 12
    r = None if rate_cv is None else rate_cv ** -2
    psi = (lambda t: math.exp(-t)) if r is None else (lambda t: (1 + t / r) ** -(r + 1))
    if kappa is None:
        h = lambda m: mu * psi(mu * pi * m)  # noqa: E731
    else:
        a, b = pi * kappa, (1 - pi) * kappa

        def h(m):
            return mu * integrate.quad(lambda p: psi(mu * p * m), 0, 1, weight="alg", wvar=(a - 1, b - 1),
                                       epsabs=0, epsrel=1e-13, limit=500)[0] / special.beta(a, b)
    cdf = (lambda m: 0.0) if days is None else (lambda m: float(days._scipy().cdf(MONTH_DAYS * m)))
    cuts = sorted({0.0, horizon, *(horizon * 0.5 ** j for j in range(1, 30))})
    if days is not None and days.dist == "uniform":
        cuts = sorted(set(cuts) | {x / MONTH_DAYS for x in (days["low"], days["high"]) if 0 < x / MONTH_DAYS < horizon})
    return sum(integrate.quad(lambda m: math.exp(-g * m) * (1 - q * cdf(m)) * h(m), lo, hi, epsabs=0, epsrel=1e-12,
                              limit=500)[0] for lo, hi in zip(cuts[:-1], cuts[1:]))


@pytest.mark.parametrize("mu,pi,rate_cv,kappa,horizon,discount,days,q", [
    (0.5, 0.2, 1 / math.sqrt(2), 5.0, 36, 0.10, None, 0.0),
    (0.6, 0.25, 0.8, 3.0, 24, 0.15, UNIFORM_0_60, 0.3),
    (3.0, 0.05, 2.0, 0.7, 120, 0.10, DAYS["gamma"], 0.6),
    (0.2, 0.6, None, 8.0, 60, 0.0, DAYS["lognormal"], 1.0),
    (0.5, 0.1, 3.0, None, 60, 0.1, DAYS["weibull"], 0.5),
    (0.05, 0.3, 0.3, 0.05, 600, 0.1, None, 0.0),
])
def test_repeat_integral_against_nested_quadrature(mu, pi, rate_cv, kappa, horizon, discount, days, q):
    customer = Customer(repeat=Repeat(per_month=F(mu), dropout=F(pi), rate_cv=rate_cv, dropout_concentration=kappa,
                                      value=F(1.0)),
                        cancel=Cancel(F(q), days, refund=0.0) if days is not None else None)
    draws = {"per_month": mu, "dropout": pi} | ({"cancel_probability": q} if days is not None else {})
    got = clv(customer, F(0.0), Clv(horizon, discount), **draws)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        truth = _repeat_truth(mu, pi, rate_cv, kappa, horizon, discount, days, q)
    assert got == pytest.approx(truth, rel=1e-10)


def test_a_narrow_dropout_law_tends_to_its_mean():
    """As dropout_concentration grows, E_p tends to the value at p = dropout, by O(1 / κ_d)."""
    base = Customer(repeat=Repeat(per_month=F(0.5), dropout=F(0.2), rate_cv=1.0, value=F(1.0)))
    plain = clv(base, F(0.0), per_month=0.5, dropout=0.2)[0]
    gaps = []
    for kappa in (1e3, 1e4, 1e5, 1e6, 1e12):
        customer = Customer(repeat=Repeat(per_month=F(0.5), dropout=F(0.2), rate_cv=1.0, dropout_concentration=kappa,
                                          value=F(1.0)))
        gaps.append(clv(customer, F(0.0), per_month=0.5, dropout=0.2)[0] / plain - 1)
    assert all(0 < gap for gap in gaps[:-1])
    for wide, narrow in zip(gaps[:3], gaps[1:4]):
        assert narrow == pytest.approx(wide / 10, rel=0.01)
    assert abs(gaps[-1]) < 1e-11


def test_interpolated_kernels_match_their_integrals():
    """Many distinct rates go through the Chebyshev interpolant; a few are integrated directly."""
    for r, law in ((None, DAYS["pert"]), (0.3, DAYS["empirical"]), (4.0, DAYS["gamma"])):
        kernel = _Kernel(60.0, math.log(1.1) / 12, r, _CancelDays(law), 40.0)
        y = np.concatenate([[0.0, 40.0], np.exp(np.random.default_rng(3).uniform(math.log(1e-7), math.log(40), 5000))])
        interpolated = kernel(y)
        assert kernel.interpolant is not None
        direct = kernel.integrate(y[:200])
        scale = kernel(np.zeros(1))[0]  # K0(0) >= |K0|, |K1|
        rows = kernel.numeric
        assert np.max(np.abs(interpolated[rows, :200] - direct)) <= 1e-12 * scale[0]
        assert np.max(np.abs(interpolated[rows, :200] - direct) / np.abs(interpolated[0, :200])) <= 1e-10


def test_a_trial_gets_the_same_value_alone_or_among_many():
    customer = Customer(repeat=Repeat(per_month=Distribution("gamma", {"mean": 0.5, "cv": 0.5}),
                                      dropout=Distribution("beta", {"mean": 0.2, "concentration": 50}),
                                      rate_cv=1.2, dropout_concentration=10),
                        cancel=Cancel(Distribution("beta", {"mean": 0.05, "concentration": 100}), DAYS["gamma"]))
    rng = np.random.default_rng(7)
    draws = {"per_month": rng.gamma(4, 0.125, 3000), "dropout": rng.beta(10, 40, 3000),
             "cancel_probability": rng.beta(5, 95, 3000)}
    many = clv_per_trial(customer, F(100), Clv(), draws)
    for i in (0, 1, 2999):
        alone = clv_per_trial(customer, F(100), Clv(), {k: v[i:i + 1] for k, v in draws.items()})[0]
        assert many[i] == pytest.approx(alone, rel=1e-11)


# --- Monte Carlo of explicit customers ----------------------------------------------------

def test_subscription_with_concentration_and_cancellation_by_simulation():
    """Each customer: its own ρ ~ Beta(renew κ, (1 - renew) κ), one renewal decision per term,
    a cancellation (probability q, days d) that refunds φ V and ends the renewals when it comes
    before the first renewal."""
    renew, kappa, growth, tau, horizon, discount = 0.85, 4.0, 0.03, 3, 40, 0.2
    q, refund = 0.25, 0.6
    days = Distribution("gamma", {"mean": 60, "cv": 1.2})
    value = Distribution("lognormal", {"median": 100, "sigma": 0.5})
    customer = Customer(subscription=Subscription(renew=F(renew), term_months=tau, concentration=kappa,
                                                  expansion=F(growth)),
                        cancel=Cancel(F(q), days, refund=refund))
    got = clv(customer, value, Clv(horizon, discount), renew=renew, expansion=growth, cancel_probability=q)[0]

    rng = np.random.default_rng(2027)
    n = 400_000
    delta = (1 + discount) ** (-1 / 12)
    v = value._scipy().rvs(n, random_state=rng)
    rho = rng.beta(renew * kappa, (1 - renew) * kappa, n)
    cancelled = rng.random(n) < q
    month = days._scipy().rvs(n, random_state=rng) / 30.4375
    effective = cancelled & (month < tau)
    total = v * (1 - refund * delta ** month * (effective & (month < horizon)))
    alive = ~effective
    k = 1
    while k * tau < horizon:
        alive &= rng.random(n) < rho
        total += alive * v * (1 + growth) ** k * delta ** (k * tau)
        k += 1
    within(got, total.mean(), total.std(ddof=1) / math.sqrt(n))
    # the heterogeneity and the cancellation matter: a method without them would be far off
    plain = clv(Customer(subscription=Subscription(renew=F(renew), term_months=tau, expansion=F(growth))), value,
                Clv(horizon, discount), renew=renew, expansion=growth)[0]
    assert abs(plain - got) > 20 * total.std(ddof=1) / math.sqrt(n)


def test_repeat_buyer_with_both_heterogeneities_and_cancellation_by_simulation():
    """Each customer: λ = per_month G, G ~ Gamma(1/c², c²), p ~ Beta(dropout κ_d, (1 - dropout) κ_d);
    purchases at the times of a Poisson process of rate λ, each (from the first repeat purchase)
    followed by a dropout with probability p; a cancellation at month d / 30.4375 refunds φ V
    and stops the purchases; only amounts before H count."""
    per_month, cv, dropout, kappa_d, horizon, discount = 0.6, 0.8, 0.25, 3.0, 24, 0.15
    q, refund = 0.3, 0.8
    days = Distribution("lognormal", {"median": 25, "sigma": 1.0})
    value = Distribution("lognormal", {"median": 300, "sigma": 0.4})
    each = Distribution("gamma", {"mean": 40, "cv": 0.5})
    customer = Customer(repeat=Repeat(per_month=F(per_month), dropout=F(dropout), rate_cv=cv,
                                      dropout_concentration=kappa_d, value=each),
                        cancel=Cancel(F(q), days, refund=refund))
    got = clv(customer, value, Clv(horizon, discount), per_month=per_month, dropout=dropout, cancel_probability=q)[0]

    rng = np.random.default_rng(12)
    n = 300_000
    delta = (1 + discount) ** (-1 / 12)
    r = 1 / cv ** 2
    lam = per_month * rng.gamma(r, 1 / r, n)
    p = rng.beta(dropout * kappa_d, (1 - dropout) * kappa_d, n)
    v = value._scipy().rvs(n, random_state=rng)
    cancelled = rng.random(n) < q
    month = days._scipy().rvs(n, random_state=rng) / 30.4375
    total = v * (1 - refund * delta ** month * (cancelled & (month < horizon)))
    stop = np.where(cancelled, np.minimum(month, horizon), horizon)
    t = np.zeros(n)
    going = np.arange(n)
    while going.size:
        t[going] += rng.exponential(1.0, going.size) / lam[going]
        going = going[t[going] < stop[going]]
        total[going] += each._scipy().rvs(going.size, random_state=rng) * delta ** t[going]
        going = going[rng.random(going.size) >= p[going]]
    within(got, total.mean(), total.std(ddof=1) / math.sqrt(n))
    plain = clv(Customer(repeat=Repeat(per_month=F(per_month), dropout=F(dropout), value=each),
                         cancel=Cancel(F(q), days, refund=refund)),
                value, Clv(horizon, discount), per_month=per_month, dropout=dropout, cancel_probability=q)[0]
    assert abs(plain - got) > 20 * total.std(ddof=1) / math.sqrt(n)


# --- draws, shapes and speed --------------------------------------------------------------------

def test_draws_that_apply_must_be_given_unless_fixed():
    sub = Customer(subscription=Subscription(renew=Distribution("beta", {"mean": 0.9, "concentration": 20})))
    assert clv_per_trial(sub, F(100), Clv(), {"renew": np.array([0.9, 0.5])}).shape == (2,)  # expansion: fixed 0
    with pytest.raises(ValueError, match="renew"):
        clv_per_trial(sub, F(100), Clv(), {"expansion": np.zeros(2)})
    with pytest.raises(ValueError, match="shapes"):
        clv_per_trial(sub, F(100), Clv(), {"renew": np.full(2, 0.9), "expansion": np.zeros(3)})
    one_off = Customer()
    out = clv_per_trial(one_off, F(100), Clv(), {"renew": np.full(4, 0.9)})  # does not apply: only its length
    assert out.tolist() == [100.0] * 4


def _speed_cases():
    rng = np.random.default_rng(1)
    n = 10_000
    draws = {"renew": rng.beta(90, 10, n), "expansion": rng.normal(0.02, 0.01, n), "cancel_probability": rng.beta(4, 96, n),
             "per_month": rng.gamma(4, 0.125, n), "dropout": rng.beta(20, 80, n)}
    beta = Distribution("beta", {"mean": 0.5, "concentration": 10})
    cancel = Cancel(beta, DAYS["gamma"], refund=0.8)
    return draws, {
        "one-off": Customer(cancel=cancel),
        "subscription": Customer(subscription=Subscription(renew=beta, concentration=20, expansion=beta), cancel=cancel),
        "repeat": Customer(repeat=Repeat(per_month=beta, dropout=beta), cancel=cancel),
        "repeat, rate_cv": Customer(repeat=Repeat(per_month=beta, dropout=beta, rate_cv=1.2), cancel=cancel),
        "repeat, both": Customer(repeat=Repeat(per_month=beta, dropout=beta, rate_cv=1.2, dropout_concentration=10),
                                 cancel=cancel),
    }


@pytest.mark.parametrize("kind", list(_speed_cases()[1]))
@pytest.mark.parametrize("horizon", [60, 1200])
def test_ten_thousand_distinct_trials_are_fast(kind, horizon):
    draws, customers = _speed_cases()
    clv_per_trial(customers[kind], F(100), Clv(horizon), draws)  # imports, caches
    start = time.process_time()
    out = clv_per_trial(customers[kind], F(100), Clv(horizon), draws)
    spent = time.process_time() - start
    assert out.shape == (10_000,) and np.all(np.isfinite(out))
    assert spent < 0.5, f"{kind}: {spent:.3f} s of CPU for 10,000 trials"


def test_the_module_stays_in_the_results_layer():
    import ast
    from pathlib import Path

    import forecaster.results.clv as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert {m for m in imported if m and m.startswith("forecaster")} <= {"forecaster.scenario.distributions",
                                                                           "forecaster.scenario.model"}
    assert {m.split(".")[0] for m in imported if m} <= {"__future__", "math", "collections", "functools", "numpy",
                                                        "scipy", "forecaster"}
