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
or ``2017-06-30 14:05``), which is ignored: the date is taken as written. The file is
UTF-8 (a byte-order mark is fine); rows whose cells are all blank are skipped. Problems
are reported together, each with its line in the file.
"""
from __future__ import annotations

import csv
import io
import itertools
import math
import re
import shlex
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from .errors import Problem, ScenarioError

OUTCOMES = ("won", "lost", "open")
FIELDS = ("deal_id", "segment", "outcome", "closed", "amount")
"""Our column names besides the stages (see the module docstring)."""
MAX_REPORTED = 20
"""Problems listed one by one; the rest are counted."""
MAX_VALUES = 10
"""Unmapped outcome values listed one by one."""

PRESETS = {
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
                  re.IGNORECASE)


def _date(text: str) -> date | None:
    """An ISO date, or None for a blank; a time after the date (``T14:05:00Z``, `` 14:05``)
    is ignored. Raises ValueError saying what was expected and found."""
    text = (text or "").strip()
    if not text:
        return None
    m = _ISO.fullmatch(text)
    if m is None:
        raise ValueError(f"expected an ISO date (YYYY-MM-DD, optionally with a time); found {text!r}")
    try:
        return date.fromisoformat(m.group(1))
    except ValueError as exc:
        raise ValueError(f"{m.group(1)!r} is not a date ({exc})") from None


def _amount(text: str) -> float | None:
    """A deal's value: a plain number >= 0, or None for a blank."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"expected a plain number >= 0 (like 1054 or 1054.50, no currency sign or thousands "
                         f"separator) or a blank; found {text!r}")
    return value


