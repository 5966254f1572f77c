"""Deal histories: reading a CRM export (CSV, or the Olist folder) into :class:`Deal` rows.

The history is a CSV with one row per deal (column names mappable, see :data:`PRESETS`):

============  =============================================================================
deal_id       unique id (a row repeated word for word is read once, with a warning)
segment       optional; the segment the deal belongs to (default: one segment, ``all``)
<stage>       one column per stage (``--stages``): the date the deal entered it, blank if not
outcome       ``won``, ``lost`` or ``open``, or values mapped to them (``--outcome``)
closed        the date it was won or lost (ignored for open deals: an export's close date
              of an open deal is a forecast, not an event)
amount        the deal's value, a plain number >= 0 (needed for won deals; optional)
currency      optional; the currency of the deal's amount: one value over the file (it becomes
              the scenario's ``currency``), two are refused
============  =============================================================================

Dates are ISO (``YYYY-MM-DD``), optionally followed by a time (``2017-06-30T14:05:00Z``
or ``2017-06-30 14:05``), which is ignored: the date is taken as written, and must fall in
:data:`FIRST_DATE` to :data:`LAST_DATE` (an open deal's ignored close date excepted). The
file is a regular file of at most :data:`MAX_BYTES` of UTF-8 text (a byte-order mark is
fine, a NUL byte is not); rows whose cells are all blank are skipped. Problems are reported
together, each with its line in the file.

A row that cannot be read as a deal (a blank deal id, a segment that is no name, a bad or
out-of-range date, an amount that is not a number from 0 to :data:`MAX_AMOUNT`, a won or
lost deal without a close date or closed before it entered its first stage) makes the whole
file refused, unless ``drop_bad_rows``: then it is
left out and counted, by reason, in a warning. A deal id repeated with other values, an
outcome mapped to nothing and a missing column are always refused: they say the columns or
the map are wrong, not a row.
"""
from __future__ import annotations

import csv
import hashlib
import io
import itertools
import math
import re
import shlex
import unicodedata
from collections import Counter
from collections.abc import Sized
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import NotRequired, TypedDict

from forecaster.errors import Problem, ScenarioError
from forecaster.history.sources import (
    MAX_BYTES,
    MAX_COLUMNS,
    MAX_RECORD_CHARS,
    open_table,
    read_text as _read_text,
    records as _records,
)
from forecaster.scenario.validation import MAX_NAME, unsafe_character

__all__ = ["MAX_BYTES", "MAX_COLUMNS", "MAX_RECORD_CHARS", "Deal", "PRESETS", "load_deals", "parse_outcomes",
           "read_history", "read_olist", "won_dates"]

OUTCOMES = ("won", "lost", "open")
FIELDS = ("deal_id", "segment", "outcome", "closed", "amount", "currency")
"""Our column names besides the stages (see the module docstring)."""
MAX_REPORTED = 20
"""Problems listed one by one; the rest are counted."""
MAX_DROPPED = 0.2
"""``--drop-bad-rows`` leaves out a few bad rows (a typo, a test deal), not a fifth of the
file: past this share of its rows, or half of its won or of its lost deals, what is wrong is
a column or a mapping (every lost deal's close date in another column: the won deals alone
read as a conversion of 0.75 where it was 0.26), and the history is refused."""
MAX_VALUES = 10
"""Unmapped outcome values listed one by one."""
MAX_AMOUNT = 1e15
"""The largest deal value read [currency]: above it, sums of won deals lose their cents and
overflow sooner or later; such a value is a unit or typing error."""
FIRST_DATE, LAST_DATE = date(1900, 1, 1), date(2199, 12, 31)
"""The dates a history may hold (and the range of ``--as-of`` and cutoffs): outside them a
date is a typing error (``0025-03-01``) or a placeholder (``9999-12-31``)."""


def _key(value: str) -> str:
    """How an outcome value is matched: case-insensitive, runs of whitespace (a no-break space
    included) as one space, surrounding whitespace ignored, Unicode's two ways of writing an
    accented letter as one (NFC)."""
    return " ".join(unicodedata.normalize("NFC", value).split()).casefold()


class Preset(TypedDict):
    """A CRM export's columns and outcome values, named with ``--preset``."""
    stages: list[str] | None           # the stage columns, in funnel order (None: --stages names them)
    # our column name -> the file's (a tuple: alternatives, the first present read; None: no such column)
    columns: dict[str, str | tuple[str, ...] | None]
    outcomes: NotRequired[dict[str, str]]  # the file's outcome value -> won, lost or open


SALESFORCE_OPEN = ("Prospecting", "Qualification", "Needs Analysis", "Value Proposition", "Id. Decision Makers",
                   "Perception Analysis", "Proposal/Price Quote", "Negotiation/Review")
"""The open stages of Salesforce's standard sales process (StageName)."""
HUBSPOT_OPEN = {"appointmentscheduled": "Appointment Scheduled", "qualifiedtobuy": "Qualified To Buy",
                "presentationscheduled": "Presentation Scheduled",
                "decisionmakerboughtin": "Decision Maker Bought-In", "contractsent": "Contract Sent"}
"""The open stages of HubSpot's default sales pipeline (Deal Stage): internal value -> label."""
_SALESFORCE: Preset = {
    # a Salesforce Opportunity export (and CRMs that name fields alike): one stage, from creation
    "stages": ["opportunity"],
    "columns": {"deal_id": "Id", "opportunity": "CreatedDate", "outcome": "StageName", "closed": "CloseDate",
                "amount": "Amount", "segment": None},
    "outcomes": {"closed won": "won", "closed lost": "lost", **{_key(s): "open" for s in SALESFORCE_OPEN}},
}

PRESETS: dict[str, Preset] = {
    "generic": {"stages": None, "columns": {}},
    # Maven Analytics CRM opportunities (sales_pipeline.csv): one dated stage, engaging
    "maven": {"stages": ["engaging"], "columns": {"deal_id": "opportunity_id", "engaging": "engage_date",
                                                  "outcome": "deal_stage", "closed": "close_date",
                                                  "amount": "close_value", "segment": None},
              "outcomes": {"won": "won", "lost": "lost", "engaging": "open", "prospecting": "open"}},
    "salesforce": _SALESFORCE,
    # the earlier name of salesforce (which mapped only the closed stages; customised open
    # stages are still named with --outcome open="...", the error lists them)
    "crm": _SALESFORCE,
    # a HubSpot deals export: one stage, from creation; stages as internal values or labels
    "hubspot": {"stages": ["deal"],
                "columns": {"deal_id": ("Record ID", "Deal ID"), "deal": "Create Date", "outcome": "Deal Stage",
                            "closed": "Close Date", "amount": "Amount", "segment": None},
                "outcomes": {"closedwon": "won", "closedlost": "lost", "closed won": "won", "closed lost": "lost",
                             **{k: "open" for k in HUBSPOT_OPEN}, **{_key(v): "open" for v in HUBSPOT_OPEN.values()}}},
}
PRESET_NAMES = (*PRESETS, "olist")
"""What ``--preset`` accepts (olist reads the dataset's folder)."""


@dataclass
class Deal:
    deal_id: str
    segment: str
    entered: list          # date or None, one per stage
    outcome: str           # won | lost | open
    closed: date | None    # None for open deals
    amount: float | None   # in the history's currency


def passed_stages(entered: list, outcome: str, closed: date | None) -> tuple[list, list[int]]:
    """A deal's stage dates with the stages it passed filled in, and which were filled.

    A deal passed every stage between the first one it has a date for and a later one it
    has a date for, and, once won, every stage after its first: a blank date there is a
    stage skipped, or not recorded (a rep moving a deal two stages at once). Left blank, the
    deal would count as never converting out of the stage before the gap (read as lost or
    open there: a conversion read too low, for a deal that went on to win) and as never
    entering the stage of the gap. Filled with the date of the next recorded step (the next
    stage's date, or the win's close date), it converts out of each stage it passed, and
    spends 0 days in the blank one. Blanks before the first dated stage stay blank (a deal
    that came in at a later stage), as do those after a lost or open deal's last dated stage.
    Exact when a blank means the deal went past the stage; where a stage's dates are missing
    on every kind of deal, those lost in it with a blank date stay unseen, and its own
    conversion reads high (0.68 for 0.60 with 30% of its dates blank at random) while the
    product of the stages' conversions stays right.
    ``entered``: one date or None per stage, in funnel order."""
    known = [k for k, d in enumerate(entered) if d is not None]
    if not known:
        return entered, []
    out, filled = list(entered), []
    nxt = closed if outcome == "won" else None
    for k in range(len(out) - 1, known[0], -1):
        if out[k] is not None:
            nxt = out[k]
        elif nxt is not None:
            out[k] = nxt
            filled.append(k)
    return out, sorted(filled)


def parse_outcomes(items) -> dict[str, str]:
    """``OUTCOME=VALUES`` items (``open=In Progress,Prospecting``) as a map from the file's
    value (matched case-insensitively, surrounding whitespace ignored) to won, lost or open.
    VALUES is read as one CSV row: a value holding a comma is written in double quotes.

    Raises
    ------
    ValueError
        When an item is malformed (no ``=``, an unknown outcome, no values) or maps one
        value to two outcomes; the message says what was expected and what was found.
    """
    mapped: dict[str, str] = {}
    expected = ("expected OUTCOME=VALUES, OUTCOME one of won, lost, open and VALUES the file's values "
                "separated by commas (e.g. open=\"In Progress,Prospecting\")")
    for item in items:
        name, eq, values = item.partition("=")
        outcome = name.strip().lower()
        if not eq:
            raise ValueError(f"{expected}; got {item!r}, which has no '='")
        if outcome not in OUTCOMES:
            raise ValueError(f"{expected}; got {item!r}, whose outcome {name.strip()!r} is not one of won, lost, open")
        keys = [_key(v) for v in next(csv.reader([values], skipinitialspace=True), []) if v.strip()]
        if not keys:
            raise ValueError(f"{expected}; got {item!r}, which names no values")
        for k in keys:
            if mapped.get(k, outcome) != outcome:
                raise ValueError(f"{k!r} is mapped to both {mapped[k]} and {outcome}; map each value once")
            mapped[k] = outcome
    return mapped


