"""v2 D: what the commission extras take from the won deals, block by block.

SPIFs (D.4) pay per qualifying deal, in the order the deals are won, within a budget;
clawbacks (D.2) need every deal whose customer is lost within the clawback's window. Both
read the sources' deal logs, ``(trial, day, segment, value, rep)`` (the kernels' order within
a source), after the customers have been followed (which gives each deal's loss day).

The order deals are won in: by win day, then, on one day, in the engine's order: the new
leads of each segment in the order of ``segments``, then the open pipeline, each in the
order its kernel books them (only which rep a budget's last payment goes to depends on it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecaster.scenario.model import Scenario

CLAWBACK_COLUMNS = ("win_quota_period", "loss_day", "rep", "base")
"""The columns of a trial's clawback rows (see :func:`book`): the commission period holding
the win, the day the customer is lost [days from start, may be after end], the rep's index and
share x value [currency]."""


@dataclass(frozen=True)
class CommissionDeals:
    """The commission extras' view of the deals, F spifs, G segments, D days.

    ``spif_segments`` (F, G) bool: whose deals qualify; ``spif_per_deal`` and ``spif_rate``
    (F,): the fixed amount [currency] and the share of the value (one of them 0);
    ``spif_min_value`` (F,) [currency]; ``spif_first``, ``spif_last`` (F,): the first and last
    win day that qualify [days from start]; ``spif_budget`` (F,) [currency] (inf: none);
    ``spif_capped`` (F,) bool. ``window``: the clawback's ``within_days`` (-1: no clawback),
    ``share`` its share. ``quota_period_of_day`` (D,): each day's commission period.
    """

    quota_period_of_day: np.ndarray
    spif_segments: np.ndarray
    spif_per_deal: np.ndarray
    spif_rate: np.ndarray
    spif_min_value: np.ndarray
    spif_first: np.ndarray
    spif_last: np.ndarray
    spif_budget: np.ndarray
    spif_capped: np.ndarray
    window: int = -1
    share: float = 1.0

    @property
    def spifs(self) -> bool:
        return self.spif_segments.shape[0] > 0

    @property
    def clawback(self) -> bool:
        return self.window >= 0

    @classmethod
    def of(cls, sc: Scenario, quota_period_of_day: np.ndarray) -> CommissionDeals | None:
        """The scenario's, or None when its plan has neither spifs nor a clawback."""
        plan = sc.commission
        if plan is None or not (plan.spifs or plan.clawback):
            return None
        spifs, names = plan.spifs, list(sc.segment_names)
        segments = np.zeros((len(spifs), len(names)), dtype=bool)
        for f, spif in enumerate(spifs):
            segments[f, [names.index(s) for s in spif.segments]] = True

        def day(d, default):
            return default if d is None else (d - sc.start).days

        return cls(quota_period_of_day=quota_period_of_day, spif_segments=segments,
                   spif_per_deal=np.array([s.per_deal or 0.0 for s in spifs]),
                   spif_rate=np.array([s.rate or 0.0 for s in spifs]),
                   spif_min_value=np.array([s.min_value for s in spifs]),
                   spif_first=np.array([day(s.start, 0) for s in spifs], dtype=np.int64),
                   spif_last=np.array([day(s.end, sc.days - 1) for s in spifs], dtype=np.int64),
                   spif_budget=np.array([np.inf if s.budget is None else s.budget for s in spifs]),
                   spif_capped=np.array([s.capped for s in spifs], dtype=bool),
                   window=-1 if plan.clawback is None else plan.clawback.within_days,
                   share=1.0 if plan.clawback is None else plan.clawback.share)


def won_in_order(logs: list, losses: list) -> tuple[np.ndarray, ...]:
    """Every source's deals of a block as one log, in the order they are won (see the module's
    docstring): (trial, day, segment, value, rep, loss day or -1)."""
    parts = [tuple(np.asarray(a) for a in log) for log in logs]
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, np.zeros(0), empty, empty
    trial, day, segment, value, rep = (np.concatenate([p[i] for p in parts]) for i in range(5))
    loss = np.concatenate([lo if lo.shape[0] else np.full(p[0].shape[0], -1, dtype=np.int64)
                           for p, lo in zip(parts, losses)]) if losses else np.full(trial.shape[0], -1, np.int64)
    key = trial.astype(np.int64) * (int(day.max(initial=0)) + 1) + day.astype(np.int64)
    order = np.argsort(key, kind="stable")
    return (trial[order].astype(np.int64), day[order].astype(np.int64), segment[order].astype(np.int64),
            value[order].astype(float), rep[order].astype(np.int64), loss[order].astype(np.int64))


def spif_payments(deals: CommissionDeals, won: tuple, free: np.ndarray, capped: np.ndarray) -> None:
    """Add each spif's payments to the rep's commission period of the win: ``capped`` for the
    spifs with ``capped: true``, ``free`` for the others, each (trials, commission periods,
    reps) [currency].

    A qualifying deal pays ``per_deal`` or ``rate`` x value; with a budget B, the deals of a
    trial are paid in the order they are won, each min(its amount, B - what the earlier ones
    were paid, at least 0), so that the spif pays min(sum of amounts, B) in all.
    """
    trial, day, segment, value, rep, _ = won
    for f in range(deals.spif_segments.shape[0]):
        q = (deals.spif_segments[f][segment] & (day >= deals.spif_first[f]) & (day <= deals.spif_last[f])
             & (value >= deals.spif_min_value[f]) & (rep >= 0))
        t, d, v, r = trial[q], day[q], value[q], rep[q]
        amount = deals.spif_rate[f] * v if deals.spif_rate[f] > 0 else np.full(v.shape[0], deals.spif_per_deal[f])
        if np.isfinite(deals.spif_budget[f]) and t.shape[0]:
            total = np.cumsum(amount)
            before = total - amount  # paid to the earlier deals of the block, before the budget
            first = np.r_[True, t[1:] != t[:-1]]
            before -= before[first][np.cumsum(first) - 1]  # ... of the same trial
            amount = np.clip(deals.spif_budget[f] - before, 0.0, amount)
        np.add.at(capped if deals.spif_capped[f] else free, (t, deals.quota_period_of_day[d], r), amount)


def clawback_rows(deals: CommissionDeals, won: tuple, rows: np.ndarray) -> None:
    """Into ``rows`` (an object array, one slot per trial of the block), each trial's deals
    whose customer is lost within the window (loss day - win day <= ``within_days``), as a
    float array (deals, 4) of :data:`CLAWBACK_COLUMNS`; the clawbacks' amounts need each
    rep's commission rate, which the results layer applies
    (:func:`forecaster.results.commission.clawbacks`)."""
    trial, day, _, value, rep, loss = won
    q = (loss >= 0) & (loss - day <= deals.window) & (rep >= 0)
    t = trial[q]
    table = np.column_stack([deals.quota_period_of_day[day[q]], loss[q], rep[q], deals.share * value[q]]).astype(float)
    bounds = np.flatnonzero(np.diff(t)) + 1
    for part_t, part in zip(np.split(t, bounds), np.split(table, bounds)):
        if part_t.shape[0]:
            rows[int(part_t[0])] = np.concatenate([rows[int(part_t[0])], part])
