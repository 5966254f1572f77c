"""Customer lifetime value (scenario format v2, A.3): computed, not simulated.

The CLV of a segment, in one trial, is the expected discounted net bookings of one customer of
the segment over H = ``clv.horizon_months`` customer months from its win, given the trial's
draws of the segment's after-sale rates and probabilities. Its spread across trials is the
uncertainty of those rates only, not the luck of one customer.

The clock is continuous, in customer months (365.25 / 12 = 30.4375 days) from the win. An
amount at month m is discounted by δ^m = exp(-γ m), γ = ln(1 + ``discount_per_year``) / 12,
and counts only when m < H. With E[V] the mean of the segment's ``deal_value``, E[v] that of
``repeat.value`` (E[V] without one), q and φ the cancellation's probability and refund (q = 0
without ``cancel``), c = d / 30.4375 the month of a cancellation of d days,
C(x) = P(c < x) and E_c(x) = E[δ^c; c < x]:

- one-off: E[V] (1 - q φ E_c(H));
- subscription (term τ months, K = ceil(H / τ), τ' = min(τ, H), u = (1 + e) δ^τ):
  E[V] (1 - q φ E_c(τ') + (1 - q C(τ')) Σ_{k=1}^{K-1} u^k S(k)), S(k) = renew^k or, with
  ``concentration`` κ, B(α, β + k) / B(α, β) = Π_{j<k} (β + j) / (α + β + j), α = (1 - renew) κ,
  β = renew κ;
- repeat: E[V] (1 - q φ E_c(H)) + E[v] ∫_0^H E[λ e^(-λ p m)] δ^m (1 - q C(m)) dm, the
  expectation over the customer's own rate λ = per_month G, G ~ Gamma(shape r = 1 / rate_cv²,
  scale 1 / r), and dropout p ~ Beta(dropout κ_d, (1 - dropout) κ_d) (the trial's values
  without ``rate_cv`` / ``dropout_concentration``).

How the repeat integral is computed. The mixture over G is closed: E_G[G e^(-G t)] =
ψ(t) = (1 + t / r)^-(r+1) (e^-t without ``rate_cv``). So with μ = per_month, the integral is
μ (E_p[K0(μ p)] - q E_p[K1(μ p)]) with two functions of one variable y >= 0 (a rate of
dropping out, per customer month), shared by every trial:

    K0(y) = ∫_0^H δ^m ψ(y m) dm,      K1(y) = ∫_0^H δ^m C(m) ψ(y m) dm.

K0 is closed without ``rate_cv``: (1 - e^-(y+γ)H) / (y + γ). Otherwise they are integrated
over m on Gauss-Legendre panels graded geometrically towards 0 (where ψ is near its
singularity at m = -r / y and C may be singular, as a gamma law's of shape < 1) and towards
the support ends of ``cancel.days`` where C has an algebraic singularity (pert, beta), and
split at C's jumps and kinks (``fixed`` and ``empirical`` days make C a step function; uniform,
triangular and a truncated normal have kinks). Where many values of y are needed, they are
interpolated by Chebyshev polynomials on panels in ln y. Without ``dropout_concentration``
the expectation over p is the value at the trial's dropout; with it, it is the chord of K
between p = 0 and p = 1 (whose mean is exact) plus the mean of the rest, an integral over
u = logit(p) by the trapezoidal rule: the integrand is analytic and bounded in the strip
|Im u| < π/2, so the rule converges exponentially; the step and the range (where a
log-concave bound of the integrand exceeds the tolerance) are chosen per (per_month, dropout)
for 1e-13 of the result. E_c(x) = e^(-γ x) C(x) + γ ∫_0^x e^(-γ m) C(m) dm (by parts; the
days are >= 0), on the same panels.

Accuracy: within 1e-10 relative of nested adaptive quadrature and of closed forms, on every
family of ``cancel.days`` (tests/results/test_clv.py). Speed: trials that share their draws
(a rate given as a number) are computed once; 10,000 trials that all differ take about 0.15 s
of CPU in the worst case (repeat purchase with both heterogeneities and a cancellation).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import cache

import numpy as np
from scipy import fft, special

from forecaster.scenario.distributions import Distribution
from forecaster.scenario.model import Clv, Customer, Repeat, Subscription

MONTH_DAYS = 365.25 / 12
"""A customer month [days]."""

_ZERO_LEVELS = 40
"""Gauss-Legendre panels halve this many times towards m = 0 (and more where a fast rate
needs it): the last, [0, 2^-40 x], weighs nothing at 1e-10."""
_GRADE_LEVELS = 40
"""... and this many times towards a point where the cancellation's C is not smooth."""
_DIRECT_MAX = 256
"""Up to this many distinct rates, K0 and K1 are integrated for each; above, interpolated."""
_CHUNK = 1 << 21
"""Elements of the largest temporary array (16 MiB of float64)."""