_ISO = re.compile(r"(\d{4}-\d{2}-\d{2})(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|UTC|[+-]\d{2}:?\d{2})?)?",
                  re.IGNORECASE | re.ASCII)


def _show(text: str, limit: int = 60) -> str:
    """A cell's text quoted for a message, cut to about ``limit`` characters; a cell that
    spans lines is said to (a quote left open swallows the rows after it)."""
    shown = repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text):,} characters)"
    if "\n" in text or "\r" in text:
        shown += " (a cell spanning lines: is a quote before it never closed?)"
    return shown


def _name_problem(text: str) -> str | None:
    """What keeps ``text`` from being a segment or stage name (a key of the scenario, checked
    as the format checks names), or None."""

    bad = unsafe_character(text)
    if bad:
        return f"holds {bad}; expected a plain name"
    if len(text) > MAX_NAME:
        return f"has {len(text):,} characters; expected a name of at most {MAX_NAME}"
    return None


class _BadCell(ValueError):
    """A cell that cannot be read; ``reason`` names the kind, for counting dropped rows."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class _Undecided(_BadCell):
    """A cell whose reading waits on the column's convention, which a problem of the
    column's asks for: the row is not reported again."""


def _date(text: str, bounded: bool = True) -> date | None:
    """An ISO date, or None for a blank; a time after the date (``T14:05:00Z``, `` 14:05``)
    is ignored. ``bounded``: the date must fall in :data:`FIRST_DATE` to :data:`LAST_DATE`.
    Raises ValueError saying what was expected and found."""
    text = (text or "").strip()
    if not text:
        return None
    m = _ISO.fullmatch(text)
    if m is None:
        raise _BadCell(f"expected an ISO date (YYYY-MM-DD, optionally with a time); found {_show(text)}",
                       "an unreadable date")
    try:
        day = date.fromisoformat(m.group(1))
    except ValueError as exc:
        raise _BadCell(f"{m.group(1)!r} is not a date ({exc})", "an unreadable date") from None
    if bounded and not FIRST_DATE <= day <= LAST_DATE:
        raise _BadCell(f"expected a date from {FIRST_DATE} to {LAST_DATE}; found {_show(text)} (a typing error or a "
                       "placeholder?)", f"a date outside {FIRST_DATE} to {LAST_DATE}")
    return day


def _amount(text: str) -> float | None:
    """A deal's value: a plain number from 0 to :data:`MAX_AMOUNT`, or None for a blank."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise _BadCell(f"expected a plain number >= 0 (like 1054 or 1054.50, no currency sign or thousands "
                       f"separator) or a blank; found {_show(text)}",
                       "a negative amount" if value < 0 else "an amount that is not a number")
    if value > MAX_AMOUNT:
        raise _BadCell(f"expected a deal value of at most {MAX_AMOUNT:g}; found {_show(text)} (in another unit?)",
                       f"an amount above {MAX_AMOUNT:g}")
    return value


# --- dates and amounts as exports write them: the convention decided per column ----------------

_DMY = re.compile(r"(\d{1,2})([/.\-])(\d{1,2})\2(\d{4})(?:,?(?:T|\s+)\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
                  r"(?:\s*[AaPp]\.?[Mm]\.?)?(?:\s*(?:Z|UTC|GMT|[+-]\d{2}:?\d{2}))?)?", re.ASCII)
"""A date with the day and month in either order and a four-digit year (27/11/2024,
11/27/2024, 27.11.2024, 27-11-2024), optionally followed by a time (ignored)."""
DATE_FORMS = "2024-11-27, 11/27/2024, 27/11/2024 or 27.11.2024, optionally with a time"
ISO_CODES = frozenset(
    "USD EUR GBP JPY CNY CHF CAD AUD NZD SEK NOK DKK ISK PLN CZK HUF RON BGN HRK RUB UAH TRY ILS AED SAR QAR KWD "
    "BHD OMR EGP ZAR NGN KES MAD INR PKR BDT LKR IDR MYR SGD THB VND PHP HKD TWD KRW BRL MXN ARS CLP COP PEN UYU"
    .split())
"""The ISO 4217 codes :meth:`_AmountColumn.currencies` compares (the currencies an export
most likely mixes): other letters beside an amount (``A$``'s ``A``, ``kr``, ``net``) are
read past, never taken for a second currency."""
SIGN_CODES = {"€": "EUR", "£": "GBP", "₹": "INR", "₩": "KRW", "₺": "TRY", "₽": "RUB", "₴": "UAH", "₪": "ILS",
              "₫": "VND", "₱": "PHP", "฿": "THB", "₦": "NGN"}
"""Currency signs that one currency alone uses, and its ISO code (``$``, ``¥``, ``kr`` are
several currencies': an amount written with them names none)."""
ONE_CURRENCY_FIRST = ("forecaster adds amounts as they are written, so convert them to one currency first (or "
                      "forecast each currency's deals from a history of their own)")
"""What to do with a history whose amounts are in two currencies (their marks, or a currency column)."""
OTHER_FORM = "a date in a form not read without --date-format"
"""Why a date cell in none of :data:`DATE_FORMS` is bad: the one reason the --date-format
hint answers (an impossible date such as 2024-02-30 is another)."""
_TIME_AFTER = re.compile(r"[ T]+\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:[AaPp][Mm])?\s*(?:Z|[+-]\d{2}:?\d{2})?$")
"""A time of day after a date (``10:18``, ``T14:05:00Z``, ``2:05 PM``), as --date-format's dates may carry."""
ORDERS = {"dmy": "day first", "mdy": "month first"}


def check_date_format(fmt: str) -> str:
    """``--date-format``: a :func:`~datetime.datetime.strptime` format that reads back a
    day, month and year (``%d/%m/%Y``); ValueError saying what was expected."""
    example = date(2024, 11, 27)
    try:
        back = datetime.strptime(example.strftime(fmt), fmt).date()
    except ValueError:
        back = None
    if back != example:
        raise ValueError(f"expected a date format with the day, month and year, e.g. %d/%m/%Y or %m/%d/%Y or "
                         f"%d.%m.%Y; got {fmt!r}")
    return fmt


class _DateColumn:
    """How one column's text dates are read: ISO always; day-first or month-first dates in
    the order its values show (:meth:`survey`), or ``--date-format``."""

    def __init__(self, name: str, source: str, date_format: str | None):
        self.name, self.source, self.format = name, source, date_format
        self.order: str | None = None
        self.seen: dict[str, tuple[str, int]] = {}   # kind -> (first value, position)
        self.cache: dict[str, date | None] = {}

    def look(self, value, position: int) -> None:
        """Note what ``value`` says of the column's order."""
        if not isinstance(value, str) or self.format:
            return
        m = _DMY.fullmatch(value.strip())
        if m is None:
            return
        a, b = int(m.group(1)), int(m.group(3))
        kind = "dmy" if a > 12 >= b else "mdy" if b > 12 >= a else "either" if a != b and a <= 12 and b <= 12 else ""
        if kind and kind not in self.seen:
            self.seen[kind] = (value.strip(), position)

    def decide(self, at) -> tuple[int, str] | None:
        """Settle the order; (where, what) of the problem when the column's values cannot."""
        if "dmy" in self.seen and "mdy" in self.seen:
            (d, dp), (m, mp) = self.seen["dmy"], self.seen["mdy"]
            return max(dp, mp), (
                f"{self.name} (column {self.source!r}) holds dates day first ({_show(d)}, {at(dp)}) and month "
                f"first ({_show(m)}, {at(mp)}); expected one order in a column: give --date-format (e.g. "
                "%d/%m/%Y or %m/%d/%Y), and the dates that do not follow it are listed")
        if "dmy" in self.seen or "mdy" in self.seen:
            self.order = "dmy" if "dmy" in self.seen else "mdy"
            return None
        if "either" in self.seen:
            value, position = self.seen["either"]
            sep = _DMY.fullmatch(value).group(2)  # type: ignore[union-attr]
            return position, (
                f"{self.name} (column {self.source!r}): dates like {_show(value)} can be read day first or month "
                "first, and no date in the column settles which (none has a day above 12); give --date-format "
                f"%d{sep}%m{sep}%Y (day first) or --date-format %m{sep}%d{sep}%Y (month first)")
        return None

    def read(self, value, bounded: bool = True) -> date | None:
        """A cell as a date, or None for a blank; raises _BadCell saying what was found."""
        if isinstance(value, datetime):
            day = value.date()
        elif isinstance(value, date):
            day = value
        elif value is None or isinstance(value, str):
            text = (value or "").strip()
            if not text:
                return None
            day_or_none = self.cache.get(text, False)
            if day_or_none is False:
                day_or_none = self.cache[text] = self._text(text)
            day = day_or_none  # type: ignore[assignment]
        elif isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
            raise _BadCell(f"expected a date; found the number {value} (a spreadsheet cell not formatted as a date, "
                           "or the wrong column?)", "an unreadable date")
        else:
            raise _BadCell(f"expected a date; found {_show(str(value))} ({type(value).__name__})",
                           "an unreadable date")
        if bounded and not FIRST_DATE <= day <= LAST_DATE:
            raise _BadCell(f"expected a date from {FIRST_DATE} to {LAST_DATE}; found {_show(str(value).strip())} "
                           "(a typing error or a placeholder?)", f"a date outside {FIRST_DATE} to {LAST_DATE}")
        return day

    def _text(self, text: str) -> date:
        m = _ISO.fullmatch(text)
        if m is not None:
            try:
                return date.fromisoformat(m.group(1))
            except ValueError as exc:
                raise _BadCell(f"{m.group(1)!r} is not a date ({exc})", "an unreadable date") from None
        if self.format:
            for candidate in (text, text.split("T")[0], text.split()[0], _TIME_AFTER.sub("", text)):
                try:
                    return datetime.strptime(candidate, self.format).date()
                except ValueError:
                    pass
            raise _BadCell(f"expected a date as --date-format {self.format} (e.g. "
                           f"{date(2024, 11, 27).strftime(self.format)}) or ISO (YYYY-MM-DD); found {_show(text)}",
                           "an unreadable date")
        m = _DMY.fullmatch(text)
        if m is None:
            raise _BadCell(f"expected a date ({DATE_FORMS}); found {_show(text)}", OTHER_FORM)
        a, b, year = int(m.group(1)), int(m.group(3)), int(m.group(4))
        if self.order is None and a != b:  # the column's problem says so, once
            raise _Undecided(text, "an unreadable date")
        day, month = (a, b) if self.order == "dmy" else (b, a)
        try:
            return date(year, month, day)
        except ValueError as exc:
            order = f"; read {ORDERS[self.order]}, the column's order" if self.order else ""
            raise _BadCell(f"{_show(text)} is not a date ({exc}{order})", "an unreadable date") from None


_GROUPING = " \u00a0\u202f'\u2019"
"""Characters that group a number's digits besides the other separator: spaces (plain,
no-break, narrow no-break) and apostrophes (Swiss)."""
_READINGS = {
    d: (re.compile(rf"\d+(?:\{d}\d*)?|\{d}\d+", re.ASCII),
        re.compile(rf"[1-9]\d{{0,2}}([{re.escape(o + _GROUPING)}])\d{{3}}(?:\1\d{{3}})*(?:\{d}\d*)?", re.ASCII))
    for d, o in ((".", ","), (",", "."))
}
_FLOAT = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)[eE][+-]?\d+|nan|inf(?:inity)?)", re.IGNORECASE)
_CODE_BEFORE = re.compile(r"(?:[A-Za-z]{2,3}\.?|[A-Za-z]{1,2}(?=\$))(?![A-Za-z])")
_CODE_AFTER = re.compile(r"(?<![A-Za-z])[A-Za-z]{2,3}\.?$")
_POINT = re.compile(r"(\d+)\.(\d+)", re.ASCII)
"""A plain decimal number (1054.50): read by float(), the commonest amount, fast."""


