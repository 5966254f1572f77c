"""A calibrated scenario's parts: what calibration fitted (:class:`Calibration`), its optional
parts (:class:`Mechanism`, :data:`MECHANISMS`) and how a set of them becomes a scenario
document (:func:`build_scenario`), with its pipeline CSV (:func:`pipeline_csv`); and the
expected share of a base document's wins that come from new leads (:func:`new_lead_share`,
by a short simulation), which estimation is given, never computes."""
from __future__ import annotations

import csv
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from forecaster.results.dataset import simulate
from forecaster.scenario.loading import scenario_from_dict


@dataclass
class Calibration:
    """What calibration produced: the scenario document, the pipeline rows, and notes."""

    scenario: dict
    pipeline: list
    notes: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    base: dict = field(default_factory=dict)          # the scenario without any optional part
    mechanisms: dict = field(default_factory=dict)    # name -> Mechanism, the optional parts fitted
    kept: list = field(default_factory=list)          # the names of those kept
    families: dict = field(default_factory=dict)      # stage -> (family of days, of days_lost)
    evidence: dict = field(default_factory=dict)      # the in-history walk-forward behind the choice
    fiscal_year_start: int | None = None              # month 1-12 the company's quarters count from


class SegmentWarning(str):
    """A warning of :attr:`Calibration.warnings` about one segment (its text names it first):
    the command line prints the first few and counts the rest."""

    segment: str

    def __new__(cls, text: str, segment: str):
        self = super().__new__(cls, text)
        self.segment = segment
        return self

    def __reduce__(self):  # pickle and copy: str's own would call __new__ without the segment
        return (SegmentWarning, (str(self), self.segment))


@dataclass
class Mechanism:
    """An optional part of a calibrated scenario, fitted but kept only on evidence.

    ``apply`` adds it to a scenario document (in place); ``summary`` says what was fitted.
    """

    name: str
    apply: Callable[[dict], None]
    summary: str


MECHANISMS = ("shocks", "stalled", "speed", "trend", "seasonality", "closing", "capacity")
"""The optional parts of a calibrated scenario, in the order they are applied."""


def build_scenario(cal: Calibration, kept, widen: float = 1.0) -> dict:
    """The base scenario of ``cal`` with the mechanisms ``kept`` applied (in the order of
    :data:`MECHANISMS`), the shared spread multiplied by ``widen``: the shocks' sigmas and a
    capacity's cv (a team whose deals wait wins what its capacity allows, so the cap's
    spread is the wins' spread)."""
    import copy

    doc = copy.deepcopy(cal.base)
    for m in MECHANISMS:
        if m in kept and m in cal.mechanisms:
            cal.mechanisms[m].apply(doc)
    from forecaster.scenario.limits import MAX_CAPACITY_CV, MAX_SHOCK

    if widen != 1.0 and "shocks" in doc:
        def scaled(v, kind: str):
            """A sigma of ``kind`` (``leads``, ``drift.convert``, ...) or a mapping of them,
            times ``widen``, held to the format's largest (a spread widened x4 must still
            be a scenario the format takes)."""
            if isinstance(v, dict):
                return {k: scaled(x, kind if kind.split(".")[-1] in ("leads", "convert")
                                  else (f"{kind}.{k}" if kind else k)) for k, x in v.items()}
            return min(round(v * widen, 4), MAX_SHOCK.get(kind, math.inf))
        doc["shocks"] = scaled(doc["shocks"], "")
    if widen != 1.0 and "capacity" in doc:
        doc["capacity"] = {**doc["capacity"], "cv": min(round(doc["capacity"]["cv"] * widen, 4), MAX_CAPACITY_CV)}
    return doc


PIPELINE_COLUMNS = ("deal_id", "segment", "stage", "entered_stage", "amount")


def pipeline_csv(rows: list) -> str:
    """The open deals of a calibration, as a pipeline CSV (the contract's columns)."""
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=PIPELINE_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def new_lead_share(cal: Calibration, trials: int = 400) -> float:
    """Expected share of the horizon's won deals that come from new leads (not the pipeline),
    from a short simulation of the base scenario (without any optional part)."""
    if not cal.pipeline:
        return 1.0
    doc = dict(cal.base)  # the base has no optional part: no shocks, no slips
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / doc["pipeline"]["file"]).write_text(pipeline_csv(cal.pipeline), encoding="utf-8")
        both = float(simulate(scenario_from_dict(doc, base_dir=tmp), trials=trials)["won_deals"].sum())
    doc.pop("pipeline")
    new = float(simulate(scenario_from_dict(doc), trials=trials)["won_deals"].sum())
    return min(new / both, 1.0) if both > 0 else 1.0
