"""The installed base: reading and checking the CSV of customers at ``start`` (v2 A.5).

Columns: ``customer_id`` (unique) and ``segment`` (a segment whose ``customer`` block has
``subscription`` or ``repeat``), then by the segment's kind:

* subscriber: ``term_end`` (ISO date on or after ``start``: the day the next renewal is
  decided), ``value`` [currency] (the current term's; empty: drawn from the segment's
  ``deal_value``), ``renewals`` (renewals survived so far, whole, default 0) and optional
  ``term_start`` (ISO date before ``term_end``; empty: add_months(term_end, -term_months));
* repeat buyer: ``first_purchase`` and ``last_purchase`` (ISO dates, first <= last <
  ``start``) and ``purchases`` (repeat purchases so far, whole; 0 needs last = first);

and optionally ``owner`` (a rep of the team). Extra columns are ignored; an empty cell is an
absent value. Only the columns a row's kind needs must be in the header.

The file is read as the pipeline's is (:mod:`forecaster.scenario.pipeline`): a regular
file of UTF-8 text (a BOM is allowed), comma-separated, at most :data:`MAX_CUSTOMERS_BYTES`
with lines of at most :data:`MAX_LINE_BYTES`, read line by line. A file that is not CSV
text (binary, another encoding, a first line that is no header) is refused without quoting
anything of it; cells quoted in messages are escaped and cut short.

:func:`add_months` is v2's calendar rule 0.5.
"""
from __future__ import annotations

import calendar
import csv
import math
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import date
from pathlib import Path

from forecaster.errors import Problem
from forecaster.scenario.limits import MAX_VALUE
from forecaster.scenario.model import InstalledCustomer, Segment
from forecaster.scenario.validation import suggest
from forecaster.scenario.yamlio import NotRegularFile, format_size, open_input, show_text

KEY = "customers.file"
REQUIRED = ("customer_id", "segment")
"""Columns every customers file has."""
SUBSCRIPTION = ("term_end", "value", "renewals", "term_start")
"""A subscriber's columns, in the order they are named in messages."""
REPEAT = ("first_purchase", "last_purchase", "purchases")
"""A repeat buyer's columns."""
NEEDED = {"subscription": ("term_end",), "repeat": REPEAT}
"""The columns a row of each kind needs in the header (the others may be absent: empty)."""
OPTIONAL = ("owner",)
MAX_REPORTED = 25  # problems listed from one file before summarising the rest
MAX_CUSTOMERS_BYTES = 1024 ** 3
"""The most a customers CSV may hold [bytes] (it is read line by line, never whole)."""
MAX_LINE_BYTES = 1024 ** 2
"""The longest line a customers CSV may have [bytes]."""
MAX_COUNT = 1_000_000_000
"""The largest ``renewals`` or ``purchases`` of a customer."""
_SHOWN = 40  # characters of a cell quoted in a message
_COLUMNS = (*REQUIRED, *SUBSCRIPTION, *REPEAT, *OPTIONAL)
_KIND_WORDS = {"subscription": "a subscriber", "repeat": "a repeat buyer"}


def add_months(d: date, n: int) -> date:
    """The day with ``d``'s day of the month ``n`` calendar months after ``d`` (before it for
    n < 0), or the last day of that month when it is shorter (v2 rule 0.5).

    add_months(2027-01-31, 1) = 2027-02-28; add_months(2027-03-31, -1) = 2027-02-28;
    add_months(2028-02-29, 12) = 2029-02-28. Not invertible: add_months(add_months(d, 1), -1)
    may differ from ``d``.

    Raises
    ------
    OverflowError
        When the result falls outside the years 1 to 9999 (as ``date + timedelta`` does).
    """
    years, month0 = divmod(d.month - 1 + n, 12)
    year = d.year + years
    if not 1 <= year <= 9999:
        raise OverflowError("date value out of range")
    month = month0 + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def _show(cell: str) -> str:
    """A cell quoted, escaped and cut for a message."""
    return show_text(cell, _SHOWN)


def _suggest(word: str, choices: Collection[str]) -> str:
    return suggest(word, choices) if len(word) <= 100 else ""


class _Unreadable(Exception):
    """The file stops being a UTF-8 CSV text file part way; the message says where."""