def _point_kind(m: re.Match) -> str:
    """``.`` when a plain decimal's point can only be a decimal point, else ``either``
    (1.234: three digits after a point that may group thousands)."""
    whole, fraction = m.group(1), m.group(2)
    return "." if len(fraction) != 3 or len(whole) > 3 or whole[0] == "0" else "either"


AMOUNT_FORMS = "like 1054.50, 1,054.50, 1.054,50, 1 054,50 or $1,054.50"


def _amount_text(text: str, marks: list | None = None) -> tuple[bool, str] | None:
    """(negative, the number's digits and separators) of an amount as exports write it:
    a currency sign or code before or after, a minus or parentheses for a negative; None
    when it has other words or signs. ``marks``, when given, receives the currency marks
    peeled, each as (kind, as written): ``("sign", "€")``, ``("code", "usd")``."""
    s, negative = text.strip(), False
    symbols = codes = 0
    for _ in range(6):  # peel signs, parentheses and currency (one sign, one code), in any order
        before = s
        if len(s) > 1 and s[0] == "(" and s[-1] == ")":
            negative, s = True, s[1:-1].strip()
        if s[:1] in ("-", "\u2212"):
            negative, s = True, s[1:].lstrip()
        elif s[:1] == "+":
            s = s[1:].lstrip()
        elif len(s) > 1 and s[-1] in ("-", "\u2212"):
            negative, s = True, s[:-1].rstrip()
        if s and unicodedata.category(s[0]) == "Sc":
            if marks is not None:
                marks.append(("sign", s[0]))
            s, symbols = s[1:].lstrip(), symbols + 1
        if s and unicodedata.category(s[-1]) == "Sc":
            if marks is not None:
                marks.append(("sign", s[-1]))
            s, symbols = s[:-1].rstrip(), symbols + 1
        m = _CODE_BEFORE.match(s)
        if m and m.end() < len(s):
            if marks is not None:
                marks.append(("code", m.group(0).rstrip(".")))
            s, codes = s[m.end():].lstrip(), codes + 1
        m = _CODE_AFTER.search(s)
        if m and m.start() > 0:
            if marks is not None:
                marks.append(("code", m.group(0).rstrip(".")))
            s, codes = s[:m.start()].rstrip(), codes + 1
        if s == before:
            break
    if symbols > 1 or codes > 1 or not any(c.isdigit() for c in s):
        return None
    return negative, s


def _readings(number: str) -> dict[str, float]:
    """The value of ``number`` (digits and separators) with ``.`` and with ``,`` as its
    decimal separator, for each reading it admits."""
    out = {}
    for d, (plain, grouped) in _READINGS.items():
        if plain.fullmatch(number) or grouped.fullmatch(number):
            digits = "".join(c for c in number if c.isdigit() or c == d)
            out[d] = float(digits.replace(d, "."))
    return out


class _AmountColumn:
    """How one column's text amounts are read: the decimal separator the column's values
    show (:meth:`survey`), or ``--decimal``."""

    def __init__(self, name: str, source: str, decimal: str | None):
        self.name, self.source, self.decimal = name, source, decimal
        self.seen: dict[str, tuple[str, int]] = {}   # "." / "," / "either" -> (first value, position)
        self.looked: set[str] = set()
        # currency marks read: ("sign" | "code", mark) -> [amounts, first value, its position, mark as written]
        self.marks: dict[tuple[str, str], list] = {}
        self.last: tuple | None = None  # the last amount's marks, text and position, until kept

    def look(self, value, position: int) -> None:
        if not isinstance(value, str) or self.decimal:
            return
        text = value.strip()
        if not text or (text.isascii() and text.isdigit()):
            return
        m = _POINT.fullmatch(text)
        if m is not None:
            self.seen.setdefault(_point_kind(m), (text, position))
            return
        if text in self.looked:
            return
        self.looked.add(text)
        split = _amount_text(text)
        if split is None:
            return
        readings = _readings(split[1])
        if len(readings) == 1:
            kind = next(iter(readings))
        elif len(readings) == 2 and readings["."] != readings[","]:
            kind = "either"
        else:
            return
        self.seen.setdefault(kind, (text, position))

    def decide(self, at) -> tuple[int, str] | None:
        """Settle the decimal separator; (where, what) of the problem when the column's
        values cannot."""
        if "." in self.seen and "," in self.seen:
            (p, pp), (c, cp) = self.seen["."], self.seen[","]
            return max(pp, cp), (
                f"{self.name} (column {self.source!r}) holds amounts with a decimal point ({_show(p)}, {at(pp)}) "
                f"and with a decimal comma ({_show(c)}, {at(cp)}); expected one convention in a column: give "
                "--decimal . or --decimal , and the amounts that do not follow it are listed")
        if "." in self.seen or "," in self.seen:
            self.decimal = "." if "." in self.seen else ","
            return None
        if "either" in self.seen:
            value, position = self.seen["either"]
            split = _amount_text(value)
            readings = _readings(split[1]) if split else {".": 0.0, ",": 0.0}
            return position, (
                f"{self.name} (column {self.source!r}): amounts like {_show(value)} can be read as "
                f"{readings[',']:.15g} or {readings['.']:.15g}, and no amount in the column settles whether '.' or ',' "
                "is the decimal separator; give --decimal . (1,234.56) or --decimal , (1.234,56)")
        return None

    def currencies(self, at) -> tuple[int, str] | None:
        """(where, what) when the amounts of the deals read are in more than one currency:
        two currency signs (``$`` and ``€``) or two ISO codes (``USD`` and ``EUR``,
        :data:`ISO_CODES`); a sign beside a code may be the same currency (``A$`` and
        ``AUD``) and is not questioned."""
        for kind in ("sign", "code"):
            seen = sorted((v for k, v in self.marks.items() if k[0] == kind), key=lambda v: -v[0])
            if len(seen) > 1:
                listed = " and ".join(f"{_show(v[3])} ({v[0]} amount{'s' * (v[0] != 1)}, the first {_show(v[1])} "
                                      f"on {at(v[2])})" for v in seen[:4])
                return seen[1][2], (
                    f"{self.name} (column {self.source!r}) holds amounts in more than one currency: {listed}; "
                    + ONE_CURRENCY_FIRST)
        return None

    def currency(self) -> str | None:
        """The currency the kept amounts are written in, when they say one: their one ISO code
        (``USD 1,200``), else their one sign when only one currency uses it (``€``, ``£``);
        None for no mark, or a sign that many currencies use (``$``, ``kr``)."""
        codes = [key for kind, key in self.marks if kind == "code"]
        if codes:
            return codes[0] if len(codes) == 1 else None
        signs = [key for kind, key in self.marks if kind == "sign"]
        return SIGN_CODES.get(signs[0]) if len(signs) == 1 else None

    def keep(self) -> None:
        """Count the currency marks of the last amount read (its row is kept as a deal)."""
        if self.last is not None:
            marks, text, position = self.last
            for kind, key, written in dict.fromkeys(marks):
                self.marks.setdefault((kind, key), [0, text, position, written])[0] += 1

    def read(self, value, position: int = 0) -> float | None:
        """A cell as an amount from 0 to :data:`MAX_AMOUNT`, or None for a blank
        (``position``: its line or row, for :meth:`currencies`)."""
        self.last = None
        if value is None or isinstance(value, str):
            text = (value or "").strip()
            if not text:
                return None
            m = _POINT.fullmatch(text) if not (text.isascii() and text.isdigit()) else None
            if m is None and text.isascii() and text.isdigit():
                number = float(text)
            elif m is not None and (self.decimal == "." or self.decimal is None and _point_kind(m) == "."):
                number = float(text)
            elif _FLOAT.fullmatch(text):
                return _amount(text)
            else:
                number = self._text(text, position)
        elif isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            raise _BadCell(f"expected an amount >= 0 or a blank; found {_show(str(value))} ({type(value).__name__})",
                           "an amount that is not a number")
        else:
            number = float(value)
            text = str(value)
        if not (math.isfinite(number) and number >= 0):
            raise _BadCell(f"expected an amount >= 0 ({AMOUNT_FORMS}) or a blank; found {_show(text)}"
                           + (" (in parentheses: negative)" if text.startswith("(") else ""),
                           "a negative amount" if number < 0 else "an amount that is not a number")
        if number > MAX_AMOUNT:
            raise _BadCell(f"expected a deal value of at most {MAX_AMOUNT:g}; found {_show(text)} (in another unit?)",
                           f"an amount above {MAX_AMOUNT:g}")
        return number

    def _text(self, text: str, position: int = 0) -> float:
        marks: list = []
        split = _amount_text(text, marks)
        # a currency sign, or an ISO 4217 code (not A$'s A, kr, net, ca.), kept once the
        # row is (:meth:`keep`): a row left out by --drop-bad-rows names no currency
        self.last = [(k, w.upper() if k == "code" else w, w) for k, w in marks
                     if k == "sign" or w.upper() in ISO_CODES], text, position
        readings = _readings(split[1]) if split else {}
        if not readings:
            raise _BadCell(f"expected an amount >= 0 ({AMOUNT_FORMS}) or a blank; found {_show(text)}",
                           "an amount that is not a number")
        if self.decimal in readings:
            number = readings[self.decimal]
        elif self.decimal is None and len(readings) == 2 and readings["."] != readings[","]:
            raise _Undecided(text, "an amount that is not a number")  # the column's problem says so, once
        elif len(readings) == 2 and readings["."] == readings[","] or self.decimal is None and len(readings) == 1:
            number = next(iter(readings.values()))
        else:
            raise _BadCell(f"expected an amount with {self.decimal!r} as its decimal separator, as the column's "
                           f"others ({AMOUNT_FORMS}); found {_show(text)}", "an amount that is not a number")
        return -number if split and split[0] else number