def clv_per_trial(customer: Customer, deal_value: Distribution, settings: Clv, draws: Mapping[str, np.ndarray],
                  *, trials: int | None = None) -> np.ndarray:
    """(trials,) expected discounted net bookings of one customer of a segment, per trial.

    Parameters
    ----------
    customer : Customer
        The segment's ``customer`` block: one-off, subscription or repeat, with or without
        ``cancel``.
    deal_value : Distribution
        The segment's ``deal_value`` (only its mean E[V] is used) [currency].
    settings : Clv
        ``horizon_months`` H [customer months], ``discount_per_year`` [1 / year].
    draws : mapping of str to ndarray, each shape (trials,)
        The trial's draws of the segment's per-trial after-sale quantities: ``"renew"``
        [probability] and ``"expansion"`` [growth per renewal] (subscription);
        ``"per_month"`` [purchases per customer month] and ``"dropout"`` [probability]
        (repeat); ``"cancel_probability"`` [probability] (with ``cancel``). Keys that do not
        apply are ignored. A key that applies but is absent is taken from the typed object
        when that quantity is ``fixed`` (a ValueError otherwise).
    trials : int, optional
        The number of trials, needed only when no draw applies (a one-off customer without
        ``cancel``, whose CLV is E[V] in every trial); otherwise the draws' length.

    Returns
    -------
    ndarray, shape (trials,), float64
        CLV [currency]: first deal, renewals or repeat purchases, less refunds, each
        discounted to the win.
    """
    n = _trials(draws, trials)
    horizon = int(settings.horizon_months)
    if horizon < 1:
        raise ValueError(f"clv.horizon_months must be >= 1; got {horizon}")
    gamma = math.log1p(float(settings.discount_per_year)) / 12.0
    value = float(deal_value.mean())
    cancel = customer.cancel
    q = _draw(draws, "cancel_probability", cancel.probability, n) if cancel else np.zeros(n)
    law = _CancelDays(cancel.days) if cancel else None
    refund = float(cancel.refund) if cancel else 0.0

    if customer.subscription is not None:
        sub = customer.subscription
        tau = int(sub.term_months)
        first = min(tau, horizon)
        c_first, e_first = law.terms(first, gamma) if law else (0.0, 0.0)
        renewals = _renewal_sums(sub, draws, n, horizon, gamma)
        return value * (1.0 - q * refund * e_first + (1.0 - q * c_first) * renewals)

    _, e_horizon = law.terms(horizon, gamma) if law else (0.0, 0.0)
    clv = value * (1.0 - q * refund * e_horizon)
    if customer.repeat is not None:
        rep = customer.repeat
        each = float(rep.value.mean()) if rep.value is not None else value
        clv = clv + each * _repeat_integral(rep, draws, n, horizon, gamma, law, q)
    return np.broadcast_to(clv, (n,)).astype(float)


# --- draws ----------------------------------------------------------------------------------

