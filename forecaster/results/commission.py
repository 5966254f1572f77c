"""Tiered commission with a cap, from each rep's bookings per commission period, and the
commission extras of v2 D (spifs, clawbacks, draws, commission expense)."""
from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from forecaster.scenario.model import Commission, Scenario


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


# --- v2 D: spifs, clawbacks, draws, net commission and its expense ---------------------------

EXTRA_VARIABLES = {
    # name: (dims after trial, meaning); each present only where :func:`extra_names` says
    "spif": (("period", "rep"), "spif payments, in the period the commission period of the win closes (D.4)"),
    "clawback": (("period", "rep"), "commission taken back on deals whose customer is lost within the window, at "
                                    "the rate it was paid, when the commission period of the loss closes (D.2)"),
    "clawback_after_end": (("rep",), "clawbacks of losses after end, within the window (D.2)"),
    "net_commission": (("period", "rep"), "commission + spif - clawback (D.5)"),
    "payout": (("period", "rep"), "what the rep is paid: the draw, or the net earnings net of the draws still "
                                  "owed (D.3)"),
    "draw_balance": (("rep",), "recoverable advances not yet recovered at end (D.3)"),
    "commission_expense": (("period",), "net commission expensed over amortize_months from the day it is earned "
                                        "(D.5)"),
    "commission_expense_by_rep": (("period", "rep"), "commission_expense of each rep (D.5)"),
}
"""The commission extras' per-trial variables (v2 D.6), [currency] each."""


def extra_names(sc: Scenario) -> tuple:
    """The names of :data:`EXTRA_VARIABLES` a scenario reports (none without a plan)."""
    plan = sc.commission
    if plan is None:
        return ()
    draws = plan.draw is not None or any(r.draw is not None for r in sc.reps)
    wanted = {"spif": bool(plan.spifs), "clawback": plan.clawback is not None,
              "clawback_after_end": plan.clawback is not None,
              "net_commission": bool(plan.spifs) or plan.clawback is not None,
              "payout": draws, "draw_balance": draws,
              "commission_expense": plan.amortize_months is not None,
              "commission_expense_by_rep": plan.amortize_months is not None}
    return tuple(name for name in EXTRA_VARIABLES if wanted[name])