def _header(records, shown: str, wanted) -> tuple[list[str], dict[str, int]]:
    """The header's names (stripped) and the column of each of ``wanted`` (names of the
    file's) found in it, once each; the file is refused when empty, wider than
    :data:`MAX_COLUMNS` or when a wanted name is in the header twice."""
    first = next(records, None)
    if first is None:
        raise ScenarioError(shown, [Problem("", "is empty; expected a header row and one row per deal")])
    header = [c.strip() for c in first[1]]
    return header, _columns(header, first[0], shown, wanted)


def _columns(header: list[str], line: int | None, shown: str, wanted, unit: str = "line") -> dict[str, int]:
    """The column of each of ``wanted`` found in ``header`` (at ``line``, or the row when
    ``unit`` is ``row``); refused when wider than :data:`MAX_COLUMNS` or when a wanted name
    is in it twice."""
    def problem(message: str) -> ScenarioError:
        if unit == "line" or line is None:
            return ScenarioError(shown, [Problem("", message, line=line)])
        return ScenarioError(shown, [Problem("", f"{unit} {line}: {message}")])

    if len(header) > MAX_COLUMNS:
        raise problem(f"has {len(header):,} columns, more than the {MAX_COLUMNS:,} a history may have; expected a "
                      "header row of column names")
    twice = [(name, [i + 1 for i, h in enumerate(header) if h == name]) for name in dict.fromkeys(wanted)
             if header.count(name) > 1]
    if twice:
        raise problem("has " + ", ".join(f"{len(at)} columns named {name!r} (columns {', '.join(map(str, at))})"
                                         for name, at in twice)
                      + "; expected each column read once (rename the others)")
    return {name: header.index(name) for name in wanted if name in header}


def _other_sheets(table, col: dict, must: set) -> str:
    """`` (read its first sheet, 'Notes'; its other sheets: 'deals'; sheet 'deals' has the
    columns: move it first)`` for a workbook whose first sheet lacks columns (empty for a
    workbook of one sheet, and for other kinds)."""
    if table.sheet is None:
        return ""
    if table.other_sheets is None:
        return f" (read its first sheet, {table.sheet!r}, its only one)"
    headers = table.other_sheets()
    if not headers:
        return f" (read its first sheet, {table.sheet!r}, its only one)"
    shown = list(headers)
    said = f" (read its first sheet, {table.sheet!r}; its other sheets: {', '.join(map(repr, shown[:10]))}" + (
        " and more" if len(shown) > 10 else "")

    def has(names: list[str]) -> bool:
        return all(any(a in names for a in (v if isinstance(v, tuple) else (v,)))
                   for k, v in col.items() if k in must and v is not None)

    fit = [title for title, names in headers.items() if names and has(names)]
    if len(fit) == 1:
        said += f"; sheet {fit[0]!r} has the columns: move it first in the workbook, or save it on its own"
    elif fit:
        said += f"; sheets {', '.join(map(repr, fit))} have the columns: move the one to read first in the workbook"
    return said + ")"


def _spellings(v) -> tuple:
    """The column names a mapping value stands for: one name, a preset's alternatives, or
    none (a value that names no column)."""
    return (v,) if isinstance(v, str) else v if isinstance(v, tuple) else ()


def _close_names(header: list[str], absent: dict) -> str:
    """``; did you mean 'Deal owner' for 'Owner'?`` for the columns asked for that the header
    (its columns not read for another field) has under a close name (difflib, case
    ignored), or nothing."""
    import difflib

    folded = {h.casefold(): h for h in header}
    said = []
    for v in absent.values():
        for name in _spellings(v):
            close = difflib.get_close_matches(name.casefold(), list(folded), n=1, cutoff=0.6)
            if close:
                said.append(f"{folded[close[0]]!r} for {name!r}")
                break
    return f"; did you mean {', '.join(said)}?" if said else ""


HEADER_SEARCH_ROWS = 30
"""Rows below the header searched for the column names a history lacks (a report's title
rows above its real header)."""


