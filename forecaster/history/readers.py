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
import os
import re
import shlex
import stat
from collections.abc import Sized
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import NotRequired, TypedDict

from forecaster.errors import Problem, ScenarioError
from forecaster.scenario.validation import MAX_NAME, unsafe_character

OUTCOMES = ("won", "lost", "open")
FIELDS = ("deal_id", "segment", "outcome", "closed", "amount")
"""Our column names besides the stages (see the module docstring)."""
MAX_REPORTED = 20
"""Problems listed one by one; the rest are counted."""
MAX_VALUES = 10
"""Unmapped outcome values listed one by one."""
MAX_BYTES = 256 * 2**20
"""The largest history file read [bytes]: more is refused, not read (a stray /dev/zero or
a database dump would otherwise fill the memory)."""
MAX_RECORD_CHARS = 2**20
"""The longest row [characters, its quoted cells' line breaks included]."""
MAX_COLUMNS = 10_000
"""The most columns a header may have."""
MAX_AMOUNT = 1e15
"""The largest deal value read [currency]: above it, sums of won deals lose their cents and
overflow sooner or later; such a value is a unit or typing error."""
FIRST_DATE, LAST_DATE = date(1900, 1, 1), date(2199, 12, 31)
"""The dates a history may hold (and the range of ``--as-of`` and cutoffs): outside them a
date is a typing error (``0025-03-01``) or a placeholder (``9999-12-31``)."""


class Preset(TypedDict):
    """A CRM export's columns and outcome values, named with ``--preset``."""
    stages: list[str] | None           # the stage columns, in funnel order (None: --stages names them)
    columns: dict[str, str | None]     # our column name -> the file's (None: the file has no such column)
    outcomes: NotRequired[dict[str, str]]  # the file's outcome value -> won, lost or open


PRESETS: dict[str, Preset] = {
    "generic": {"stages": None, "columns": {}},
    # Maven Analytics CRM opportunities (sales_pipeline.csv): one dated stage, engaging
    "maven": {"stages": ["engaging"], "columns": {"deal_id": "opportunity_id", "engaging": "engage_date",
                                                  "outcome": "deal_stage", "closed": "close_date",
                                                  "amount": "close_value", "segment": None},
              "outcomes": {"won": "won", "lost": "lost", "engaging": "open", "prospecting": "open"}},
    # a typical CRM opportunity export (Salesforce-style field names): one stage, from creation.
    # Only the closed values are mapped: open stage names differ between CRMs (and are
    # customised), so they are named with --outcome open="..." (the error lists them)
    "crm": {"stages": ["opportunity"], "columns": {"deal_id": "Id", "opportunity": "CreatedDate",
                                                   "outcome": "StageName", "closed": "CloseDate",
                                                   "amount": "Amount", "segment": None},
            "outcomes": {"closed won": "won", "closed lost": "lost"}},
}


@dataclass
class Deal:
    deal_id: str
    segment: str
    entered: list          # date or None, one per stage
    outcome: str           # won | lost | open
    closed: date | None    # None for open deals
    amount: float | None   # in the history's currency


