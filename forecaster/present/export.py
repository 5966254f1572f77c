"""Numbers out: summary tables as CSV files and an Excel workbook, every trial as Parquet.

A finance user opens the forecast in Excel (or loads it into a BI tool), not in a NetCDF
reader. ``--export csv,xlsx,parquet`` (``run``, ``compare``, ``sensitivity``) writes, into
``--out`` and in the same publication as the command's other files
(:class:`forecaster.results.files.Staged`), so that a failed or interrupted command leaves
no partial export and the folder never mixes two results:

* ``csv``: one file per summary table (``tables/periods.csv``, ``tables/reps.csv``, ...),
  UTF-8 with a byte-order mark (Excel reads the encoding from it), numbers written in full
  (Python's shortest round-trip form: each number is the JSON summary's, bit for bit);
* ``xlsx``: one workbook (``forecast.xlsx``, ``compare.xlsx``, ``sensitivity.xlsx``) with an
  ``About`` sheet first and one sheet per table: numbers stored as numbers with a number
  format, frozen header row, columns sized to their contents;
* ``parquet``: every trial of the command's Dataset (``forecast.nc``, ``compare.nc``,
  ``sensitivity.nc``), written by DuckDB: ``trials.parquet`` holds one row per trial and
  period (every per-trial variable without a rep), ``reps.parquet`` one row per trial, rep
  and period (or commission period) for the per-rep variables. The columns come from the
  Dataset's variables, not from a list, so a new output variable is exported with no change
  here.

**Units.** One convention everywhere: a number's column header ends with its unit in brackets,
``revenue_p50 [USD]``, ``won_deals_mean [deals]``, ``probability [fraction]`` (0 to 1; the
workbook shows it as a percentage). A column never mixes units: where rows are metrics of
different units (the targets), each unit has its own column. Text and date columns
(``period``, ``rep``, ``scenario``) carry no unit. In Parquet, where column names are for
queries, the units are in the file's key-value metadata (``units``: a JSON object, column ->
unit) and the Dataset's attributes in ``forecaster``.

Tables are built from the summary dicts (``summary.json``, ``compare.json``,
``sensitivity.json``, ``backtest.json``) by :func:`tables_for`; keys this module does not
know are gathered in the table ``other`` (:func:`generic_table`, a row per key), so that
fields added to a summary later are exported too. Every table's name is one of
:data:`forecaster.results.files.TABLES` (the files a command declares it may write): a user's
own file in the tables folder is never replaced or removed.

**Text is never a formula.** Names come from the scenario (segments, reps, the scenario's
name): a text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a line break is written
as text, in the workbook as a string cell, in CSV after an apostrophe
(:func:`forecaster.present.batch.safe_cell`); numbers stay numbers.
"""
from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forecaster.results.files import TABLES, table_files
from forecaster.results.layout import AFTER_SALE_VARIABLES

FORMATS = ("csv", "xlsx", "parquet")
"""What ``--export`` accepts, comma separated."""

KINDS = ("run", "compare", "sensitivity", "backtest")
STEMS = {"run": "forecast", "compare": "compare", "sensitivity": "sensitivity", "backtest": "backtest"}

V1_METRICS = ("revenue", "won_deals", "commission")
COMMISSION_EXTRAS = ("draw_balance", "clawback_after_end")
"""The summary's top-level commission extras (v2 D.6), money summed over reps."""
FRACTION = "fraction"
PARQUET_CHUNK_BYTES = 64 << 20
"""Memory for one block of trials converted to Parquet columns [bytes] (at least one trial)."""


# --- file names ---------------------------------------------------------------------------------

def export_names(kind: str) -> dict[str, str]:
    """Where each format goes for a command: ``csv`` a folder (``tables`` for a run,
    ``<stem>-tables`` otherwise), ``xlsx`` the workbook, ``parquet`` the stem of the per-trial
    files (``trials``/``reps`` for a run, ``<stem>-trials``/``<stem>-reps`` otherwise)."""
    stem = STEMS[kind]
    if kind == "run":
        return {"csv": "tables", "xlsx": f"{stem}.xlsx", "trials": "trials.parquet", "reps": "reps.parquet"}
    return {"csv": f"{stem}-tables", "xlsx": f"{stem}.xlsx", "trials": f"{stem}-trials.parquet",
            "reps": f"{stem}-reps.parquet"}


def declared_names(kind: str) -> tuple[str, ...]:
    """Every name ``--export`` may write for ``kind``, as :data:`forecaster.results.files.OUTPUTS`
    declares a command's files (each table's file by its exact name)."""
    n = export_names(kind)
    tables = table_files(kind)
    assert all(t.startswith(f"{n['csv']}/") for t in tables), (kind, tables)
    return (n["xlsx"], n["trials"], n["reps"], *tables)