def _header_below(table, absent: dict) -> str:
    """``; line 4 holds 'Deal ID', 'Amount' ...: ...`` when a row in the first
    :data:`HEADER_SEARCH_ROWS` holds most of the names asked for that the header lacks (a
    report's title rows above the real header), or nothing."""
    names = {n.casefold() for v in absent.values() for n in _spellings(v)}
    wanted = max(1, (len(absent) + 1) // 2)
    for k, (position, cells) in enumerate(table.rows()):
        if k >= HEADER_SEARCH_ROWS:
            break
        found = [str(c).strip() for c in cells if isinstance(c, str) and c.strip().casefold() in names]
        if len(found) >= wanted:
            return (f"; {table.unit} {position} holds {', '.join(map(repr, found[:4]))}"
                    f"{' ...' if len(found) > 4 else ''}: if that is the real header (a report's title rows "
                    "above it), delete the rows above it")
    return ""


def _names(header: list[str], most: int = 40) -> str:
    """The header's names, the first ``most`` of them."""
    shown = ", ".join(header[:most])
    return shown + (f" and {len(header) - most:,} more" if len(header) > most else "")


def read_history(path: Path | str, stages: list[str], columns: dict, outcomes: dict | None = None,
                 segment_column: str | None = None, *, required=(), warnings: list | None = None,
                 drop_bad_rows: bool = False, query: str | None = None, date_format: str | None = None,
                 decimal: str | None = None, found: dict | None = None) -> list[Deal]:
    """Read a history into deals (see the module docstring for the format).

    Parameters
    ----------
    path : Path or str
        The history: a CSV, Parquet or XLSX file, a DuckDB database file or a
        ``postgresql://`` URL (with ``query``); see :mod:`forecaster.history.sources`.
    stages : list of str
        The stage columns' names (ours), in funnel order.
    columns : dict
        Our column names (``deal_id``, ``outcome``, a stage, ...) to the file's; names not
        given are the file's own. ``segment: None`` means one segment, ``all``; a tuple
        names alternatives, the first in the file read.
    outcomes : dict, optional
        The file's outcome values to ``won``, ``lost`` or ``open``, over the default
        identity map; keys match case-insensitively, surrounding whitespace ignored.
    segment_column : str, optional
        The column naming each deal's segment (overrides ``columns``; then it must exist).
    required : iterable of str
        Our names of optional columns (``segment``, ``amount``) that must exist all the
        same (the user named them).
    warnings : list, optional
        Appended with what was read but looks off (dates out of order, repeated rows) and
        the rows left out by ``drop_bad_rows``.
    drop_bad_rows : bool
        Leave out the rows that cannot be read as a deal (see the module docstring), each
        counted by reason in ``warnings``, instead of refusing the file.
    query : str, optional
        The query whose rows are the history, for a database.
    date_format : str, optional
        How text dates that are not ISO are written (``%d/%m/%Y``), for columns whose
        values leave the order of day and month open.
    decimal : str, optional
        The decimal separator of text amounts (``.`` or ``,``), for a column whose values
        leave it open.
    found : dict, optional
        Given ``currency``: the currency the amounts of the deals read are in, when the
        history says one (a ``currency`` column holding one value on the rows with an
        amount, or the amounts' own one ISO code or unambiguous sign, :meth:`_AmountColumn.currency`).

    Raises
    ------
    ScenarioError
        With every problem found, each with its line (or row): missing columns, outcome
        values mapped to nothing (each with its count, and the ``--outcome`` that maps
        them), bad dates or amounts, a column whose dates or amounts follow two conventions
        or leave theirs open, repeated or blank deal ids, won or lost deals without a close
        date or closed before they entered their first stage; a history that cannot be read
        as a bounded table (see :mod:`forecaster.history.sources`).
    ValueError
        A usage error: a query for a file, or none for a database.
    """
    table = open_table(path, query)
    shown = table.shown
    col: dict[str, str | tuple[str, ...] | None] = {
        name: columns.get(name, name) for name in ("deal_id", "outcome", "closed", "amount", "currency", *stages)}
    col["segment"] = segment_column or columns.get("segment", "segment")
    if "currency" not in columns and "convert" in str(col["amount"]).casefold():
        # amounts already converted (Salesforce's "Amount (converted)"): a plain currency
        # column names the deals' own currencies, not theirs
        col["currency"] = None
    header = table.header
    for k, v in col.items():  # alternatives: the first the history has
        if isinstance(v, tuple):
            col[k] = next((a for a in v if a in header), v)
    folded = {}
    for k, v in col.items():  # a name the header has only in another case ('Amount' for amount): that column
        spellings = _spellings(v)
        if spellings and not any(n in header for n in spellings):
            folds = {n.casefold() for n in spellings}
            alike = [h for h in header if h.casefold() in folds]
            if len(alike) == 1:
                col[k], folded[k] = alike[0], (" or ".join(map(repr, spellings)), alike[0])
    wanted = [v for v in col.values() if isinstance(v, str)]
    index = _columns(header, table.header_at, shown, wanted, table.unit)
    must = {"deal_id", "outcome", "closed", *stages, *required} | ({"segment"} if segment_column else set())

    def said(v) -> str:
        return " or ".join(map(repr, v)) if isinstance(v, tuple) else repr(v)

    absent = {k: v for k, v in col.items() if k in must and v not in index}
    missing = [f"{k} (column {said(v)})" for k, v in absent.items()]
    if missing:
        raise ScenarioError(shown, [Problem("", f"lacks {', '.join(missing)}; its columns are: {_names(header)}"
                                            f"{_other_sheets(table, col, must)}"
                                            ". Map a name to another column with --column NAME=SOURCE"
                                            + _header_below(table, absent)
                                            + _close_names([h for i, h in enumerate(header)
                                                            if i not in index.values()], absent))])
    shared: dict[str, list[str]] = {}
    for k, v in col.items():
        if isinstance(v, str) and v in index:
            shared.setdefault(v, []).append(k)
    shared = {v: ks for v, ks in shared.items() if len(ks) > 1}
    if shared:
        raise ScenarioError(shown, [Problem("", "; ".join(f"{' and '.join(ks)} would all read column {v!r}"
                                                          for v, ks in shared.items())
                                            + "; expected each from its own column (--column NAME=SOURCE)")])
    index = {name: index[v] for name, v in col.items() if isinstance(v, str) and v in index}
    outcome_map = {k: v for k, v in zip(OUTCOMES, OUTCOMES)}
    outcome_map.update({_key(k): v for k, v in (outcomes or {}).items()})
    unit = table.unit
    text_cells = table.kind == "CSV file"  # every cell a str

    def at(position: int) -> str:
        return f"{unit} {position}"

    # the dates' order and the amounts' decimal separator, decided per column from its values
    date_columns = {name: _DateColumn(name, str(col[name]), date_format) for name in (*stages, "closed")
                    if name in index}
    amounts = _AmountColumn("amount", str(col["amount"]), decimal) if "amount" in index else None
    looking = [(index[n], c.look) for n, c in date_columns.items()] + (
        [(index["amount"], amounts.look)] if amounts is not None else [])
    if date_format is None or (amounts is not None and decimal is None):
        for position, cells in _footer_aside(table.rows(), [], len(table.header)):  # a footer decides no format
            for i, look in looking:
                if i < len(cells):
                    look(cells[i], position)
    columns_read: list[_DateColumn | _AmountColumn] = [*date_columns.values(), *([amounts] if amounts else [])]
    conventions = [problem_at for c in columns_read if (problem_at := c.decide(at))]

    deals, problems = [], []
    unmapped: dict[str, list] = {}          # key -> [count, first line, spelling as first found]
    seen: dict[str, tuple[int, bytes]] = {}  # deal id -> (line, digest of its cells)
    repeated, backwards, before_stage, no_segment, no_stage = [], [], [], [], []
    skipped: dict[str, list[int]] = {}  # a stage passed without its date: its lines
    currencies: dict[str, list] = {}  # the currency column's value (upper case) -> [rows, first line, as written]
    # a CSV row with a cell past the header's that holds something, or longer than the file's
    # usual row: a cell split in two (an unquoted 1,000.50) moves every cell after it and
    # pushes the last one out, blank or not. An export that pads every row alike with blank
    # cells sets the usual length (a file whose every amount is split does not: its extra
    # cells hold the amounts' ends); a workbook's cells cannot split, and a note right of its
    # table is no deal's cell
    named = width = len(table.header)
    if text_cells:
        lengths = Counter(len(cells) for _, cells in table.rows())
        width = max(width, lengths.most_common(1)[0][0] if lengths else width)
    dropped: dict[str, list[int]] = {}      # reason -> lines
    dropped_as: Counter[str | None] = Counter()  # outcome -> rows dropped
    unreadable_dates = False  # a date in no form read by default (nor by --date-format)
    droppable = 0  # rows refused that --drop-bad-rows would leave out
    n_problems = n_rows = 0

    def problem(line: int, message: str) -> None:
        nonlocal n_problems
        n_problems += 1
        if n_problems <= MAX_REPORTED:
            problems.append(Problem("", message, line=line) if unit == "line" else
                            Problem("", f"{at(line)}: {message}"))

    def raw(cells, name: str):
        i = index.get(name)
        return cells[i] if i is not None and i < len(cells) else None

    def cell(cells, name: str) -> str:
        return _text(raw(cells, name))

    if text_cells:  # a CSV's cells: the same, faster
        def cell(cells, name: str) -> str:
            i = index.get(name)
            return cells[i].strip() if i is not None and i < len(cells) else ""

        raw = cell

    footer: list[tuple[int, str]] = []
    for line, cells in _footer_aside(table.rows(), footer, len(table.header)):
        n_rows += 1
        bad: list[tuple[str, str]] = []  # (message, reason) of what makes the row no deal
        joined = "\x00".join([c.strip() for c in cells] if text_cells else map(_text, cells))
        digest = hashlib.blake2b(joined.encode(), digest_size=16).digest()
        if text_cells and (len(cells) > width or any(_text(c) for c in cells[named:])):
            bad.append((f"has {len(cells)} cells where the header has {named}"
                        + (f" and most rows {width}" if width > named else "")
                        + "; expected one cell a column (a number written with a thousands separator and no "
                          "quotes, such as 1,000.50, splits into two cells and moves the ones after it: quote it "
                          "or drop the separator)", "more cells than the header"))
        deal_id = cell(cells, "deal_id")
        if not deal_id:
            bad.append((f"deal_id (column {col['deal_id']!r}) is blank", "a blank deal id"))
        elif deal_id in seen:
            first, before = seen[deal_id]
            if before == digest:
                repeated.append(line)
                continue
            problem(line, f"deal_id {_show(deal_id)} is also on {at(first)}, with other values; expected one row "
                          "per deal")
        else:
            seen[deal_id] = (line, digest)
        raw_outcome = cell(cells, "outcome")
        outcome = outcome_map.get(_key(raw_outcome))
        if outcome is None:
            entry = unmapped.setdefault(_key(raw_outcome), [0, line, raw_outcome])
            entry[0] += 1
        dates = {}
        undecided = False
        for name, reader in date_columns.items():
            try:  # an open deal's close date is ignored (so is one whose outcome is not mapped yet): only its form
                closing = name == "closed" and outcome not in ("won", "lost")
                dates[name] = reader.read(raw(cells, name), bounded=not closing)
            except _Undecided:
                undecided = True
            except _BadCell as exc:
                bad.append((f"{name} (column {col[name]!r}): {exc}", exc.reason))
        amount = None
        if amounts is not None:
            try:
                amount = amounts.read(raw(cells, "amount"), line)
            except _Undecided:
                undecided = True
            except _BadCell as exc:
                bad.append((f"amount (column {col['amount']!r}): {exc}", exc.reason))
        closed = dates.get("closed") if outcome in ("won", "lost") else None
        entered = [dates.get(s) for s in stages]
        known = [(s, d) for s, d in zip(stages, entered) if d is not None]
        if outcome in ("won", "lost") and "closed" in dates and closed is None:
            bad.append((f"the deal is {outcome} ({col['outcome']} {_show(raw_outcome)}) but closed (column "
                        f"{col['closed']!r}) is blank; expected the date it was {outcome}",
                        "an outcome won or lost but no close date"))
        segment = (cell(cells, "segment") or NO_SEGMENT) if "segment" in index else "all"
        why = _name_problem(segment)
        if why:
            bad.append((f"segment (column {col['segment']!r}) {_show(segment)} {why}", "a segment that is no name"))
        if closed is not None and known:
            stage, day = min(known, key=lambda sd: sd[1])
            if closed < day:
                bad.append((f"closed {closed} (column {col['closed']!r}) is before {stage} {day} (column "
                            f"{col[stage]!r}); expected a deal to close on or after it entered its first stage",
                            "a close before its first stage"))
        if undecided and not bad:  # the file is refused, by its column's problem
            continue
        if bad:
            if drop_bad_rows:
                dropped.setdefault(bad[0][1], []).append(line)
                dropped_as[outcome] += 1
            else:
                droppable += 1
                for message, reason in bad:
                    problem(line, message)
                    unreadable_dates |= reason == OTHER_FORM
            continue
        if outcome is None or not deal_id:
            continue
        if any(b[1] < a[1] for a, b in itertools.pairwise(known)):
            backwards.append(line)
        if closed is not None and known and closed < max(d for _, d in known):
            before_stage.append(line)
        if segment == NO_SEGMENT:
            no_segment.append(line)
        if not known:
            no_stage.append(line)
        entered, gaps = passed_stages(entered, outcome, closed)
        for gap in gaps:
            skipped.setdefault(stages[gap], []).append(line)
        deals.append(Deal(deal_id, segment, entered, outcome, closed, amount))
        if amounts is not None:
            amounts.keep()
        written = cell(cells, "currency").strip() if "currency" in index and amount is not None else ""
        if written:
            currencies.setdefault(written.upper(), [0, line, written])[0] += 1

    if not n_rows:
        raise ScenarioError(shown, [Problem("", "has a header but no deals")])
    mixed = amounts.currencies(at) if amounts is not None else None
    if mixed:
        conventions.append(mixed)
    if len(currencies) > 1:
        by_count = sorted(currencies.values(), key=lambda v: -v[0])
        listed = " and ".join(f"{_show(v[2])} ({v[0]} amount{'s' * (v[0] != 1)}, the first on {at(v[1])})"
                              for v in by_count[:4])
        conventions.append((by_count[1][1], f"currency (column {col['currency']!r}) names more than one currency for "
                                        f"the amounts: {listed}; {ONE_CURRENCY_FIRST}; if the amounts are already "
                                        "converted, read them from the converted column (--column amount=\"Amount "
                                        "(converted)\") or name its currency's column with --column currency=..."))
    problems[:0] = [Problem("", message, line=position) if unit == "line" else
                    Problem("", f"{at(position)}: {message}") for position, message in conventions]
    if unmapped:
        problems.insert(0, Problem("", _unmapped_message(unmapped, str(col["outcome"]), outcome_map, unit)))
    if n_problems > MAX_REPORTED:
        problems.append(Problem("", f"and {n_problems - MAX_REPORTED} more problems like these",
                                more=n_problems - MAX_REPORTED))
    hint = None
    if unreadable_dates and not date_format:
        hint = ("dates written another way are read with --date-format, the file's format in Python's strftime "
                "codes: e.g. --date-format '%m/%d/%y' for 11/27/24, '%b %d, %Y' for Nov 27, 2024, '%d-%b-%Y' for "
                "27-Nov-2024 (a time after the date is ignored)")
    elif droppable and not drop_bad_rows:
        hint = (f"--drop-bad-rows leaves out rows like these ({_count(range(droppable), 'row')} here) and reads the "
                "rest, when they are a few (at most a fifth of the file)")
    if problems:
        raise ScenarioError(shown, problems, hint)
    if not deals:
        raise ScenarioError(shown, [Problem("", f"has no deal left: {_dropped(dropped, unit)}")])
    _few_dropped(shown, dropped, dropped_as, deals, n_rows, unit)
    stage_columns = ", ".join(repr(str(col[st])) for st in stages)
    if len(no_stage) == len(deals):
        raise ScenarioError(shown, [Problem("", f"has no date in any stage column ({stage_columns}) on any row; "
                                                f"expected the day each deal entered its stages, {stages[0]!r} first")])
    if found is not None:  # the column's one value (when it is a plain label), else the amounts' own mark
        if currencies:
            label = next(iter(currencies.values()))[2]
            found["currency"] = label if len(label) <= 16 and not _name_problem(label) else None
        else:
            found["currency"] = amounts.currency() if amounts is not None else None
    deals, merged = _one_spelling(deals)
    blank_column = bool(deals) and len(no_segment) == len(deals)
    if blank_column:  # a segment column blank on every row: one segment, as without the column
        deals = [replace(d, segment="all") for d in deals]
    if warnings is not None:
        for k, (wanted_name, spelt) in folded.items():
            if k in index:
                warnings.append(f"{shown}: {k} read from column {spelt!r} (no column {wanted_name}; the names "
                                "differ only in case)")
        if dropped:
            warnings.append(f"{shown}: {_dropped(dropped, unit)}")
        if footer:
            rows_are = "row" if len(footer) == 1 else _count(footer, "row")
            warnings.append(f"{shown}: the last {rows_are} ({_lines([n for n, _ in footer], unit=unit)}) "
                            f"{'holds one cell or a total' if len(footer) == 1 else 'hold one cell each or a total'}"
                            f", as a report's footer does ({_show(footer[0][1])}"
                            f"{', ...' if len(footer) > 1 else ''}): not read as deals")
        if blank_column:
            warnings.append(f"{shown}: the segment column {col['segment']!r} is blank on every row: one segment, 'all'")
        elif no_segment:
            warnings.append(f"{shown}: {_count(no_segment, 'deal')} with a blank segment (column {col['segment']!r}; "
                            f"{_lines(no_segment, unit=unit)}) make a segment of their own, {NO_SEGMENT!r}")
        if merged:
            warnings.append(f"{shown}: segment names that differ only in case or spacing are read as one: "
                            + "; ".join(merged))
        if no_stage and len(no_stage) < len(deals):
            warnings.append(f"{shown}: {_count(no_stage, 'deal')} with no date in any stage column ({stage_columns}; "
                            f"{_lines(no_stage, unit=unit)}): no lead, conversion or time to close counts them "
                            f"(their wins and amounts still count where wins are counted)")
        if repeated:
            warnings.append(f"{shown}: {_count(repeated, 'row')} identical to an earlier row, read once "
                            f"({_lines(repeated, unit=unit)})")
        if backwards:
            warnings.append(f"{shown}: {_count(backwards, 'deal')} entered a stage before the one preceding it "
                            f"({_lines(backwards, unit=unit)}): those times count as 0 days")
        if before_stage:
            warnings.append(f"{shown}: {_count(before_stage, 'deal')} closed before entering their last stage "
                            f"({_lines(before_stage, unit=unit)}): those times count as 0 days")
        for stage, lines in skipped.items():
            warnings.append(f"{shown}: {_count(lines, 'deal')} passed {stage!r} without a date in its column "
                            f"{col[stage]!r} (a later stage's date or the win is recorded; {_lines(lines, unit=unit)})"
                            f": read as entering it on the day of the next recorded step, so each converts out of "
                            f"the stages before it and spends 0 days in {stage!r} (if {stage!r}'s dates are also "
                            "missing on deals lost in it, those cannot be seen and its own conversion reads high; "
                            "the stages' product stays right)")
        warnings.extend(f"{shown}: {note}" for note in table.notes)
    return deals


_TOTALS = re.compile(r"\s*(?:grand\s+totals?|sub-?totals?|totals?|sum|count|record count)\b", re.IGNORECASE)
"""How a report's totals row begins (``Grand Totals (7932 records)``, ``Total``, ``Sum``)."""
_DATE_LIKE = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|\d{1,2}[ -]?[A-Za-z]{3,9}[ ,-]+\d{2,4}"
                        r"|[A-Za-z]{3,9}[ -]\d{1,2},? \d{2,4}")
