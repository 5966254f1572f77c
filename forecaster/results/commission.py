"""Tiered commission with a cap, from each rep's bookings per commission period."""
from __future__ import annotations

import numpy as np

from forecaster.scenario.model import Commission


def commission_per_quota_period(bookings: np.ndarray, quotas: np.ndarray, commission: Commission) -> np.ndarray:
    """Commission earned on each rep's bookings in each commission period.

    With quota q and bookings b, the band from ``up_to`` u1 to u2 pays
    ``rate * (min(b, u2 q) - u1 q)`` where b exceeds u1 q (the first band starts at 0, the
    last has no upper end); the sum is then capped at ``cap``.

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
    earned = np.zeros_like(bookings, dtype=float)
    lower = 0.0
    for tier in commission.tiers:
        upper = np.inf if tier.up_to is None else tier.up_to
        width = (upper - lower) * quotas
        band = np.clip(bookings - lower * quotas, 0.0, width)
        earned += tier.rate * band
        lower = upper
    if commission.cap is not None:
        np.minimum(earned, commission.cap, out=earned)
    return earned


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
