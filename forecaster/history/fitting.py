"""Fitting a funnel stage from deal histories, with censoring (the core of calibration).

A deal that entered a stage either converted after ``days``, was lost after
``days_lost``, or was still open on the as-of date (right-censored at its age). This is
the contract's stage model written as a likelihood: with p the probability to convert and
F, G the distributions of ``days`` and ``days_lost``,

    converted on day k after entering:  p (F(k + 1) - F(k))
    lost on day k after entering:       (1 - p) (G(k + 1) - G(k))
    still open at age a:                p (1 - F(a)) + (1 - p) (1 - G(a))

Days are whole, so an event on day k happened in [k, k + 1): the likelihood is
interval-censored and needs no correction for same-day events. When a history never
records losses (only wins, like a marketing-lead export), ``lost_observed=False`` makes
lost deals stay open for ever: 1 - G = 1, a cure model.

:func:`fit_stage` maximises the likelihood for each family of ``days`` (and of
``days_lost``) among lognormal, gamma, Weibull and exponential, and keeps the pair with
the lowest AIC (the conversion's standard error comes from the observed information).

A family can be wrong where it matters most, at young ages: Maven's deals close either
within two weeks or after two to four months, which no single family fits. So counts of
conversions are turned into rates without one: :func:`conversion_cdf` estimates the time
to convert nonparametrically (Aalen-Johansen), and :func:`conversion_exposure` weighs each
deal by the chance that its conversion, if any, would already show.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

FAMILIES = ("lognormal", "gamma", "weibull", "exponential")
_NPARAMS = {"lognormal": 2, "gamma": 2, "weibull": 2, "exponential": 1}


class TooLittleHistory(ValueError):
    """The history known on the as-of date cannot be fitted yet (no deal entered, or none
    converted out of a stage): a later as-of date may be. A backtest skips such a cutoff
    (:func:`forecaster.history.backtest.backtest`); calibration refuses it."""


@dataclass
class StageData:
    """Durations in whole days since a stage was entered (each array shape (n,)).

    ``converted``/``lost``: day of the event; ``open_ages``: age of deals still open;
    ``ages``: optional, the age on the as-of date of every deal that entered (converted,
    lost and open alike), for :func:`conversion_exposure`; ``other_ages``: optional, the
    age on the as-of date of the deals that did not convert (lost and open), for
    :func:`cohort_conversion`. ``*_entry``: optional, the age at
    which each deal came under observation (delayed entry: a history that starts mid-stream
    holds a deal that entered before its start only because it was still open then); None
    or 0 = observed from entry.
    """

    converted: np.ndarray
    lost: np.ndarray
    open_ages: np.ndarray
    lost_observed: bool = True
    ages: np.ndarray | None = None
    other_ages: np.ndarray | None = None
    converted_entry: np.ndarray | None = None
    lost_entry: np.ndarray | None = None
    open_entry: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.converted.size + self.lost.size + self.open_ages.size

    def entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Entry ages of the converted, lost and open deals (zeros where not given)."""
        def entry(x: np.ndarray, e: np.ndarray | None) -> np.ndarray:
            return np.zeros(x.size) if e is None else np.asarray(e, dtype=float)

        return (entry(self.converted, self.converted_entry), entry(self.lost, self.lost_entry),
                entry(self.open_ages, self.open_entry))

    @property
    def truncated(self) -> bool:
        """Whether any deal came under observation after it entered (delayed entry)."""
        return any(float(np.max(e, initial=0.0)) > 0 for e in self.entries())


@dataclass
class StageFit:
    """A fitted stage: conversion and the time families, with what they came from.

    ``stalled``: the share of the leads that do not convert that never leave (stay open for
    ever), 0 when not fitted.
    """

    p: float
    p_se: float
    days: tuple            # (family, params dict)
    days_lost: tuple | None
    aic: float
    counts: dict = field(default_factory=dict)
    families: tuple = ()
    theta: np.ndarray | None = None  # the optimiser's parameters: logit p, the families' (log scale), logit stalled
    stalled: float = 0.0


BOUNDS = {"lognormal": ((-7.0, 12.0), (-4.0, 2.5)), "gamma": ((-7.0, 12.0), (-4.0, 8.0)),
          "weibull": ((-7.0, 12.0), (-2.3, 4.0)), "exponential": ((-7.0, 12.0),)}
"""Bounds of each family's parameters on the optimiser's (log) scale: a degenerate history
(every conversion on the day of entry) must give a valid, sampleable distribution, not a
median of 0 or a sigma of 40 (lognormal sigma <= 12, Weibull shape >= 0.1, gamma cv <= 7.4)."""
LOGIT_BOUND = 30.0