def _key(value: str) -> str:
    """How an outcome value is matched: case-insensitive, surrounding whitespace ignored."""
    return value.strip().casefold()


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


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _read_text(path: Path, shown: str, expected: str = "a CSV file (one row per deal)") -> str:
    """The text of a history file: a regular file of at most :data:`MAX_BYTES` of UTF-8.

    Never blocks (a FIFO is refused without waiting for a writer) and never reads more than
    :data:`MAX_BYTES` + 1 bytes (``/dev/zero``, a file that grows).
    """
    def refused(message: str, line: int | None = None) -> ScenarioError:
        return ScenarioError(shown, [Problem("", message, line=line)])

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise refused(f"does not exist; expected {expected}") from None
    except IsADirectoryError:
        raise refused(f"is a folder; expected {expected}") from None
    except OSError as exc:
        raise refused(f"cannot be read: {exc.strerror or exc}; expected {expected}") from None
    too_big = refused(f"is larger than {MAX_BYTES // 2**20} MiB, the most a history may be; expected {expected} "
                      "(leave out the columns not needed, or the oldest rows)")
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise refused(f"is a folder; expected {expected}")
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
            raise refused(f"is {kind}, not a regular file; expected {expected}")
        if st.st_size > MAX_BYTES:
            raise too_big
        with open(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise refused(f"cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_BYTES:  # it grew while read
        raise too_big
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise refused("is UTF-16 text; save it as UTF-8 CSV")
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise refused(f"is not text: it holds a NUL byte (byte {nul}), so it is a binary file or not UTF-8 "
                      f"(UTF-16?); expected {expected}, saved as UTF-8", line=raw.count(b"\n", 0, nul) + 1)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise refused(f"is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 CSV",
                      line=line) from None


class _LongRow(Exception):
    pass


def _records(text: str, shown: str):
    """Each CSV record whose cells are not all blank, the header first, as (its first line
    in the file, its cells); a record longer than :data:`MAX_RECORD_CHARS` is refused."""
    source = io.StringIO(text, newline="")
    size = 0

    def lines():
        nonlocal size
        while piece := source.readline(MAX_RECORD_CHARS + 1):
            size += len(piece)
            if size > MAX_RECORD_CHARS:
                raise _LongRow
            yield piece

    reader = csv.reader(lines())
    line = 1
    try:
        for cells in reader:
            first, line, size = line, reader.line_num + 1, 0  # a quoted cell may span lines
            if any(c.strip() for c in cells):
                yield first, cells
    except csv.Error as exc:
        raise ScenarioError(shown, [Problem("", f"is not a readable CSV file: {exc}", line=line)]) from None
    except _LongRow:
        raise ScenarioError(shown, [Problem("", f"has a row longer than {MAX_RECORD_CHARS:,} characters (a quote "
                                                "never closed?); expected a CSV file (one row per deal)",
                                            line=line)]) from None


def _header(records, shown: str, wanted) -> tuple[list[str], dict[str, int]]:
    """The header's names (stripped) and the column of each of ``wanted`` (names of the
    file's) found in it, once each; the file is refused when empty, wider than
    :data:`MAX_COLUMNS` or when a wanted name is in the header twice."""
    first = next(records, None)
    if first is None:
        raise ScenarioError(shown, [Problem("", "is empty; expected a header row and one row per deal")])
    line, header = first[0], [c.strip() for c in first[1]]
    if len(header) > MAX_COLUMNS:
        raise ScenarioError(shown, [Problem("", f"has {len(header):,} columns, more than the {MAX_COLUMNS:,} a "
                                                "history may have; expected a header row of column names",
                                            line=line)])
    twice = [(name, [i + 1 for i, h in enumerate(header) if h == name]) for name in dict.fromkeys(wanted)
             if header.count(name) > 1]
    if twice:
        raise ScenarioError(shown, [Problem("", "has " + ", ".join(
            f"{len(at)} columns named {name!r} (columns {', '.join(map(str, at))})" for name, at in twice)
            + "; expected each column read once (rename the others)", line=line)])
    return header, {name: header.index(name) for name in wanted if name in header}


def _names(header: list[str], most: int = 40) -> str:
    """The header's names, the first ``most`` of them."""
    shown = ", ".join(header[:most])
    return shown + (f" and {len(header) - most:,} more" if len(header) > most else "")


def read_history(path: Path, stages: list[str], columns: dict, outcomes: dict | None = None,
                 segment_column: str | None = None, *, required=(), warnings: list | None = None,
                 drop_bad_rows: bool = False) -> list[Deal]:
    """Read a history CSV into deals (see the module docstring for the format).

    Parameters
    ----------
    path : Path
        The CSV file.
    stages : list of str
        The stage columns' names (ours), in funnel order.
    columns : dict
        Our column names (``deal_id``, ``outcome``, a stage, ...) to the file's; names not
        given are the file's own. ``segment: None`` means one segment, ``all``.
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

    Raises
    ------
    ScenarioError
        With every problem found, each with its line: missing columns, outcome values mapped
        to nothing (each with its count, and the ``--outcome`` that maps them), bad dates or
        amounts, repeated or blank deal ids, won or lost deals without a close date or
        closed before they entered their first stage; a file that is not a bounded, regular
        UTF-8 CSV file.
    """
    shown = str(path)
    col = {name: columns.get(name, name) for name in ("deal_id", "outcome", "closed", "amount", *stages)}
    col["segment"] = segment_column or columns.get("segment", "segment")
    records = _records(_read_text(path, shown), shown)
    header, index = _header(records, shown, [v for v in col.values() if v is not None])
    must = {"deal_id", "outcome", "closed", *stages, *required} | ({"segment"} if segment_column else set())
    missing = [f"{k} (column {v!r})" for k, v in col.items() if k in must and v not in index]
    if missing:
        raise ScenarioError(shown, [Problem("", f"lacks {', '.join(missing)}; its columns are: {_names(header)}"
                                            ". Map a name to another column with --column NAME=SOURCE")])
    shared: dict[str, list[str]] = {}
    for k, v in col.items():
        if v in index:
            shared.setdefault(v, []).append(k)
    shared = {v: ks for v, ks in shared.items() if len(ks) > 1}
    if shared:
        raise ScenarioError(shown, [Problem("", "; ".join(f"{' and '.join(ks)} would all read column {v!r}"
                                                          for v, ks in shared.items())
                                            + "; expected each from its own column (--column NAME=SOURCE)")])
    index = {name: index[v] for name, v in col.items() if v in index}
    outcome_map = {k: v for k, v in zip(OUTCOMES, OUTCOMES)}
    outcome_map.update({_key(k): v for k, v in (outcomes or {}).items()})

    deals, problems = [], []
    unmapped: dict[str, list] = {}          # key -> [count, first line, spelling as first found]
    seen: dict[str, tuple[int, bytes]] = {}  # deal id -> (line, digest of its cells)
    repeated, backwards, before_stage = [], [], []
    dropped: dict[str, list[int]] = {}      # reason -> lines
    n_problems = n_rows = 0

    def problem(line: int, message: str) -> None:
        nonlocal n_problems
        n_problems += 1
        if n_problems <= MAX_REPORTED:
            problems.append(Problem("", message, line=line))

    def cell(cells: list[str], name: str) -> str:
        i = index.get(name)
        return cells[i].strip() if i is not None and i < len(cells) else ""

    for line, cells in records:
        n_rows += 1
        bad: list[tuple[str, str]] = []  # (message, reason) of what makes the row no deal
        digest = hashlib.blake2b("\x00".join(c.strip() for c in cells).encode(), digest_size=16).digest()
        deal_id = cell(cells, "deal_id")
        if not deal_id:
            bad.append((f"deal_id (column {col['deal_id']!r}) is blank", "a blank deal id"))
        elif deal_id in seen:
            first, before = seen[deal_id]
            if before == digest:
                repeated.append(line)
                continue
            problem(line, f"deal_id {_show(deal_id)} is also on line {first}, with other values; expected one row "
                          "per deal")
        else:
            seen[deal_id] = (line, digest)
        raw_outcome = cell(cells, "outcome")
        outcome = outcome_map.get(_key(raw_outcome))
        if outcome is None:
            entry = unmapped.setdefault(_key(raw_outcome), [0, line, raw_outcome])
            entry[0] += 1
        dates = {}
        for name in (*stages, "closed"):
            try:  # an open deal's close date is ignored: only its form is checked
                dates[name] = _date(cell(cells, name), bounded=not (name == "closed" and outcome == "open"))
            except _BadCell as exc:
                bad.append((f"{name} (column {col[name]!r}): {exc}", exc.reason))
        try:
            amount = _amount(cell(cells, "amount"))
        except _BadCell as exc:
            bad.append((f"amount (column {col['amount']!r}): {exc}", exc.reason))
        closed = dates.get("closed") if outcome != "open" else None
        entered = [dates.get(s) for s in stages]
        known = [(s, d) for s, d in zip(stages, entered) if d is not None]
        if outcome in ("won", "lost") and "closed" in dates and closed is None:
            bad.append((f"the deal is {outcome} ({col['outcome']} {_show(raw_outcome)}) but closed (column "
                        f"{col['closed']!r}) is blank; expected the date it was {outcome}",
                        "an outcome won or lost but no close date"))
        segment = (cell(cells, "segment") or "all") if "segment" in index else "all"
        why = _name_problem(segment)
        if why:
            bad.append((f"segment (column {col['segment']!r}) {_show(segment)} {why}", "a segment that is no name"))
        if closed is not None and known:
            stage, day = min(known, key=lambda sd: sd[1])
            if closed < day:
                bad.append((f"closed {closed} (column {col['closed']!r}) is before {stage} {day} (column "
                            f"{col[stage]!r}); expected a deal to close on or after it entered its first stage",
                            "a close before its first stage"))
        if bad:
            if drop_bad_rows:
                dropped.setdefault(bad[0][1], []).append(line)
            else:
                for message, _ in bad:
                    problem(line, message)
            continue
        if outcome is None or not deal_id:
            continue
        if any(b[1] < a[1] for a, b in itertools.pairwise(known)):
            backwards.append(line)
        if closed is not None and known and closed < max(d for _, d in known):
            before_stage.append(line)
        deals.append(Deal(deal_id, segment, entered, outcome, closed, amount))

    if not n_rows:
        raise ScenarioError(shown, [Problem("", "has a header but no deals")])
    if unmapped:
        problems.insert(0, Problem("", _unmapped_message(unmapped, col["outcome"], outcome_map)))
    if n_problems > MAX_REPORTED:
        problems.append(Problem("", f"and {n_problems - MAX_REPORTED} more problems like these"))
    if problems:
        raise ScenarioError(shown, problems)
    if not deals:
        raise ScenarioError(shown, [Problem("", f"has no deal left: {_dropped(dropped)}")])
    if warnings is not None:
        if dropped:
            warnings.append(f"{shown}: {_dropped(dropped)}")
        if repeated:
            warnings.append(f"{shown}: {_count(repeated, 'row')} identical to an earlier row, read once "
                            f"({_lines(repeated)})")
        if backwards:
            warnings.append(f"{shown}: {_count(backwards, 'deal')} entered a stage before the one preceding it "
                            f"({_lines(backwards)}): those times count as 0 days")
        if before_stage:
            warnings.append(f"{shown}: {_count(before_stage, 'deal')} closed before entering their last stage "
                            f"({_lines(before_stage)}): those times count as 0 days")
    return deals


def _dropped(dropped: dict[str, list[int]]) -> str:
    """``left out 3 rows that are no deal (--drop-bad-rows): 2 with a negative amount (lines 4, 9), ...``"""
    n = sum(len(v) for v in dropped.values())
    return (f"left out {_count(range(n), 'row')} that cannot be read as a deal (--drop-bad-rows): "
            + "; ".join(f"{len(v)} with {reason} ({_lines(v)})" for reason, v in dropped.items()))


def _count(items: Sized, noun: str) -> str:
    return f"{len(items)} {noun}{'s' * (len(items) != 1)}"


def _lines(lines: list[int], most: int = 8) -> str:
    """``line 5`` or ``lines 5, 9, 12 and 40 more``."""
    shown = ", ".join(map(str, lines[:most]))
    return f"line{'s' * (len(lines) != 1)} {shown}" + (f" and {len(lines) - most} more" if len(lines) > most else "")


def _unmapped_message(unmapped: dict, column: str, outcome_map: dict) -> str:
    """Each outcome value mapped to nothing, with its count and first line, and the
    ``--outcome`` options that would map them."""
    values = sorted(unmapped.values(), key=lambda e: (-e[0], e[1]))
    rows = sum(e[0] for e in values)
    lines = [(f"column {column!r} (the outcome) holds {len(values)} value{'s' * (len(values) != 1)} mapped to no "
              f"outcome ({rows} row{'s' * (rows != 1)}); each row must be won, lost or open:")]
    for count, line, spelling in values[:MAX_VALUES]:
        lines.append(f"    {_show(spelling)}" if spelling else "    (blank)")
        lines[-1] += f": {count} row{'s' * (count != 1)} (first on line {line})"
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


def load_deals(history: Path, preset: str, stages: str | None = None, segment_column: str | None = None,
               mapping=(), outcomes: dict | None = None,
               warnings: list | None = None, drop_bad_rows: bool = False) -> tuple[list[Deal], list[str], bool]:
    """Deals, stage names and whether losses are recorded, for a history and a preset.

    ``stages``: comma-separated stage columns (for the generic preset); ``mapping``:
    ``NAME=SOURCE`` items mapping our column names to the file's; ``outcomes``: the file's
    outcome values to won, lost or open (:func:`parse_outcomes`), over the preset's map
    (these win); ``warnings`` is appended with what looks off in the file;
    ``drop_bad_rows``: see :func:`read_history`.

    Raises
    ------
    ValueError
        When the stages are not known, or a mapping item is malformed, names no column of
        ours or names one twice (a usage error).
    ScenarioError
        When the file is not a readable history (see :func:`read_history`).
    """
    if preset == "olist":
        if mapping or outcomes:
            raise ValueError("--column and --outcome do not apply to --preset olist, which reads the dataset's own "
                             "files")
        return read_olist(history, warnings=warnings, drop_bad_rows=drop_bad_rows), ["lead"], False
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
    deals = read_history(history, stage_list, columns, merged, segment_column,
                         required=user & {"segment", "amount"}, warnings=warnings, drop_bad_rows=drop_bad_rows)
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

    def bad(file: str, line: int, message: str, reason: str) -> None:
        if drop_bad_rows:
            dropped.setdefault(reason, []).append(line)
        elif len(problems) < MAX_REPORTED:
            problems.append(Problem("", message, line=line, file=file))

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
