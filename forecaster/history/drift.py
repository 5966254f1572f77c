"""Rates that drift: a local-level model of monthly estimates (conversion, lead arrivals).

A rate measured month by month (each monthly cohort's conversion on the log-odds scale,
each month's arrivals on the log scale) is modelled as a level that drifts, seen through
noise:

    x_k = x_{k-1} + w_k,    w_k ~ N(0, q), or with probability 1/24 a jump N(0, q + 1/2)
    y_k = x_k + e_k,        e_k ~ N(0, v_k + r)

v_k is the estimate's own sampling variance (known), r the month's extra noise around the
level (a noisy month is not a moved level), q the drift. A Gaussian-sum filter (two
readings a month, drift or jump, kept apart for :data:`LAG` month and then merged by their
moments) gives the last month's level m_K and its variance P_K; a month h ahead the level
has variance P_K + h (q + J / 24).

q and r are not known, and a dozen months cannot pin them down; plugging in the most
likely pair gave intervals too narrow in the tests (66% coverage for a nominal 80%). So
the forecast averages over a grid of (q, r) (q up to 1: larger moves are jumps), each
weighted by its marginal likelihood under a uniform prior over the grid; its mean and
variance are those of that mixture (79% coverage of a random walk's next level over
400 test series; the jump's size, 1/2, is the one of 1/4, 1/2 and 1 that came closest to
80% there: 75.75%, 79%, 83.75%; 74.5%, 78.5%, 83% when each month was merged at once).
The jump component lets a one-off move (a new sales process, a campaign) be followed as a
new level rather than read as proof of a wildly drifting one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GRID = np.concatenate([[0.0], np.logspace(-4, 0, 25)])
"""Candidate variances q (drift) and r (noise), per month on the model's scale."""


JUMP_PROB = 1 / 24
"""Prior chance that the level jumps in a given month (about one jump in two years)."""
JUMP_VAR = 0.5
"""Variance of a jump (a factor of 2 at one standard deviation)."""
OUTLIER_PROB = JUMP_PROB
"""With ``outliers`` (:func:`local_level`): prior chance that a month is a one-off, seen off
the level by an extra N(0, :data:`OUTLIER_VAR`) that does not move it. As likely as a jump
and as large, so that a last month far off the level is read half as a jump, half as a
one-off, until the next months tell which."""
OUTLIER_VAR = JUMP_VAR
LAG = 1
"""Months whose readings (drift, jump, one-off) the filter keeps apart before merging them."""


@dataclass(frozen=True)
class Level:
    """A fitted local level, averaged over the grid of (q, r).

    ``m``: the last month's level (mixture mean); ``weights``, ``ms``, ``Ps``, ``qs``,
    ``rs``: each grid point's posterior weight, filtered level and its variance, drift and
    noise (arrays of the grid's size); ``months`` observed.
    """

    m: float
    weights: np.ndarray
    ms: np.ndarray
    Ps: np.ndarray
    qs: np.ndarray
    rs: np.ndarray
    months: int

    def variance(self, h: float) -> float:
        """Variance of the level ``h`` months after the last one, jumps included.

        (Leaving the jumps out, as if a shock only had to match the mixture's central part,
        gave 69% coverage for a nominal 80% in the tests: the drift estimated from a short
        series is too small, and the jumps' share makes up for it.)
        """
        step = self.qs + JUMP_PROB * JUMP_VAR
        return float(self.weights @ (self.Ps + h * step + (self.ms - self.m) ** 2))

    @property
    def q(self) -> float:
        """Posterior mean of the monthly drift variance."""
        return float(self.weights @ self.qs)

    @property
    def r(self) -> float:
        """Posterior mean of the extra month-to-month noise variance (not in the level)."""
        return float(self.weights @ self.rs)