_KEYS = ("renew", "expansion", "per_month", "dropout", "cancel_probability")


def _trials(draws: Mapping[str, np.ndarray], trials: int | None) -> int:
    sizes = {np.asarray(draws[k]).shape for k in _KEYS if k in draws}
    if len(sizes) > 1:
        raise ValueError(f"the draws have different shapes: {sorted(sizes)}")
    if sizes:
        (shape,) = sizes
        if len(shape) != 1:
            raise ValueError(f"each draw must be a 1-d array (trials,); got shape {shape}")
        if trials is not None and trials != shape[0]:
            raise ValueError(f"trials={trials} but the draws hold {shape[0]}")
        return shape[0]
    return 1 if trials is None else int(trials)


def _draw(draws: Mapping[str, np.ndarray], key: str, dist: Distribution, n: int) -> np.ndarray:
    """The trial's draws of ``key``, shape (n,): from ``draws``, or the fixed value."""
    if key in draws:
        return np.asarray(draws[key], dtype=float)
    if dist.is_fixed:
        return np.full(n, float(dist["value"]))
    raise ValueError(f"draws[{key!r}] is needed: the quantity is a {dist.dist} distribution")


def _unique_rows(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Distinct tuples of the columns (each shape (n,)) and, for each row, its tuple's index."""
    stacked = np.stack(columns, axis=1)
    rows, inverse = np.unique(stacked, axis=0, return_inverse=True)
    return [rows[:, i] for i in range(rows.shape[1])], inverse.reshape(-1)


# --- subscription ---------------------------------------------------------------------------

def _renewal_sums(sub: Subscription, draws: Mapping[str, np.ndarray], n: int, horizon: int,
                  gamma: float) -> np.ndarray:
    """Σ_{k=1}^{K-1} u^k S(k) per trial, shape (n,): the discounted renewals per unit of E[V]."""
    renew = _draw(draws, "renew", sub.renew, n)
    growth = _draw(draws, "expansion", sub.expansion, n)
    tau = int(sub.term_months)
    last = -(-horizon // tau) - 1  # renewals k = 1 .. K - 1 fall before H
    (rho, e), inverse = _unique_rows(renew, growth)
    u = (1.0 + e) * math.exp(-gamma * tau)
    kappa = None if sub.concentration is None else float(sub.concentration)
    total = np.zeros_like(rho)
    term = np.ones_like(rho)
    for j in range(last):  # term k = j + 1: S(k) = S(k - 1) (β + j) / (α + β + j)
        # (β + j) / (α + β + j) = (ρ κ + j) / (κ + j); at j = 0 it is ρ, also when ρ κ underflows
        ratio = rho if kappa is None or j == 0 else (rho * kappa + j) / (kappa + j)
        term = term * u * ratio
        total += term
        if not term.any():
            break
    return total[inverse]


# --- the cancellation's days ------------------------------------------------------------------

class _CancelDays:
    """The law of a cancellation's month c = d / 30.4375, d ~ ``cancel.days`` (d >= 0).

    ``marks``: points (months) where C(m) = P(c < m) jumps or is not smooth, each with
    whether the panels must be graded towards it (an algebraic singularity of C there, as at
    a PERT's or beta's support ends) or only split there (a jump or a kink between smooth
    pieces: fixed, empirical, uniform, triangular, a normal's truncation).
    """

    def __init__(self, days: Distribution):
        d, p = days.dist, days.params
        self.atoms: np.ndarray | None = None  # distinct values [days], sorted
        self.below_atom = np.zeros(1)  # P(d < atoms[i]) at index i; 1 at the end
        self.frozen = None
        marks: list[tuple[float, bool]] = []
        if d in ("fixed", "empirical"):
            values = np.asarray([p["value"]] if d == "fixed" else p["values"], dtype=float)
            self.atoms, counts = np.unique(values, return_counts=True)
            self.below_atom = np.concatenate([[0.0], np.cumsum(counts) / counts.sum()])
            self.below_atom[-1] = 1.0
            marks = [(float(a), False) for a in self.atoms]
        else:
            self.frozen = days._scipy()
            if d == "uniform":
                marks = [(p["low"], False), (p["high"], False)]
            elif d == "triangular":
                marks = [(p["low"], False), (p["mode"], False), (p["high"], False)]
            elif d == "pert":
                marks = [(p["low"], True), (p["high"], True)]
            elif d == "beta":
                marks = [(1.0, True)]
            elif d == "normal":
                marks = [(x, False) for x in (days.lower, days.upper) if math.isfinite(x)]
        self.marks = [(x / MONTH_DAYS, graded) for x, graded in marks if x > 0]

    def below(self, months: np.ndarray | float) -> np.ndarray:
        """C(m) = P(d < 30.4375 m), strictly, for each m [customer months]."""
        x = np.asarray(months, dtype=float) * MONTH_DAYS
        if self.atoms is not None:
            return self.below_atom[np.searchsorted(self.atoms, x, side="left")]
        assert self.frozen is not None
        return np.asarray(self.frozen.cdf(x), dtype=float)

    def terms(self, x: float, gamma: float) -> tuple[float, float]:
        """(C(x), E_c(x)) with E_c(x) = E[δ^c; c < x], δ = e^-γ, x [customer months]."""
        c = float(self.below(float(x)))
        if gamma == 0.0 or c == 0.0:
            return c, c
        nodes, weights = _panels(float(x), _ZERO_LEVELS, self.marks)
        integral = float(np.sum(weights * np.exp(-gamma * nodes) * self.below(nodes)))
        return c, math.exp(-gamma * x) * c + gamma * integral


# --- quadrature ---------------------------------------------------------------------------------

@cache
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def _panels(x: float, zero_levels: int, marks: list[tuple[float, bool]]) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [0, x], shape (nodes,) each.

    Panels halve ``zero_levels`` times towards 0 and ``_GRADE_LEVELS`` times towards each
    graded mark (from its neighbouring cuts on either side), and are split at every mark. A
    panel gets 16 nodes, or 8 or 4 when it is narrow next to its distance from 0 and from the
    graded marks (where a singularity may sit): the error of a Gauss rule falls as ρ^-2n with
    ρ the Bernstein ellipse that avoids them, ρ >= 5.8 for a panel as wide as that distance.
    """
    inside = [(b, graded) for b, graded in marks if 0.0 < b < x]
    cuts = np.unique(np.array([0.0, x, *(x * 0.5 ** j for j in range(1, zero_levels + 1)),
                               *(b for b, _ in inside)]))
    singular = [0.0]
    extra: list[float] = []
    for point, graded in inside:
        if not graded:
            continue
        singular.append(point)
        i = int(np.searchsorted(cuts, point))
        left, right = point - cuts[i - 1], cuts[i + 1] - point
        extra += [point - left * 0.5 ** j for j in range(1, _GRADE_LEVELS + 1)]
        extra += [point + right * 0.5 ** j for j in range(1, _GRADE_LEVELS + 1)]
    if extra:
        cuts = np.unique(np.concatenate([cuts, extra]))
    start, end = cuts[:-1], cuts[1:]
    width = end - start
    sing = np.array(sorted(singular))
    below = sing[np.searchsorted(sing, start, side="right") - 1]
    k = np.searchsorted(sing, end, side="left")
    above = np.where(k < sing.size, sing[np.minimum(k, sing.size - 1)], np.inf)
    dist = np.minimum(start - below, above - end)
    count = np.where(4.0 * width > dist, 16, np.where(64.0 * width > dist, 8, 4))
    nodes, weights = [], []
    for m in (4, 8, 16):
        sel = count == m
        if not sel.any():
            continue
        t, w = _legendre(m)
        half, mid = width[sel, None] / 2.0, (start[sel, None] + end[sel, None]) / 2.0
        nodes.append((mid + half * t).ravel())
        weights.append((half * w).ravel())
    return np.concatenate(nodes), np.concatenate(weights)


# --- repeat purchase ------------------------------------------------------------------------

def _repeat_integral(rep: Repeat, draws: Mapping[str, np.ndarray], n: int, horizon: int, gamma: float,
                     law: _CancelDays | None, q: np.ndarray) -> np.ndarray:
    """∫_0^H E[λ e^(-λ p m)] δ^m (1 - q C(m)) dm per trial, shape (n,) [purchases]."""
    per_month = _draw(draws, "per_month", rep.per_month, n)
    dropout = _draw(draws, "dropout", rep.dropout, n)
    (mu, pi), inverse = _unique_rows(per_month, dropout)
    r = None if rep.rate_cv is None else 1.0 / float(rep.rate_cv) ** 2
    kappa = None if rep.dropout_concentration is None else float(rep.dropout_concentration)
    mixed = (mu > 0) & (pi > 0) & (pi < 1) if kappa is not None else np.zeros(mu.shape, bool)
    point = (mu > 0) & ~mixed
    y_max = float(max(np.max(mu, where=mixed, initial=0.0), np.max(mu * pi, where=point, initial=0.0)))
    kernel = _Kernel(float(horizon), gamma, r, law, y_max)
    out = np.zeros((kernel.functions, mu.size))
    if point.any():
        out[:, point] = kernel(mu[point] * pi[point])
    if mixed.any():
        assert kappa is not None
        spread = 1.0 + mu[mixed] * horizon * (1.0 if r is None else 1.0 + 1.0 / r)
        out[:, mixed] = _beta_average(mu[mixed], pi[mixed], kappa, spread, kernel)
    out *= mu
    per_trial = out[:, inverse]
    return per_trial[0] - q * per_trial[1] if law is not None else per_trial[0]


class _Kernel:
    """y -> (K0(y), K1(y)): K0(y) = ∫_0^H δ^m ψ(y m) dm and (with ``cancel``) K1(y) =
    ∫_0^H δ^m C(m) ψ(y m) dm [customer months], for rates 0 <= y <= ``y_max`` [1 / customer month].

    ψ(t) = (1 + t / r)^-(r+1) with ``rate_cv`` (r = 1 / rate_cv²), e^-t without, when K0 is
    closed: (1 - e^-(y+γ)H) / (y + γ). The others are integrated on Gauss-Legendre panels for
    each distinct y while they are few, else interpolated (:class:`_Chebyshev`, built once).
    """

    def __init__(self, horizon: float, gamma: float, r: float | None, law: _CancelDays | None, y_max: float):
        self.horizon, self.gamma, self.r, self.y_max = horizon, gamma, r, y_max
        scale = 1.0 if r is None else min(r, 1.0)  # ψ(y m) varies (or is singular) at m ~ scale / y
        self.low = 0.25 * scale / horizon  # the interpolant's first panel, [0, low]
        levels = max(_ZERO_LEVELS if law is not None else 8,
                     math.ceil(math.log2(max(horizon * y_max / scale, 1.0))) + 4)
        self.m, w = _panels(horizon, levels, law.marks if law is not None else [])
        weights = [w * np.exp(-gamma * self.m)]
        if law is not None:
            weights.append(weights[0] * law.below(self.m))
        self.functions = len(weights)
        self.numeric = [0, 1][(r is None):self.functions]  # the rows without a closed form
        self.weights = np.stack([weights[i] for i in self.numeric], axis=1) if self.numeric else None
        self.interpolant: _Chebyshev | None = None

    def __call__(self, y: np.ndarray) -> np.ndarray:
        """(functions, y.size) for y of any shape (flattened)."""
        y = np.asarray(y, dtype=float).ravel()
        out = np.empty((self.functions, y.size))
        if self.r is None:
            k = y + self.gamma
            safe = np.where(k > 0, k, 1.0)
            out[0] = np.where(k > 0, -np.expm1(-safe * self.horizon) / safe, self.horizon)
        if self.numeric:
            out[self.numeric] = self._numeric(y)
        return out

    def _numeric(self, y: np.ndarray) -> np.ndarray:
        if y.size <= 16 * _DIRECT_MAX:
            distinct, inverse = np.unique(y, return_inverse=True)
            if distinct.size <= _DIRECT_MAX:
                return self.integrate(distinct)[:, inverse.reshape(-1)]
        if self.interpolant is None:
            self.interpolant = _Chebyshev(self.integrate, self.y_max, self.low)
        return self.interpolant(y)

    def integrate(self, y: np.ndarray) -> np.ndarray:
        """The rows without a closed form at each y, by quadrature: (len(numeric), y.size)."""
        assert self.weights is not None
        out = np.empty((self.weights.shape[1], y.size))
        step = max(1, _CHUNK // self.m.size)
        for s in range(0, y.size, step):
            t = y[s:s + step, None] * self.m[None, :]
            psi = np.exp(-t) if self.r is None else np.exp(-(self.r + 1.0) * np.log1p(t / self.r))
            out[:, s:s + step] = (psi @ self.weights).T
        return out


class _Chebyshev:
    """Piecewise Chebyshev interpolant of y -> f(y) (shape (rows, y.size)) on [0, y_max].

    One panel [0, low] in y, then panels of width <= 0.5 in ln y up to y_max, 12 points each.
    K0 and K1 are analytic in y off the negative axis (their nearest singularity, with
    ``rate_cv``, is at y = -r / H, four times ``low`` or more away) and bounded by K0(0) for
    Re y >= 0, so as functions of ln y in the strip |Im ln y| < π/2: the error is below
    ρ^-12 ~ 3e-13 of K0, ρ >= 11 the Bernstein ellipse of a panel inside that strip.
    """

    POINTS = 12
    WIDTH = 0.5

    def __init__(self, f: Callable[[np.ndarray], np.ndarray], y_max: float, low: float):
        self.low = low
        count = max(1, math.ceil(math.log(y_max / low) / self.WIDTH)) if y_max > low else 0
        self.v = np.linspace(math.log(low), math.log(max(y_max, low)), count + 1)
        n = self.POINTS
        s = (np.cos(np.pi * (np.arange(n) + 0.5) / n) + 1.0) / 2.0
        nodes = [low * s] + [np.exp(self.v[i] + (self.v[i + 1] - self.v[i]) * s) for i in range(count)]
        values = f(np.concatenate(nodes)).reshape(-1, count + 1, n)
        coef = fft.dct(values, type=2, axis=-1) / n
        coef[..., 0] /= 2.0
        self.coef = coef  # (rows, panels, n): Σ_k coef[k] T_k(t) on each panel

    def __call__(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=float).ravel()
        panels = self.coef.shape[1]
        out = np.empty((self.coef.shape[0], y.size))
        with np.errstate(divide="ignore"):
            logy = np.log(y)
        if panels > 1:
            step = (self.v[-1] - self.v[0]) / (panels - 1)
            idx = np.where(y < self.low, 0, 1 + np.floor((logy - self.v[0]) / step))
            idx = np.clip(idx, 0, panels - 1).astype(np.int16)
            order = np.argsort(idx, kind="stable")
            bounds = np.searchsorted(idx[order], np.arange(panels + 1))
        else:
            order, bounds = np.arange(y.size), np.array([0, y.size])
        for i in range(panels):
            sel = order[bounds[i]:bounds[i + 1]]
            if sel.size == 0:
                continue
            if i == 0:
                t = 2.0 * y[sel] / self.low - 1.0
            else:
                t = 2.0 * (logy[sel] - self.v[i - 1]) / (self.v[i] - self.v[i - 1]) - 1.0
            out[:, sel] = _clenshaw(self.coef[:, i, :], t)
        return out


def _clenshaw(coef: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Σ_k coef[:, k] T_k(t), shape (rows, t.size)."""
    b1 = np.zeros((coef.shape[0], t.size))
    b2 = np.zeros_like(b1)
    two_t = 2.0 * t
    for k in range(coef.shape[1] - 1, 0, -1):
        b1, b2 = coef[:, k, None] + two_t * b1 - b2, b1
    return coef[:, 0, None] + t * b1 - b2


def _stirling_rest(x: np.ndarray) -> np.ndarray:
    """ω(x) = ln Γ(x) - ((x - 1/2) ln x - x + ln(2π) / 2), x > 0, without cancellation."""
    x = np.asarray(x, dtype=float)
    big = x >= 20.0
    z = np.where(big, x, 20.0)
    series = (1.0 / 12 - (1.0 / 360 - (1.0 / 1260 - 1.0 / (1680 * z * z)) / (z * z)) / (z * z)) / z
    w = np.where(big, 1.0, x)
    direct = special.gammaln(w) - ((w - 0.5) * np.log(w) - w + 0.5 * math.log(2 * math.pi))
    return np.where(big, series, direct)


_RELATIVE = 1e-13
"""What the logit-trapezoid aims at, relative to E_p[K0(μ p)]: its step and range."""


def _beta_average(mu: np.ndarray, pi: np.ndarray, kappa: float, spread: np.ndarray, kernel: _Kernel) -> np.ndarray:
    """E_p[K(μ p)], p ~ Beta(π κ, (1 - π) κ), for each (μ, π) pair; shape (functions, pairs).

    E_p[K(μ p)] = K(0) (1 - π) + K(μ) π + E_p[R(p)], R(p) = K(μ p) - K(0) (1 - p) - K(μ) p,
    the last by the trapezoidal rule in u = logit(p), whose density is
    f(u) = e^(a u) (1 + e^u)^-(a+b) / B(a, b) (a = π κ, b = (1 - π) κ).

    Range: |R(p)| <= 2 K0(0) min(1, S p, S (1 - p)), S = ``spread`` = 1 + μ H (1 + 1/r); its
    product with f is log-concave, and the range ends where it falls below 1e-13 K0(μ) / (2 K0(0))
    (E_p[K0] >= K0(μ)). Step: the integrand is analytic and bounded by 3 K0(0) times
    G(d) = (2 / (1 + cos d))^((a+b)/2) for |Im u| <= d < π/2 (where Re p >= 0), so the
    trapezoidal error is ~ e^(-2π d / h) G(d) K0(0): h is the largest that makes it 1e-13 K0(μ)
    for some d.
    """
    pairs = mu.size
    a, b = pi * kappa, (1.0 - pi) * kappa
    ends_k = kernel(np.concatenate([[0.0], mu]))
    k_zero, k_mu = ends_k[:, :1], ends_k[:, 1:]
    need = math.log(1.0 / _RELATIVE) + np.log(k_zero[0, 0] / k_mu[0])  # -ln(tolerance / K0(0))
    u_mode = np.log(pi) - np.log1p(-pi)
    # ln f at its mode, a ln π + b ln(1 - π) - ln B(a, b), by Stirling's formula (no cancellation)
    log_peak = (0.5 * np.log(kappa * pi * (1.0 - pi) / (2.0 * math.pi))
                - _stirling_rest(a) - _stirling_rest(b) + _stirling_rest(np.full(pairs, kappa)))
    log_spread = np.log(spread)

    def log_f(u: np.ndarray, i: np.ndarray) -> np.ndarray:
        shape = (-1,) + (1,) * (u.ndim - 1)
        p_, m_, peak = pi[i].reshape(shape), u_mode[i].reshape(shape), log_peak[i].reshape(shape)
        d = u - m_  # ln f(u) - ln f(mode) = κ (π d - ln(1 - π + π e^d))
        log_ratio = np.logaddexp(np.log1p(-p_), np.log(p_) + d)
        if kappa > 1e4:  # near the mode, where the difference is O(d²), without cancellation
            log_ratio = np.where(np.abs(d) < 1.0, np.log1p(p_ * np.expm1(np.minimum(d, 1.0))), log_ratio)
        return peak + kappa * (p_ * d - log_ratio)

    every = np.arange(pairs)

    def log_bound(u: np.ndarray) -> np.ndarray:
        edge = np.minimum(-np.logaddexp(0.0, -u), -np.logaddexp(0.0, u))  # ln min(p, 1 - p)
        return log_f(u, every) + np.minimum(0.0, log_spread + edge)

    lo = np.minimum(np.minimum(u_mode, -np.abs(log_spread)), 0.0) - 1.0
    hi = np.maximum(np.maximum(u_mode, np.abs(log_spread)), 0.0) + 1.0
    g = (math.sqrt(5.0) - 1.0) / 2.0
    x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
    f1, f2 = log_bound(x1), log_bound(x2)
    for _ in range(24):  # golden section for the bound's maximum (log-concave): near it will do
        left = f1 > f2
        hi = np.where(left, x2, hi)
        lo = np.where(left, lo, x1)
        x1n = np.where(left, hi - g * (hi - lo), x2)
        x2n = np.where(left, x1, lo + g * (hi - lo))
        fresh = log_bound(np.where(left, x1n, x2n))
        f1, f2 = np.where(left, fresh, f2), np.where(left, f1, fresh)
        x1, x2 = x1n, x2n
    top = (lo + hi) / 2.0
    top = np.where(log_bound(u_mode) > log_bound(top), u_mode, top)  # f's mode, where f is narrow
    level = -need - math.log(2.0)
    live = log_bound(top) > level
    ends = []
    for sign in (-1.0, 1.0):
        reach = np.full(pairs, 16.0)
        for _ in range(60):
            far = live & (log_bound(top + sign * reach) > level)
            if not far.any():
                break
            reach = np.where(far, 2.0 * reach, reach)
        inner, outer = np.zeros(pairs), reach
        for _ in range(48):  # the bound is below the level at `outer`
            mid = (inner + outer) / 2.0
            above = log_bound(top + sign * mid) > level
            inner, outer = np.where(above, mid, inner), np.where(above, outer, mid)
        ends.append(top + sign * outer)
    u_lo, u_hi = ends
    d = np.linspace(0.05, 0.49 * math.pi, 32)
    steps = 2.0 * math.pi * d / (need[:, None] + 0.5 * kappa * np.log(2.0 / (1.0 + np.cos(d))))
    step_max = steps.max(axis=1)
    width = np.where(live, u_hi - u_lo, 0.0)
    count = np.maximum(3, np.ceil(width / step_max) + 1).astype(np.int64)
    out = k_zero * (1.0 - pi) + k_mu * pi
    order = np.argsort(count, kind="stable")
    order = order[live[order]]
    rows = 1024  # pairs at a time, in order of the points they need: each batch takes its largest
    for s in range(0, order.size, rows):
        i = order[s:s + rows]
        points = int(count[i[-1]])
        t = np.linspace(0.0, 1.0, points)
        trap = np.ones(points)
        trap[[0, -1]] = 0.5
        u = u_lo[i, None] + width[i, None] * t[None, :]
        w = (width[i, None] / (points - 1)) * trap * np.exp(log_f(u, i))
        p = special.expit(u)
        values = kernel(mu[i, None] * p).reshape(-1, i.size, points)
        rest = values - k_zero[:, :, None] * special.expit(-u) - k_mu[:, i, None] * p
        out[:, i] += np.einsum("fij,ij->fi", rest, w)
    return out
