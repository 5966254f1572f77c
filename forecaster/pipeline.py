"""The open pipeline: reading and checking the CSV of deals open at ``start``.

Columns: ``deal_id`` (unique), ``segment``, ``stage``, ``entered_stage`` (ISO date, on or
before ``start``), optional ``amount`` [currency] (empty: drawn from the segment's
``deal_value``) and ``owner`` (a rep). Extra columns are ignored.
"""
from __future__ import annotations

import csv
import math
from datetime import date
from pathlib import Path

from .errors import Problem
from .scenario import PipelineDeal
from .validation import suggest

REQUIRED = ("deal_id", "segment", "stage", "entered_stage")
OPTIONAL = ("amount", "owner")
MAX_REPORTED = 25  # problems listed from one file before summarising the rest


def read_pipeline(path: Path, shown_as: str, *, start: date, segments, stages, reps,
                  line: int | None) -> tuple[tuple[PipelineDeal, ...], list[Problem]]:
    """Read and check a pipeline CSV.

    Parameters
    ----------
    path : Path
        The file.
    shown_as : str
        How the file is named in messages (as written in the scenario).
    start : date
        The scenario's first day; deals must have entered their stage on or before it.
    segments, stages, reps : collections of str
        Valid names; ``reps`` empty when the scenario has no team.
    line : int or None
        Line of ``pipeline.file`` in the scenario, for messages.

    Returns
    -------
    deals : tuple of PipelineDeal
    problems : list of Problem
        Empty when the file is valid.
    """
    problems: list[Problem] = []

    def bad(message: str) -> None:
        problems.append(Problem("pipeline.file", message, line))

    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        bad(f"names {shown_as!r}, which does not exist (looked for {path})")
        return (), problems
    except (OSError, UnicodeDecodeError) as exc:
        bad(f"names {shown_as!r}, which cannot be read as UTF-8 text: {exc}")
        return (), problems

    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if not header:
        bad(f"{shown_as} is empty; expected a header row with {', '.join(REQUIRED)}")
        return (), problems
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        bad(f"{shown_as} lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
            f"its header is: {', '.join(header)}")
        return (), problems
    col = {name: header.index(name) for name in (*REQUIRED, *OPTIONAL) if name in header}

    deals: list[PipelineDeal] = []
    seen: dict[str, int] = {}
    errors = 0
    for lineno, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        cells = {name: (row[i].strip() if i < len(row) else "") for name, i in col.items()}
        where = f"{shown_as} line {lineno}"
        row_problems = []
        deal_id = cells["deal_id"]
        if not deal_id:
            row_problems.append(f"{where}: deal_id is empty")
        elif deal_id in seen:
            row_problems.append(f"{where}: deal_id {deal_id!r} repeats line {seen[deal_id]}; deal ids are unique")
        else:
            seen[deal_id] = lineno
        seg = cells["segment"]
        if seg not in segments:
            row_problems.append(f"{where}: segment {seg!r} is not a segment of the scenario"
                                f"{suggest(seg, segments)}; segments: {', '.join(segments)}")
        stage = cells["stage"]
        if stage not in stages:
            row_problems.append(f"{where}: stage {stage!r} is not one of the stages"
                                f"{suggest(stage, stages)}; stages: {', '.join(stages)}")
        entered = None
        try:
            entered = date.fromisoformat(cells["entered_stage"]) if len(cells["entered_stage"]) == 10 else None
        except ValueError:
            pass
        if entered is None:
            row_problems.append(f"{where}: entered_stage must be an ISO date (YYYY-MM-DD); "
                                f"got {cells['entered_stage']!r}")
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
                row_problems.append(f"{where}: amount must be a number >= 0 or empty; got {cells['amount']!r}")
        owner = cells.get("owner") or None
        if owner is not None and owner not in reps:
            if reps:
                row_problems.append(f"{where}: owner {owner!r} is not a rep of the team{suggest(owner, reps)}; "
                                    f"reps: {', '.join(reps)}")
            else:
                row_problems.append(f"{where}: owner {owner!r} is given but the scenario has no team; "
                                    "add team.reps or leave owner empty")
        if row_problems:
            for message in row_problems:
                errors += 1
                if errors <= MAX_REPORTED:
                    bad(message)
            continue
        deals.append(PipelineDeal(deal_id, seg, stage, entered, amount, owner))
    if errors > MAX_REPORTED:
        bad(f"{shown_as}: and {errors - MAX_REPORTED} more problems like these")
    return tuple(deals), problems
