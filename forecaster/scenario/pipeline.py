"""The open pipeline: reading and checking the CSV of deals open at ``start``.

Columns: ``deal_id`` (unique), ``segment``, ``stage``, ``entered_stage`` (ISO date, on or
before ``start``), optional ``amount`` [currency] (empty: drawn from the segment's
``deal_value``) and ``owner`` (a rep). Extra columns are ignored.

The file must be a regular file of UTF-8 text (a BOM is allowed), comma-separated, at most
:data:`MAX_PIPELINE_BYTES` with lines of at most :data:`MAX_LINE_BYTES`; it is read line
by line. A file that is not CSV text (binary, another encoding, a first line that is no
header) is refused without quoting anything of it; cells quoted in messages are escaped
and cut short.
"""
from __future__ import annotations

import csv
import math
import re
from datetime import date
from pathlib import Path

from forecaster.errors import Problem
from forecaster.scenario.model import PipelineDeal
from forecaster.scenario.validation import suggest
from forecaster.scenario.yamlio import NotRegularFile, format_size, open_input, show_text

REQUIRED = ("deal_id", "segment", "stage", "entered_stage")
OPTIONAL = ("amount", "owner")
MAX_REPORTED = 25  # problems listed from one file before summarising the rest
MAX_PIPELINE_BYTES = 1024 ** 3
"""The most a pipeline CSV may hold [bytes] (it is read line by line, never whole)."""
MAX_LINE_BYTES = 1024 ** 2
"""The longest line a pipeline CSV may have [bytes]."""
_SHOWN = 40  # characters of a cell quoted in a message


def _show(cell: str) -> str:
    """A cell quoted, escaped and cut for a message."""
    return show_text(cell, _SHOWN)


def _suggest(word: str, choices) -> str:
    return suggest(word, choices) if len(word) <= 100 else ""


class _Unreadable(Exception):
    """The file stops being a UTF-8 CSV text file part way; the message says where."""