def parse_formats(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"csv,xlsx"`` -> ``("csv", "xlsx")`` (case and spaces ignored, each once).

    Raises
    ------
    ValueError
        Naming what is not one of :data:`FORMATS`.
    """
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    wanted = [str(v).strip().lower() for v in items]
    bad = [v for v, raw in zip(wanted, items) if v not in FORMATS]
    if bad or not any(wanted):
        shown = ", ".join(repr(str(raw).strip()) for v, raw in zip(wanted, items) if v not in FORMATS) or repr(value)
        raise ValueError(f"expected one or more of {', '.join(FORMATS)}, separated by commas "
                         f"(e.g. csv,xlsx); got {shown}")
    return tuple(dict.fromkeys(wanted))


# --- tables ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    """A table's column: ``unit`` (None for text and dates) is written in its header.

    ``kind``: ``text``, ``date`` (ISO day), ``money``, ``count``, ``integer``, ``fraction``,
    ``bool`` or ``number``; it chooses the workbook's number format.
    """

    name: str
    unit: str | None = None
    kind: str = "number"

    @property
    def header(self) -> str:
        return f"{self.name} [{self.unit}]" if self.unit else self.name


@dataclass
class Table:
    """A named table: ``rows`` hold plain values (str, int, float, bool or None)."""

    name: str
    description: str
    columns: list[Column]
    rows: list[list] = field(default_factory=list)


STAGE_COUNT_METRICS = ("stage_entries", "losses")
"""v2 F1's metrics, one per stage (``stage_entries.<stage>``): counts of leads."""


def safe_cell(value) -> str:
    """A CSV cell a spreadsheet will not run: text starting with = + - @ or a control
    character is prefixed with an apostrophe (OWASP's advice against formula injection)."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r", "\n") else text


class Units:
    """The unit of a metric or of one of its statistics, in a run's currency."""

    COUNTS = {"won_deals": "deals", "open_pipeline": "deals", "entering": "leads", "months": "months",
              "cutoffs": "cutoffs", "pit_histogram": "months", "trials": "trials"}
    RATES = {"trailing_mean_rate": "deals per month"}
    """Rates by key: a backtest's trailing mean is the won deals per month of the months before
    its cutoff (:func:`forecaster.history.baselines.trailing_mean`)."""

    def __init__(self, currency: str | None, overrides: dict | None = None):
        self.currency = currency or "currency"
        self.overrides = {k: str(v) for k, v in (overrides or {}).items() if v}

    def metric(self, metric: str) -> tuple[str, str]:
        """(unit, kind) of a metric's values (``overrides``: a summary's own units, by metric)."""
        if metric.partition(".")[0] in STAGE_COUNT_METRICS or metric == "leads":
            return "leads", "count"
        if metric in self.overrides:
            unit = self.overrides[metric]
            return unit, "money" if unit == self.currency else "count"
        if metric in AFTER_SALE_VARIABLES and AFTER_SALE_VARIABLES[metric][1] != "currency":
            return AFTER_SALE_VARIABLES[metric][1], "count"
        if metric in self.COUNTS:
            return self.COUNTS[metric], "count"
        return self.currency, "money"

    def known(self, name: str) -> bool:
        return (name in AFTER_SALE_VARIABLES or name in V1_METRICS or name in self.COUNTS or name in COMMISSION_EXTRAS
                or name in ("bookings", "commission_bookings", "clv", "quota"))

    def of(self, parts: list[str], value: Any) -> tuple[str | None, str]:
        """(unit, kind) of a leaf reached by the keys ``parts`` (generic tables)."""
        last = parts[-1] if parts else ""
        if isinstance(value, bool):
            return "true/false", "bool"
        if isinstance(value, str) or value is None and last in ("lever", "input", "why", "period"):
            return None, "text"
        if last.startswith(("probability", "coverage", "share", "in_")) or last in ("pit", "p_value"):
            return FRACTION, "fraction"
        if "attainment" in last:
            return "fraction of quota", "fraction"
        if any(p.endswith("histogram") for p in parts):  # counts of months (PIT values in each bin)
            return "months", "integer"
        if last.startswith(("months", "cutoffs")):
            return ("cutoffs" if last.startswith("cutoffs") else "months"), "integer"
        if last == "step":
            return FRACTION, "number"
        if last in self.RATES:
            return self.RATES[last], "number"
        if parts and parts[0] == "cycle_days":  # v2 F1: days from arrival to win, and how many deals
            return ("deals", "integer") if last == "count" else ("days", "number")
        if "win_probability" in parts or "win_rate" in parts:  # v2 F9, F12
            return FRACTION, "fraction"
        if "pipeline_value" in parts or (parts and parts[0] == "stage_value" and "value" in parts):
            return self.currency, "money"
        if parts and parts[0] in RATIO_UNITS and last != "undefined":  # v2 E.3
            unit = RATIO_UNITS[parts[0]]
            return (FRACTION, "fraction") if unit == FRACTION else (f"{self.currency} {unit}", "number")
        if last == "undefined":  # v2 F12: the trials whose break-even cannot be told
            return "trials", "integer"
        if "break_even" in parts or "ratio" in parts:
            return "x quota", "number"
        if last == "rate" or last.endswith("_rate"):
            return "-", "number"  # a rate of unknown unit: no unit rather than a wrong one
        for p in parts:
            if self.known(p):
                return self.metric(p)
        return "-", "number"


def _stat_kind(stat: str, unit: str, kind: str) -> tuple[str, str]:
    """A statistic's (unit, kind): probabilities are fractions, the rest has the metric's unit."""
    if stat.startswith("probability"):
        return FRACTION, "fraction"
    return unit, kind


def _is_block(value: Any) -> bool:
    """A metric's ``{"total": stats, "by_period": [...]}``."""
    return isinstance(value, dict) and isinstance(value.get("by_period"), list) and isinstance(value.get("total"), dict)


def _is_stats(value: Any) -> bool:
    return isinstance(value, dict) and "mean" in value and all(
        v is None or isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in value.items() if k != "period")


def _split(metrics: dict) -> tuple[dict, dict]:
    """Metric blocks: (revenue, won deals, commission), (the rest: after-sale outputs, new metrics)."""
    first = {m: b for m, b in metrics.items() if m in V1_METRICS}
    return first, {m: b for m, b in metrics.items() if m not in V1_METRICS}


def _stat_columns(prefix: str, stats: dict, unit: str, kind: str) -> list[tuple[str, Column]]:
    out = []
    for stat in stats:
        if stat == "period":
            continue
        u, k = _stat_kind(stat, unit, kind)
        out.append((stat, Column(f"{prefix}_{stat}", u, k)))
    return out


def period_table(name: str, description: str, entities: list[tuple[list, dict]], labels: list[Column],
                 units: Units) -> Table:
    """Rows: each entity's periods, then its ``total``; columns: ``<metric>_<stat> [unit]``.

    ``entities``: (label values, {metric: block}); a stock's total is its level at the end.
    """
    columns: list[tuple[str, str, Column]] = []
    seen = set()
    for _, blocks in entities:
        for metric, block in blocks.items():
            unit, kind = units.metric(metric)
            for stat, col in _stat_columns(metric, block["total"], unit, kind):
                if col.name not in seen:
                    seen.add(col.name)
                    columns.append((metric, stat, col))
    table = Table(name, description, [*labels, Column("period", None, "date"), *(c for _, _, c in columns)])
    for values, blocks in entities:
        periods = list(dict.fromkeys(p["period"] for b in blocks.values() for p in b["by_period"]))
        by = {m: {p["period"]: p for p in b["by_period"]} for m, b in blocks.items()}
        for period in [*periods, "total"]:
            row: list = [*values, period]
            for metric, stat, _ in columns:
                source = blocks[metric]["total"] if period == "total" else by.get(metric, {}).get(period, {})
                row.append(source.get(stat) if metric in blocks else None)
            table.rows.append(row)
    return table


def flatten(value: Any, parts: list[str] | None = None) -> list[tuple[list[str], Any]]:
    """Leaves of nested dicts and lists as (key path, value): a list of dicts with a ``period``
    is keyed by the periods, any other list by position (a pair by ``low``/``high``)."""
    parts = parts or []
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            out += flatten(v, [*parts, str(k)])
        return out
    if isinstance(value, list):
        if all(isinstance(v, dict) and "period" in v for v in value) and value:
            return [leaf for v in value for leaf in flatten({k: x for k, x in v.items() if k != "period"},
                                                              [*parts, str(v["period"])])]
        keys = ("low", "high") if len(value) == 2 and all(isinstance(v, (int, float)) for v in value) else None
        out = []
        for i, v in enumerate(value):
            out += flatten(v, [*parts, keys[i] if keys else str(i)])
        return out
    return [(parts, value)]


def generic_table(name: str, description: str, rows: list[tuple[list, Any]], labels: list[Column],
                  units: Units, skip: Iterable[str] = ()) -> Table:
    """A table of arbitrary nested values: one row per (label values, value), one column per
    leaf path and unit (``revenue_probability [fraction]``), the unit found from the path's
    names and the row's labels (a row of ``revenue`` is in the currency). A column never
    mixes units: the same path in two units makes two columns."""
    skip = set(skip)
    columns: dict[tuple, Column] = {}
    flat_rows = []
    for values, value in rows:
        leaves = {}
        context = [str(v) for v in values if isinstance(v, str)]
        for parts, leaf in flatten(value):
            if parts and parts[0] in skip:
                continue
            path = [p for p in parts if p != "total"]
            key = "_".join(path) or "value"
            unit, kind = units.of([*context, *path], leaf)
            ident = (key, None if kind == "text" else unit)
            leaves[ident] = leaf
            if ident not in columns:
                columns[ident] = Column(key, unit, kind)
        flat_rows.append((values, leaves))
    table = Table(name, description, [*labels, *columns.values()])
    table.rows = [[*values, *(leaves.get(k) for k in columns)] for values, leaves in flat_rows]
    return table


def _compare_targets(targets: dict, units: Units) -> Table | None:
    """compare.json's ``targets`` ({metric: {threshold, probability: {scenario: p},
    difference: {variant: stats}}}): a row per metric and scenario; None for another shape."""
    if not all(isinstance(t, dict) and isinstance(t.get("probability"), dict) for t in targets.values()):
        return None
    unit_of = {m: units.metric(m) for m in targets}
    threshold_units = list(dict.fromkeys(unit_of.values()))
    stats = list(dict.fromkeys(k for t in targets.values() for d in (t.get("difference") or {}).values()
                               if isinstance(d, dict) for k in d))
    cols = [Column("metric", None, "text"), Column("scenario", None, "text"),
            *(Column("threshold", u, k) for u, k in threshold_units), Column("probability", FRACTION, "fraction"),
            *(Column(f"difference_{k}", FRACTION, "fraction") for k in stats)]
    table = Table("targets", "each target of the base, held to every scenario: its threshold, each scenario's "
                             "probability that the total over the horizon reaches it, and each variant's paired "
                             "difference from the base's probability (mean and its 95% interval)", cols)
    for metric, t in targets.items():
        for scenario, p in t["probability"].items():
            d = (t.get("difference") or {}).get(scenario) or {}
            table.rows.append([metric, scenario,
                               *(t.get("threshold") if unit_of[metric] == uk else None for uk in threshold_units),
                               p, *(d.get(k) for k in stats)])
    return table


def _targets_table(targets: dict, units: Units) -> Table:
    """Rows: each target; a threshold column per unit (a column never mixes units)."""
    unit_of = {m: units.metric(m) for m in targets}
    threshold_units = list(dict.fromkeys(unit_of.values()))
    cols = [Column("metric", None, "text"), *(Column("threshold", u, k) for u, k in threshold_units),
            Column("probability", FRACTION, "fraction")]
    table = Table("targets", "each target: its threshold (in the metric's unit) and the probability that the "
                             "total over the horizon (a stock: its level at the end) reaches it", cols)
    for metric, t in targets.items():
        table.rows.append([metric, *(t.get("threshold") if unit_of[metric] == uk else None for uk in threshold_units),
                           t.get("probability")])
    return table


def _reps_table(reps: dict, units: Units) -> Table:
    cur = units.currency
    quota_periods = list(dict.fromkeys(q["period"] for r in reps.values() for q in r.get("quota_attainment", [])))
    cols = [Column("rep", None, "text"), Column("quota", cur, "money")]
    stat_cols: list[tuple[str, str, Column]] = []
    for r in reps.values():
        for key in ("bookings", "commission"):
            if key in r and not any(m == key for m, _, _ in stat_cols):
                stat_cols += [(key, s, c) for s, c in _stat_columns(key, r[key]["total"], cur, "money")]
    cols += [c for _, _, c in stat_cols]
    for p in quota_periods:
        cols += [Column(f"probability_reach_quota_{p}", FRACTION, "fraction"),
                 Column(f"attainment_p50_{p}", "fraction of quota", "fraction")]
    table = Table("reps", "each rep: quota per commission period, bookings and commission over the horizon "
                          "(statistics over trials), and per commission period the probability of reaching quota "
                          "and the median attainment (bookings / quota)", cols)
    for rep, r in reps.items():
        row = [rep, r.get("quota")]
        row += [r[key]["total"].get(s) if key in r else None for key, s, _ in stat_cols]
        att = {q["period"]: q for q in r.get("quota_attainment", [])}
        for p in quota_periods:
            row += [att.get(p, {}).get("probability"), att.get(p, {}).get("attainment_p50")]
        table.rows.append(row)
    return table


def _funnel_table(funnel: dict) -> Table:
    chained = any("visits" in s for f in funnel.values() for s in f.get("stages", []))  # v2 B: moves
    cols = [Column("segment", None, "text"), Column("stage", None, "text"),
            Column("expected_entering", "leads", "count"), Column("open_pipeline", "deals", "integer")]
    if chained:
        cols += [Column("visits_per_new_lead", "visits", "number"), Column("win_probability", FRACTION, "fraction")]
    table = Table("funnel", "expected leads entering each stage over the horizon (new leads at the first stage, "
                            "dated lead events' at their own; averaged over the trials' draws; the row 'won' "
                            "counts those won eventually) and the open pipeline's deals in "
                            "each stage at the start" + ("; for a segment with moves every visit is an entry, with "
                                                         "a new lead's expected visits and the eventual win "
                                                         "probability of a deal entering the stage" if chained else ""),
                  cols)
    for seg, f in funnel.items():
        pipe = f.get("open_pipeline", {})
        for s in f.get("stages", []):
            row = [seg, s["stage"], s["entering"], pipe.get(s["stage"])]
            table.rows.append(row + [s.get("visits"), s.get("win_probability")] if chained else row)
        table.rows.append([seg, "won", f.get("won_eventually"), None] + ([None, None] if chained else []))
    return table


RUN_META = ("scenario", "seed", "trials", "horizon", "description", "forecaster_version", "scenario_sha256")


RATIO_UNITS = {"spend_per_lead": "per lead", "cac": "per deal won", "roi": FRACTION, "roi_total": FRACTION}
"""v2 E.3: the ratios of ``summary.json``'s ``ratios``, by the unit of their values."""


def _ratios_table(ratios: dict, units: Units) -> Table:
    """v2 E.3: a row per ratio, for all segments and each segment."""
    rows = []
    for name, item in ratios.items():
        rows.append(([name, "all"], {k: v for k, v in item.items() if k != "by_segment"}))
        rows += [([name, seg], stats) for seg, stats in item.get("by_segment", {}).items()]
    return generic_table("ratios", "spend per lead, customer acquisition cost (spend per deal won) and return on "
                                   "spend ((revenue - spend) / spend) of the trials' totals over the horizon: "
                                   "statistics over the trials where the denominator is not 0 (undefined: how "
                                   "many are not)", rows,
                         [Column("ratio", None, "text"), Column("segment", None, "text")], units)


def run_tables(summary: dict, currency: str | None = None) -> list[Table]:
    """The tables of a run's ``summary.json``."""
    units = Units(currency or (summary.get("horizon") or {}).get("currency"))
    first, rest = _split(summary.get("metrics", {}))
    counts = {m: b for m, b in rest.items() if m.partition(".")[0] in STAGE_COUNT_METRICS}
    spend = {m: b for m, b in rest.items() if m in ("leads", "spend")}
    rest = {m: b for m, b in rest.items() if m not in counts and m not in spend}
    tables = [period_table("periods", "revenue, won deals and commission per period and in total over the horizon: "
                                      "mean, its 95% interval, standard deviation and percentiles over the trials",
                           [([], first)], [], units)]
    if counts:  # v2 F1: outputs.stage_entries / losses
        tables.append(period_table("stages", "entries into each stage and leads lost at each stage per period and in "
                                             "total over the horizon (summed over segments)", [([], counts)], [], units))
    if spend:  # v2 E.3
        tables.append(period_table("spend", "leads arriving and spend per period and in total over the horizon "
                                            "(all segments)", [([], spend)], [], units))
    if summary.get("ratios"):
        tables.append(_ratios_table(summary["ratios"], units))
    if rest:
        tables.append(period_table("after_sale", "after-sale outputs per period (flows) and at each period's end "
                                                 "(stocks: active_customers, mrr); the total row of a stock is its "
                                                 "level at the end of the horizon", [([], rest)], [], units))
    if summary.get("targets"):
        tables.append(_targets_table(summary["targets"], units))
    if summary.get("reps"):
        tables.append(_reps_table(summary["reps"], units))
    if summary.get("segments"):
        tables.append(generic_table("segments", "each segment's revenue and won deals over the horizon",
                                    list(map(lambda kv: ([kv[0]], kv[1]), summary["segments"].items())),
                                    [Column("segment", None, "text")], units))
    if summary.get("clv"):
        tables.append(generic_table("clv", "customer lifetime value of one customer of each segment with customers "
                                           "(expected discounted net bookings), statistics over trials",
                                    [([seg], {"clv": s}) for seg, s in summary["clv"].items()],
                                    [Column("segment", None, "text")], units))
    if summary.get("funnel"):
        tables.append(_funnel_table(summary["funnel"]))
    extras = [([name], summary[name]) for name in COMMISSION_EXTRAS if isinstance(summary.get(name), dict)]
    if extras:  # v2 D.6: over the horizon, summed over reps
        tables.append(generic_table("commission_extras", "commission extras summed over reps, statistics over the "
                                    "trials: draw_balance, the recoverable advances not yet recovered at the end; "
                                    "clawback_after_end, the clawbacks of customers lost after the end, within "
                                    "the window", extras, [Column("field", None, "text")], units))
    known = {"metrics", "targets", "reps", "segments", "clv", "funnel", "ratios", *COMMISSION_EXTRAS, *RUN_META}
    return tables + _other_tables(summary, known, units)


def _other_tables(summary: dict, known: set, units: Units) -> list[Table]:
    """Keys of a summary without a table of their own, gathered in one table ``other`` (a row per
    key, or per entry of a key holding dicts), so that no table of an undeclared name is made."""
    rows: list[tuple[list, Any]] = []
    for key, value in summary.items():
        if key in known or not isinstance(value, (dict, list)) or not value:
            continue
        if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
            rows += [([key, str(k)], v) for k, v in value.items()]
        elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
            rows += [([key, str(i)], v) for i, v in enumerate(value)]
        else:
            rows.append(([key, None], value))
    if not rows:
        return []
    return [generic_table("other", "the summary's fields without a table of their own (such as cycle_days, "
                                   "stage_value, coverage; field: the summary's key; name: the entry within it), "
                                   "as the summary holds them", rows,
                          [Column("field", None, "text"), Column("name", None, "text")], units)]


def compare_tables(summary: dict, currency: str | None = None) -> list[Table]:
    """The tables of ``compare.json``: each scenario's statistics and each variant's paired
    differences from the base, per period and in total; anything else a scenario's entry
    holds (e.g. its targets' probabilities) in ``scenarios_other`` (a row per entry and key)."""
    units = Units(currency, summary.get("units") if isinstance(summary.get("units"), dict) else None)
    scenarios, differences = summary.get("scenarios", {}), summary.get("differences", {})
    tables = []
    for key, data, label, what in (
            ("scenarios", scenarios, "scenario", "each scenario's statistics over the trials"),
            ("differences", differences, "variant", "each variant's paired difference from the base "
                                                   "(variant - base, trial by trial): mean and its 95% interval, "
                                                   "percentiles, the probability that the variant is higher, and "
                                                   "the interval's half-width had the runs been independent")):
        if not data:
            continue
        parts = [({m: b for m, b in item.items() if _is_block(b)}, name) for name, item in data.items()]
        v1 = [([name], _split(blocks)[0]) for blocks, name in parts]
        rest = [([name], _split(blocks)[1]) for blocks, name in parts]
        tables.append(period_table(key, f"{what}: revenue, won deals, commission per period and in total",
                                   v1, [Column(label, None, "text")], units))
        if any(b for _, b in rest):
            tables.append(period_table(f"{key}_after_sale", f"{what}: after-sale outputs, leads and spend, and "
                                                            "the commission extras' flows summed over reps (a "
                                                            "stock's total: its level at the end)", rest,
                                       [Column(label, None, "text")], units))
        extra = list(dict.fromkeys(k for item in data.values() for k, v in item.items() if not _is_block(v)))
        if extra:  # one table of the other fields, a row per entry and field (a declared name)
            rows = [([name, k], item[k]) for k in extra for name, item in data.items() if k in item]
            tables.append(generic_table(f"{key}_other", f"{what}: other fields (field: the entry's key)", rows,
                                        [Column(label, None, "text"), Column("field", None, "text")], units))
    known = {"base", "seed", "trials", "scenarios", "differences", "units"}
    if isinstance(summary.get("targets"), dict) and summary["targets"]:
        table = _compare_targets(summary["targets"], units)
        if table is not None:
            tables.append(table)
            known.add("targets")
    return tables + _other_tables(summary, known, units)


def sensitivity_tables(summary: dict, currency: str | None = None) -> list[Table]:
    """The tables of ``sensitivity.json``: the base's totals, each lever's effects (with its
    rank), the three moves, the variance shares and the levers that were not run."""
    units = Units(currency)
    tables = [generic_table("base", "the base scenario's totals over the horizon (statistics over trials)",
                            [([], summary.get("base", {}))], [], units)]
    rankings = {k: v for k, v in summary.items() if k.startswith("ranking") and isinstance(v, list)}
    rank_cols = [Column(f"rank_by_{summary.get('metric') or 'revenue' if k == 'ranking' else k[len('ranking_'):]}",
                        "position", "integer") for k in rankings]
    rows = []
    for e in summary.get("levers", []):
        labels = [e.get("lever"), e.get("kind"), e.get("scope")]
        ranks = [r.index(e["lever"]) + 1 if e.get("lever") in r else None for r in rankings.values()]
        for direction in ("minus", "plus"):
            if direction in e:
                rows.append(([*labels, direction, *ranks], e[direction]))
    levers = generic_table("levers", f"each lever moved by -{summary.get('step', 0):.0%} (minus) and "
                                     f"+{summary.get('step', 0):.0%} (plus): the paired change of each total "
                                     "(mean and its 95% interval, percentiles, probability higher); rank: the "
                                     "lever's place by its largest effect (1 = largest; all-segment levers are "
                                     "not ranked)", rows,
                           [Column("lever", None, "text"), Column("kind", None, "text"), Column("scope", None, "text"),
                            Column("direction", None, "text"), *rank_cols], units)
    tables.append(levers)
    moves = summary.get("three_moves") or {}
    if moves:
        tables.append(generic_table("three_moves", "the three moves, each +step: expansion (more leads), stretching "
                                                   "(every stage converts better), key level (the stage that pays "
                                                   "most)", [([k], v) for k, v in moves.items()],
                                    [Column("move", None, "text")], units))
    if summary.get("variance_shares"):
        tables.append(generic_table("variance_shares", "share of the ranked metric's variance due to each uncertain "
                                                       "per-trial input (first-order Sobol index)",
                                    [([], v) for v in summary["variance_shares"]], [], units))
    if summary.get("skipped"):
        tables.append(generic_table("skipped", "levers that could not move, and why",
                                    [([], v) for v in summary["skipped"]], [], units))
    if summary.get("notes"):  # v2 F2
        tables.append(generic_table("notes", "notes on levers: what a leads lever does not scale (dated lead events' "
                                             "counts)", [([], v) for v in summary["notes"]], [], units))
    known = {"scenario", "seed", "trials", "step", "metric", "base", "levers", "three_moves", "variance_shares",
             "skipped", "notes", *rankings}
    return tables + _other_tables(summary, known, units)


def backtest_tables(result: dict, currency: str | None = None) -> list[Table]:
    """The tables of ``backtest.json``: every score (per cutoff, method and month, and the
    total), the averages per method, what each cutoff was calibrated on, the cutoffs
    skipped (too early to calibrate on; no rows when none was) and the calibrations'
    warnings (no rows when none warned)."""
    units = Units(currency or result.get("currency"))  # a history that names none: [currency]
    rows: list[tuple[list, Any]] = []
    for c in result.get("cutoffs", []):
        metrics = c.get("metrics", {})
        methods = list(dict.fromkeys(m for per in metrics.values() for m in per))
        for method in methods:
            months = c.get("months", [])
            for k, month in enumerate([*months, "total"]):
                value = {}
                for metric, per in metrics.items():
                    s = per.get(method, {})
                    score = s.get("total") if month == "total" else (s.get("by_month") or [None] * len(months))[k]
                    if score is not None:
                        value[metric] = score
                if value:
                    rows.append(([c.get("cutoff"), method, month], value))
    tables = [generic_table("scores", "each forecast's score against what happened: per cutoff, method and month "
                                      "(and the total over the months)", rows,
                            [Column("cutoff", None, "date"), Column("method", None, "text"),
                             Column("month", None, "date")], units)]
    average = result.get("average", {})
    keys = list(dict.fromkeys(k for per in average.values() for k in per))
    tables.append(generic_table("averages", "scores averaged over cutoffs (and months) per method; paired: "
                                            "forecaster's CRPS minus each baseline's, with a 90% bootstrap interval",
                                [([k], {m: per.get(k) for m, per in average.items() if k in per}) for k in keys],
                                [Column("method", None, "text")], units))
    tables.append(generic_table("cutoffs", "what each cutoff's baselines were built on",
                                [([c.get("cutoff")], c) for c in result.get("cutoffs", [])],
                                [Column("cutoff", None, "date")], units, skip=("metrics", "cutoff", "warnings")))
    skipped = Table("skipped", "cutoffs too early to calibrate on, skipped by every method, and why",
                    [Column("cutoff", None, "date"), Column("reason", None, "text")])
    skipped.rows = [[x.get("cutoff"), x.get("reason")] for x in result.get("skipped", [])]
    tables.append(skipped)
    said = Table("warnings", "what the calibrations warned of, each warning once with the cutoffs it was given at "
                             "(none: of the backtest as a whole)",
                 [Column("warning", None, "text"), Column("cutoffs", None, "text"),
                  Column("figures_vary", "true/false", "bool")])
    said.rows = [[x.get("warning"), " ".join(x.get("cutoffs") or []), bool(x.get("figures_vary"))]
                 for x in result.get("warnings", [])]
    tables.append(said)
    return tables + _other_tables(result, {"cutoffs", "average", "skipped", "warnings"}, units)


BUILDERS: dict[str, Callable[..., list[Table]]] = {"run": run_tables, "compare": compare_tables,
                                                    "sensitivity": sensitivity_tables, "backtest": backtest_tables}


def tables_for(kind: str, summary: dict, currency: str | None = None) -> list[Table]:
    """The summary tables of a command's result (``kind``: run, compare, sensitivity, backtest)."""
    return BUILDERS[kind](summary, currency)


def _sheet_safe(name: str) -> str:
    """A table name usable as a file name and an Excel sheet name (31 characters at most)."""
    text = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "table"
    return text[:31]


# --- about -----------------------------------------------------------------------------------------

def about(kind: str, summary: dict, tables: list[Table], currency: str | None, files: list[str]) -> list[tuple]:
    """The About sheet's rows: what was run, when, and what each sheet holds."""
    horizon = summary.get("horizon") or {}
    rows: list[tuple] = [(f"forecaster {kind}", None)]
    for label, value in (("scenario", summary.get("scenario") or summary.get("base")),
                         ("description", summary.get("description")),
                         ("trials", summary.get("trials")), ("seed", summary.get("seed")),
                         ("step", summary.get("step")), ("ranked by", summary.get("metric")),
                         ("horizon", f"{horizon['start']} to {horizon['end']}, by {horizon['report_by']}"
                          if horizon.get("start") else None),
                         ("currency", currency or horizon.get("currency")),
                         ("exported", _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()),
                         ("forecaster version", summary.get("forecaster_version")),
                         ("scenario sha256", summary.get("scenario_sha256"))):
        if value is not None:
            rows.append((label, value if isinstance(value, (int, float, str)) else str(value)))
    rows.append((None, None))
    shown = currency or horizon.get("currency") or "currency"
    rows.append(("units", f"a number's header ends with its unit in brackets: [{shown}] a currency, [deals], [leads], "
                          "[customers] counts (means may be fractional), [fraction] a share from 0 to 1 shown as a "
                          "percentage; statistics are over the trials (p10: 10% of trials were below)"))
    rows.append(("total rows", "flows sum the periods; a stock (active customers, MRR) is its level at the end"))
    if files:
        rows.append(("files", ", ".join(files)))
    rows.append((None, None))
    rows.append(("sheet", "what it holds"))
    rows += [(t.name, t.description) for t in tables]
    return rows


# --- writers -------------------------------------------------------------------------------------

def _csv_text(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, str):
        return safe_cell(value)  # a name like =1+2 stays text in a spreadsheet
    return value


def write_csv(table: Table, path: str | Path) -> None:
    """One table as CSV (UTF-8 with a byte-order mark, ``\\r\\n`` line ends as Excel writes them)."""
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow([safe_cell(c.header) for c in table.columns])
        for row in table.rows:
            w.writerow([_csv_text(v) for v in row])


NUMBER_FORMATS = {"money": "#,##0.00", "count": "#,##0.0", "integer": "#,##0", "fraction": "0.0%",
                  "number": "General", "date": "yyyy-mm-dd"}


def _cell_value(value: Any, col: Column) -> Any:
    if col.kind == "date" and isinstance(value, str):
        try:
            return _dt.date.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_xlsx(tables: list[Table], path: str | Path, about_rows: list[tuple]) -> None:
    """The workbook: an About sheet, then one sheet per table (openpyxl, write-only mode).

    Numbers are written exactly (openpyxl's own writer keeps 16 significant digits, which
    do not always give the same double back) and openpyxl's temporary files go beside
    ``path``, under names that a later run sweeps if this one is killed, never into the
    system's temporary folder (:func:`_openpyxl_beside`).
    """
    with _openpyxl_beside(Path(path).parent):
        _write_xlsx(tables, path, about_rows)


@contextlib.contextmanager
def _openpyxl_beside(folder: Path):
    """Within: openpyxl's temporary files in ``folder`` (``.openpyxl.<pid>.<hex>.tmp``) and its
    numbers in Python's shortest round-trip form."""
    import openpyxl.cell._writer as cell_writer  # type: ignore[import-untyped]
    import openpyxl.worksheet._writer as sheet_writer  # type: ignore[import-untyped]

    from forecaster.results.files import _temp_name

    made: list[Path] = []

    def temporary(suffix=""):
        tmp = _temp_name(folder, "openpyxl")
        tmp.touch(mode=0o600, exist_ok=False)
        made.append(tmp)
        sheet_writer.ALL_TEMP_FILES.append(os.fspath(tmp))  # as openpyxl's own: its cleanup removes it there
        return os.fspath(tmp)

    real_string = cell_writer.safe_string

    def exact(value):
        if isinstance(value, float) and math.isfinite(value):
            return repr(value)
        return real_string(value)

    saved = sheet_writer.create_temporary_file, cell_writer.safe_string
    sheet_writer.create_temporary_file, cell_writer.safe_string = temporary, exact
    try:
        yield
    finally:
        sheet_writer.create_temporary_file, cell_writer.safe_string = saved
        for tmp in made:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            with contextlib.suppress(ValueError):
                sheet_writer.ALL_TEMP_FILES.remove(os.fspath(tmp))


def _cell(ws, value: Any):
    """A write-only cell; text that a spreadsheet would take for a formula (=1+2, @foo) is
    stored as a string, shown as it is and never run."""
    from openpyxl.cell import WriteOnlyCell

    c = WriteOnlyCell(ws, value=value)
    if isinstance(value, str) and safe_cell(value) != value:
        c.data_type = "s"
    return c


def _write_xlsx(tables: list[Table], path: str | Path, about_rows: list[tuple]) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font  # type: ignore[import-untyped]
    from openpyxl.utils import get_column_letter  # type: ignore[import-untyped]

    wb = Workbook(write_only=True)
    bold = Font(bold=True)
    ws = wb.create_sheet("About")
    ws.column_dimensions["A"].width = 20
    ws.column_dimensions["B"].width = 100
    for label, value in about_rows:
        a = _cell(ws, label)
        a.font = bold
        b = _cell(ws, value)
        b.alignment = Alignment(wrap_text=True, vertical="top")
        ws.append([a, b])
    for table in tables:
        ws = wb.create_sheet(_sheet_safe(table.name))
        ws.freeze_panes = "A2"
        for i in range(1, len(table.columns) + 1):
            ws.column_dimensions[get_column_letter(i)].width = _width(table, i - 1)
        header = []
        for col in table.columns:
            c = _cell(ws, col.header)
            c.font = bold
            header.append(c)
        ws.append(header)
        formats = [NUMBER_FORMATS.get(c.kind) for c in table.columns]
        for row in table.rows:
            cells = []
            for value, col, fmt in zip(row, table.columns, formats):
                c = _cell(ws, _cell_value(value, col))
                if fmt and isinstance(c.value, (int, float, _dt.date)) and not isinstance(c.value, bool):
                    c.number_format = fmt
                cells.append(c)
            ws.append(cells)
    wb.save(os.fspath(path))


def _width(table: Table, j: int) -> float:
    """A column's width in characters: its header's or its longest value as shown, within 10-60."""
    col = table.columns[j]
    longest = len(col.header)
    for row in table.rows[:2000]:
        v = row[j]
        if isinstance(v, float):
            text = f"{v:,.2f}" if col.kind == "money" else f"{v:.1%}" if col.kind == "fraction" else f"{v:,.1f}"
        else:
            text = "" if v is None else str(v)
        longest = max(longest, len(text))
    return float(min(60, max(10, longest + 2)))


# --- per-trial tables (Parquet) --------------------------------------------------------------------

ROW_DIMS = ("scenario", "lever", "direction", "rep", "period", "quota_period")
"""Dimensions that make rows (besides ``trial``); any other (``segment``, ``quantity``) makes columns."""


@dataclass
class TrialTable:
    """Variables that share a row key, and those broadcast into it (per-trial draws on each
    of a trial's rows, a rep's quota on each of the rep's rows)."""

    key: tuple[str, ...]
    variables: list[str] = field(default_factory=list)


def trial_tables(ds) -> dict[str, list[TrialTable]]:
    """``{"trials": [...], "reps": [...]}``: the Dataset's variables grouped by row key,
    those with a ``rep`` dimension in ``reps``. A variable whose key is part of another's is
    put into the smallest such group (``inputs(trial, segment, quantity)`` into the rows of
    ``revenue(trial, period)``); a file of several groups stacks them, each row filling its
    own group's columns."""
    def key_of(name):
        dims = ds[name].dims
        return tuple(["trial"] * ("trial" in dims) + [d for d in ROW_DIMS if d in dims])

    names = [n for n in ds.data_vars]
    every = list(dict.fromkeys(key_of(n) for n in names if "trial" in ds[n].dims))
    # a key within another of its file (with or without reps) makes no rows of its own
    keys = [k for k in every if not any(set(k) < set(g) and ("rep" in g) == ("rep" in k) for g in every)]
    groups = {k: TrialTable(k) for k in keys}
    for n in names:
        k = key_of(n)
        if k in groups:
            groups[k].variables.append(n)
            continue
        supersets = [g for g in keys if set(k) <= set(g) and ("rep" in g) == ("rep" in k)] or \
                    [g for g in keys if set(k) <= set(g)]
        if supersets:
            groups[min(supersets, key=len)].variables.append(n)
    out: dict[str, list[TrialTable]] = {"trials": [], "reps": []}
    for k in sorted(keys, key=lambda k: "period" not in k):  # per period first, then per commission period
        out["reps" if "rep" in k else "trials"].append(groups[k])
    return {name: g for name, g in out.items() if g}


def _column_name(var: str, labels: tuple) -> str:
    return f"{var}[{', '.join(labels)}]" if labels else var


def _labels(ds, dim: str) -> list[str]:
    values = ds[dim].values
    if np.issubdtype(values.dtype, np.datetime64):
        return [str(v) for v in values.astype("datetime64[D]")]
    return [str(v) for v in values]


def _coord(ds, dim: str) -> np.ndarray:
    values = ds[dim].values if dim in ds.coords else np.arange(ds.sizes[dim])
    if np.issubdtype(values.dtype, np.datetime64):
        return values.astype("datetime64[ns]")
    if values.dtype.kind in "US":
        return values.astype(object)
    return values


def group_columns(ds, group: TrialTable, trials: slice | None = None) -> dict[str, np.ndarray]:
    """One group's columns for the trials ``trials``: the key's coordinates, then each
    variable, spread over its other dimensions (``revenue_by_segment[smb]``)."""
    sub = ds.isel(trial=trials) if trials is not None and "trial" in ds.dims else ds
    shape = tuple(sub.sizes[d] for d in group.key)
    cols: dict[str, np.ndarray] = {}
    for i, d in enumerate(group.key):
        values = _coord(sub, d) if d != "trial" else np.asarray(sub["trial"].values, dtype=np.int64)
        idx = [1] * len(shape)
        idx[i] = shape[i]
        cols[d] = np.broadcast_to(values.reshape(idx), shape).reshape(-1)
    for name in group.variables:
        da = sub[name]
        present = [d for d in group.key if d in da.dims]
        spread = [d for d in da.dims if d not in group.key]
        values = np.asarray(da.transpose(*present, *spread).values)
        full = tuple(sub.sizes[d] if d in da.dims else 1 for d in group.key) + values.shape[len(present):]
        values = np.broadcast_to(values.reshape(full), shape + values.shape[len(present):])
        values = values.reshape(int(np.prod(shape, dtype=np.int64)), -1)
        labels = [_labels(sub, d) for d in spread]
        for j, combo in enumerate(_product(labels)):
            cols[_column_name(name, combo)] = np.ascontiguousarray(values[:, j])
    return cols


def _product(labels: list[list[str]]) -> list[tuple]:
    out: list[tuple] = [()]
    for values in labels:
        out = [(*o, v) for o in out for v in values]
    return out


def _units_of(ds, group: TrialTable) -> dict[str, str]:
    units = {}
    for name in group.variables:
        unit = ds[name].attrs.get("units")
        if unit is None:
            continue
        spread = [d for d in ds[name].dims if d not in group.key]
        for combo in _product([_labels(ds, d) for d in spread]):
            units[_column_name(name, combo)] = str(unit)
    return units


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _select(columns: Iterable[str], dates: Iterable[str]) -> str:
    dates = set(dates)
    parts = []
    for c in columns:
        q = '"' + c.replace('"', '""') + '"'
        parts.append(f"CAST({q} AS DATE) AS {q}" if c in dates else q)
    return ", ".join(parts)


def write_parquet(ds, groups: list[TrialTable], path: str | Path, scratch: Callable[[str], Path] | None = None,
                  chunk_bytes: int | None = None) -> int:
    """Write the groups' rows to one Parquet file with DuckDB, a block of trials at a time.

    ``scratch(name)``: a temporary path (removed by the caller) for the blocks when there is
    more than one. Returns the rows written.
    """
    import duckdb

    chunk_bytes = PARQUET_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    trials = ds.sizes.get("trial", 1)
    per_trial = sum(8 * int(np.prod([ds.sizes[d] for d in ds[n].dims if d != "trial"], dtype=np.int64))
                    * (len(g.key) + 1) for g in groups for n in g.variables)
    step = max(1, min(trials, chunk_bytes // max(1, per_trial)))
    all_columns: list[str] = []
    dates: set[str] = set()
    units: dict[str, str] = {}
    for g in groups:
        units.update(_units_of(ds, g))
    attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in ds.attrs.items()}
    meta = "{" + ", ".join(f"{k}: {_sql_string(v)}" for k, v in (
        ("units", json.dumps(units)), ("forecaster", json.dumps(attrs, default=str)))) + "}"
    con = duckdb.connect(config={"temp_directory": "", "threads": 1})
    rows = 0
    try:
        parts: list[Path] = []
        blocks = range(0, trials, step)
        for lo in blocks:
            pieces = []
            for g in groups:
                c = group_columns(ds, g, slice(lo, min(trials, lo + step)))
                pieces.append(c)
                for name, values in c.items():
                    if name not in all_columns:
                        all_columns.append(name)
                    if np.issubdtype(values.dtype, np.datetime64):
                        dates.add(name)
            # the groups stacked: each fills its own columns, NULL elsewhere
            selects = []
            for i, c in enumerate(pieces):
                con.register(f"g{i}", c)
                fields = []
                for name in all_columns:
                    q = '"' + name.replace('"', '""') + '"'
                    fields.append(q if name in c else f"NULL AS {q}")
                selects.append(f"SELECT {', '.join(fields)} FROM g{i}")
            keys = [d for g in groups for d in g.key]
            all_columns.sort(key=lambda c: (c not in keys, keys.index(c) if c in keys else 0))
            query = f"SELECT {_select(all_columns, dates)} FROM ({' UNION ALL '.join(selects)})"
            rows += int(sum(len(next(iter(c.values()))) for c in pieces))
            if len(blocks) == 1:
                con.execute(f"COPY ({query}) TO {_sql_string(os.fspath(path))} (FORMAT parquet, KV_METADATA {meta})")
            else:
                if scratch is None:
                    raise ValueError("write_parquet needs scratch files for more than one block of trials")
                part = scratch(f"{Path(path).name}.{len(parts)}")
                con.execute(f"COPY ({query}) TO {_sql_string(os.fspath(part))} (FORMAT parquet)")
                parts.append(part)
            for i in range(len(pieces)):
                con.unregister(f"g{i}")
            from forecaster.results.files import checkpoint
            checkpoint()
        if parts:
            listing = "[" + ", ".join(_sql_string(os.fspath(p)) for p in parts) + "]"
            con.execute(f"COPY (SELECT * FROM read_parquet({listing})) TO {_sql_string(os.fspath(path))} "
                        f"(FORMAT parquet, KV_METADATA {meta})")
    finally:
        con.close()
    return rows


# --- writing it all ------------------------------------------------------------------------------

def stage_exports(staged, kind: str, summary: dict, formats: Iterable[str], *, ds=None,
                  currency: str | None = None) -> list[str]:
    """Write the exports of ``formats`` into ``staged``'s temporary files (published with the
    command's other files); returns their names. ``ds``: the per-trial Dataset (Parquet)."""
    formats = parse_formats(list(formats)) if formats else ()
    names = export_names(kind)
    written: list[str] = []
    if not formats:
        return written
    tables = tables_for(kind, summary, currency)
    undeclared = [t.name for t in tables if t.name not in TABLES[kind]]
    if undeclared:  # it would be left behind by the next run, or a user's file replaced
        raise AssertionError(f"{kind} export: tables {undeclared} are not declared in results.files.TABLES")
    if "csv" in formats:
        for t in tables:
            name = f"{names['csv']}/{t.name}.csv"
            write_csv(t, staged.path(name))
            written.append(name)
    parquet: list[str] = []
    if "parquet" in formats:
        if ds is None:
            raise ValueError(f"--export parquet: a {kind} keeps no per-trial results to export")
        for file, groups in trial_tables(ds).items():
            write_parquet(ds, groups, staged.path(names[file]), scratch=staged.scratch)
            parquet.append(names[file])
    if "xlsx" in formats:
        files_list = [*written, *parquet]
        write_xlsx(tables, staged.path(names["xlsx"]), about(kind, summary, tables, currency, files_list))
        written.append(names["xlsx"])
    return written + parquet


def run_with_exports(sc, out: str | Path, formats: Iterable[str], **options) -> tuple[dict, list[str]]:
    """:func:`forecaster.results.outputs.run_to_folder` with exports, all published at once.

    The run is written into a hidden folder in ``out`` (its files staged as usual), the
    exports are made from its ``summary.json`` and ``forecast.nc``, and every file is then
    renamed into ``out`` in one publication, ``summary.json`` last: a failed or interrupted
    run or export leaves the previous results and no export of this run. A folder left by a
    killed run is removed by the next run once its process is gone. Returns the summary and
    the export files' names.

    Raises
    ------
    ValueError
        ``parquet`` with ``keep="summary"`` (no per-trial file to export).
    """
    from forecaster.errors import OutputError
    from forecaster.results import files
    from forecaster.results.outputs import FORECAST, SUMMARY, _failure, run_to_folder

    formats = parse_formats(list(formats))
    keep = options.get("keep", "all")
    if "parquet" in formats and keep == "summary":
        raise ValueError("--export parquet exports every trial from forecast.nc, which --keep summary does not "
                         "write; drop one of them")
    files.check_out(Path(out))
    files.check_outputs(out, "run")
    folder, created = files.create_out_folder(out)
    sweep_stale_run_folders(folder)
    inner = files._temp_name(folder, "export")
    try:
        with files.handle_interrupts(), files.Staged(folder) as staged:
            inner.mkdir()
            try:
                summary = run_to_folder(sc, inner, **options)
            except OutputError as exc:  # its messages name the folder the user gave
                raise OutputError(str(exc).replace(os.fspath(inner), os.fspath(out))) from None
            files.checkpoint()
            ds = None
            if "parquet" in formats:
                import xarray as xr
                ds = xr.open_dataset(inner / FORECAST, engine="h5netcdf", mask_and_scale=False,
                                     decode_timedelta=False)
            try:
                names = stage_exports(staged, "run", summary, formats, ds=ds, currency=sc.currency)
            finally:
                if ds is not None:
                    ds.close()
            for name in ((FORECAST,) if keep == "all" else ()) + (SUMMARY,):  # summary.json last: the marker
                os.replace(inner / name, staged.path(name))
            files.checkpoint()
            staged.publish(remove=(FORECAST,) if keep == "summary" else ())
            return summary, names
    except BaseException as exc:
        shutil.rmtree(inner, ignore_errors=True)
        files.remove_folders(created)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(_failure(folder, exc, None)) from None
        raise
    finally:
        shutil.rmtree(inner, ignore_errors=True)


def sweep_stale_run_folders(folder: Path) -> list[Path]:
    """Remove the hidden folders (``.export.<pid>.<hex>.tmp``) that killed runs with exports
    left in ``folder``, once their process is gone; nothing else."""
    from forecaster.results import files

    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = files._TEMP.fullmatch(entry.name)
        if not m or m["name"] != "export" or not entry.is_dir(follow_symlinks=False):
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or (files._pid_alive(pid) and not files._pid_started_after(
                pid, entry.stat(follow_symlinks=False).st_mtime)):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def write_comparison_with_exports(out: str | Path, ds, summary: dict, formats: Iterable[str], *,
                                  kind: str = "compare", currency: str | None = None) -> list[str]:
    """:func:`forecaster.results.outputs.write_comparison` with exports, published together
    (``kind``: ``compare`` or ``sensitivity``, which is also the files' stem). Returns the
    export files' names."""
    from forecaster.errors import OutputError
    from forecaster.results import files
    from forecaster.results.outputs import _dump, _failure, _to_netcdf, write_comparison

    formats = parse_formats(list(formats)) if formats else ()
    stem = STEMS[kind]
    if not formats:
        write_comparison(out, ds, summary, stem=stem)
        return []
    files.check_out(Path(out))
    files.check_targets(Path(out), (f"{stem}.nc", f"{stem}.json"))
    text = _dump(summary)
    folder, created = files.create_out_folder(out)
    try:
        with files.handle_interrupts(), files.Staged(folder) as staged:
            _to_netcdf(ds, staged.path(f"{stem}.nc"))
            names = stage_exports(staged, kind, summary, formats, ds=ds, currency=currency)
            with open(staged.path(f"{stem}.json"), "w", encoding="utf-8") as f:  # the marker: last
                f.write(text)
            files.checkpoint()
            staged.publish()
            return names
    except BaseException as exc:
        files.remove_folders(created)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(_failure(folder, exc, None)) from None
        raise


def write_together_with_exports(folder: str | Path, texts: dict[str, str], shown: str, *, kind: str,
                                summary: dict, formats: Iterable[str], currency: str | None = None) -> list[Path]:
    """:func:`forecaster.results.files.write_together` plus the CSV and XLSX exports of
    ``summary`` (e.g. a backtest's result), all or none. Parquet is refused: such a result
    keeps no trials."""
    from forecaster.errors import OutputError
    from forecaster.results import files

    formats = parse_formats(list(formats)) if formats else ()
    if "parquet" in formats:
        raise ValueError(f"--export parquet: a {kind} keeps no per-trial results; use csv or xlsx")
    if not formats:
        return files.write_together(Path(folder), texts, shown)
    try:
        with files.Staged(Path(folder), create=True, shown=shown) as staged:
            stage_exports(staged, kind, summary, formats, currency=currency)
            for name, text in texts.items():
                with open(staged.path(name), "w", encoding="utf-8", newline="") as f:
                    f.write(text)
            return list(staged.publish().values())
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"{shown}: cannot write {files.shorten(folder)}: {exc.strerror or exc}; nothing was "
                          "written") from None