def _norm(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


_KNOWN = {_norm(c) for c in _COLUMNS}
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")  # not the week dates Python also reads
_NUMBER = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")  # no 'inf', '1_000', hex
_NAME_LIKE = re.compile(r"^[\w .()\[\]/#%&+\-]{0,64}$")


def _looks_like_header(cells: list[str]) -> bool:
    """Whether a first row plausibly is a CSV header (so that it may be quoted back): it
    names one of the file's columns (in any case), or it has at least three cells that all
    read as column names. A line of prose or a password file's line is neither."""
    if any(_norm(c) in _KNOWN for c in cells):
        return True
    return len(cells) >= 3 and all(_NAME_LIKE.match(c.strip()) for c in cells)


def _lines(f, digest, shown_as: str) -> Iterator[str]:
    """The file's lines as text, each checked: UTF-8, no NUL, bounded in length and total."""
    total = 0
    lineno = 0
    while True:
        raw = f.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        lineno += 1
        total += len(raw)
        if digest is not None:
            digest.update(raw)
        if total > MAX_CUSTOMERS_BYTES:
            raise _Unreadable(f"{shown_as} is larger than {format_size(MAX_CUSTOMERS_BYTES)}, the most a customers "
                              "file may hold")
        if len(raw) > MAX_LINE_BYTES:
            raise _Unreadable(f"{shown_as} line {lineno} is longer than {format_size(MAX_LINE_BYTES)}; "
                              "is it a CSV text file?")
        if lineno == 1:
            if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise _Unreadable(f"{shown_as} is UTF-16 text, not a UTF-8 CSV text file; save it as CSV UTF-8")
            if raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
        if b"\x00" in raw:
            raise _Unreadable(f"{shown_as} is not a CSV text file: line {lineno} holds NUL bytes "
                              "(a binary file?)")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Unreadable(f"{shown_as} is not a CSV text file in UTF-8: line {lineno} holds the byte "
                              f"0x{raw[exc.start]:02x} ({exc.reason}); if it is a CSV, save it as CSV UTF-8"
                              ) from None
        yield text


def _kind(segment: Segment) -> str | None:
    """"subscription" or "repeat", or None for a segment whose customers cannot be installed."""
    customer = segment.customer
    if customer is None or (customer.subscription is None and customer.repeat is None):
        return None
    return customer.kind


def read_customers(path: Path, shown_as: str, *, start: date, segments: Mapping[str, Segment], reps: Collection[str],
                   line: int | None, digest=None) -> tuple[tuple[InstalledCustomer, ...], list[Problem]]:
    """Read and check a customers CSV (the installed base at ``start``, v2 A.5).

    Parameters
    ----------
    path : Path
        The file: a regular file of UTF-8 text, at most :data:`MAX_CUSTOMERS_BYTES`, read
        line by line. Nothing of a file that is not a CSV text file is quoted back.
    shown_as : str
        How the file is named in messages (as written in the scenario).
    start : date
        The scenario's first day.
    segments : mapping of str to Segment
        The scenario's segments; a value that is not a :class:`Segment` (one that failed its
        own checks) is a known name whose rows are not checked further.
    reps : collection of str
        The team's rep names; empty when the scenario has no team.
    line : int or None
        Line of ``customers.file`` in the scenario, for messages.
    digest : hashlib hash, optional
        Updated with the file's bytes as they are read.

    Returns
    -------
    customers : tuple of InstalledCustomer
        In the file's order; ``term_start`` None where the file leaves it to its default.
    problems : list of Problem
        Every problem of the file (at most :data:`MAX_REPORTED`, then a count), each under
        the key path ``customers.file``; empty when the file is valid.
    """
    problems: list[Problem] = []
    shown_as = shown_as if len(shown_as) <= 200 else shown_as[:200] + "..."

    def bad(message: str, more: int = 0) -> None:
        problems.append(Problem(KEY, message, line, more=more))

    if segments and all(isinstance(s, Segment) and s.customer is None for s in segments.values()):
        bad(f"names {shown_as!r}, an installed base, but no segment has a customer block; give a segment "
            "customer.subscription or customer.repeat, or remove customers")
        return (), problems
    try:
        f = open_input(path)
    except FileNotFoundError:
        bad(f"names {shown_as!r}, which does not exist (looked for {path})")
        return (), problems
    except NotRegularFile as exc:
        bad(f"names {shown_as!r}, which is {exc.kind}; expected a CSV file")
        return (), problems
    except ValueError:  # a NUL in the path
        bad(f"names {shown_as!r}, which is not a usable file name")
        return (), problems
    except OSError as exc:
        bad(f"names {shown_as!r}, which cannot be read: {exc.strerror or exc}")
        return (), problems
    with f:
        try:
            return _read_rows(_lines(f, digest, shown_as), shown_as, start=start, segments=segments,
                              reps=reps, bad=bad), problems
        except _Unreadable as exc:
            bad(str(exc))
            return (), problems
        except OSError as exc:  # e.g. EIO part way
            bad(f"names {shown_as!r}, which cannot be read: {exc.strerror or exc}")
            return (), problems


def _read_header(rows, shown_as: str, bad: Callable[[str], None]) -> list[str] | None:
    """The header's cells, stripped, or None (reported) when it is no customers header."""
    try:
        header = next(rows, None)
    except csv.Error:
        bad(f"{shown_as} is not a CSV text file: its first line cannot be read as CSV")
        return None
    if not header or not any(h.strip() for h in header):
        bad(f"{shown_as} is empty or starts with a blank line; expected a header row with "
            f"{', '.join(REQUIRED)} and the columns of its customers' kind")
        return None
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        if len(header) == 1:
            for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
                if sep in header[0] and any(_norm(c) in _KNOWN for c in header[0].split(sep)):
                    bad(f"{shown_as} is separated by {name}, not commas; save it as comma-separated CSV "
                        f"with the columns {', '.join(REQUIRED)}, ...")
                    return None
        if not _looks_like_header(header):
            bad(f"{shown_as} is not a customers CSV: its first line is not a header naming the columns "
                f"{', '.join(REQUIRED)}, ... (is it the right file?)")
            return None
        shown = ", ".join(_show(h) for h in header[:20]) + (f", ... ({len(header)} columns)"
                                                            if len(header) > 20 else "")
        near = sorted({_norm(h) for h in header} & set(_COLUMNS) - set(header))
        hint = f" (column names are exact, in lower case with underscores: {', '.join(near)})" if near else ""
        bad(f"{shown_as} lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
            f"its header is: {shown}{hint}")
        return None
    twice = [c for c in _COLUMNS if header.count(c) > 1]
    if twice:
        bad(f"{shown_as} names the column{'s' if len(twice) > 1 else ''} {', '.join(twice)} more than once "
            "in its header; which one holds the data is ambiguous")
        return None
    return header


def _read_rows(lines, shown_as: str, *, start: date, segments: Mapping[str, Segment], reps: Collection[str],
               bad: Callable[..., None]) -> tuple[InstalledCustomer, ...]:
    rows = csv.reader(lines)
    header = _read_header(rows, shown_as, bad)
    if header is None:
        return ()
    col = {name: header.index(name) for name in _COLUMNS if name in header}
    width = len(header)
    spelt = {_norm(h): h for h in header if _norm(h) in _KNOWN and h not in col}  # 'Term End' for term_end
    installable = [name for name, s in segments.items() if isinstance(s, Segment) and _kind(s)]

    customers: list[InstalledCustomer] = []
    seen: dict[str, int] = {}
    lacking_reported: set[str] = set()  # kind columns the header lacks, reported once each
    errors = 0
    while True:
        lineno = rows.line_num + 1  # where the record starts (a quoted cell may span lines)
        try:
            row = next(rows, None)
        except csv.Error as exc:
            bad(f"{shown_as} line {lineno} cannot be read as CSV ({exc}; a quote that is never closed?)")
            return ()
        if row is None:
            break
        if not any(cell.strip() for cell in row):
            continue
        cells = {name: (row[i].strip() if i < len(row) else "") for name, i in col.items()}
        where = f"{shown_as} line {lineno}"
        found: list[str] = []  # this row's problems
        failed = False  # the row is not a customer (a problem reported here or before)

        def problem(message: str, found: list[str] = found, where: str = where) -> None:
            found.append(f"{where}: {message}")

        if len(row) > width:
            problem(f"has {len(row)} cells but the header has {width} columns "
                    "(a comma inside a value that is not quoted?)")
        customer_id = cells["customer_id"]
        who = f"customer {_show(customer_id)}" if customer_id else "the customer"
        if not customer_id:
            problem("customer_id is empty")
        elif customer_id in seen:
            problem(f"customer_id {_show(customer_id)} repeats line {seen[customer_id]}; customer ids are unique")
        else:
            seen[customer_id] = lineno

        seg_name = cells["segment"]
        segment = segments.get(seg_name)
        kind = None
        if not seg_name:
            problem(f"segment is empty; expected a segment with customer.subscription or customer.repeat"
                    f"{': ' + ', '.join(installable) if installable else ''}")
        elif segment is None:
            problem(f"segment {_show(seg_name)} is not a segment of the scenario{_suggest(seg_name, segments)}; "
                    f"segments: {', '.join(segments)}")
        elif isinstance(segment, Segment):  # anything else failed its own checks, reported with the scenario's
            kind = _kind(segment)
            if kind is None:
                problem(_no_kind(who, seg_name, segment, cells, installable))

        # the other kind's cells: given, they would be silently ignored
        if kind is not None:
            other = "repeat" if kind == "subscription" else "subscription"
            own, theirs = (SUBSCRIPTION, REPEAT) if kind == "subscription" else (REPEAT, SUBSCRIPTION)
            given = [c for c in theirs if cells.get(c)]
            if given:
                problem(f"{who} has {given[0]} but segment {seg_name} has no customer.{other} "
                        f"(its customers are {'subscribers' if kind == 'subscription' else 'repeat buyers'}, "
                        f"with the columns {', '.join(own)}; leave {', '.join(given)} empty)")

        # a column the row's kind needs but the header lacks: reported at its first row
        lacking: list[str] = []
        if kind is not None:
            lacking = [c for c in NEEDED[kind] if c not in col]
            new = [c for c in lacking if c not in lacking_reported]
            if new:
                lacking_reported.update(new)
                s = "s" if len(new) > 1 else ""
                near = [_show(spelt[c]) for c in new if c in spelt]
                hint = (f" (the header has {', '.join(near)}: column names are exact, in lower case with "
                        "underscores)" if near else "")
                problem(f"{who} is {_KIND_WORDS[kind]} (segment {seg_name} has customer.{kind}), which needs "
                        f"the column{s} {', '.join(new)}; the header lacks {'them' if s else 'it'}{hint}")
            failed = bool(lacking)

        fields: dict = {}
        if kind == "subscription" and not lacking:
            assert segment is not None and segment.customer is not None and segment.customer.subscription
            fields = _subscription(cells, start, segment.customer.subscription.term_months, problem)
        elif kind == "repeat" and not lacking:
            fields = _repeat(cells, start, problem)

        owner = cells.get("owner") or None
        if owner is not None and owner not in reps:
            if reps:
                problem(f"owner {_show(owner)} is not a rep of the team{_suggest(owner, reps)}; "
                        f"reps: {', '.join(reps)}")
            else:
                problem(f"owner {_show(owner)} is given but the scenario has no team; "
                        "add team.reps or leave owner empty")
        for message in found:
            errors += 1
            if errors <= MAX_REPORTED:
                bad(message)
        if found or failed or kind is None:
            continue
        customers.append(InstalledCustomer(customer_id, seg_name, owner=owner, **fields))
    if errors > MAX_REPORTED:
        bad(f"{shown_as}: and {errors - MAX_REPORTED} more problems like these", more=errors - MAX_REPORTED)
    return tuple(customers)


def _no_kind(who: str, seg_name: str, segment: Segment, cells: dict, installable: list[str]) -> str:
    """The message for a row whose segment has neither customer.subscription nor customer.repeat."""
    why = ("it has no customer block" if segment.customer is None
           else "its customer block has neither subscription nor repeat: its customers are one-off")
    which = (f"segments with customer.subscription or customer.repeat: {', '.join(installable)}" if installable
             else "no segment of this scenario has customer.subscription or customer.repeat")
    given = [(c, "subscription") for c in SUBSCRIPTION if cells.get(c)] + [(c, "repeat") for c in REPEAT if cells.get(c)]
    if given:
        column, block = given[0]
        return f"{who} has {column} but segment {seg_name} has no customer.{block} ({why}); {which}"
    return (f"{who} is in segment {seg_name}, but {why}; an installed customer is a subscriber or a repeat "
            f"buyer; {which}")


def _date(cells: dict, column: str, problem: Callable[[str], None], expected: str) -> date | None:
    """The cell as an ISO date, or None (reported when empty or malformed)."""
    text = cells.get(column, "")
    if not text:
        problem(f"{column} is empty; expected {expected}")
        return None
    if _ISO_DATE.match(text):
        try:
            return date.fromisoformat(text)
        except ValueError:  # 2027-02-30
            pass
    problem(f"{column} must be an ISO date (YYYY-MM-DD), {expected}; got {_show(text)}")
    return None


def _number(text: str) -> float:
    """A decimal number (NaN for anything else: 'inf', '1_000', '0x10', '1,000')."""
    return float(text) if _NUMBER.match(text) else math.nan


def _count(cells: dict, column: str, problem: Callable[[str], None], meaning: str, *, default: int | None) -> int:
    """The cell as a whole number from 0 to MAX_COUNT (an empty cell: ``default``, or
    reported when there is none). -1 when reported."""
    text = cells.get(column, "")
    if not text:
        if default is not None:
            return default
        problem(f"{column} is empty; expected a whole number >= 0 ({meaning})")
        return -1
    x = _number(text)
    if not (math.isfinite(x) and x >= 0 and x == math.floor(x)):
        problem(f"{column} must be a whole number >= 0 ({meaning}"
                f"{f'; empty: {default}' if default is not None else ''}); got {_show(text)}")
        return -1
    if x > MAX_COUNT:
        problem(f"{column} must be at most {MAX_COUNT:,} ({meaning}); got {_show(text)}")
        return -1
    return int(x)


def _subscription(cells: dict, start: date, term_months: int, problem: Callable[[str], None]) -> dict:
    """A subscriber's fields of InstalledCustomer, its problems reported."""
    term_end = _date(cells, "term_end", problem,
                     f"the day the next renewal is decided, on or after start ({start.isoformat()})")
    if term_end is not None and term_end < start:
        problem(f"term_end must be on or after start ({start.isoformat()}): it is the first day after the current "
                f"term, on which the next renewal is decided; got {term_end.isoformat()}")
        term_end = None
    term_start = None
    if cells.get("term_start"):
        term_start = _date(cells, "term_start", problem, "the current term's first day, before term_end")
        if term_start is not None and term_end is not None:
            if term_start >= term_end:
                problem(f"term_start must be before term_end ({term_end.isoformat()}); got {term_start.isoformat()}")
            elif term_start > start:
                problem(f"term_start must be on or before start ({start.isoformat()}): the current term holds "
                        f"start; got {term_start.isoformat()}")
    elif term_end is not None:
        try:
            default = add_months(term_end, -term_months)
        except OverflowError:  # before the year 1: certainly before start
            default = None
        if default is not None and default > start:
            problem(f"term_end {term_end.isoformat()} is more than term_months ({term_months}) after start "
                    f"({start.isoformat()}), so the current term's default start, {default.isoformat()}, is after "
                    "start; give term_start (the current term's first day), or check term_end")
    value = None
    text = cells.get("value", "")
    if text:
        value = _number(text)
        if not (math.isfinite(value) and value >= 0):
            problem(f"value must be a number >= 0, the current term's value, or empty (drawn from the segment's "
                    f"deal_value); got {_show(text)}")
        elif value > MAX_VALUE:
            problem(f"value must be at most {MAX_VALUE:g}, the largest amount the engine adds exactly; "
                    f"got {_show(text)}")
    renewals = _count(cells, "renewals", problem, "renewals survived so far", default=0)
    return {"term_end": term_end, "value": value, "renewals": renewals, "term_start": term_start}


def _repeat(cells: dict, start: date, problem: Callable[[str], None]) -> dict:
    """A repeat buyer's fields of InstalledCustomer, its problems reported."""
    first = _date(cells, "first_purchase", problem, f"the day of the first purchase, before start ({start.isoformat()})")
    last = _date(cells, "last_purchase", problem,
                 f"the day of the last purchase, on or after first_purchase and before start ({start.isoformat()})")
    if last is not None and last >= start:
        problem(f"last_purchase must be before start ({start.isoformat()}): the history ends before the forecast "
                f"begins; got {last.isoformat()}")
    if first is not None and last is not None and first > last:
        problem(f"first_purchase must be on or before last_purchase ({last.isoformat()}); got {first.isoformat()}")
    elif first is not None and first >= start and last is None:
        problem(f"first_purchase must be before start ({start.isoformat()}); got {first.isoformat()}")
    purchases = _count(cells, "purchases", problem, "repeat purchases after the first, so far", default=None)
    if purchases == 0 and first is not None and last is not None and first < last:
        problem(f"purchases is 0 but first_purchase ({first.isoformat()}) and last_purchase ({last.isoformat()}) "
                "differ; with no repeat purchase the last purchase is the first (or count the repeat purchases)")
    return {"first_purchase": first, "last_purchase": last, "purchases": purchases}
