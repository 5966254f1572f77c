"""Days, reporting periods and commission periods of a horizon.

Day indices count from ``start`` (day 0) to ``end`` (day D - 1). Periods are calendar
periods (weeks start on Monday; quarters on 1 January, April, July, October, or, with a
fiscal year starting in month ``fiscal_year_start``, on the first of that month and every
third month after it) cut to the horizon: each is named by its first day *within* the
horizon. A fiscal year is named by the calendar year it ends in (a year from April 2026 to
March 2027 is FY27; with January starts, FY26 is 2026).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

_NS_FIRST = np.datetime64("1677-09-22", "D")
_NS_LAST = np.datetime64("2262-04-11", "D")


def month_of_quarter(month: int, fiscal_year_start: int = 1) -> int:
    """1, 2 or 3: the place of calendar ``month`` (1-12) in its (fiscal) quarter."""
    return (month - fiscal_year_start) % 3 + 1


def fiscal_quarter(day: date, fiscal_year_start: int = 1) -> tuple[int, int]:
    """(fiscal year, quarter 1-4) holding ``day``; the year is the calendar year the fiscal
    year ends in."""
    year = day.year + (1 if fiscal_year_start > 1 and day.month >= fiscal_year_start else 0)
    return year, (day.month - fiscal_year_start) % 12 // 3 + 1


def quarter_label(day: date, fiscal_year_start: int = 1) -> str:
    """``FY27 Q1``: the fiscal quarter holding ``day`` (two-digit year, as finance writes it)."""
    year, quarter = fiscal_quarter(day, fiscal_year_start)
    return f"FY{year % 100:02d} Q{quarter}"


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def period_name(day: date, kind: str, fiscal_year_start: int | None = None) -> str:
    """The period of ``kind`` starting on ``day``, as a reader says it: ``Jan 2027`` (month),
    ``Q1 2027`` (calendar quarter), ``FY27 Q1`` (with a fiscal year, :func:`quarter_label`),
    ``4 Jan 2027`` (week, day)."""
    if kind == "month":
        return f"{_MONTHS[day.month - 1]} {day.year}"
    if kind == "quarter":
        if fiscal_year_start is not None:
            return quarter_label(day, fiscal_year_start)
        return f"Q{(day.month - 1) // 3 + 1} {day.year}"
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def with_fiscal_quarter(label: str, kind: str, fiscal_year_start: int | None) -> str:
    """A period's ISO label with its fiscal quarter (``2027-02-01 FY28 Q1``) when periods are
    quarters of a fiscal year; otherwise (or for a label that is not a date) the label."""
    if fiscal_year_start is None or kind != "quarter":
        return label
    try:
        return f"{label} {quarter_label(date.fromisoformat(label), fiscal_year_start)}"
    except (TypeError, ValueError):
        return label


def period_start(day: date, kind: str, fiscal_year_start: int = 1) -> date:
    """First calendar day of the ``kind`` period holding ``day`` (quarters of the fiscal year
    starting in month ``fiscal_year_start``, 1-12)."""
    if kind == "day":
        return day
    if kind == "week":
        return day - timedelta(days=day.weekday())
    if kind == "month":
        return day.replace(day=1)
    if kind == "quarter":
        back = month_of_quarter(day.month, fiscal_year_start) - 1
        month, year = day.month - back, day.year
        if month < 1:
            month, year = month + 12, year - 1
        return date(year, month, 1)
    raise ValueError(kind)


def period_end(day: date, kind: str, fiscal_year_start: int = 1) -> date:
    """Last calendar day of the ``kind`` period holding ``day``.

    A week holding the last days of 9999 ends on ``date.max`` (9999-12-31): past it there
    are no dates, and every period is cut to the horizon anyway; so does a fiscal quarter
    that would end in 10000.
    """
    if kind == "day":
        return day
    if kind == "week":
        first = period_start(day, kind)
        return first + timedelta(days=6) if (date.max - first).days >= 6 else date.max
    if kind not in ("month", "quarter"):
        raise ValueError(kind)
    first = period_start(day, kind, fiscal_year_start)
    last_month = first.month + (0 if kind == "month" else 2)
    year = first.year + (last_month - 1) // 12
    last_month = (last_month - 1) % 12 + 1
    if last_month == 12:
        return date(year, 12, 31)
    if year > date.max.year:
        return date.max
    return date(year, last_month + 1, 1) - timedelta(days=1)


@dataclass(frozen=True)
class Periods:
    """A partition of the horizon's days into calendar periods.

    Attributes
    ----------
    starts : list of date
        First day of each period within the horizon, shape (periods,).
    of_day : ndarray of int64
        Period index of each day, shape (days,).
    last_day : ndarray of int64
        Index of each period's last day within the horizon, shape (periods,).
    """

    starts: list[date]
    of_day: np.ndarray
    last_day: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def datetimes(self) -> np.ndarray:
        """The period starts as datetime64[ns], which holds 1677-09-22 to 2262-04-11 only
        (numpy would wrap a date outside silently): raises OverflowError then."""
        days = np.array(self.starts, dtype="datetime64[D]")
        if len(days) and (days.min() < _NS_FIRST or days.max() > _NS_LAST):
            raise OverflowError(f"periods from {self.starts[0]} to {self.starts[-1]} cannot be held as "
                                "nanosecond datetimes (1677-09-22 to 2262-04-11)")
        return days.astype("datetime64[ns]")


def periods(start: date, end: date, kind: str, fiscal_year_start: int = 1) -> Periods:
    """Partition ``start..end`` (inclusive) into ``kind`` periods (quarters of the fiscal
    year starting in month ``fiscal_year_start``)."""
    n = (end - start).days + 1
    starts: list[date] = []
    last: list[int] = []
    of_day = np.empty(n, dtype=np.int64)
    day, i = start, 0
    while day <= end:
        stop = min(period_end(day, kind, fiscal_year_start), end)
        length = (stop - day).days + 1
        of_day[i:i + length] = len(starts)
        starts.append(day)
        i += length
        last.append(i - 1)
        if stop == end:  # also where end is date.max and there is no next day
            break
        day = stop + timedelta(days=1)
    return Periods(starts, of_day, np.array(last, dtype=np.int64))


def days_in_month(day: date) -> int:
    return (period_end(day, "month") - day.replace(day=1)).days + 1


def day_calendar(start: date, end: date) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per day of the horizon: calendar month (1-12), days in that month, and whole months
    elapsed since ``start``'s month (the growth exponent k). Each shape (days,)."""
    n = (end - start).days + 1
    month = np.empty(n, dtype=np.int64)
    month_len = np.empty(n, dtype=np.int64)
    elapsed = np.empty(n, dtype=np.int64)
    for i in range(n):
        d = start + timedelta(days=i)
        month[i] = d.month
        month_len[i] = days_in_month(d)
        elapsed[i] = months_after(start, d)
    return month, month_len, elapsed


AVG_MONTH_DAYS = 30.4375


def monthly_counts(dates: Iterable[date]) -> Counter[tuple[int, int]]:
    """How many of ``dates`` fall in each (year, month)."""
    return Counter((e.year, e.month) for e in dates)


def months_after(first: date, day: date) -> int:
    """Whole calendar months from ``first``'s month to ``day``'s (0 in the same month,
    negative before it), whatever the days of the month."""
    return (day.year - first.year) * 12 + day.month - first.month


def months_until(first: date, as_of: date) -> list[tuple[int, int]]:
    """(year, month) from ``first``'s month to ``as_of``'s, inclusive."""
    out, y, m = [], first.year, first.month
    while (y, m) <= (as_of.year, as_of.month):
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out