"""A cell that reads like a date: ISO, day/month first with digits, or with a month's name
(``03 Feb 2026``, ``27-Nov-2024``, ``Nov 27, 2024``)."""


def _footer_aside(rows, footer: list, width: int = 0):
    """``rows`` ((line, cells) pairs) as read, but for a report's footer: the rows at the end
    of the table that hold one non-blank cell each (a Salesforce report ends with its title,
    "Copyright ...", "Generated By: ..." and the company), or a totals row (its first
    non-blank cell ``Grand Totals (7932 records)``, ``Total`` or ``Sum``, no date in any
    cell, as every deal has the date it entered a stage, and at most half of the header's
    ``width`` cells filled: a deal named "Total Quality" has its dates and outcome), which
    go into ``footer`` as (line, text) instead. Such a row is no deal wherever it is (a deal
    has an id and an outcome at least): one followed by a deal's row, or in a table of
    nothing else, is passed on, to be reported as the bad row it is."""
    held: list = []
    deal_rows = False
    for line, cells in rows:
        filled = [text for text in map(_text, cells) if text]
        if len(filled) == 1 or (filled and _TOTALS.match(filled[0]) and 2 * len(filled) <= width
                                and not any(_DATE_LIKE.search(c) for c in filled)):
            held.append((line, cells, " · ".join(filled)))
            continue
        for h_line, h_cells, _ in held:
            yield h_line, h_cells
        held, deal_rows = [], True
        yield line, cells
    if not deal_rows:  # nothing but such rows: no footer, a table of bad rows (reported as such)
        for h_line, h_cells, _ in held:
            yield h_line, h_cells
        return
    footer.extend((line, text) for line, _, text in held)


def segment_key(name: str) -> str:
    """What makes two spellings one segment: ``Inbound``, ``inbound`` and ``In  bound``'s
    ``in bound`` (case and runs of spaces ignored), and ``Café`` written with its accent
    apart (as macOS writes file names) or not (NFC). Names read elsewhere (``--segment``, a
    customer log's segments) are matched to the scenario's by it."""
    return " ".join(unicodedata.normalize("NFC", name).split()).casefold()