def _filter(y: np.ndarray, v: np.ndarray, qs: np.ndarray, rs: np.ndarray,
            outliers: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kalman filter over the months (NaN = no observation) for every grid point (q, r) at
    once: (m_K, P_K, log-likelihood), arrays of the grid's shape.

    Each month's innovation is N(0, q), or with probability :data:`JUMP_PROB` a jump
    N(0, :data:`JUMP_VAR`). A one-off move is then read as a jump, after which the level
    follows the new data, not as proof of a wildly drifting level. With ``outliers``, each
    month is also, with probability :data:`OUTLIER_PROB`, seen off the level by an extra
    N(0, :data:`OUTLIER_VAR`): B = 4 readings a month (2 without ``outliers``).

    A Gaussian-sum filter with a fixed lag: the readings of the last :data:`LAG` observed
    months are kept apart (B^LAG Gaussians, each updated by its own Kalman step); a month's
    reading is merged away by its moments only when it falls out of that window. Merging at
    once (LAG = 0) turned a month far off into one wide Gaussian halfway between "jump" and
    "one-off", which the next months, young cohorts seen through large variances, could only
    pull back slowly; kept apart, the next month's data weigh the two readings against each
    other (a one-off month's level is back at once when the next month looks like the ones
    before).
    """
    qs, rs = np.asarray(qs, dtype=float), np.asarray(rs, dtype=float)
    seen = ((1 - OUTLIER_PROB, 0.0), (OUTLIER_PROB, OUTLIER_VAR)) if outliers else ((1.0, 0.0),)
    readings = [(math.log(prob * seen_prob), jump, extra)
                for prob, jump in ((1 - JUMP_PROB, 0.0), (JUMP_PROB, JUMP_VAR)) for seen_prob, extra in seen]
    B, C = len(readings), len(readings) ** LAG
    grid = qs.shape
    # components (C, grid): the readings of the last LAG months, the oldest on the slowest axis
    m, P = np.zeros((C,) + grid), np.full((C,) + grid, math.inf)
    logw, ll = np.full((C,) + grid, -math.log(C)), np.zeros(grid)
    started, gap = False, 0
    for yk, vk in zip(y, v):
        if started:
            gap += 1
        if not np.isfinite(yk):
            continue
        noise0 = vk + rs
        if not started:  # a diffuse start: the first observation sets the level
            m[:], P[:], started, gap = float(yk), noise0, True, 0
            continue
        e = yk - m
        lw, means, variances = [], [], []
        for log_prob, jump, extra in readings:
            var = P + gap * qs + jump
            noise = noise0 + extra
            F = np.maximum(var + noise, 1e-12)  # a month known exactly (v = 0) must not divide by zero
            lw.append(logw + log_prob - 0.5 * (np.log(2 * math.pi * F) + e * e / F))
            means.append(m + var / F * e)
            variances.append(var * noise / F)
        lw_, mk, Pk = (np.stack(a, axis=1) for a in (lw, means, variances))  # (C, B, grid)
        top = lw_.max(axis=(0, 1))
        norm = top + np.log(np.exp(lw_ - top).sum(axis=(0, 1)))  # log of the month's predictive density
        ll = ll + norm
        # merge the oldest month's reading away: (C, B) = (B, C / B, B) -> (C / B, B), each
        # group weighed against its own largest member (no weight rounds to 0 before the merge)
        shape = ((B, 1, 1) if C == 1 else (B, C // B, B)) + grid
        g, mk, Pk = (a.reshape(shape) for a in (lw_, mk, Pk))
        g_top = g.max(axis=0)
        ws = np.exp(g - g_top)
        w = ws.sum(axis=0)
        mean = (ws * mk).sum(axis=0) / w
        P = ((ws * (Pk + (mk - mean) ** 2)).sum(axis=0) / w).reshape((C,) + grid)
        m = mean.reshape((C,) + grid)
        logw = (g_top + np.log(w) - norm).reshape((C,) + grid)
        gap = 0
    w = np.exp(logw)
    m_last = (w * m).sum(axis=0)
    P_last = (w * (P + (m - m_last) ** 2)).sum(axis=0)
    return m_last, P_last + gap * qs, ll


def local_level(y, v, outliers: bool = False) -> Level | None:
    """Fit the local-level model to monthly estimates ``y`` with sampling variances ``v``.

    Parameters
    ----------
    y, v : array-like, shape (months,)
        Estimates in time order (NaN where a month has none) and their variances.
    outliers : bool
        Whether a month may be a one-off (:data:`OUTLIER_PROB`) rather than a moved level.

    Returns
    -------
    Level, or None with fewer than 3 months observed (then nothing can be said of drift).
    """
    y, v = np.asarray(y, dtype=float), np.asarray(v, dtype=float)
    if np.isfinite(y).sum() < 3:
        return None
    qs, rs = (g.ravel() for g in np.meshgrid(GRID, GRID))
    ms, Ps, ll = _filter(y, v, qs, rs, outliers)
    weights = np.exp(ll - ll.max())
    weights /= weights.sum()
    return Level(m=float(weights @ ms), weights=weights, ms=ms, Ps=Ps, qs=qs, rs=rs,
                 months=int(np.isfinite(y).sum()))


def empirical_logit(successes: float, trials: float) -> tuple[float, float]:
    """log((c + 1/2) / (n - c + 1/2)) and its variance, for c successes in n (effective) trials."""
    a, b = successes + 0.5, max(trials - successes, 0.0) + 0.5
    return math.log(a / b), 1 / a + 1 / b


def expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


@dataclass(frozen=True)
class Trend:
    """A fitted local linear trend, averaged over the grid of (q, r) like :class:`Level`.

    The level moves by a constant slope b each month, plus the drift and jumps of the local
    level; ``ms``, ``bs``: each grid point's last level and slope, ``Pmm``, ``Pmb``, ``Pbb``
    their covariance; ``weights`` the grid's posterior weights.
    """

    weights: np.ndarray
    ms: np.ndarray
    bs: np.ndarray
    Pmm: np.ndarray
    Pmb: np.ndarray
    Pbb: np.ndarray
    qs: np.ndarray
    months: int

    @property
    def slope(self) -> float:
        """Posterior mean of the monthly slope (log scale)."""
        return float(self.weights @ self.bs)

    @property
    def slope_sd(self) -> float:
        b = self.slope
        return math.sqrt(float(self.weights @ (self.Pbb + (self.bs - b) ** 2)))

    def mean(self, h: float) -> float:
        """Mean of the level ``h`` months after the last one."""
        return float(self.weights @ (self.ms + h * self.bs))

    def variance(self, h: float) -> float:
        """Variance of the level ``h`` months after the last one (slope, drift, jumps)."""
        step = self.qs + JUMP_PROB * JUMP_VAR
        own = self.Pmm + 2 * h * self.Pmb + h * h * self.Pbb + h * step
        return float(self.weights @ (own + (self.ms + h * self.bs - self.mean(h)) ** 2))


def _trend_filter(y: np.ndarray, v: np.ndarray, qs: np.ndarray, rs: np.ndarray) -> tuple:
    """Kalman filter of a local linear trend (state: level, slope; the slope fixed but unknown)
    with the level's jumps as in :func:`_filter`, for every grid point (q, r) at once (numpy
    over the grid, the 2 x 2 matrices written out entry by entry). The first two
    observations start it (a diffuse start) and do not count in the likelihood. Returns
    (m, b, Pmm, Pmb, Pbb, ll), arrays of the grid's shape."""
    qs, rs = np.asarray(qs, dtype=float), np.asarray(rs, dtype=float)
    x0, x1 = np.zeros(qs.shape), np.zeros(qs.shape)  # level, slope
    P00, P01, P10, P11 = np.full(qs.shape, 1e6), np.zeros(qs.shape), np.zeros(qs.shape), np.full(qs.shape, 1e6)
    ll, seen = np.zeros(qs.shape), 0
    for k, (yk, vk) in enumerate(zip(y, v)):
        if k > 0:  # x = F x, P = F P F' + diag(q, 0), F = [[1, 1], [0, 1]]
            x0 = x0 + x1
            A00, A01 = P00 + P10, P01 + P11
            P00, P01, P10 = A00 + A01 + qs, A01, P10 + P11
        if not np.isfinite(yk):
            continue
        R = vk + rs
        e = yk - x0
        comps = []
        for prob, extra in ((1 - JUMP_PROB, 0.0), (JUMP_PROB, JUMP_VAR)):
            Pk00 = P00 + extra
            S = Pk00 + R
            K0, K1 = Pk00 / S, P10 / S
            comps.append((math.log(prob) - 0.5 * (np.log(2 * math.pi * S) + e * e / S),  # log weight
                          x0 + K0 * e, x1 + K1 * e,  # mean
                          Pk00 - K0 * Pk00, P01 - K0 * P01, P10 - K1 * Pk00, P11 - K1 * P01))  # covariance
        (la, *a), (lb, *b) = comps
        top = np.maximum(la, lb)
        wa, wb = np.exp(la - top), np.exp(lb - top)
        total = wa + wb
        if seen >= 2:
            ll = ll + (top + np.log(total))
        wa, wb = wa / total, wb / total
        x0, x1 = wa * a[0] + wb * b[0], wa * a[1] + wb * b[1]
        da0, da1, db0, db1 = a[0] - x0, a[1] - x1, b[0] - x0, b[1] - x1
        P00 = wa * (a[2] + da0 * da0) + wb * (b[2] + db0 * db0)
        P01 = wa * (a[3] + da0 * da1) + wb * (b[3] + db0 * db1)
        P10 = wa * (a[4] + da1 * da0) + wb * (b[4] + db1 * db0)
        P11 = wa * (a[5] + da1 * da1) + wb * (b[5] + db1 * db1)
        seen += 1
    return x0, x1, P00, P01, P11, ll


def local_trend(y, v) -> Trend | None:
    """Fit a local linear trend to monthly estimates ``y`` with sampling variances ``v``
    (shape (months,), NaN where a month has none), averaged over the (q, r) grid.

    Returns None with fewer than 4 months observed.
    """
    y, v = np.asarray(y, dtype=float), np.asarray(v, dtype=float)
    if np.isfinite(y).sum() < 4:
        return None
    grid = GRID[::2]  # a coarser grid: the trend's filter is a 2-state one
    qs, rs = (g.ravel() for g in np.meshgrid(grid, grid))
    ms, bs, Pmm, Pmb, Pbb, ll = _trend_filter(y, v, qs, rs)
    weights = np.exp(ll - ll.max())
    weights /= weights.sum()
    return Trend(weights=weights, ms=ms, bs=bs, Pmm=Pmm, Pmb=Pmb, Pbb=Pbb, qs=qs, months=int(np.isfinite(y).sum()))