def _cdf(family: str, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """CDF of a family at ``x`` >= 0 (parameters on the log scale, as optimised)."""
    from scipy import special

    if family == "lognormal":
        with np.errstate(divide="ignore"):
            return special.ndtr((np.log(x) - theta[0]) / math.exp(theta[1]))
    if family == "gamma":
        shape = math.exp(theta[1])
        return special.gammainc(shape, x * shape / math.exp(theta[0]))
    if family == "weibull":
        with np.errstate(over="ignore"):  # an overflow is a CDF of 1, as it should be
            return -np.expm1(-((x / math.exp(theta[0])) ** math.exp(theta[1])))
    return -np.expm1(-x / math.exp(theta[0]))


def scenario_params(family: str, theta: np.ndarray) -> dict:
    """The scenario file's spelling of a fitted family."""
    if family == "lognormal":
        return {"dist": "lognormal", "median": math.exp(theta[0]), "sigma": math.exp(theta[1])}
    if family == "gamma":
        return {"dist": "gamma", "mean": math.exp(theta[0]), "cv": 1 / math.sqrt(math.exp(theta[1]))}
    if family == "weibull":
        return {"dist": "weibull", "shape": math.exp(theta[1]), "scale": math.exp(theta[0])}
    return {"dist": "exponential", "mean": math.exp(theta[0])}


def _start(family: str, durations: np.ndarray) -> np.ndarray:
    d = durations + 0.5 if durations.size else np.array([10.0])
    m = max(float(np.mean(d)), 0.5)
    if family == "exponential":
        x = np.array([math.log(m)])
    elif family == "lognormal":
        logs = np.log(d)
        x = np.array([float(np.median(logs)), math.log(max(float(np.std(logs)), 0.2))])
    else:
        cv = max(float(np.std(d)) / m, 0.2)
        x = (np.array([math.log(m), math.log(1 / cv ** 2)]) if family == "gamma"
             else np.array([math.log(m), math.log(max(1.2 / cv, 0.3))]))
    lo, hi = np.array(BOUNDS[family]).T
    return np.clip(x, lo + 1e-3, hi - 1e-3)


def _tally(x: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole-day durations with their entry ages as (distinct durations, entry ages, counts):
    the likelihood is the same."""
    if not x.size:
        return x, x, np.zeros(0, dtype=int)
    rows, counts = np.unique(np.stack([x, e], axis=1), axis=0, return_counts=True)
    return rows[:, 0], rows[:, 1], counts


def _in_bounds(x: np.ndarray, wf: str, lf: str | None, stall: bool) -> bool:
    bounds = [(-LOGIT_BOUND, LOGIT_BOUND), *BOUNDS[wf], *(BOUNDS[lf] if lf else ()),
              *([(-LOGIT_BOUND, LOGIT_BOUND)] if stall else [])]
    return all(lo <= v <= hi for v, (lo, hi) in zip(x, bounds))


class _Points:
    """The durations a likelihood needs, evaluated once per call: every distinct point of
    the tallies (events k and k + 1, open ages, entry ages) and where each tally's are."""

    def __init__(self, tallies):
        """An open deal of age a has come through day a (events on the as-of day are
        recorded): it is open at a + 1, so its points are ko + 1."""
        (kc, ec, nc), (kl, el, nl), (ko, eo, no) = tallies
        parts = [kc, kc + 1.0, kl, kl + 1.0, ko + 1.0, ec, el, eo]
        self.x, inverse = np.unique(np.concatenate(parts), return_inverse=True)
        bounds = np.cumsum([0] + [p.size for p in parts])
        idx = [inverse[bounds[k]:bounds[k + 1]] for k in range(len(parts))]
        self.kc, self.kc1, self.kl, self.kl1, self.ko, self.ec, self.el, self.eo = idx
        self.nc, self.nl, self.no = nc, nl, no
        self.nc_sum, self.nl_sum = nc.sum(), nl.sum()  # constants of every call of _loglik
        self.late = [(self.ec[ec > 0], nc[ec > 0]), (self.el[el > 0], nl[el > 0]), (self.eo[eo > 0], no[eo > 0])]


def _loglik(data: StageData, wf: str, lf: str | None, x: np.ndarray, pts: _Points, stall: bool = False) -> float:
    """Log-likelihood of the stage model (module docstring) at the optimiser's ``x``.

    With ``stall``, the last entry of ``x`` is logit sigma: a share sigma of the leads that do
    not convert never leave (open at every age). A deal first observed at age e > 0 (delayed
    entry) has its likelihood divided by the chance to be open at e.
    """
    p = 1.0 / (1.0 + math.exp(-x[0]))
    kw = _NPARAMS[wf]
    Fw = _cdf(wf, x[1:1 + kw], pts.x)
    Fl = _cdf(lf, x[1 + kw:1 + kw + _NPARAMS[lf]], pts.x) if lf else None
    sigma = 1.0 / (1.0 + math.exp(-x[-1])) if stall else 0.0
    tiny = 1e-300

    def open_at(i: np.ndarray) -> np.ndarray:
        s_lost = sigma + (1 - sigma) * (1.0 - Fl[i]) if Fl is not None else 1.0
        return p * (1.0 - Fw[i]) + (1 - p) * s_lost

    # (array.sum(), not np.sum(array): the same sums, without np.sum's dispatch on every call
    # of an optimiser that makes thousands)
    ll = 0.0
    if pts.nc.size:
        ll += pts.nc_sum * math.log(max(p, tiny))
        ll += float((pts.nc * np.log(np.maximum(Fw[pts.kc1] - Fw[pts.kc], tiny))).sum())
    if Fl is not None and pts.nl.size:
        ll += pts.nl_sum * math.log(max((1 - p) * (1 - sigma), tiny))
        ll += float((pts.nl * np.log(np.maximum(Fl[pts.kl1] - Fl[pts.kl], tiny))).sum())
    if pts.no.size:
        ll += float((pts.no * np.log(np.maximum(open_at(pts.ko), tiny))).sum())
    for j, (i, n) in enumerate(pts.late):  # delayed entry: conditioned on being open at e
        if j == 1 and Fl is None:  # losses not modelled: their rows are not in the likelihood
            continue
        if i.size:
            ll -= float((n * np.log(np.maximum(open_at(i), tiny))).sum())
    return ll


def _se_of_logit_p(f, x: np.ndarray) -> float:
    """Standard error of logit p from the curvature of the log-likelihood (profiled)."""
    h = 1e-3
    fx = f(x)
    up, dn = x.copy(), x.copy()
    up[0] += h
    dn[0] -= h
    curv = (f(up) - 2 * fx + f(dn)) / h ** 2  # of the negative log-likelihood
    return 1 / math.sqrt(curv) if curv > 0 and math.isfinite(curv) else float("inf")


def fit_stage(data: StageData, families=FAMILIES, lost_families=None) -> StageFit:
    """Maximum-likelihood fit of one stage (see the module docstring).

    The family of ``days`` is chosen first (among ``families``, with a lognormal
    ``days_lost``), then that of ``days_lost`` (among ``lost_families``, default the same),
    each by the lowest AIC. When losses are recorded and some deals are still open, the
    share of the non-converting leads that never leave (``stalled``) is fitted too: deals
    open far beyond every recorded cycle are read as stalled, not as late wins.
    """
    from scipy.optimize import minimize

    if data.converted.size == 0:
        raise TooLittleHistory("no deal converted out of this stage: its conversion and time cannot be fitted")
    ce, le, oe = data.entries()
    pts = _Points((_tally(data.converted, ce), _tally(data.lost, le), _tally(data.open_ages, oe)))
    recorded_losses = data.lost_observed and data.lost.size > 0
    stall = recorded_losses and data.open_ages.size > 0
    resolved = data.converted.size + (data.lost.size if data.lost_observed else 0)
    p0 = min(max(data.converted.size / max(resolved, 1), 0.02), 0.98)

    def fit(wf: str, lf: str | None):
        x0 = np.concatenate([[math.log(p0 / (1 - p0))], _start(wf, data.converted.astype(float)),
                             _start(lf, data.lost.astype(float)) if lf else [], [-3.0] if stall else []])

        def nll(x):
            if not _in_bounds(x, wf, lf, stall):
                return 1e300
            v = -_loglik(data, wf, lf, x, pts, stall)
            return v if math.isfinite(v) else 1e300

        res = minimize(nll, x0, method="Nelder-Mead",
                       options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-8, "adaptive": len(x0) > 4})
        return 2 * len(x0) + 2 * res.fun, wf, lf, res.x, nll

    default_lost = "lognormal" if recorded_losses else None
    best = min((fit(wf, default_lost) for wf in families), key=lambda r: r[0])
    if recorded_losses:
        candidates = [best] + [fit(best[1], lf) for lf in (lost_families or families) if lf != default_lost]
        best = min(candidates, key=lambda r: r[0])
    aic, wf, lf, x, nll = best
    p = 1 / (1 + math.exp(-x[0]))
    se_logit = _se_of_logit_p(nll, x)
    p_se = p * (1 - p) * se_logit
    kw = _NPARAMS[wf]
    return StageFit(p=p, p_se=p_se, days=(wf, scenario_params(wf, x[1:1 + kw])),
                    days_lost=(lf, scenario_params(lf, x[1 + kw:1 + kw + _NPARAMS[lf]])) if lf else None, aic=aic,
                    counts={"converted": int(data.converted.size), "lost": int(data.lost.size),
                            "open": int(data.open_ages.size)}, families=(wf, lf), theta=x,
                    stalled=1 / (1 + math.exp(-x[-1])) if stall else 0.0)


def conversion_cdf(data: StageData) -> np.ndarray:
    """The time to convert among converting deals, without assuming a family.

    The Aalen-Johansen estimate of the cumulative incidence of conversion (losses compete,
    open deals are censored), divided by its final value: ``F[k]`` is the probability that
    a deal that converts does so on day k or before. A deal open at age a has come through
    days 0..a; one first seen at age e (delayed entry) is at risk from day e on. Shape
    (T + 1,), T the longest duration or age seen.
    """
    conv = data.converted.astype(np.int64)
    lost = data.lost.astype(np.int64) if data.lost_observed else np.zeros(0, dtype=np.int64)
    ages = data.open_ages.astype(np.int64)
    T = int(max(conv.max(initial=0), lost.max(initial=0), ages.max(initial=0)))
    c = np.bincount(conv, minlength=T + 1)
    lo = np.bincount(lost, minlength=T + 1)
    leaving = c + lo + np.bincount(ages, minlength=T + 1)  # at risk on day t: events on t or later, ages >= t
    at_risk = np.cumsum(leaving[::-1])[::-1].astype(float)
    # delayed entry: a deal first seen at age e is not at risk before day e
    ce, le, oe = data.entries()
    late = np.concatenate([ce, le if data.lost_observed else np.zeros(0), oe]).astype(np.int64)
    late = np.minimum(late[late > 0], T + 1)
    if late.size:
        entering = np.bincount(late, minlength=T + 2)[:T + 2]
        at_risk -= late.size - np.cumsum(entering)[:T + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        h_c = np.where(at_risk > 0, c / at_risk, 0.0)
        h_l = np.where(at_risk > 0, lo / at_risk, 0.0)
    surv = np.concatenate([[1.0], np.cumprod(1 - h_c - h_l)[:-1]])  # open at the start of day t
    cif = np.cumsum(surv * h_c)
    return cif / cif[-1] if cif[-1] > 0 else np.ones(T + 1)


MAX_BEYOND = 0.5
"""The largest share of the conversions :func:`with_fitted_tail` puts beyond the longest
duration seen: a history that has seen less than half of its cycle says little of the
law's shape, and the family's extrapolation (from a month of closes, say) is held to half."""
TAIL_PRIOR = 2.0
"""Conversions added to both the seen and the expected count in :func:`with_fitted_tail`'s
window: with a dozen expected, none seen keeps a seventh of the family's tail; with a
thousand, a five-hundredth."""
TAIL_POINTS = 200
"""Days at which :func:`with_fitted_tail` places the mass beyond the longest duration seen
(log-spaced): the law's smoothing costs O(days with mass), which a day-by-day tail would
multiply by up to twenty."""


def with_fitted_tail(cdf: np.ndarray, fit: StageFit, conversions: float = math.inf) -> np.ndarray:
    """:func:`conversion_cdf` with the conversions not yet seen: the fitted family's tail,
    as far as the conversions seen last support it.

    :func:`conversion_cdf` divides by its last value, as if every conversion came by the
    longest duration or age seen, T. In a long history that is so; in a young one (months of
    deals, a cycle of weeks to months) the slow conversions of the oldest deals have not
    come yet, the law ends too soon and its median is too short (a young export cut on its
    5th month: 55 days against the fitted lognormal's 67 and the cohorts' true 56 to 70),
    and every cohort compared with it reads slower than it is. The fitted family (``fit``:
    its parametric fit, which extrapolates the censored tail) puts 1 - F(T) of the
    conversions beyond T; but a family can be wrong about a tail, and the history says how
    far: over the last fifth of the durations seen (days a..T, a = ceil(0.8 T)), the
    conversions the family expects there (its share of the conversions up to T, times
    ``conversions``, the number the law was estimated from) are compared with those seen
    there, each with :data:`TAIL_PRIOR` added (a window of a few deals says little, and a
    conversion more or less must not switch the tail on or off). The tail keeps 1 - F(T)
    times the ratio of the two (at most 1): all of it when the conversions go on as the
    family says to the end of what was seen, less as they thin out, next to none when
    they stopped (Maven's deals convert within 138 days however long they stay open: a
    gamma fitted on 31 July 2017 puts 5.3% of its conversions beyond 270 days, which the
    history does not support). At most :data:`MAX_BEYOND` goes beyond T. Up to T the
    nonparametric shape is kept, scaled to the share left; the family's own tail follows
    (scaled the same way), at :data:`TAIL_POINTS` log-spaced days up to the day where the
    family reaches 0.999 (at most 20 (T + 1)), then renormalised. Returns ``cdf`` itself
    when nothing is left beyond T (the family's share under 1e-9, or none supported), when
    there is no family or when ``cdf`` ends at 0 (no conversion); else an array of shape
    (K + 1,), K > T."""
    if fit.theta is None or not fit.families or not cdf.size or not cdf[-1] > 0:
        return cdf
    family = fit.families[0]
    theta = fit.theta[1:1 + _NPARAMS[family]]
    T = cdf.size - 1
    F = _cdf(family, theta, np.arange(T + 1) + 1.0)  # the family's P(converted on day k or before)
    at_T = float(F[-1])
    if not math.isfinite(at_T) or at_T >= 1.0 - 1e-9 or at_T <= 0.0:
        return cdf
    a = int(math.ceil(0.8 * T))  # the last fifth of the durations seen: days a..T
    if a == 0:  # T == 0: nothing to compare
        support = 1.0
    else:
        expected = 1.0 - float(F[a - 1]) / at_T  # shares of the conversions up to T
        seen = max(1.0 - float(cdf[a - 1]) / float(cdf[-1]), 0.0)
        if math.isinf(conversions):
            support = min(seen / expected, 1.0) if expected > 0 else 1.0
        else:
            support = min((seen * conversions + TAIL_PRIOR) / (expected * conversions + TAIL_PRIOR), 1.0)
    beyond = min(support * (1.0 - at_T), MAX_BEYOND)
    support = beyond / (1.0 - at_T)
    if beyond < 1e-9:
        return cdf
    last = 20.0 * (T + 1)
    far = np.geomspace(T + 1.0, last, 64)
    reach = _cdf(family, theta, far)
    end = float(far[np.argmax(reach >= 0.999)]) if (reach >= 0.999).any() else last
    # day indices beyond T; day k holds P(converted on day k or before)
    days = np.unique(np.round(np.geomspace(T + 1.0, max(end, T + 1.0), TAIL_POINTS)).astype(np.int64))
    tail = np.maximum(_cdf(family, theta, days + 1.0), at_T)
    out = np.empty(int(days[-1]) + 1)
    out[:T + 1] = cdf / cdf[-1] * (1.0 - beyond)
    idx = np.searchsorted(days, np.arange(T + 1, out.size), side="right") - 1  # the last chosen day <= k
    out[T + 1:] = (1.0 - beyond) + support * (tail[idx] - at_T)  # flat between the chosen days
    return out / out[-1]


def conversion_exposure(data: StageData, cdf: np.ndarray) -> float:
    """How many deals' conversions could already show, counting each by its chance.

    A deal of age a (whole days) that converts is seen converted by the as-of date with
    probability F(a) (``cdf``: :func:`conversion_cdf`, with its tail from
    :func:`with_fitted_tail` in calibration; 1 beyond its end); so the
    conversions observed have mean p * sum F(a_i) over every deal that entered, whatever
    the losses. That sum is the exposure: conversions / exposure estimates p without
    counting open deals as lost, and it equals the number of deals when none is still
    open. Needs ``data.ages``.
    """
    if data.ages is None:
        raise ValueError("conversion_exposure needs the ages of every deal (StageData.ages)")
    return float(np.sum(cdf[np.minimum(data.ages.astype(np.int64), cdf.size - 1)]))


LOG_SCALES = np.linspace(-1.6, 1.6, 33)
"""Grid of a cohort's time scale log(lambda) against the pooled time to convert (x0.2 to x5)."""
SCALE_PRIOR_SD = 0.5
"""Prior sd of a cohort's log time scale: cycles that halve or double are within 1.4 sd."""
LOGITS = np.linspace(-9.0, 9.0, 361)
"""Grid of a cohort's conversion on the log-odds scale."""
CENTRE_PRIOR_SD = 0.5
"""sd (log-odds) of the working prior around the pooled conversion (``centre`` of
:func:`cohort_conversion`), divided out again: the cohort's likelihood is read where the
cohorts are, not over the whole grid. Narrower reads tiny cohorts near the centre closer to
their rate, wider reads cohorts far from it closer to theirs: the drift model's average
reading (inverse-variance weights, exact over the binomial counts of fully resolved
cohorts) is off its truth by -0.050 / -0.044 / -0.030 at 2 / 4 / 10 deals converting at the
centre's 0.25 and +0.072 / +0.003 at 10 / 100 deals converting at 0.5 (sd 1: -0.136 /
-0.093 / -0.036 and +0.041 / +0.001; sd 0.35: -0.027 / -0.025 / -0.020 and +0.111 /
+0.007; the flat prior: -0.69 / -0.21 / +0.04 near the centre)."""


@dataclass(frozen=True)
class CohortEstimate:
    """A cohort's conversion and speed, separated: posterior mean and variance of logit p,
    and what the cohort's own data say of log lambda (its time to convert is the pooled one
    stretched by lambda), the prior divided out: variance inf when they say nothing."""

    logit_p: float
    var_logit_p: float
    log_scale: float
    var_log_scale: float


@dataclass(frozen=True)
class LogTimeLaw:
    """The pooled time to convert, smoothed on the log-time scale, for comparing cohorts'
    speeds.

    The nonparametric ``cdf`` (:func:`conversion_cdf`) puts its mass on the days a
    conversion was seen and none between them. A cohort's own conversions are part of that
    mass, so any stretch of the cohort's time, however small, moves some of its
    conversions onto days without mass (a sparse tail has many): the likelihood of every
    stretch but x1 collapses, and each cohort reads as exactly as fast as the pool. So the
    mass of day k is spread as a normal of sd ``bandwidth`` around log(k + 1/2): a
    continuous law with the same shape (Silverman's rule of thumb on the log days, from
    ``n`` conversions), on which a stretch by lambda is a shift by log lambda.

    ``cdf``: the unsmoothed one (:func:`conversion_cdf`, in calibration with the tail of
    :func:`with_fitted_tail`), shape (K + 1,), kept for exposures; ``log_t`` and
    ``F``: the smoothed law on a grid of log days, shape (G,).
    """

    cdf: np.ndarray
    bandwidth: float
    log_t: np.ndarray
    F: np.ndarray

    @classmethod
    def of(cls, cdf: np.ndarray, n: int) -> LogTimeLaw:
        mass = np.diff(np.concatenate([[0.0], cdf]))
        centre = np.log(np.arange(cdf.size) + 0.5)
        keep = mass > 0
        mass, centre = mass[keep] / mass[keep].sum(), centre[keep]
        mean = float(mass @ centre)
        sd = math.sqrt(max(float(mass @ (centre - mean) ** 2), 0.0))
        cum = np.cumsum(mass)
        iqr = float(centre[np.searchsorted(cum, 0.75)] - centre[np.searchsorted(cum, 0.25)])
        spread = min(sd, iqr / 1.349) if iqr > 0 else sd
        # at least a twentieth of a log unit: a pool converting on one day only is still a law
        h = max(0.9 * spread * max(n, 1) ** -0.2, 0.05)
        lo, hi = centre.min() - 6 * h, centre.max() + 6 * h
        log_t = np.linspace(lo, hi, int(min(max((hi - lo) / (h / 8), 200), 4000)))
        F = np.clip(_normal_cdf((log_t[:, None] - centre[None, :]) / h) @ mass, 0.0, 1.0)
        return cls(cdf, h, log_t, F)

    def stretched(self, t: np.ndarray, log_scales: np.ndarray) -> np.ndarray:
        """P(T <= t) for times stretched by exp(log_scales): shape (scales, t)."""
        lt = np.log(np.maximum(np.asarray(t, dtype=float), 1e-300))
        return np.interp(lt[None, :] - log_scales[:, None], self.log_t, self.F, left=0.0, right=1.0)


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr
    return ndtr(z)


def open_non_converter(fit: StageFit, ages: np.ndarray) -> np.ndarray | None:
    """The chance that a lead that does not convert is still open at each of ``ages``
    (days, any shape): sigma + (1 - sigma) (1 - G(a)), G the fitted ``days_lost`` and sigma
    the stalled share. None when losses are not modelled (``lost_observed=False``)."""
    wf, lf = fit.families if len(fit.families) == 2 else (None, None)
    if wf is None or lf is None or fit.theta is None:
        return None
    kw = _NPARAMS[wf]
    g = _cdf(lf, fit.theta[1 + kw:1 + kw + _NPARAMS[lf]], np.asarray(ages, dtype=float))
    return fit.stalled + (1 - fit.stalled) * (1 - g)


def cohort_conversion(data: StageData, law: LogTimeLaw,
                      still_open: Callable[[np.ndarray], np.ndarray] | None = None,
                      centre: float | None = None) -> CohortEstimate:
    """A monthly cohort's conversion, with its own speed, so that faster closing cannot pass
    for higher conversion.

    Each deal of the cohort that converts does so with chance p, at a time T whose law is the
    pooled time to convert (``law``, :class:`LogTimeLaw`: :func:`conversion_cdf` smoothed on
    the log-time scale) stretched by the cohort's factor lambda: P(T <= t) = F0(t / lambda).
    A deal of age a seen converting on day k contributes p (F(k + 1) - F(k)). With
    ``still_open`` (losses recorded: :func:`open_non_converter`, the chance that a lead that
    does not convert is still open at an age), a lost deal contributes 1 - p (it did not
    convert, whenever its conversion would have come) and a deal still open at age a
    p (1 - F(a + 1)) + (1 - p) still_open(a + 1): so a cohort whose wins wait (a queue, a
    slower cycle) but whose losses come as usual is still read as converting as it does.
    Without it, any deal that did not convert contributes 1 - p F(a + 1) (its conversion, if
    any, would not show yet: a cure model, for histories without losses). Young cohorts tell little
    about either, and the two are confounded: a few early conversions are a fast cohort or
    a strong one. So both are integrated over a grid (flat prior on logit p, normal prior
    with sd :data:`SCALE_PRIOR_SD` on log lambda), and the returned variances carry the
    confounding to the drift model, which then weighs such cohorts little.

    With ``centre`` (the pooled conversion's log-odds), the prior on logit p is instead
    normal around it (sd :data:`CENTRE_PRIOR_SD`) and divided out of the posterior's moments
    again (Gaussian approximation, as for the speed): the reading is the cohort's own
    likelihood, approximated where the cohorts lie. Under the flat prior a cohort with few
    deals is read by where its posterior spreads over the grid: 0 wins of 2 gave logit p
    about -5 (the grid's floor is -9), 1 of 2 about 0, so the drift model's average of
    tiny cohorts fell far below their pooled rate (a true 0.25 calibrated at 0.15 on average
    at 2 leads a month). Read around the centre, 0 of 2 and 1 of 2 say -2.6 and +0.1 (near the
    working response of a binomial at 0.25: -2.4 and +0.2), whose average is close to the
    rate (:data:`CENTRE_PRIOR_SD`). Large cohorts read as before to within the
    approximation's error. The site is the likelihood's shape near the centre: where it says
    nothing (under a thousandth of the prior's information) or falls outside two sd of the
    cohort's flat-prior posterior (a cohort far from the pool, whose likelihood is a slope
    near the centre: extrapolated, 2 wins of 10 at a pooled 1% read +6.5), the flat-prior
    posterior is the reading, as before.

    Parameters
    ----------
    data : StageData
        The cohort's deals (``other_ages`` needed); deals under delayed entry must be left out.
    law : LogTimeLaw
        The pooled time to convert.
    """
    if data.other_ages is None:
        raise ValueError("cohort_conversion needs the ages of the deals that did not convert (StageData.other_ages)")
    conv_days, conv_n = np.unique(data.converted.astype(np.int64), return_counts=True)
    other_ages, other_n = np.unique(data.other_ages.astype(float), return_counts=True)
    F = lambda t: law.stretched(t, LOG_SCALES)  # noqa: E731 (shape (scales, t))
    p = (1.0 / (1.0 + np.exp(-LOGITS)))[None, :]
    ll = np.zeros((LOG_SCALES.size, LOGITS.size))
    if conv_days.size:
        dens = np.maximum(F(conv_days + 1.0) - F(conv_days.astype(float)), 1e-300)
        ll += (conv_n * np.log(dens)).sum(axis=1)[:, None] + conv_n.sum() * np.log(p)
    if still_open is not None:
        if data.lost.size:
            ll += data.lost.size * np.log(1.0 - p)
        open_ages, open_n = np.unique(data.open_ages.astype(float), return_counts=True)
        if open_ages.size:
            seen = F(open_ages + 1.0)  # (scales, ages)
            stay = np.asarray(still_open(open_ages + 1.0), dtype=float)[None, :, None]
            ll += np.einsum("j,sjk->sk", open_n, np.log(np.maximum(
                (1.0 - seen[:, :, None]) * p[None, :, :] + stay * (1.0 - p[None, :, :]), 1e-300)))
    elif other_ages.size:
        seen = F(other_ages + 1.0)  # (scales, ages)
        ll += np.einsum("j,sjk->sk", other_n, np.log(np.maximum(1.0 - seen[:, :, None] * p[None, :, :], 1e-300)))
    prior = -0.5 * (LOG_SCALES / SCALE_PRIOR_SD) ** 2
    # a posterior on a single grid point still has the grid's own resolution (step^2 / 12)
    floor_p, floor_s = (LOGITS[1] - LOGITS[0]) ** 2 / 12, (LOG_SCALES[1] - LOG_SCALES[0]) ** 2 / 12

    def conversion(log_prior_p: np.ndarray) -> tuple[float, float]:
        """Posterior mean and variance of logit p, the speed integrated out."""
        t = ll + prior[:, None] + log_prior_p[None, :]
        w = np.exp(t - t.max())
        wp = w.sum(axis=0) / w.sum()
        m = float(wp @ LOGITS)
        return m, max(float(wp @ (LOGITS - m) ** 2), floor_p)

    mp, var_p = conversion(np.zeros(LOGITS.size))  # under the flat prior
    if centre is not None:
        # the working prior inside the grid (a centre past it, from a pooled p near 0 or 1,
        # would leave a prior truncated to the grid's last point, which nothing can divide)
        c = min(max(centre, LOGITS[0] + 4 * CENTRE_PRIOR_SD), LOGITS[-1] - 4 * CENTRE_PRIOR_SD)
        prior_p = -0.5 * ((LOGITS - c) / CENTRE_PRIOR_SD) ** 2
        site, site_var = _divided(*conversion(prior_p), prior_p, LOGITS)
        # the site is the likelihood's shape near the centre; a cohort far from it whose
        # likelihood is a slope there (2 wins of 10 where the pool converts 1%) would be
        # extrapolated along that slope (to log-odds +6.5): where the site falls outside two
        # sd of the cohort's own posterior, that posterior is its reading
        if math.isfinite(site_var) and abs(site - mp) <= 2 * math.sqrt(var_p):
            mp, var_p = site, site_var
    # the speed from the likelihood profiled over p: a young cohort's few conversions are a
    # slow cohort that converts well or a fast one that converts badly, a ridge along which
    # the profile is flat. Integrating p out under a flat prior on its log-odds instead
    # favours the slow end (p near 1 fills most of the log-odds grid): a cohort a few days
    # old read as twice slower than the pool, with a small error.
    profile = ll.max(axis=1) + prior
    ws = np.exp(profile - profile.max())
    ws /= ws.sum()
    ms = float(ws @ LOG_SCALES)
    var_s = max(float(ws @ (LOG_SCALES - ms) ** 2), floor_s)
    # the speed's prior is the same for every cohort: divide it out (Gaussian approximation)
    # so that the drift model, which pools the cohorts, counts it once, not once a cohort; a
    # cohort that says nothing of its speed gets an infinite variance
    # (the prior as the grid holds it: truncated at the grid's ends, its variance is a little
    # below SCALE_PRIOR_SD ** 2); data adding under a thousandth of the prior's information say nothing
    own_s, own_var = _divided(ms, var_s, prior, LOG_SCALES)
    return CohortEstimate(mp, var_p, own_s, own_var)


def _divided(mean: float, var: float, log_prior: np.ndarray, grid: np.ndarray) -> tuple[float, float]:
    """A posterior's ``mean`` and ``var`` over ``grid`` with its Gaussian prior (``log_prior``
    on the grid, as the grid holds it: truncated at its ends) divided out: the likelihood's
    Gaussian approximation, (mean, variance); variance inf (and mean the prior's) where the
    data add under a thousandth of the prior's information."""
    w_prior = np.exp(log_prior - log_prior.max())
    w_prior /= w_prior.sum()
    prior_mean = float(w_prior @ grid)
    prior_var = float(w_prior @ (grid - prior_mean) ** 2)
    precision = 1 / var - 1 / prior_var
    if precision * prior_var <= 1e-3:
        return prior_mean, math.inf
    own_var = 1 / precision
    return own_var * (mean / var - prior_mean / prior_var), own_var