def draw_schedule(sc: Scenario, n_quota_periods: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each rep's draw (v2 D.3): the amount d_t per commission period, shape (C, R)
    [currency], whether it is recoverable (R,), and whether the rep has a draw at all (R,)
    (a rep's own replaces the plan's)."""
    plan = sc.commission
    R = len(sc.reps)
    amount, recoverable, has = np.zeros((n_quota_periods, R)), np.zeros(R, dtype=bool), np.zeros(R, dtype=bool)
    for r, rep in enumerate(sc.reps):
        draw = rep.draw or (plan.draw if plan is not None else None)
        if draw is None:
            continue
        has[r], recoverable[r] = True, draw.recoverable
        periods = n_quota_periods if draw.periods is None else min(draw.periods, n_quota_periods)
        amount[:periods, r] = draw.amount
    return amount, recoverable, has


def draws(earnings: np.ndarray, amount: np.ndarray, recoverable: np.ndarray,
          has: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Payouts and the final balance of draws (v2 D.3), commission period after period.

    With net earnings e_t and draw d_t: recoverable, payout_t = max(d_t, e_t - B_t) and
    B_{t+1} = B_t + payout_t - e_t from B_0 = 0 (B: the advances still owed);
    non-recoverable, payout_t = max(d_t, e_t) and B stays 0. A rep without a draw is paid e_t.

    Parameters
    ----------
    earnings : ndarray, shape (trials, commission periods, reps) [currency]
    amount : ndarray, shape (commission periods, reps) [currency]
    recoverable, has : ndarray of bool, shape (reps,)

    Returns
    -------
    payout : ndarray, shape (trials, commission periods, reps) [currency]
    balance : ndarray, shape (trials, reps): B after the last period [currency]
    """
    payout = np.empty_like(earnings)
    balance = np.zeros((earnings.shape[0], earnings.shape[2]))
    for c in range(earnings.shape[1]):
        e = earnings[:, c, :]
        paid = np.where(recoverable, np.maximum(amount[c], e - balance), np.maximum(amount[c], e))
        payout[:, c, :] = np.where(has, paid, e)
        balance = np.where(recoverable, balance + payout[:, c, :] - e, 0.0)
    return payout, balance


def clawbacks(rows: np.ndarray, earned: np.ndarray, base: np.ndarray, quota_period_of_day: np.ndarray,
              ) -> tuple[np.ndarray, np.ndarray]:
    """The clawbacks (v2 D.2) of each trial's lost deals.

    A deal of ``base`` = share x V, won in commission period c by rep r, is taken back at
    rate earned[c, r] / base[c, r] (the commission after cap over what the plan paid on; 0
    where that is 0), in the commission period holding its loss day, or after end.

    Parameters
    ----------
    rows : object ndarray, shape (trials,)
        Each trial's float array (deals, 4) of
        :data:`forecaster.engine.deals.CLAWBACK_COLUMNS`.
    earned, base : ndarray, shape (trials, commission periods, reps) [currency]
    quota_period_of_day : ndarray of int, shape (days,)

    Returns
    -------
    by_quota_period : ndarray, shape (trials, commission periods, reps) [currency]
    after_end : ndarray, shape (trials, reps) [currency]
    """
    T, C, R = earned.shape
    out, after = np.zeros((T, C, R)), np.zeros((T, R))
    sizes = np.array([a.shape[0] for a in rows], dtype=np.int64)
    if not sizes.sum():
        return out, after
    table = np.concatenate(list(rows))
    t = np.repeat(np.arange(T), sizes)
    c, x, r = (table[:, k].astype(np.int64) for k in range(3))
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(base > 0, earned / base, 0.0)
    amount = table[:, 3] * rate[t, c, r]
    inside = x < quota_period_of_day.shape[0]
    np.add.at(out, (t[inside], quota_period_of_day[x[inside]], r[inside]), amount[inside])
    np.add.at(after, (t[~inside], r[~inside]), amount[~inside])
    return out, after


def expense_weights(earn_days: list, months: int, start: date, days: int, period_of_day: np.ndarray,
                    n_periods: int) -> np.ndarray:
    """What share of each commission period's net commission is expensed in each reporting
    period (v2 D.5), shape (commission periods, periods).

    Earned on day c (the period's last day within the horizon), it is expensed on day c with
    ``months`` 0, otherwise evenly per day over the L = add_months(c, months) - c days c, ...,
    c + L - 1; days after end are not reported.
    """
    from forecaster.scenario.customers import add_months

    out = np.zeros((len(earn_days), n_periods))
    for k, c in enumerate(earn_days):
        c = int(c)
        if months == 0:
            out[k, period_of_day[c]] = 1.0
            continue
        day = start + timedelta(days=c)
        length = (add_months(day, months) - day).days
        inside = np.arange(c, min(c + length, days))
        np.add.at(out[k], period_of_day[inside], 1.0 / length)
    return out


def commission_extras(sc: Scenario, earned: np.ndarray, base: np.ndarray, free: np.ndarray | None,
                      capped: np.ndarray | None, rows: np.ndarray | None, *, earn_period: np.ndarray,
                      n_periods: int, quota_period_of_day: np.ndarray, quota_last_day: np.ndarray,
                      period_of_day: np.ndarray) -> dict:
    """The commission extras (v2 D) of a chunk of trials: the variables of
    :func:`extra_names`, from the commission per commission period ``earned`` (after cap) and
    what the plan paid on (``base``), both (trials, commission periods, reps), the spifs'
    payments ``free`` and ``capped`` and the clawback ``rows`` of
    :meth:`forecaster.engine.plan.Plan.commission_buffers` (None: not in the plan).

    A capped spif's payments in a commission period are cut to what ``cap`` leaves above the
    commission (D.4). Amounts by commission period are reported where commission is: in the
    reporting period holding the commission period's last day within the horizon.
    """
    names = extra_names(sc)
    plan = sc.commission
    assert plan is not None
    T, C, R = earned.shape
    spif = np.zeros((T, C, R))
    if free is not None and capped is not None:
        room = capped if plan.cap is None else np.minimum(capped, np.maximum(plan.cap - earned, 0.0))
        spif = free + room
    claw, after = np.zeros((T, C, R)), np.zeros((T, R))
    if rows is not None:
        claw, after = clawbacks(rows, earned, base, quota_period_of_day)
    net = earned + spif - claw

    def placed(x):
        return commission_by_period(x, earn_period, n_periods)

    out = {}
    if "spif" in names:
        out["spif"] = placed(spif)
    if "clawback" in names:
        out["clawback"], out["clawback_after_end"] = placed(claw), after
    if "net_commission" in names:
        out["net_commission"] = placed(net)
    if "payout" in names:
        payout, balance = draws(net, *draw_schedule(sc, C))
        out["payout"], out["draw_balance"] = placed(payout), balance
    if "commission_expense" in names:
        assert plan.amortize_months is not None
        weights = expense_weights(list(quota_last_day), plan.amortize_months, sc.start, sc.days, period_of_day,
                                  n_periods)
        by_rep = np.einsum("tcr,cp->tpr", net, weights)
        out["commission_expense_by_rep"], out["commission_expense"] = by_rep, by_rep.sum(axis=2)
    return out
