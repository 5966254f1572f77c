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
from dataclasses import dataclass, field

import numpy as np

FAMILIES = ("lognormal", "gamma", "weibull", "exponential")
_NPARAMS = {"lognormal": 2, "gamma": 2, "weibull": 2, "exponential": 1}


@dataclass
class StageData:
    """Durations in whole days since a stage was entered (each array shape (n,)).

    ``converted``/``lost``: day of the event; ``open_ages``: age of deals still open;
    ``ages``: optional, the age on the as-of date of every deal that entered (converted,
    lost and open alike), for :func:`conversion_exposure`.
    """

    converted: np.ndarray
    lost: np.ndarray
    open_ages: np.ndarray
    lost_observed: bool = True
    ages: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.converted.size + self.lost.size + self.open_ages.size


@dataclass
class StageFit:
    """A fitted stage: conversion and the time families, with what they came from."""

    p: float
    p_se: float
    days: tuple            # (family, params dict)
    days_lost: tuple | None
    aic: float
    counts: dict = field(default_factory=dict)
    families: tuple = ()
    theta: np.ndarray | None = None  # the optimiser's parameters: logit p, then the families' (log scale)


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
        return np.array([math.log(m)])
    if family == "lognormal":
        logs = np.log(d)
        return np.array([float(np.median(logs)), math.log(max(float(np.std(logs)), 0.2))])
    cv = max(float(np.std(d)) / m, 0.2)
    if family == "gamma":
        return np.array([math.log(m), math.log(1 / cv ** 2)])
    return np.array([math.log(m), math.log(max(1.2 / cv, 0.3))])


def _tally(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whole-day durations as (distinct values, counts): the likelihood is the same."""
    return np.unique(x, return_counts=True) if x.size else (x, np.zeros(0, dtype=int))


def _loglik(data: StageData, wf: str, lf: str | None, x: np.ndarray, tallies) -> float:
    (kc, nc), (kl, nl), (ko, no) = tallies
    logit, rest = x[0], x[1:]
    p = 1.0 / (1.0 + math.exp(-logit))
    kw = _NPARAMS[wf]
    won, lost = rest[:kw], rest[kw:]
    tiny = 1e-300
    ll = 0.0
    if kc.size:
        ll += nc.sum() * math.log(max(p, tiny))
        ll += float(np.sum(nc * np.log(np.maximum(_cdf(wf, won, kc + 1.0) - _cdf(wf, won, kc), tiny))))
    s_won = 1.0 - _cdf(wf, won, ko) if ko.size else np.zeros(0)
    if lf is not None:
        if kl.size:
            ll += nl.sum() * math.log(max(1 - p, tiny))
            ll += float(np.sum(nl * np.log(np.maximum(_cdf(lf, lost, kl + 1.0) - _cdf(lf, lost, kl), tiny))))
        s_lost = 1.0 - _cdf(lf, lost, ko) if ko.size else np.zeros(0)
    else:
        s_lost = np.ones_like(s_won)
    if ko.size:
        ll += float(np.sum(no * np.log(np.maximum(p * s_won + (1 - p) * s_lost, tiny))))
    return ll


def _se_of_logit_p(f, x: np.ndarray) -> float:
    """Standard error of logit p from the curvature of the log-likelihood (profiled)."""
    h = 1e-3
    fx = f(x)
    up, dn = x.copy(), x.copy()
    up[0] += h
    dn[0] -= h
    curv = (f(up) - 2 * fx + f(dn)) / h ** 2  # of the negative log-likelihood
    return 1 / math.sqrt(curv) if curv > 0 else float("inf")


def fit_stage(data: StageData, families=FAMILIES) -> StageFit:
    """Maximum-likelihood fit of one stage (see the module docstring)."""
    from scipy.optimize import minimize

    if data.converted.size == 0:
        raise ValueError("no deal converted out of this stage: its conversion and time cannot be fitted")
    best = None
    tallies = (_tally(data.converted), _tally(data.lost), _tally(data.open_ages))
    lost_families = list(families) if data.lost_observed and data.lost.size else [None]
    for wf in families:
        for lf in lost_families:
            resolved = data.converted.size + (data.lost.size if data.lost_observed else 0)
            p0 = min(max(data.converted.size / max(resolved, 1), 0.02), 0.98)
            x0 = np.concatenate([[math.log(p0 / (1 - p0))], _start(wf, data.converted.astype(float)),
                                 _start(lf, data.lost.astype(float)) if lf else []])

            def nll(x, wf=wf, lf=lf):
                v = -_loglik(data, wf, lf, x, tallies)
                return v if math.isfinite(v) else 1e300

            res = minimize(nll, x0, method="Nelder-Mead",
                           options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-8})
            k = len(x0)
            aic = 2 * k + 2 * res.fun
            if best is None or aic < best[0]:
                best = (aic, wf, lf, res.x, nll)
    aic, wf, lf, x, nll = best
    p = 1 / (1 + math.exp(-x[0]))
    se_logit = _se_of_logit_p(nll, x)
    p_se = p * (1 - p) * se_logit
    kw = _NPARAMS[wf]
    return StageFit(p=p, p_se=p_se, days=(wf, scenario_params(wf, x[1:1 + kw])),
                    days_lost=(lf, scenario_params(lf, x[1 + kw:])) if lf else None, aic=aic,
                    counts={"converted": int(data.converted.size), "lost": int(data.lost.size),
                            "open": int(data.open_ages.size)}, families=(wf, lf), theta=x)


def conversion_cdf(data: StageData) -> np.ndarray:
    """The time to convert among converting deals, without assuming a family.

    The Aalen-Johansen estimate of the cumulative incidence of conversion (losses compete,
    open deals are censored), divided by its final value: ``F[k]`` is the probability that
    a deal that converts does so on day k or before. A deal open at age a has come through
    days 0..a. Shape (T + 1,), T the longest duration or age seen.
    """
    conv = data.converted.astype(np.int64)
    lost = data.lost.astype(np.int64) if data.lost_observed else np.zeros(0, dtype=np.int64)
    ages = data.open_ages.astype(np.int64)
    T = int(max(conv.max(initial=0), lost.max(initial=0), ages.max(initial=0)))
    c = np.bincount(conv, minlength=T + 1)
    lo = np.bincount(lost, minlength=T + 1)
    leaving = c + lo + np.bincount(ages, minlength=T + 1)  # at risk on day t: events on t or later, ages >= t
    at_risk = np.cumsum(leaving[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        h_c = np.where(at_risk > 0, c / at_risk, 0.0)
        h_l = np.where(at_risk > 0, lo / at_risk, 0.0)
    surv = np.concatenate([[1.0], np.cumprod(1 - h_c - h_l)[:-1]])  # open at the start of day t
    cif = np.cumsum(surv * h_c)
    return cif / cif[-1] if cif[-1] > 0 else np.ones(T + 1)


def conversion_exposure(data: StageData, cdf: np.ndarray) -> float:
    """How many deals' conversions could already show, counting each by its chance.

    A deal of age a (whole days) that converts is seen converted by the as-of date with
    probability F(a) (``cdf``, from :func:`conversion_cdf`; 1 beyond its end); so the
    conversions observed have mean p * sum F(a_i) over every deal that entered, whatever
    the losses. That sum is the exposure: conversions / exposure estimates p without
    counting open deals as lost, and it equals the number of deals when none is still
    open. Needs ``data.ages``.
    """
    if data.ages is None:
        raise ValueError("conversion_exposure needs the ages of every deal (StageData.ages)")
    return float(np.sum(cdf[np.minimum(data.ages.astype(np.int64), cdf.size - 1)]))