def same_segment(name: str, segments) -> str:
    """``name`` as spelt among ``segments`` (:func:`segment_key`), else ``name`` itself."""
    key = segment_key(name)
    return next((s for s in segments if segment_key(s) == key), name)


NO_SEGMENT = "(no segment)"
"""The segment of a deal whose segment cell is blank (with a segment column)."""


def _one_spelling(deals: list[Deal]) -> tuple[list[Deal], list[str]]:
    """``deals`` with segment names that differ only in case or inner spacing (``Inbound``,
    ``inbound``, ``In  bound``) made one, the most frequent spelling (the first found on a
    tie), and what was merged, as text (``'inbound' (120 deals) as 'Inbound' (480)``).
    Outcome values are matched ignoring case too: an export typed by hand spells one
    segment several ways, and each spelling would otherwise be fitted apart on a part of
    its deals."""
    counts: dict[str, int] = {}
    for d in deals:
        counts[d.segment] = counts.get(d.segment, 0) + 1
    groups: dict[str, list[str]] = {}
    for name in counts:  # in the order first found
        groups.setdefault(segment_key(name), []).append(name)
    rename, said = {}, []
    for names in groups.values():
        if len(names) < 2:
            continue
        keep = max(names, key=lambda n: counts[n])  # the first of the most frequent
        for n in names:
            if n != keep:
                rename[n] = keep
                alike = unicodedata.normalize("NFC", n) == unicodedata.normalize("NFC", keep)  # they look the same
                said.append(f"{n!r} ({counts[n]:,} deal{'s' * (counts[n] != 1)}) as {keep!r} ({counts[keep]:,})"
                            + (" (the same name in another Unicode form)" if alike else ""))
    if not rename:
        return deals, []
    return [replace(d, segment=rename[d.segment]) if d.segment in rename else d for d in deals], said


def _text(value) -> str:
    """A cell as text (stripped): an id, an outcome, a segment."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _few_dropped(shown: str, dropped: dict[str, list[int]], dropped_as: Counter, deals: list[Deal], n_rows: int,
                 unit: str) -> None:
    """Refuse a ``--drop-bad-rows`` that would leave out more than :data:`MAX_DROPPED` of the
    rows, or half of the won or of the lost deals (ScenarioError saying which, and why)."""
    n = sum(len(v) for v in dropped.values())
    if not n:
        return
    kept = Counter(d.outcome for d in deals)
    for outcome in ("won", "lost"):
        gone = dropped_as.get(outcome, 0)
        if gone and gone > 0.5 * (gone + kept[outcome]):
            raise ScenarioError(shown, [Problem("", (
                f"--drop-bad-rows would leave out {gone} of the {gone + kept[outcome]} {outcome} deals, and the "
                f"conversion would be read without them (too {'low' if outcome == 'won' else 'high'}); rows: "
                f"{_reasons(dropped, unit)}. So many of one outcome is a column or an outcome value, not a few bad "
                "rows: e.g. their close dates are in another column (--column closed= must name one column "
                "holding the close dates of won and lost deals alike)"))])
    if n > MAX_DROPPED * n_rows:
        raise ScenarioError(shown, [Problem("", (
            f"--drop-bad-rows would leave out {n} of the {n_rows} rows ({n / n_rows:.0%}; it is for a few bad rows, "
            f"at most {MAX_DROPPED:.0%}): {_reasons(dropped, unit)}. Check the columns mapped (--column) and the "
            "date format (--date-format)"))])


def _dropped(dropped: dict[str, list[int]], unit: str = "line") -> str:
    """``left out 3 rows that are no deal (--drop-bad-rows): 2 with a negative amount (lines 4, 9), ...``"""
    n = sum(len(v) for v in dropped.values())
    return f"left out {_count(range(n), 'row')} that cannot be read as a deal (--drop-bad-rows): " + _reasons(
        dropped, unit)


def _reasons(dropped: dict[str, list[int]], unit: str = "line") -> str:
    """``2 with a negative amount (lines 4, 9); 1 with ...``"""
    return "; ".join(f"{len(v)} with {reason} ({_lines(v, unit=unit)})" for reason, v in dropped.items())


def _count(items: Sized, noun: str) -> str:
    return f"{len(items)} {noun}{'s' * (len(items) != 1)}"


def _lines(lines: list[int], most: int = 8, unit: str = "line") -> str:
    """``line 5`` or ``lines 5, 9, 12 and 40 more`` (or rows)."""
    shown = ", ".join(map(str, lines[:most]))
    return f"{unit}{'s' * (len(lines) != 1)} {shown}" + (f" and {len(lines) - most} more" if len(lines) > most else "")


def _unmapped_message(unmapped: dict, column: str, outcome_map: dict, unit: str = "line") -> str:
    """Each outcome value mapped to nothing, with its count and first line, and the
    ``--outcome`` options that would map them."""
    values = sorted(unmapped.values(), key=lambda e: (-e[0], e[1]))
    rows = sum(e[0] for e in values)
    lines = [(f"column {column!r} (the outcome) holds {len(values)} value{'s' * (len(values) != 1)} mapped to no "
              f"outcome ({rows} row{'s' * (rows != 1)}); each row must be won, lost or open:")]
    for count, line, spelling in values[:MAX_VALUES]:
        lines.append(f"    {_show(spelling)}" if spelling else "    (blank)")
        lines[-1] += f": {count} row{'s' * (count != 1)} (first on {unit} {line})"
    if len(values) > MAX_VALUES:
        rest = values[MAX_VALUES:]
        lines.append(f"    and {len(rest)} more values ({sum(e[0] for e in rest)} rows)")
    known = sorted({k for k, v in outcome_map.items()})
    lines.append(f"  values mapped now: {', '.join(repr(k) for k in known)}")
    guess: dict[str, list[str]] = {o: [] for o in OUTCOMES}
    for _, _, spelling in values[:MAX_VALUES]:
        if spelling:
            words = set(re.split(r"[^a-z]+", spelling.lower()))
            guess["won" if "won" in words else "lost" if words & {"lost", "closed"} else "open"].append(spelling)
    options = [_option(o, v) for o, v in guess.items() if v]
    if options:
        lines.append("  map them with --outcome OUTCOME=VALUES, e.g. (check each value's outcome):")
        lines.append("    " + " ".join(options))
    if len(values) > MAX_VALUES:
        lines.append(f"  (so many values: is {column!r} the outcome column? If not, name it with "
                     "--column outcome=SOURCE)")
    if any(not e[2] for e in values):
        lines.append("  a blank outcome cannot be mapped: fill it in or remove those rows")
    return "\n".join(lines)


def _option(outcome: str, values: list[str]) -> str:
    """``--outcome open="A,B"`` as typed in a shell (values with commas CSV-quoted)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(values)
    text = f"{outcome}={buf.getvalue()}"
    if re.search(r'["$`\\!]', text):
        return f"--outcome {shlex.quote(text)}"
    return f'--outcome {outcome}="{text.partition("=")[2]}"'


def load_deals(history: Path | str, preset: str, stages: str | None = None, segment_column: str | None = None,
               mapping=(), outcomes: dict | None = None,
               warnings: list | None = None, drop_bad_rows: bool = False, *, query: str | None = None,
               date_format: str | None = None, decimal: str | None = None,
               found: dict | None = None) -> tuple[list[Deal], list[str], bool]:
    """Deals, stage names and whether losses are recorded, for a history and a preset.

    ``history``: a file (CSV, Parquet, XLSX), a DuckDB database or a ``postgresql://`` URL
    (both with ``query``); ``stages``: comma-separated stage columns (for the generic
    preset); ``mapping``: ``NAME=SOURCE`` items mapping our column names to the file's;
    ``outcomes``: the file's outcome values to won, lost or open (:func:`parse_outcomes`),
    over the preset's map (these win); ``warnings`` is appended with what looks off in the
    file; ``drop_bad_rows``, ``date_format``, ``decimal`` and ``found`` (the history's
    currency): see :func:`read_history`.

    Raises
    ------
    ValueError
        When the stages are not known, or a mapping item is malformed, names no column of
        ours or names one twice (a usage error).
    ScenarioError
        When the file is not a readable history (see :func:`read_history`).
    """
    if preset == "olist":
        if mapping or outcomes or query or date_format or decimal:
            raise ValueError("--column, --outcome, --query, --date-format and --decimal do not apply to --preset "
                             "olist, which reads the dataset's own files")
        return read_olist(Path(history), warnings=warnings, drop_bad_rows=drop_bad_rows), ["lead"], False
    spec = PRESETS[preset]
    stage_list = [s.strip() for s in stages.split(",") if s.strip()] if stages else spec["stages"]
    if not stage_list:
        raise ValueError("give --stages (the stage columns, in order) or a --preset")
    for s in stage_list:
        why = _name_problem(s)
        if why:
            raise ValueError(f"--stages: the stage {_show(s)} {why}")
    repeated = sorted({s for s in stage_list if stage_list.count(s) > 1})
    if repeated:
        raise ValueError(f"--stages names {', '.join(repeated)} twice; expected each stage once, in funnel order")
    clash = [s for s in stage_list if s in FIELDS]
    if clash:
        raise ValueError(f"--stages: {', '.join(clash)} is one of our column names ({', '.join(FIELDS)}); "
                         "name the stage otherwise and map it with --column STAGE=SOURCE")
    columns = dict(spec["columns"])
    ours = (*FIELDS, *stage_list)
    user = set()
    for item in mapping:
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value:
            raise ValueError(f"--column expects NAME=SOURCE; got {item!r}")
        if key not in ours:
            raise ValueError(f"--column {item!r}: {key!r} is not one of our names; expected one of "
                             f"{', '.join(ours)}")
        if key in user and columns[key] != value:
            raise ValueError(f"--column maps {key} twice (to {columns[key]!r} and {value!r}); expected each name "
                             "once")
        columns[key] = value
        user.add(key)
    merged = {**spec.get("outcomes", {}), **(outcomes or {})}
    if date_format is not None:
        check_date_format(date_format)
    if decimal not in (None, ".", ","):
        raise ValueError(f"--decimal expects . or , (the decimal separator of the amounts); got {decimal!r}")
    deals = read_history(history, stage_list, columns, merged, segment_column,
                         required=user & {"segment", "amount", "currency"}, warnings=warnings, drop_bad_rows=drop_bad_rows,
                         query=query, date_format=date_format, decimal=decimal, found=found)
    return deals, stage_list, True


