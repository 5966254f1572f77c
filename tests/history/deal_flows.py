"""Synthetic CRM deal histories with known truths, for the estimator's tests (test_immaturity,
test_thinned_arrivals): a one-stage funnel's deals drawn as they will end (``draw_flow``),
then shown as an export on a given day shows them (``export``).

Units: dates are calendar days and every time to close a whole number of days; month m is
the m-th calendar month from START (2024-01-01, month 0); ``leads`` is the mean number of
deals entering month 0 (month m's count is Poisson with mean ``leads * (1 + growth) ** m``),
each on a uniform day of its month; ``growth`` is a rate a month (0.06: 6% more leads each
month); shares are fractions of deals (0.25: a quarter); every deal's amount is 1,000 (in
the history's currency), its segment "all".

Draws are from a numpy Generator passed in, in a fixed order: a test's seed gives the same
deals on every run. (Not history_tables.py: that one must run on the standard library
alone, as .ci/postgres.sh falls back to the system python3 when the venv is not there yet,
and it writes raw CRM rows, not Deals.)
"""
from __future__ import annotations

import math
from collections import Counter
from datetime import date, timedelta

from forecaster.history.readers import Deal

START = date(2024, 1, 1)

Arrival = tuple[date, str, date | None]
"""A deal as it will end: (entered, outcome won | lost | open, closed day or None if never)."""


def draw_flow(rng, months: int, leads: float = 400.0, growth: float = 0.0, lost_observed: bool = True,
              stall: float | None = 0.0, fast_share: bool = False) -> list[Arrival]:
    """Every deal of a one-stage funnel from START for ``months`` months, in the order they
    are drawn (month by month), as it will end. ``leads * (1 + growth) ** m`` deals enter in
    month m on average. A share ``stall`` never closes; of the others 25% are won after a
    lognormal 45 days (median; sigma 0.8), the rest lost after a lognormal 30 days (sigma
    0.9), or never closed when ``lost_observed`` is false (losses not recorded).

    ``stall=None`` draws nothing for stalling, where 0.0 draws one number a deal that never
    stalls it: from one seed the two give different histories (test_immaturity's are drawn
    with None, test_thinned_arrivals' with 0.0).

    ``fast_share``: each monthly cohort instead wins a share drawn for it (uniform 0.05-0.95)
    of its wins after a lognormal 10 days (sigma 0.3) and the rest after a lognormal 100 days
    (sigma 0.3), so that what a young cohort shows says little of how it ends."""
    out: list[Arrival] = []
    for m in range(months):
        first = date(START.year + m // 12, m % 12 + 1, 1)
        days = (date(first.year + first.month // 12, first.month % 12 + 1, 1) - first).days
        fast = rng.uniform(0.05, 0.95) if fast_share else None
        for _ in range(rng.poisson(leads * (1 + growth) ** m)):
            entered = first + timedelta(days=int(rng.integers(0, days)))
            if stall is not None and rng.random() < stall:
                out.append((entered, "open", None))
            elif rng.random() < 0.25:
                if fast is None:
                    t = rng.lognormal(math.log(45), 0.8)
                else:
                    t = rng.lognormal(math.log(10), 0.3) if rng.random() < fast else rng.lognormal(math.log(100), 0.3)
                out.append((entered, "won", entered + timedelta(days=int(t))))
            elif lost_observed:
                out.append((entered, "lost", entered + timedelta(days=int(rng.lognormal(math.log(30), 0.9)))))
            else:
                out.append((entered, "open", None))
    return out


def _ids(flow: list[Arrival], ids: str) -> list[str]:
    """``running``: d0, d1, ... by place in the flow. ``monthly``: d{m}-{i}, the i-th deal
    drawn in month m from START (every deal counted, shown or not; the flow must run from
    START month by month, as ``draw_flow`` draws it)."""
    if ids == "running":
        return [f"d{i}" for i in range(len(flow))]
    if ids != "monthly":
        raise ValueError(f"ids: running or monthly, not {ids!r}")
    seen: Counter[int] = Counter()
    out = []
    for entered, _, _ in flow:
        m = (entered.year - START.year) * 12 + entered.month - START.month
        out.append(f"d{m}-{seen[m]}")
        seen[m] += 1
    return out


def export(flow: list[Arrival], as_of: date, *, closes_from: date | None = None,
           drop_closed_before: date | None = None, ids: str = "running") -> list[Deal]:
    """The deals as an export on ``as_of`` shows them: those entered by then, a deal closed
    after it still open. ``drop_closed_before``: an export that starts mid-stream (deals
    closed before that day are missing). ``closes_from``: a CRM that records closes only
    from that day (earlier closes stay open, the deal kept). ``ids``: how deals are named,
    ``running`` (d0, d1, ...) or ``monthly`` (d{month}-{i}, see ``_ids``)."""
    deals = []
    for name, (entered, outcome, closed) in zip(_ids(flow, ids), flow):
        if entered > as_of:
            continue
        if drop_closed_before is not None and closed is not None and closed < drop_closed_before:
            continue
        if closed is None or closed > as_of or (closes_from is not None and closed < closes_from):
            outcome, closed = "open", None
        deals.append(Deal(name, "all", [entered], outcome, closed, 1000.0))
    return deals