def _read_rows(path: Path, shown: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header (names stripped) and the data rows, each with its first line in the file;
    rows whose cells are all blank are left out."""
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ScenarioError(shown, [Problem("", "is a folder; expected a CSV file (one row per deal)")]) from None
    except OSError as exc:
        raise ScenarioError(shown, [Problem("", f"cannot be read: {exc.strerror or exc}")]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ScenarioError(shown, [Problem("", f"is not UTF-8 text ({exc.reason} at byte {exc.start}); save it "
                                            "as UTF-8 CSV", line=line)]) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header, rows, line = None, [], 1
    try:
        for cells in reader:
            first, line = line, reader.line_num + 1  # a quoted cell may span lines
            if not any(c.strip() for c in cells):
                continue
            if header is None:
                header = [c.strip() for c in cells]
            else:
                rows.append((first, cells))
    except csv.Error as exc:
        raise ScenarioError(shown, [Problem("", f"is not a readable CSV file: {exc}", line=line)]) from None
    if header is None:
        raise ScenarioError(shown, [Problem("", "is empty; expected a header row and one row per deal")])
    if not rows:
        raise ScenarioError(shown, [Problem("", "has a header but no deals")])
    return header, rows


def read_history(path: Path, stages: list[str], columns: dict, outcomes: dict | None = None,
                 segment_column: str | None = None, *, required=(), warnings: list | None = None) -> list[Deal]:
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
        Appended with what was read but looks off (dates out of order, repeated rows).

    Raises
    ------
    ScenarioError
        With every problem found, each with its line: missing columns, outcome values mapped
        to nothing (each with its count, and the ``--outcome`` that maps them), bad dates or
        amounts, repeated or blank deal ids, won or lost deals without a close date.
    """
    shown = str(path)
    header, rows = _read_rows(path, shown)
    col = {name: columns.get(name, name) for name in ("deal_id", "outcome", "closed", "amount", *stages)}
    col["segment"] = segment_column or columns.get("segment", "segment")
    must = {"deal_id", "outcome", "closed", *stages, *required} | ({"segment"} if segment_column else set())
    missing = [f"{k} (column {v!r})" for k, v in col.items() if k in must and v not in header]
    if missing:
        raise ScenarioError(shown, [Problem("", f"lacks {', '.join(missing)}; its columns are: {', '.join(header)}"
                                            ". Map a name to another column with --column NAME=SOURCE")])
    index = {name: header.index(v) for name, v in col.items() if v in header}
    outcome_map = {k: v for k, v in zip(OUTCOMES, OUTCOMES)}
    outcome_map.update({_key(k): v for k, v in (outcomes or {}).items()})

    deals, problems = [], []
    unmapped: dict[str, list] = {}          # key -> [count, first line, spelling as first found]
    seen: dict[str, tuple[int, tuple]] = {}  # deal id -> (line, cells)
    repeated, backwards, before_stage = [], [], []
    n_problems = 0

    def problem(line: int, message: str) -> None:
        nonlocal n_problems
        n_problems += 1
        if n_problems <= MAX_REPORTED:
            problems.append(Problem("", message, line=line))

    def cell(cells: list[str], name: str) -> str:
        i = index.get(name)
        return cells[i].strip() if i is not None and i < len(cells) else ""

    for line, cells in rows:
        deal_id = cell(cells, "deal_id")
        if not deal_id:
            problem(line, f"deal_id (column {col['deal_id']!r}) is blank")
        elif deal_id in seen:
            first, before = seen[deal_id]
            if before == tuple(c.strip() for c in cells):
                repeated.append(line)
                continue
            problem(line, f"deal_id {deal_id!r} is also on line {first}, with other values; expected one row per deal")
        else:
            seen[deal_id] = (line, tuple(c.strip() for c in cells))
        raw_outcome = cell(cells, "outcome")
        outcome = outcome_map.get(_key(raw_outcome))
        if outcome is None:
            entry = unmapped.setdefault(_key(raw_outcome), [0, line, raw_outcome])
            entry[0] += 1
        dates, ok = {}, True
        for name in (*stages, "closed"):
            try:
                dates[name] = _date(cell(cells, name))
            except ValueError as exc:
                problem(line, f"{name} (column {col[name]!r}): {exc}")
                ok = False
        try:
            amount = _amount(cell(cells, "amount"))
        except ValueError as exc:
            problem(line, f"amount (column {col['amount']!r}): {exc}")
            ok = False
        if not ok or outcome is None or not deal_id:
            continue
        closed = dates["closed"] if outcome != "open" else None
        if outcome != "open" and closed is None:
            problem(line, f"the deal is {outcome} ({col['outcome']} {raw_outcome!r}) but closed (column "
                          f"{col['closed']!r}) is blank; expected the date it was {outcome}")
            continue
        entered = [dates[s] for s in stages]
        known = [(s, d) for s, d in zip(stages, entered) if d is not None]
        if any(b[1] < a[1] for a, b in itertools.pairwise(known)):
            backwards.append(line)
        if closed is not None and known and closed < max(d for _, d in known):
            before_stage.append(line)
        segment = (cell(cells, "segment") or "all") if "segment" in index else "all"
        deals.append(Deal(deal_id, segment, entered, outcome, closed, amount))

    if unmapped:
        problems.insert(0, Problem("", _unmapped_message(unmapped, col["outcome"], outcome_map)))
    if n_problems > MAX_REPORTED:
        problems.append(Problem("", f"and {n_problems - MAX_REPORTED} more problems like these"))
    if problems:
        raise ScenarioError(shown, problems)
    if warnings is not None:
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


def _count(items: list, noun: str) -> str:
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
        lines.append(f"    {spelling!r}" if spelling else "    (blank)")
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
               warnings: list | None = None) -> tuple[list[Deal], list[str], bool]:
    """Deals, stage names and whether losses are recorded, for a history and a preset.

    ``stages``: comma-separated stage columns (for the generic preset); ``mapping``:
    ``NAME=SOURCE`` items mapping our column names to the file's; ``outcomes``: the file's
    outcome values to won, lost or open (:func:`parse_outcomes`), over the preset's map
    (these win); ``warnings`` is appended with what looks off in the file.

    Raises
    ------
    ValueError
        When the stages are not known, or a mapping item is malformed or names no column
        of ours (a usage error).
    ScenarioError
        When the file is not a readable history (see :func:`read_history`).
    """
    if preset == "olist":
        if mapping or outcomes:
            raise ValueError("--column and --outcome do not apply to --preset olist, which reads the dataset's own "
                             "files")
        return read_olist(history), ["lead"], False
    spec = PRESETS[preset]
    stage_list = [s.strip() for s in stages.split(",") if s.strip()] if stages else spec["stages"]
    if not stage_list:
        raise ValueError("give --stages (the stage columns, in order) or a --preset")
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
        columns[key] = value
        user.add(key)
    merged = {**spec.get("outcomes", {}), **(outcomes or {})}
    deals = read_history(history, stage_list, columns, merged, segment_column,
                         required=user & {"segment", "amount"}, warnings=warnings)
    return deals, stage_list, True


def read_olist(folder: Path) -> list[Deal]:
    """The Olist marketing funnel: MQLs (one stage, ``lead``) won when they appear in the
    closed deals; never-won leads are open (the data records no losses). Segment: origin."""
    files = ("olist_marketing_qualified_leads_dataset.csv", "olist_closed_deals_dataset.csv")
    tables = []
    for name in files:
        try:
            text = (Path(folder) / name).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(str(folder), [Problem("", f"is not the Olist marketing-funnel folder: expected "
                                                          f"{' and '.join(files)} in it ({exc})")]) from None
        tables.append(list(csv.DictReader(io.StringIO(text, newline=""))))
    mqls, closed = tables
    won = {r["mql_id"]: r for r in closed}
    deals = []
    for r in mqls:
        w = won.get(r["mql_id"])
        deals.append(Deal(r["mql_id"], (r["origin"] or "unknown").replace(" ", "_"), [_date(r["first_contact_date"])],
                          "won" if w else "open", _date(w["won_date"]) if w else None, None))
    return deals


def won_dates(deals: list[Deal], as_of: date) -> list[date]:
    """The dates of the wins known on ``as_of``, in order."""
    return sorted(d.closed for d in deals if d.outcome == "won" and d.closed is not None and d.closed <= as_of)