OLIST_FILES = {"olist_marketing_qualified_leads_dataset.csv": ("mql_id", "first_contact_date", "origin"),
               "olist_closed_deals_dataset.csv": ("mql_id", "won_date")}
"""The Olist marketing-funnel files read, and the columns read from each."""


def read_olist(folder: Path, *, warnings: list | None = None, drop_bad_rows: bool = False) -> list[Deal]:
    """The Olist marketing funnel: MQLs (one stage, ``lead``) won when they appear in the
    closed deals; never-won leads are open (the data records no losses). Segment: origin.

    Each file is read as :func:`read_history` reads a history (bounded, regular UTF-8 CSV,
    problems with their lines); a win dated before the lead's first contact (one in the
    published data) is read with a warning, its time counting as 0 days.
    """
    folder = Path(folder)
    names = " and ".join(OLIST_FILES)
    if not folder.is_dir():
        raise ScenarioError(str(folder), [Problem("", f"is not a folder; --preset olist reads the Olist "
                                                      f"marketing-funnel folder, with {names} in it")])
    tables = []
    for name, wanted in OLIST_FILES.items():
        path = folder / name
        if not path.exists():
            raise ScenarioError(str(folder), [Problem("", f"is not the Olist marketing-funnel folder: expected "
                                                          f"{names} in it; {name} is not there")])
        shown = str(path)
        records = _records(_read_text(path, shown, "the Olist dataset's CSV file"), shown)
        header, index = _header(records, shown, wanted)
        missing = [c for c in wanted if c not in index]
        if missing:
            raise ScenarioError(shown, [Problem("", f"lacks {', '.join(map(repr, missing))}; its columns are: "
                                                    f"{_names(header)}")])
        rows = []
        for line, cells in records:
            rows.append((line, {c: (cells[i].strip() if i < len(cells) else "") for c, i in index.items()}))
        tables.append((shown, rows))
    (mql_file, mqls), (won_file, closed) = tables
    problems: list[Problem] = []
    dropped: dict[str, list[int]] = {}
    unlisted = [0]  # bad rows past MAX_REPORTED: counted, not listed

    def bad(file: str, line: int, message: str, reason: str) -> None:
        if drop_bad_rows:
            dropped.setdefault(reason, []).append(line)
        elif len(problems) < MAX_REPORTED:
            problems.append(Problem("", message, line=line, file=file))
        else:
            unlisted[0] += 1

    won: dict[str, tuple[int, date]] = {}
    for line, r in closed:
        try:
            day = _date(r["won_date"])
        except _BadCell as exc:
            bad(won_file, line, f"won_date: {exc}", exc.reason)
            continue
        if not r["mql_id"] or day is None:
            bad(won_file, line, "mql_id and won_date must not be blank", "a blank mql_id or won_date")
        elif r["mql_id"] in won:
            problems.append(Problem("", f"mql_id {r['mql_id']!r} is also on line {won[r['mql_id']][0]}; expected "
                                        "one row per closed deal", line=line, file=won_file))
        else:
            won[r["mql_id"]] = (line, day)
    deals: list[Deal] = []
    seen: dict[str, int] = {}
    early: list[int] = []
    for line, r in mqls:
        try:
            entered = _date(r["first_contact_date"])
        except _BadCell as exc:
            bad(mql_file, line, f"first_contact_date: {exc}", exc.reason)
            continue
        if not r["mql_id"]:
            bad(mql_file, line, "mql_id is blank", "a blank mql_id")
            continue
        if r["mql_id"] in seen:
            problems.append(Problem("", f"mql_id {r['mql_id']!r} is also on line {seen[r['mql_id']]}; expected one "
                                        "row per lead", line=line, file=mql_file))
            continue
        seen[r["mql_id"]] = line
        w = won.get(r["mql_id"])
        if w is not None and entered is not None and w[1] < entered:
            early.append(w[0])
        deals.append(Deal(r["mql_id"], (r["origin"] or "unknown").replace(" ", "_"), [entered],
                          "won" if w else "open", w[1] if w else None, None))
    if unlisted[0]:  # review: 600 bad rows were said as "20 problems"
        problems.append(Problem("", f"and {unlisted[0]} more problems like these", more=unlisted[0]))
    if problems:
        raise ScenarioError(str(folder), problems)
    if not deals:
        raise ScenarioError(mql_file, [Problem("", "has no lead" + (f": {_dropped(dropped)}" if dropped else ""))])
    if warnings is not None:
        if dropped:
            warnings.append(f"{folder}: {_dropped(dropped)}")
        if early:
            warnings.append(f"{won_file}: {_count(early, 'deal')} won before the lead's first contact "
                            f"({_lines(sorted(early))}): those times count as 0 days")
    return deals


def won_dates(deals: list[Deal], as_of: date) -> list[date]:
    """The dates of the wins known on ``as_of``, in order."""
    return sorted(d.closed for d in deals if d.outcome == "won" and d.closed is not None and d.closed <= as_of)


QUIET_YEAR_DAYS = 365
"""Days before the last recorded date over which :func:`recorded_through` measures the
history's quiet spells (a week's, a holiday's, a quiet season's, if the year had one)."""
TAIL_SHARE = 0.02
"""The share of a history's recorded days, at its end, that :func:`recorded_through` may pass
over as a cluster of stray dates after a silence the history never had before."""
MIN_SLACK_DAYS = 3
"""Days after the last recorded date that always count as seen: the export's own day, taken
part-way through, and a weekend."""


def recorded_through(deals: list[Deal]) -> tuple[date, int] | None:
    """How far the export looks: its last recorded date and the days after it that count as
    seen, or None for a history with no date.

    The last recorded date is the latest day a deal entered a stage or was won or lost (an
    open deal's close date is only expected, so it does not count). An export taken some
    days later shows nothing of those days, which looks the same as days with no deal at
    all: the days after it count as seen as long as they are no more than the longest run
    of days without any record in the :data:`QUIET_YEAR_DAYS` before it (a history quiet
    every weekend, exported on a Sunday, ends on a Friday; a business quiet every summer
    showed a summer), and at least :data:`MIN_SLACK_DAYS`. Past that, a forecast would
    read the export's end as a stop of every new deal and every close. A record far after
    all the others (a placeholder close date such as 2099-12-31 on a lost deal: further
    from the one before it than twice that year's longest quiet spell, and than a month)
    is not the export's end and is passed over, as are a few such close dates together (at
    most :data:`TAIL_SHARE` of the days, none a day a deal entered a stage: five close dates
    typed a year ahead).
    """
    entries = {e for d in deals for e in d.entered if e is not None}
    days = set(entries)
    days.update(d.closed for d in deals if d.closed is not None and d.outcome in ("won", "lost"))
    if not days:
        return None
    ordered = sorted(days)

    def quiet_before(k: int) -> int:
        """The longest run of days without a record in the year up to ``ordered[k]``."""
        start = ordered[k] - timedelta(days=QUIET_YEAR_DAYS)
        recent = [x for x in ordered[:k + 1] if x >= start]
        return max(((b - a).days - 1 for a, b in itertools.pairwise(recent)), default=0)

    def apart(k: int) -> bool:
        """Whether ``ordered[k]`` comes after a silence the history before it never had."""
        return (ordered[k] - ordered[k - 1]).days - 1 > max(2 * quiet_before(k - 1), 31)

    last = len(ordered) - 1
    # a few close dates together far after the rest (five typed 2027 for 2026, a month apart
    # from each other) are no more the export's end than one is: the earliest such silence
    # among the last TAIL_SHARE of the days ends the history, when no deal entered a stage
    # after it (entries after a silence are a business back at work, not typing)
    tail = int(len(ordered) * TAIL_SHARE)
    last = next((k - 1 for k in range(len(ordered) - tail, len(ordered))
                 if k > 0 and apart(k) and not any(x in entries for x in ordered[k:])), last)
    while last > 0 and apart(last):
        last -= 1
    return ordered[last], max(quiet_before(last), MIN_SLACK_DAYS)


def beyond_records(deals: list[Deal], day: date, seen: tuple[date, int] | None = None) -> str | None:
    """Why ``day`` is past what the history recorded (:func:`recorded_through`, or ``seen``,
    its result for ``deals`` when already at hand), or None when it is within it."""
    seen = seen or recorded_through(deals)
    if seen is None:
        return None
    last, quiet = seen
    if (day - last).days <= quiet:
        return None
    return (f"the history's last recorded date is {last} (the latest day a deal entered a stage or was won or "
            f"lost), {(day - last).days} days before {day}" +
            f", more than the {quiet} days that count as seen after it (its longest spell without a record in "
            f"the year before, at least {MIN_SLACK_DAYS}): the export shows nothing after it, so those days would "
            "read as no new deal and no close")