def _norm(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


_KNOWN = {_norm(c) for c in (*REQUIRED, *OPTIONAL)}
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")  # not the week dates Python also reads
_NAME_LIKE = re.compile(r"^[\w .()\[\]/#%&+\-]{0,64}$")


def _looks_like_header(cells: list[str]) -> bool:
    """Whether a first row plausibly is a CSV header (so that it may be quoted back): it
    names one of the pipeline's columns (in any case), or it has at least three cells that
    all read as column names. A line of prose or a password file's line is neither."""
    if any(_norm(c) in _KNOWN for c in cells):
        return True
    return len(cells) >= 3 and all(_NAME_LIKE.match(c.strip()) for c in cells)


def _lines(f, digest, shown_as: str):
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
        if total > MAX_PIPELINE_BYTES:
            raise _Unreadable(f"{shown_as} is larger than {format_size(MAX_PIPELINE_BYTES)}, the most a pipeline "
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


def _passes(segment, stage: str) -> bool:
    """Whether a segment (a :class:`~forecaster.scenario.model.Segment`, or anything without
    its own ``stages``) passes ``stage`` (v2 F4)."""
    own = getattr(segment, "stages", None)
    return own is None or stage in own


def read_pipeline(path: Path, shown_as: str, *, start: date, segments, stages, reps,
                  line: int | None, digest=None) -> tuple[tuple[PipelineDeal, ...], list[Problem]]:
    """Read and check a pipeline CSV.

    Parameters
    ----------
    path : Path
        The file: a regular file of UTF-8 text, at most :data:`MAX_PIPELINE_BYTES`, read
        line by line. Nothing of a file that is not a CSV text file is quoted back.
    shown_as : str
        How the file is named in messages (as written in the scenario).
    start : date
        The scenario's first day; deals must have entered their stage on or before it.
    segments, stages, reps : collections of str
        Valid names; ``reps`` empty when the scenario has no team.
    line : int or None
        Line of ``pipeline.file`` in the scenario, for messages.
    digest : hashlib hash, optional
        Updated with the file's bytes as they are read.

    Returns
    -------
    deals : tuple of PipelineDeal
    problems : list of Problem
        Empty when the file is valid.
    """
    problems: list[Problem] = []
    shown_as = shown_as if len(shown_as) <= 200 else shown_as[:200] + "..."

    def bad(message: str, more: int = 0) -> None:
        problems.append(Problem("pipeline.file", message, line, more=more))

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
                              stages=stages, reps=reps, bad=bad), problems
        except _Unreadable as exc:
            bad(str(exc))
            return (), problems
        except OSError as exc:  # e.g. EIO part way
            bad(f"names {shown_as!r}, which cannot be read: {exc.strerror or exc}")
            return (), problems


def _read_rows(lines, shown_as: str, *, start: date, segments, stages, reps, bad) -> tuple[PipelineDeal, ...]:
    rows = csv.reader(lines)
    try:
        header = next(rows, None)
    except csv.Error:
        bad(f"{shown_as} is not a CSV text file: its first line cannot be read as CSV")
        return ()
    if not header or not any(h.strip() for h in header):
        bad(f"{shown_as} is empty or starts with a blank line; expected a header row with "
            f"{', '.join(REQUIRED)}")
        return ()
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        if len(header) == 1:
            for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
                if sep in header[0] and any(_norm(c) in _KNOWN for c in header[0].split(sep)):
                    bad(f"{shown_as} is separated by {name}, not commas; save it as comma-separated CSV "
                        f"with the columns {', '.join(REQUIRED)}")
                    return ()
        if not _looks_like_header(header):
            bad(f"{shown_as} is not a pipeline CSV: its first line is not a header naming the columns "
                f"{', '.join(REQUIRED)} (is it the right file?)")
            return ()
        shown = ", ".join(_show(h) for h in header[:20]) + (f", ... ({len(header)} columns)"
                                                            if len(header) > 20 else "")
        near = {_norm(h) for h in header} & set(missing)
        hint = (f" (column names are exact, in lower case with underscores: {', '.join(sorted(near))})"
                if near else "")
        bad(f"{shown_as} lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
            f"its header is: {shown}{hint}")
        return ()
    twice = sorted({c for c in (*REQUIRED, *OPTIONAL) if header.count(c) > 1})
    if twice:
        bad(f"{shown_as} names the column{'s' if len(twice) > 1 else ''} {', '.join(twice)} more than once "
            "in its header; which one holds the data is ambiguous")
        return ()
    col = {name: header.index(name) for name in (*REQUIRED, *OPTIONAL) if name in header}
    width = len(header)

    deals: list[PipelineDeal] = []
    seen: dict[str, int] = {}
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
        row_problems = []
        if len(row) > width:
            row_problems.append(f"{where}: has {len(row)} cells but the header has {width} columns "
                                "(a comma inside a value that is not quoted?)")
        deal_id = cells["deal_id"]
        if not deal_id:
            row_problems.append(f"{where}: deal_id is empty")
        elif deal_id in seen:
            row_problems.append(f"{where}: deal_id {_show(deal_id)} repeats line {seen[deal_id]}; deal ids are unique")
        else:
            seen[deal_id] = lineno
        seg = cells["segment"]
        if seg not in segments:
            row_problems.append(f"{where}: segment {_show(seg)} is not a segment of the scenario"
                                f"{_suggest(seg, segments)}; segments: {', '.join(segments)}")
        stage = cells["stage"]
        if stage not in stages:
            row_problems.append(f"{where}: stage {_show(stage)} is not one of the stages"
                                f"{_suggest(stage, stages)}; stages: {', '.join(stages)}")
        elif seg in segments and not _passes(segments[seg], stage):
            row_problems.append(f"{where}: segment {_show(seg)} does not pass stage {_show(stage)} "
                                f"(its stages: {', '.join(segments[seg].stages)})")
        entered = None
        try:
            entered = date.fromisoformat(cells["entered_stage"]) if _ISO_DATE.match(cells["entered_stage"]) else None
        except ValueError:
            pass
        if entered is None:
            row_problems.append(f"{where}: entered_stage must be an ISO date (YYYY-MM-DD); "
                                f"got {_show(cells['entered_stage'])}")
        elif entered > start:
            row_problems.append(f"{where}: entered_stage must be on or before start ({start.isoformat()}); "
                                f"got {entered.isoformat()}")
        amount = None
        if cells.get("amount"):
            try:
                amount = float(cells["amount"])
            except ValueError:
                amount = math.nan
            if not (math.isfinite(amount) and amount >= 0):
                row_problems.append(f"{where}: amount must be a number >= 0 or empty; got {_show(cells['amount'])}")
        owner = cells.get("owner") or None
        if owner is not None and owner not in reps:
            if reps:
                row_problems.append(f"{where}: owner {_show(owner)} is not a rep of the team{_suggest(owner, reps)}; "
                                    f"reps: {', '.join(reps)}")
            else:
                row_problems.append(f"{where}: owner {_show(owner)} is given but the scenario has no team; "
                                    "add team.reps or leave owner empty")
        if row_problems:
            for message in row_problems:
                errors += 1
                if errors <= MAX_REPORTED:
                    bad(message)
            continue
        assert entered is not None  # a missing or malformed date is a row problem above
        deals.append(PipelineDeal(deal_id, seg, stage, entered, amount, owner))
    if errors > MAX_REPORTED:
        bad(f"{shown_as}: and {errors - MAX_REPORTED} more problems like these", more=errors - MAX_REPORTED)
    return tuple(deals)
