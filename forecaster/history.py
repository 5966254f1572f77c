"""Deal histories: reading a CRM export (CSV, or the Olist folder) into :class:`Deal` rows.

The history is a CSV with one row per deal (column names mappable, see :data:`PRESETS`):

============  =============================================================================
deal_id       unique id
segment       optional; the segment the deal belongs to (default: one segment, ``all``)
<stage>       one column per stage (``--stages``): the date the deal entered it, blank if not
outcome       ``won``, ``lost`` or ``open`` (case-insensitive)
closed        the date it was won or lost
amount        the deal's value (needed for won deals; optional)
============  =============================================================================
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from .errors import Problem, ScenarioError

PRESETS = {
    "generic": {"stages": None, "columns": {}},
    # Maven Analytics CRM opportunities (sales_pipeline.csv): one dated stage, engaging
    "maven": {"stages": ["engaging"], "columns": {"deal_id": "opportunity_id", "engaging": "engage_date",
                                                  "outcome": "deal_stage", "closed": "close_date",
                                                  "amount": "close_value", "segment": None},
              "outcomes": {"won": "won", "lost": "lost", "engaging": "open", "prospecting": "open"}},
    # a typical CRM opportunity export (Salesforce-style field names): one stage, from creation
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
    closed: date | None
    amount: float | None


def _date(text: str) -> date | None:
    text = (text or "").strip()
    if not text:
        return None
    return date.fromisoformat(text[:10])


def read_history(path: Path, stages: list[str], columns: dict, outcomes: dict | None = None,
                 segment_column: str | None = None) -> list[Deal]:
    """Read a history CSV into deals; ``columns`` maps our names to the file's."""
    shown = str(path)
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))
    except OSError as exc:
        raise ScenarioError(shown, [Problem("", f"cannot be read: {exc}")]) from None
    if not rows:
        raise ScenarioError(shown, [Problem("", "has no rows")])
    col = {name: columns.get(name, name) for name in ("deal_id", "outcome", "closed", "amount", *stages)}
    col["segment"] = segment_column or columns.get("segment", "segment")
    header = rows[0].keys()
    missing = [f"{k} (column {v!r})" for k, v in col.items() if v and v not in header and k not in ("segment", "amount")]
    if missing:
        raise ScenarioError(shown, [Problem("", f"lacks {', '.join(missing)}; its columns are: {', '.join(header)}")])
    outcomes = {**{"won": "won", "lost": "lost", "open": "open"}, **(outcomes or {})}
    deals, problems = [], []
    for line, row in enumerate(rows, start=2):
        try:
            raw = (row.get(col["outcome"]) or "").strip().lower()
            outcome = outcomes.get(raw)
            if outcome is None:
                raise ValueError(f"outcome {raw!r} is not one of {', '.join(sorted(outcomes))}")
            amount_text = (row.get(col["amount"]) or "").strip() if col["amount"] in header else ""
            deals.append(Deal(row[col["deal_id"]], (row.get(col["segment"]) or "all").strip() or "all"
                              if col["segment"] in header else "all",
                              [_date(row.get(col[s], "")) for s in stages], outcome, _date(row.get(col["closed"], "")),
                              float(amount_text) if amount_text else None))
        except ValueError as exc:
            problems.append(Problem("", f"line {line}: {exc}"))
            if len(problems) > 20:
                break
    if problems:
        raise ScenarioError(shown, problems)
    return deals


def load_deals(history: Path, preset: str, stages: str | None = None, segment_column: str | None = None,
               mapping=()) -> tuple[list[Deal], list[str], bool]:
    """Deals, stage names and whether losses are recorded, for a history and a preset.

    ``stages``: comma-separated stage columns (for the generic preset); ``mapping``:
    ``NAME=SOURCE`` items mapping our column names to the file's.

    Raises
    ------
    ValueError
        When the stages are not known or a mapping item is malformed.
    """
    if preset == "olist":
        return read_olist(history), ["lead"], False
    spec = PRESETS[preset]
    stage_list = stages.split(",") if stages else spec["stages"]
    if not stage_list:
        raise ValueError("give --stages (the stage columns, in order) or a --preset")
    columns = dict(spec["columns"])
    for item in mapping:
        key, _, value = item.partition("=")
        if not value:
            raise ValueError(f"--column expects NAME=SOURCE; got {item!r}")
        columns[key] = value
    return read_history(history, stage_list, columns, spec.get("outcomes"), segment_column), stage_list, True


def read_olist(folder: Path) -> list[Deal]:
    """The Olist marketing funnel: MQLs (one stage, ``lead``) won when they appear in the
    closed deals; never-won leads are open (the data records no losses). Segment: origin."""
    mqls = list(csv.DictReader((folder / "olist_marketing_qualified_leads_dataset.csv").read_text().splitlines()))
    won = {r["mql_id"]: r for r in csv.DictReader((folder / "olist_closed_deals_dataset.csv").read_text().splitlines())}
    deals = []
    for r in mqls:
        w = won.get(r["mql_id"])
        deals.append(Deal(r["mql_id"], (r["origin"] or "unknown").replace(" ", "_"), [_date(r["first_contact_date"])],
                          "won" if w else "open", _date(w["won_date"]) if w else None, None))
    return deals


def won_dates(deals: list[Deal], as_of: date) -> list[date]:
    """The dates of the wins known on ``as_of``, in order."""
    return sorted(d.closed for d in deals if d.outcome == "won" and d.closed is not None and d.closed <= as_of)
