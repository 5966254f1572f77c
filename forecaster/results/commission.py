"""Tiered commission with a cap, from each rep's bookings per commission period."""
from __future__ import annotations

import numpy as np

from forecaster.scenario.model import Commission


def commission_per_quota_period(bookings: np.ndarray, quotas: np.ndarray, commission: Commission) -> np.ndarray:
    """Commission earned on each rep's bookings in each commission period.

    With quota q and bookings b, the band from ``up_to`` u1 to u2 pays
    ``rate * (min(b, u2 q) - u1 q)`` where b exceeds u1 q (the first band starts at 0, the
    last has no upper end); reaching a band with ``backdate`` (v2 D.1) also pays the
    bookings below it at its rate (see :func:`_backdated`); the sum is then capped at ``cap``.

    Parameters
    ----------
    bookings : ndarray, shape (trials, commission periods, reps)
        Value won by each rep in each commission period. [currency]
    quotas : ndarray, shape (reps,)
        Quota per commission period. [currency]
    commission : Commission

    Returns
    -------
    ndarray, shape (trials, commission periods, reps)
        Commission. [currency]
    """
    earned = _marginal(bookings, quotas, commission.tiers)
    if commission.backdated:
        earned += _backdated(bookings, quotas, commission.tiers)
    if commission.cap is not None:
        np.minimum(earned, commission.cap, out=earned)
    return earned


def _marginal(bookings: np.ndarray, quotas: np.ndarray, tiers: tuple) -> np.ndarray:
    """v1's marginal commission of ``bookings`` (any shape ending in reps), before ``cap``."""
    earned = np.zeros_like(bookings, dtype=float)
    lower = 0.0
    for tier in tiers:
        upper = np.inf if tier.up_to is None else tier.up_to
        width = (upper - lower) * quotas
        band = np.clip(bookings - lower * quotas, 0.0, width)
        earned += tier.rate * band
        lower = upper
    return earned


def _backdated(bookings: np.ndarray, quotas: np.ndarray, tiers: tuple) -> np.ndarray:
    """What backdated bands (v2 D.1) add to the marginal commission, before ``cap``.

    Bookings b in band k (u_{k-1} q < b <= u_k q) with j the highest band <= k with
    ``backdate`` are paid rate_j u_{j-1} q + sum_{i=j..k} rate_i (min(b, u_i q) - u_{i-1} q):
    the marginal commission of b, minus the marginal commission of the lower edge L_j =
    u_{j-1} q, plus rate_j L_j."""
    extra = np.zeros_like(bookings, dtype=float)
    lower = 0.0
    j_rate, j_lower = None, 0.0  # the backdated band in force and its lower edge (fraction of quota)
    for tier in tiers:
        upper = np.inf if tier.up_to is None else tier.up_to
        if tier.backdate:
            j_rate, j_lower = tier.rate, lower
        if j_rate is not None:
            edge = j_lower * quotas
            in_band = (bookings > lower * quotas) & (bookings <= upper * quotas)
            lift = j_rate * edge - _marginal(np.broadcast_to(edge, bookings.shape[-1:]), quotas, tiers)
            extra += np.where(in_band, lift, 0.0)
        lower = upper
    return extra


def commission_by_period(earned: np.ndarray, earn_period: np.ndarray, n_periods: int) -> np.ndarray:
    """Place each commission period's commission in the reporting period it is paid in.

    Parameters
    ----------
    earned : ndarray, shape (trials, commission periods, reps)
    earn_period : ndarray of int, shape (commission periods,)
        Reporting period holding the day each commission period closes (or ``end``).
    n_periods : int

    Returns
    -------
    ndarray, shape (trials, periods, reps)
    """
    out = np.zeros((earned.shape[0], n_periods, earned.shape[2]))
    for c, p in enumerate(earn_period):
        out[:, p, :] += earned[:, c, :]
    return out
