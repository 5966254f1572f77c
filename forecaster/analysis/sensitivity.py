"""Sensitivity: which lever moves the forecast, and which uncertainty drives its spread.

**Levers.** Every input a user can move, changed by ±step (default 10%) on common random
numbers (:mod:`forecaster.analysis.compare`): each segment's leads (its rate or budget), each
stage's conversion, each stage's time (``days`` and ``days_lost`` together) and each
segment's deal value; and the same levers across all segments at once. Effects on total
revenue, won deals and commission are paired differences from the base, with 95%
intervals, ranked by size (a tornado).

**After the sale** (v2 A.6): per segment with a ``customer`` block, the levers ``renew``,
``expansion``, ``repeat per_month``, ``dropout`` and ``cancel probability`` (those the
segment has), and each across the segments that have it when two or more do (with one, it
would be that segment's lever again). A lever on a quantity fixed at 0 (an ``expansion: 0``)
would scale 0 to 0: it is not run and says so in ``skipped``. A ``leads`` lever scales a
segment's rate or budget, never a dated lead event's count (v2 F2: a count is a count): a
segment whose leads come only from events has an effect of 0, and ``notes`` says why
(:func:`event_lead_notes`). With customers the effects
are also on the after-sale outputs (:data:`AFTER_SALE_METRICS`: a flow's total over the
horizon, a stock's level at its end), and the ranking, the tornado and the three moves may
be read on ``recognised_revenue`` or ``total_bookings`` instead of revenue (``metric``).
These levers act after the sale: their effects on revenue, won deals and commission (on new
bookings) are exactly 0 in every trial.

**The three moves** of the funnel literature, side by side: *expansion* (+step leads at the
top, every segment), *stretching* (+step conversion at every stage, every segment) and the
*key level* (the one stage whose +step conversion, in every segment, pays most).

**Conversion steps** (v2 F9, ``convert_step``): levers on probabilities step relative (v1's,
capped at 1 where the scaled law would pass 1, and said so under ``capped``), on the odds
(each trial's drawn p) or in points (skipped where p leaves [0, 1]); see
:mod:`forecaster.analysis.steps`. **Ties**: stage levers whose mean effects differ by less
than :data:`TIE` (relative) tie, and the key level names them all (``key_level.tied``); with
no open pipeline, relative steps tie every stage of a segment. **Stage value**: with
``outputs: {stage_value: true}``, the base run's stage value table
(:func:`forecaster.results.summary.stage_value_summary`) is stored under ``stage_value``.

**Variance attribution.** The per-trial draws of rates and probabilities (``inputs`` of a
run) explain part of the spread of total revenue; the rest is counting and per-deal noise.
First-order Sobol indices S_j = Var(E[Y | X_j]) / Var(Y) are estimated from the base run
alone by the given-data (binning) method: sort trials by X_j, cut them into B equal bins,
and take the variance of the bin means of Y, less its sampling bias (the mean within-bin
variance times B / N), over Var(Y). Each share comes with ``share_noise``, what an input
with no effect stays below about 97 times in 100 (:func:`_first_order`): a share below it
is not told from zero.
"""
from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, TimeoutError as FuturesTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from forecaster.analysis.compare import (
    check_memory,
    difference_stats,
    horizon_total,
    memory_per_trial,
    metric_unit,
    paired_difference,
    stored_seed,
)
from forecaster.analysis.steps import MODES, PROBABILITY_KINDS, DrawnStep
from forecaster.engine._numba import default_threads
from forecaster.engine.blocks import Sources
from forecaster.engine.plan import build_plan
from forecaster.engine.simulation import run_trials
from forecaster.errors import ForecasterError, ScenarioError
from forecaster.results.files import checkpoint
from forecaster.results.layout import Layout, MemorySink
from forecaster.results.summary import describe, stage_value_summary
from forecaster.scenario.loading import build_scenario, files_folder, load_scenario, read_document
from forecaster.scenario.model import LEAD_SOURCES, Outputs, Scenario
from forecaster.scenario.variants import Literal, apply_changes

AFTER_SALE_METRICS = ("recognised_revenue", "total_bookings", "renewal_bookings", "repeat_revenue", "cancellations",
                      "active_customers", "mrr")
"""The after-sale outputs a sensitivity reports effects on, when the scenario has customers."""
METRICS = ("revenue", "won_deals", "commission", *AFTER_SALE_METRICS)
RANKED_BY = ("revenue", "recognised_revenue", "total_bookings")
"""The metrics a sensitivity may rank its levers by (``metric``; v2 A.6)."""
DEFAULT_TRIALS = 5000
"""Trials per run unless asked: paired differences are precise with few trials, and a
sensitivity makes ~2 runs per lever."""


@dataclass(frozen=True)
class Lever:
    """A group of quantities scaled together: ``paths`` into the scenario document."""

    name: str
    kind: str        # leads | convert | move_share | days | deal_value | renew | expansion | per_month | dropout | cancel
    scope: str       # a segment name, or "all segments"
    paths: tuple
    unmoved: str = ""  # why scaling it changes nothing (it is not run), e.g. an expansion of 0


AFTER_SALE_LEVERS = (
    # kind, name, key path under the segment's `customer` block (v2 A.1)
    ("renew", "renew", ("subscription", "renew")),
    ("expansion", "expansion", ("subscription", "expansion")),
    ("per_month", "repeat per_month", ("repeat", "per_month")),
    ("dropout", "dropout", ("repeat", "dropout")),
    ("cancel", "cancel probability", ("cancel", "probability")),
)
"""The after-sale levers (v2 A.6), in the order they are listed."""


def levers(doc: dict, scenario: Scenario) -> list[Lever]:
    """Every lever of a scenario: per segment (with customers, its after-sale levers after its
    deal value), then across all segments."""
    out = []
    stages = list(scenario.stages)

    # paths as literal keys: a segment or stage may be named "eu.north" or "[new]"
    def lead_paths(name):  # v2 C.4: a bought segment's every monthly budget, never its reference budget
        leads = doc["segments"][name]["leads"]
        source = next(k for k in LEAD_SOURCES if k in leads)
        by_month = leads.get("budget_by_month") or {}
        return (Literal(("segments", name, "leads", source)),
                *(Literal(("segments", name, "leads", "budget_by_month", m)) for m in by_month))

    def day_paths(name, stage):
        entry = doc["segments"][name]["funnel"][stage]
        return tuple(Literal(("segments", name, "funnel", stage, k)) for k in ("days", "days_lost") if k in entry)

    def convert_path(name, stage):
        return Literal(("segments", name, "funnel", stage, "convert"))

    def value_path(name):
        return Literal(("segments", name, "deal_value"))

    # v2 F4: a segment's levers are on its own stages; "all: <stage>" spans the segments that pass it
    own = {name: [s for s in stages if seg.passes(s)] for name, seg in scenario.segments.items()}
    after_sale, after_sale_everywhere = _after_sale_levers(doc, scenario)
    for name in scenario.segments:
        out.append(Lever(f"{name}: leads", "leads", name, lead_paths(name)))
        for stage in own[name]:
            out.append(Lever(f"{name}: {stage} convert", "convert", name, (convert_path(name, stage),)))
        for stage in own[name]:  # v2 B.4: a lever per move's share
            for i, move in enumerate(scenario.segments[name].funnel[stage].moves):
                out.append(Lever(f"{name}: {stage} move to {move.to} share", "move_share", name,
                                 (Literal(("segments", name, "funnel", stage, "moves", i, "share")),)))
        for stage in own[name]:
            out.append(Lever(f"{name}: {stage} days", "days", name, day_paths(name, stage)))
        out.append(Lever(f"{name}: deal value", "deal_value", name, (value_path(name),)))
        out.extend(lever for lever in after_sale if lever.scope == name)
    names = list(scenario.segments)
    everywhere = "all segments"  # kept even for one segment: the three moves are read from these
    out.append(Lever("all: leads (expansion)", "leads", everywhere, tuple(p for n in names for p in lead_paths(n))))
    for stage in stages:
        paths = tuple(convert_path(n, stage) for n in names if stage in own[n])
        if paths:
            out.append(Lever(f"all: {stage} convert", "convert", everywhere, paths))
    out.append(Lever("all: every stage convert (stretching)", "convert", everywhere,
                     tuple(convert_path(n, s) for n in names for s in own[n])))
    out.append(Lever("all: every stage days", "days", everywhere,
                     tuple(p for n in names for s in own[n] for p in day_paths(n, s))))
    out.append(Lever("all: deal value", "deal_value", everywhere, tuple(value_path(n) for n in names)))
    out.extend(after_sale_everywhere)
    return out


def event_lead_notes(scenario: Scenario) -> list[dict[str, str]]:
    """Notes on the ``leads`` levers of a scenario with dated lead events (v2 F2), as
    ``{"lever", "note"}``: a lever scales the segment's rate or budget (v1's "each segment's
    leads"), never an event's count (F2: a count is a count). So a segment whose leads come
    only from events (a rate fixed at 0, or a budget of 0) has no arrival rate to scale and
    its lever's effect is exactly 0, and the expansion lever leaves the events' leads out."""
    notes, having = [], []
    for name, seg in scenario.segments.items():
        leads = seg.leads
        if not leads.events:
            continue
        having.append(name)
        if leads.source == "budget_per_month":
            zero = not leads.budget_per_month and not any(leads.budget_by_month.values())
        else:
            rate = getattr(leads, leads.source)
            zero = rate.is_fixed and rate["value"] == 0
        if zero:
            notes.append({"lever": f"{name}: leads",
                          "note": f"segment {name} has no arrival rate to scale (its {leads.source} is 0): its leads "
                                  "come only from its dated lead events, whose counts the lever does not scale, so "
                                  "its effect is 0"})
    if having:
        notes.append({"lever": "all: leads (expansion)",
                      "note": "scales the segments' lead rates and budgets, not the counts of the dated lead events "
                              f"of {', '.join(having)}"})
    return notes


def _after_sale_levers(doc: dict, scenario: Scenario) -> tuple[list[Lever], list[Lever]]:
    """The after-sale levers: per segment with a ``customer`` block, each quantity of
    :data:`AFTER_SALE_LEVERS` its file gives; and each across the segments whose quantity
    can move, when two or more can."""
    per_segment: list[Lever] = []
    movable: dict[str, list] = {}
    for name, segment in scenario.segments.items():
        customer = segment.customer
        block = doc["segments"][name].get("customer")
        if customer is None or not isinstance(block, dict):
            continue
        for kind, label, (part, key) in AFTER_SALE_LEVERS:
            entry = block.get(part)
            if not isinstance(entry, dict) or key not in entry:
                continue  # the segment does not have it (an absent expansion is 0: nothing to scale)
            quantity = getattr(getattr(customer, part), key)
            path = Literal(("segments", name, "customer", part, key))
            unmoved = ""
            if quantity.is_fixed and quantity["value"] == 0:
                unmoved = f"{label} is 0 in segment {name}: scaling it changes nothing"
            else:
                movable.setdefault(kind, []).append(path)
            per_segment.append(Lever(f"{name}: {label}", kind, name, (path,), unmoved))
    everywhere = [Lever(f"all: {label}", kind, "all segments", tuple(movable[kind]))
                  for kind, label, _ in AFTER_SALE_LEVERS if len(movable.get(kind, ())) >= 2]
    return per_segment, everywhere


def shared_laws(scenario: Scenario) -> dict:
    """Key path tuple -> law, of every quantity that shares a draw (v2 E.1): each ``same_as``
    and each quantity one names."""
    from forecaster.scenario.same_as import quantity_at

    return {tuple(p): quantity_at(scenario, p) for link in scenario.same_as for p in link}


@dataclass
class _Change:
    """How a lever's run differs from the base: ``changes`` to the scenario document (for
    :func:`forecaster.scenario.variants.apply_changes`), a per-trial step of drawn
    probabilities (``adjust``), and the quantities whose relative step was capped at 1
    (``capped``: (key path, why) pairs)."""

    changes: dict
    adjust: DrawnStep | None = None
    capped: tuple = ()


def _at(doc: dict, path) -> Any:
    node: Any = doc
    for key in path:
        node = node[key]
    return node


def _key_path(path) -> str:
    """A key path as the contract spells it: ``segments.web.funnel.evaluation.moves[0].share``."""
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".")


def _slot(path, doc: dict, segment_names, quantity_names) -> tuple[int, int]:
    """The (segment, theta slot) of a per-trial quantity's key path: ``segments.<s>.funnel.<stage>.convert``
    is slot ``convert.<stage>``, ``segments.<s>.funnel.<stage>.moves[i].share`` slot
    ``move.<stage>.<to>`` (v2 B), a lead rate slot ``leads``, ... (:func:`forecaster.engine.plan.slot_of`)."""
    from forecaster.engine.plan import slot_of

    parts = list(path)
    name = parts[1]
    if parts[2] == "funnel" and parts[4] == "convert":
        quantity = f"convert.{parts[3]}"
    elif parts[2] == "funnel":  # a move's share
        quantity = f"move.{parts[3]}.{_at(doc, parts[:6])['to']}"
    else:
        quantity = slot_of(None, tuple(parts[2:]))
    names = [str(q) for q in quantity_names]
    if quantity not in names:
        raise ForecasterError(f"{_key_path(path)}: the engine draws no per-trial {quantity} to step")
    return list(segment_names).index(name), names.index(quantity)


SHARED_PROBABILITIES = ("convert", "move_share", "renew", "dropout", "cancel")
"""Lever kinds whose quantities are probabilities (a shared one is stepped per trial within [0, 1])."""


def _shared_change(doc: dict, lever: Lever, direction: int, step: float, mode: str, segment_names, quantity_names,
                   shared: dict) -> tuple[list, DrawnStep | None, list]:
    """The part of a lever on quantities that share a draw (v2 E.1: a ``same_as`` or the
    quantity one names), stepped per trial on its own segment's draw, after the copy: a lever
    moves only its own segment, never the other quantities of the same draw.

    ``shared``: key path tuple -> the law its draws follow, for every holder and target of a
    ``same_as``. Returns the lever's other paths, the per-trial step of the shared ones (None:
    none) and their (key path, why) caps. Raises ScenarioError (the lever is skipped) where
    the step would leave a probability's range as v1 skips: a ``points`` step, or a relative
    step of an after-sale probability.
    """
    from forecaster.errors import Problem
    from forecaster.scenario.distributions import PROBABILITY, Quantity
    from forecaster.scenario.validation import INVALID, Context
    from forecaster.scenario.variants import scale_quantity, shift_quantity

    own = [p for p in lever.paths if tuple(p) not in shared]
    paths = [p for p in lever.paths if tuple(p) in shared]
    if not paths:
        return own, None, []
    factor = 1 + direction * step
    probability = lever.kind in SHARED_PROBABILITIES
    rule, amount = ("scale", factor) if not probability else ("capped", factor) if mode == "relative" or \
        lever.kind not in PROBABILITY_KINDS else ("odds", factor) if mode == "odds" else ("shift", direction * step)
    capped = []
    for p in paths if probability and rule != "odds" else ():
        law = shared[tuple(p)].to_yaml()
        moved = shift_quantity(law, amount) if rule == "shift" else scale_quantity(law, factor)
        ctx = Context()
        if Quantity(PROBABILITY).validate(moved, (), ctx) is INVALID:
            why = ctx.problems[0].message if ctx.problems else "leaves [0, 1]"
            if rule == "shift" or lever.kind not in PROBABILITY_KINDS:
                raise ScenarioError("", [Problem(_key_path(p), f"{why}: not run (it takes a shared draw, "
                                                               "stepped in every trial)")])
            capped.append((p, f"x{factor:g} would leave [0, 1] ({why}): each trial's drawn "
                              f"probability p became min(1, {factor:g} p)"))
    slots = tuple(_slot(p, doc, segment_names, quantity_names) for p in paths)
    return own, DrawnStep(rule, amount, slots), capped


def lever_change(doc: dict, lever: Lever, direction: int, step: float, mode: str = "relative",
                 segment_names=(), quantity_names=(), shared: dict | None = None) -> _Change:
    """What lever ``lever`` changes at -step (``direction`` -1) or +step (+1).

    Levers on probabilities (:data:`forecaster.analysis.steps.PROBABILITY_KINDS`) step as
    ``mode`` says (see :mod:`forecaster.analysis.steps`); every other lever scales its
    quantities by 1 ± step. ``segment_names`` and ``quantity_names`` (the plan's theta slots)
    place a per-trial step. ``shared`` (v2 E.1): key path tuple -> law of every quantity
    that shares a draw (a ``same_as`` or the quantity one names); those are stepped per
    trial on their own segment's draw only (:func:`_shared_change`).
    """
    from forecaster.scenario.distributions import PROBABILITY, Quantity
    from forecaster.scenario.validation import INVALID, Context
    from forecaster.scenario.variants import scale_quantity

    factor = 1 + direction * step
    if lever.kind == "move_share" and direction > 0 and mode in ("relative", "odds"):
        for p in lever.paths:
            _shares_stay_below_one(doc, p, factor, mode, shared or {})
    own, drawn, drawn_capped = _shared_change(doc, lever, direction, step, mode, segment_names, quantity_names,
                                              shared or {})
    if drawn is not None:
        change = lever_change(doc, dataclasses.replace(lever, paths=tuple(own)), direction, step, mode,
                              segment_names, quantity_names, shared) if own else _Change({})
        assert change.adjust is None or change.adjust.rule == drawn.rule, (change.adjust, drawn)
        slots = drawn.slots + (change.adjust.slots if change.adjust is not None else ())
        return _Change(change.changes, DrawnStep(drawn.rule, drawn.factor, slots),
                       change.capped + tuple((_key_path(p), why) for p, why in drawn_capped))
    if lever.kind not in PROBABILITY_KINDS or mode == "relative":
        scaled, capped = {}, []
        for p in lever.paths:
            if lever.kind in PROBABILITY_KINDS:
                ctx = Context()
                if Quantity(PROBABILITY).validate(scale_quantity(_at(doc, p), factor), (), ctx) is INVALID:
                    why = ctx.problems[0].message if ctx.problems else "leaves [0, 1]"
                    capped.append((p, f"x{factor:g} would leave [0, 1] ({why}): each trial's drawn "
                                      f"probability p became min(1, {factor:g} p)"))
                    continue
            scaled[p] = factor
        adjust = DrawnStep("capped", factor, tuple(_slot(p, doc, segment_names, quantity_names) for p, _ in capped)) \
            if capped else None
        return _Change({"scale": scaled}, adjust, tuple((_key_path(p), why) for p, why in capped))
    if mode == "odds":
        return _Change({}, DrawnStep("odds", factor, tuple(_slot(p, doc, segment_names, quantity_names)
                                                           for p in lever.paths)))
    if mode == "points":
        return _Change({"shift": {p: direction * step for p in lever.paths}})
    raise ValueError(f"convert step {mode!r}: expected one of {', '.join(MODES)}")


def _shares_stay_below_one(doc: dict, path, factor: float, mode: str, shared: dict) -> None:
    """Refuse (a ScenarioError, so the lever is skipped and said so) a step on a move's share
    after which the upper ends of its stage's shares could sum above 1 (v2 B.5): under
    ``odds`` each trial's share s becomes s f / (1 - s + s f), under ``relative`` min(1, f s).
    ``shared``: the laws of the shares that are a ``same_as`` (v2 E.1), by key path tuple."""
    from forecaster.errors import Problem
    from forecaster.scenario.distributions import PROBABILITY, Quantity
    from forecaster.scenario.validation import Context

    moves, i = _at(doc, path[:5]), path[5]
    highs = []
    for j, move in enumerate(moves):
        law = shared.get((*tuple(path[:5]), j, "share"))
        hi = (law if law is not None else Quantity(PROBABILITY).validate(move["share"], (), Context())).support()[1]
        if j == i:
            hi = (hi * factor / (1 - hi + hi * factor) if hi < 1 else 1.0) if mode == "odds" else min(1.0, hi * factor)
        highs.append(hi)
    if sum(highs) > 1.0 + 1e-12:
        where = _key_path(path[:5])
        raise ScenarioError("", [Problem(where, f"the shares of {where} could sum to {sum(highs):.4g} after the "
                                                "step (they must stay <= 1 whatever is drawn): not run")])


def first_order_index(x: np.ndarray, y: np.ndarray, bins: int) -> float:
    """Given-data estimate of Var(E[Y | X]) / Var(Y) from paired samples (binning).

    Trials are sorted by ``x`` and cut into ``bins`` groups of (nearly) equal size; the
    variance of the group means of ``y``, less its bias from sampling (mean within-group
    variance times bins / n), is divided by Var(y).
    """
    return _first_order(x, y, bins)[0]


def _first_order(x: np.ndarray, y: np.ndarray, bins: int) -> tuple[float, float]:
    """:func:`first_order_index` and its noise: twice the estimate's standard deviation for an
    input with no effect, within-group variance x sqrt(2 (bins - 1)) / n over Var(y) (the bin
    means' spread is then chi-square with bins - 1 degrees of freedom), about 0.6% at 2,000
    trials. A share below it is what an input that cannot move the metric shows (about 3
    in 100 such inputs reach it: chi-square's right tail past bins + 2 sqrt(2 (bins - 1)): 3.0% at 10 bins, 2.6% at 100)."""
    n = y.size
    var = y.var()
    if var == 0 or np.all(x == x[0]):
        return 0.0, 0.0
    groups = np.array_split(y[np.argsort(x, kind="stable")], bins)
    means = np.array([g.mean() for g in groups])
    sizes = np.array([g.size for g in groups])
    between = np.sum(sizes * (means - y.mean()) ** 2) / n
    within = sum(((g - g.mean()) ** 2).sum() for g in groups) / (n - bins)
    noise = 2.0 * within * np.sqrt(2.0 * (bins - 1)) / n / var
    return float(max(0.0, between - within * bins / n) / var), float(noise)


def variance_shares(ds, scenario: Scenario, metric: str = "revenue") -> list[dict]:
    """First-order shares of the variance of ``metric``'s total (default revenue), one per
    uncertain per-trial input (the after-sale rates and probabilities included)."""
    return _variance_shares(horizon_total(metric, ds[metric].values.astype(float)), ds["inputs"].values,
                            ds["segment"].values, ds["quantity"].values, build_plan(scenario).same_as)


def _variance_shares(y: np.ndarray, inputs: np.ndarray, segments, quantities, same_as=()) -> list[dict]:
    """:func:`variance_shares` from arrays: a metric's totals ``y`` (trials,) and ``inputs``
    (trials, segments, quantities). ``same_as``: the plan's rows (segment, slot, target
    segment, target slot) of shared draws (v2 E.1): a holder's column is its target's draw,
    whose share it is, and is not listed again."""
    bins = int(max(10, min(100, round(np.sqrt(y.size) / 2))))
    out: list[dict[str, Any]] = []
    holders = {(int(g), int(k)) for g, k, _, _ in same_as}
    for g, seg in enumerate(segments):
        for k, quantity in enumerate(quantities):
            x = inputs[:, g, k]
            if np.all(x == x[0]) or (g, k) in holders:
                continue  # fixed in this scenario, or the same draw as another's
            share, noise = _first_order(x, y, bins)
            out.append({"input": f"{seg}.{quantity}", "share": share, "share_noise": round(noise, 6)})
    out.sort(key=lambda r: -r["share"])
    return out


@dataclass
class _Run:
    """What a sensitivity keeps of a run: per-trial totals over the horizon of each metric,
    shape (trials,) (a stock's: its level at the end); of the base run also the per-trial inputs."""

    totals: dict
    inputs: np.ndarray | None = None


def _totals(layout: Layout, revenue: np.ndarray, won: np.ndarray, bookings: np.ndarray,
            inputs: np.ndarray, *after_sale: np.ndarray) -> dict:
    """Per-trial totals over the horizon of each metric, from a run's kernel arrays
    (``after_sale``: those of a scenario with customers)."""
    arrays = layout.derive(revenue, won, bookings, inputs, *after_sale)
    totals = {"revenue": arrays["revenue"].sum(axis=1), "won_deals": arrays["won_deals"].astype(float).sum(axis=1)}
    if "commission" in arrays:
        totals["commission"] = arrays["commission"].sum(axis=2).sum(axis=1)
    for name in AFTER_SALE_METRICS:
        if name in arrays:
            totals[name] = horizon_total(name, arrays[name].astype(float))
    return totals


def _plan(sc: Scenario, adjust: DrawnStep | None):
    """``sc``'s plan; with ``adjust``, every trial's drawn probabilities stepped by it
    (:mod:`forecaster.analysis.steps`)."""
    plan = build_plan(sc)
    if adjust is not None:
        plan = dataclasses.replace(plan, adjust_theta=adjust)
    return plan


def _run(sc: Scenario, trials: int, seed: int, *, keep_inputs: bool = False,
         stop: threading.Event | None = None, adjust: DrawnStep | None = None) -> _Run:
    """Simulate ``sc`` in memory on one thread and keep only its per-trial totals: the
    numbers of :func:`forecaster.simulate` and :func:`forecaster.analysis.compare.per_trial_metrics`,
    without building a Dataset (a sensitivity makes ~80 runs; several run at once)."""
    sc = sc.with_run(trials, seed)
    plan = _plan(sc, adjust)
    sink = MemorySink(Layout.of(sc, plan))
    run_trials(plan, sc, sink, chunk_trials=sc.trials, threads=1, stop=stop)
    totals = _totals(sink.layout, *sink.kernel_arrays)
    return _Run(totals, sink.kernel_arrays[3] if keep_inputs else None)


# --- runs by source ----------------------------------------------------------------------------
# A lever of one segment changes the deals of that segment's new leads, and of the open
# pipeline only where the pipeline has deals of that segment that the lever reaches; every
# other source of won deals books, trial by trial, exactly the deals of the base run (each
# draws from streams of its own: common random numbers). So the base run is kept source by
# source (the new leads of each segment, then the pipeline, then the installed base), and a
# lever's run simulates only the sources it changes and adds the base's others: on
# saas-quarter, about 40% less work; on saas-subscriptions, whose customers' lives dominate,
# 110.5 s -> 65 s at 1,000 trials. With customers, each source's won deals bring their
# customers (from that source's own streams), and the installed base is run again only by the
# after-sale levers and a deal value its customers without a value of their own draw.
# Every total, the base's included, is the sum of its sources in that one order, so a lever
# that changes nothing has an effect of exactly 0. (Not with a team capacity, which decides
# jointly when every source's deals are won, nor with stage values, nor with customers and
# spifs or clawbacks, whose loss days only whole runs record: sensitivity then runs whole runs.)


def _has_installed(plan) -> bool:
    return bool(plan.has_customers and plan.installed.segment.shape[0] > 0)


def sources_of(plan) -> list[Sources]:
    """A plan's sources of won deals, in the order they are summed: each segment's new
    leads, then the pipeline (if any), then the installed base (v2 A.5, if any)."""
    out = [Sources((g,), False) for g in range(len(plan.segment_names))]
    out += [Sources((), True)] if plan.has_pipeline else []
    return out + ([Sources((), False, installed=True)] if _has_installed(plan) else [])


INSTALLED_KINDS = frozenset({kind for kind, _, _ in AFTER_SALE_LEVERS} | {"deal_value"})
"""Lever kinds that can change the installed base's customers: the after-sale quantities,
and the deal value (a subscriber whose file gives no value draws the segment's)."""


def repeats_drawing_deal_value(sc: Scenario) -> frozenset[int]:
    """The segments (indices) whose repeat buyers price each repeat purchase by the segment's
    ``deal_value`` (no ``repeat.value``, v2 A.1): a deal value lever reaches every customer
    of theirs, those of pipeline deals with an amount of their own too."""
    return frozenset(g for g, seg in enumerate(sc.segments.values())
                     if seg.customer is not None and seg.customer.repeat is not None and seg.customer.repeat.value is None)


def changed_sources(lever: Lever, plan, repeats_draw_value: frozenset[int] = frozenset()) -> list[int]:
    """Indices into :func:`sources_of` of the sources whose deals (or customers) ``lever`` can
    change (``repeats_draw_value``: :func:`repeats_drawing_deal_value` of the scenario)."""
    every = sources_of(plan)
    if lever.scope not in plan.segment_names:
        return list(range(len(every)))
    g = list(plan.segment_names).index(lever.scope)
    changed = [g]
    if plan.has_pipeline and lever.kind != "leads":
        own = plan.deal_segment == g  # the open deals of segments with moves too (v2 B)
        if lever.kind == "deal_value" and g not in repeats_draw_value:
            own &= plan.deal_amount < 0  # deals with an amount of their own keep it (and their customers theirs)
        if own.any():
            changed.append(len(plan.segment_names))
    if _has_installed(plan) and lever.kind in INSTALLED_KINDS:
        mine = plan.installed.segment == g
        if lever.kind == "deal_value":
            mine &= plan.installed.value < 0  # customers with a value of their own keep it
        if mine.any():
            changed.append(len(every) - 1)
    return changed


@dataclass
class _Split:
    """The base run kept by source (see :func:`sources_of`): each source's kernel arrays
    ``(revenue, won, bookings, *after_sale)`` with the shapes of
    :meth:`forecaster.engine.plan.Plan.kernel_buffers` (the per-trial inputs left out)."""

    parts: list
    run: _Run


def _run_sources(sc: Scenario, trials: int, seed: int, which: list[int] | None, stop: threading.Event | None,
                 adjust: DrawnStep | None = None):
    """Simulate the sources ``which`` of ``sc`` (default: all), each into arrays of its own.

    Returns the run's layout, ``{index: (revenue, won, bookings, *after_sale)}`` and its per-trial inputs."""
    sc = sc.with_run(trials, seed)
    plan = _plan(sc, adjust)
    layout = Layout.of(sc, plan)
    every = sources_of(plan)
    parts, inputs = {}, None
    for i in range(len(every)) if which is None else which:
        sink = MemorySink(layout)
        run_trials(plan, sc, sink, chunk_trials=sc.trials, threads=1, stop=stop, sources=every[i])
        arrays = sink.kernel_arrays
        parts[i], inputs = (*arrays[:3], *arrays[4:]), arrays[3]
    return layout, parts, inputs


def _add(parts: list) -> tuple:
    """The sum of sources' ``(revenue, won, bookings, *after_sale)``, in the sources' order
    (the same for every run)."""
    total = tuple(np.array(a, copy=True) for a in parts[0])
    for part in parts[1:]:
        for acc, a in zip(total, part):
            acc += a
    return total


def _split_totals(layout: Layout, arrays: tuple, inputs: np.ndarray) -> dict:
    """:func:`_totals` of summed source arrays ``(revenue, won, bookings, *after_sale)``."""
    return _totals(layout, *arrays[:3], inputs, *arrays[3:])


def _base_split(sc: Scenario, trials: int, seed: int, stop: threading.Event | None) -> _Split:
    """The base run, source by source, with its totals and per-trial inputs."""
    layout, parts, inputs = _run_sources(sc, trials, seed, None, stop)
    ordered = [parts[i] for i in sorted(parts)]
    return _Split(ordered, _Run(_split_totals(layout, _add(ordered), inputs), inputs))


def _lever_split(sc: Scenario, trials: int, seed: int, which: list[int], base: Future,
                 stop: threading.Event | None, adjust: DrawnStep | None = None) -> _Run:
    """A lever's run: the sources it changes simulated, the others the base's."""
    layout, parts, inputs = _run_sources(sc, trials, seed, which, stop, adjust)
    kept = cast(_Split, base.result()).parts
    return _Run(_split_totals(layout, _add([parts.get(i, p) for i, p in enumerate(kept)]), inputs))


def _result(future: Future) -> Any:
    """A run's result, waited for in slices: an interrupt that had to be deferred (it arrived
    while the main thread was in code it must not be raised in) is raised here at the next
    slice, not after every run has finished."""
    while True:
        try:
            return future.result(timeout=0.1)
        except FuturesTimeout:
            checkpoint()


TIE = 1e-9
"""Levers whose mean effects differ by less than this, relative to the larger, are tied (v2 F9)."""


def tied(a: float, b: float) -> bool:
    """Whether two mean effects are tied: |a - b| <= :data:`TIE` max(|a|, |b|)."""
    return abs(a - b) <= TIE * max(abs(a), abs(b))


def three_moves(effects: list[dict], metric: str, skipped: Sequence[dict] = (), capped: Sequence[dict] = ()) -> dict:
    """Expansion, stretching and the key level, each at +step, read on ``metric``.

    The key level is the all-segment stage lever whose +step pays most; levers tied with it
    (:func:`tied`) are listed in stage order under ``tied`` (``lever``: the first of them).
    A move whose lever could not move +step says why (``skipped``); the stage levers left out
    of the key level's choice for that reason are under ``key_level.skipped``; quantities
    capped at 1 under ``capped``. Those keys appear only when they apply.
    """
    def plus(name):
        e = next((e for e in effects if e["lever"] == name), None)
        return e.get("plus") if e else None

    def notes(name) -> dict:
        out: dict[str, Any] = {}
        why = [s["why"] for s in skipped if s["lever"] == name and s["direction"] == "+"]
        if why:
            out["skipped"] = why[0]
        caps = [c["quantity"] for c in capped if c["lever"] == name and c["direction"] == "+"]
        if caps:
            out["capped"] = caps
        return out

    stretching = "all: every stage convert (stretching)"
    stage_levers = [e for e in effects if e["scope"] == "all segments" and e["kind"] == "convert"
                    and e["lever"] != stretching]
    moving = [e for e in stage_levers if "plus" in e]
    key_level: dict[str, Any] = {"lever": None}
    if moving:
        best = max(e["plus"][metric]["mean"] for e in moving)
        ties = [e for e in moving if tied(e["plus"][metric]["mean"], best)]
        key = ties[0]
        key_level = {"lever": key["lever"], **key["plus"]}
        if len(ties) > 1:
            key_level["tied"] = [e["lever"] for e in ties]
        key_level.update({k: v for k, v in notes(key["lever"]).items() if k == "capped"})
    left_out = [e["lever"] for e in stage_levers if "plus" not in e]
    if left_out:
        key_level["skipped"] = left_out
    return {"expansion": {"lever": "all: leads (expansion)", **(plus("all: leads (expansion)") or {}),
                          **notes("all: leads (expansion)")},
            "stretching": {"lever": stretching, **(plus(stretching) or {}), **notes(stretching)},
            "key_level": key_level}


def sensitivity(path, *, step: float = 0.10, trials: int | None = None, seed: int | None = None,
                threads: int | None = None, progress=None, by_source: bool = True,
                metric: str = "revenue", convert_step: str = "relative") -> tuple[dict, object]:
    """Run every lever at ±step on common random numbers.

    ``metric``: what the ranking, the three moves and the variance shares are read on, one of
    :data:`RANKED_BY` (``recognised_revenue`` and ``total_bookings`` need customers); the
    effects on every metric the scenario reports are computed whatever it is.

    ``convert_step``: how levers on probabilities step (v2 F9), one of
    :data:`forecaster.analysis.steps.MODES`: ``relative`` (p (1 ± step), capped at 1 where
    the scaled law would leave [0, 1], listed under ``capped``), ``odds`` (each trial's p
    with its odds times 1 ± step) or ``points`` (p ± step; skipped where it leaves [0, 1]).
    Levers whose effects differ by less than :data:`TIE` (relative) are tied: the key level
    then lists them all (``three_moves.key_level.tied``).

    ``by_source``: simulate of each lever's run only the sources of won deals it changes
    (see "runs by source" above; not with a team capacity); False runs every lever whole
    (the same numbers up to the rounding of sums, at about 1.6 times the work on saas-quarter).

    ``progress(done, total)`` is called after each run, with runs done and runs in all.

    Returns
    -------
    summary : dict
        The contents of ``sensitivity.json``: base totals, each lever's effects, the
        ranking (by ``metric``, named under ``metric``), the three moves, and variance shares.
    ds : xarray.Dataset
        ``<metric>_difference(lever, direction, trial)``: per-trial effects on totals.
    """
    import xarray as xr


    base_sc = load_scenario(path)
    source = Path(path)  # base_sc.source, as load_scenario sets it
    data, _, raw = read_document(path)
    doc = cast(dict, data)  # the mapping load_scenario has just read and checked
    # a sensitivity reads totals and the stage value table: the outputs that add arrays to a run
    # (counts by stage, results by source, cycle times, coverage, leads and spend) are not asked of its runs
    outputs: dict = doc["outputs"] if isinstance(doc.get("outputs"), dict) else {}
    doc["outputs"] = {**{k: v for k, v in outputs.items() if k == "stage_value"}, "spend": False}
    base_sc = dataclasses.replace(base_sc, outputs=Outputs(stage_value=base_sc.outputs.stage_value, spend=False))
    trials = min(base_sc.trials, DEFAULT_TRIALS) if trials is None else trials
    seed = base_sc.seed if seed is None else seed
    base_plan = build_plan(base_sc)
    reported = {v.name for v in Layout.of(base_sc, base_plan).variables()}
    available = [m for m in METRICS if m in reported]
    if metric not in RANKED_BY:
        raise ForecasterError(f"metric {metric!r}: a sensitivity ranks by one of {', '.join(RANKED_BY)}")
    if convert_step not in MODES:
        raise ForecasterError(f"convert step {convert_step!r}: expected one of {', '.join(MODES)}")
    if metric not in available:
        raise ForecasterError(f"{path}: metric {metric} is not available: the scenario has no after-sale outputs "
                              "(no segment has a `customer` block); rank by revenue, or give a segment a `customer` "
                              "block. Nothing was run.")
    all_levers = levers(doc, base_sc)
    shared = shared_laws(base_sc)
    # the runs go on `workers` threads, each run on one (the numbers do not depend on it):
    # one run's Python work (building its scenario and plan) overlaps the others' kernels,
    # and no core waits for the last block of a run. Kept meanwhile: every run's totals.
    workers = max(1, threads or default_threads())
    run_bytes = memory_per_trial([base_sc])
    # held at once: each worker's run (by source: every source's arrays and their sum), the base's
    # sources, every run's totals
    sources = len(sources_of(base_plan)) + 1
    check_memory(trials, (workers + 1) * sources * run_bytes + 8 * len(available) * (2 * len(all_levers) + 2),
                 f"sensitivity of {path} ({len(all_levers)} levers, each -step and +step)")
    total_runs, done_runs = 2 * len(all_levers), 0
    skipped: list[dict[str, str]] = []
    capped: list[dict[str, str]] = []
    # see "runs by source" above (with customers, not with spifs or clawbacks: a customer's loss
    # day is recorded for the clawbacks only in whole runs)
    by_source = by_source and not base_plan.has_capacity and not base_plan.has_stage_values \
        and not (base_plan.has_customers and base_plan.deals is not None)
    repeats_draw_value = repeats_drawing_deal_value(base_sc)
    with ThreadPoolExecutor(workers) as pool:
        stop = threading.Event()  # set when the command is interrupted: running runs give up within a block
        if by_source:
            base_split = pool.submit(_base_split, base_sc, trials, seed, stop)
            base_run: Future = base_split
        else:
            base_run = pool.submit(_run, base_sc, trials, seed, keep_inputs=True, stop=stop)
        runs: list[list[Future | None]] = []
        try:
            for lever in all_levers:
                pair: list[Future | None] = []
                if lever.unmoved:
                    skipped.extend({"lever": lever.name, "direction": d, "why": lever.unmoved} for d in "-+")
                    runs.append([None, None])
                    continue
                for j, factor in enumerate((1 - step, 1 + step)):
                    try:
                        change = lever_change(doc, lever, 2 * j - 1, step, convert_step, base_sc.segment_names,
                                              base_plan.quantity_names, shared)
                        changed, problems = apply_changes(copy.deepcopy(doc), change.changes, "")
                        if problems:
                            raise ScenarioError(str(path), problems)
                        step_name = f"x{factor:g}" if lever.kind not in PROBABILITY_KINDS or convert_step == "relative" \
                            else f"{'+' if j else '-'}{step:g} points" if convert_step == "points" \
                            else f"odds x{factor:g}"
                        sc = build_scenario(changed, {}, f"{path} ({lever.name} {step_name})",
                                            base_dir=files_folder(source, changed), raw=raw, source=source)
                    except ScenarioError as exc:  # e.g. a probability pushed past 0 or 1 (points)
                        skipped.append({"lever": lever.name, "direction": "-+"[j],
                                        "why": str(exc).splitlines()[-1].strip()})
                        pair.append(None)
                        continue
                    capped.extend({"lever": lever.name, "direction": "-+"[j], "quantity": q, "why": why}
                                  for q, why in change.capped)
                    if by_source:
                        pair.append(pool.submit(_lever_split, sc, trials, seed,
                                                changed_sources(lever, base_plan, repeats_draw_value),
                                                base_split, stop, change.adjust))
                    else:
                        pair.append(pool.submit(_run, sc, trials, seed, stop=stop, adjust=change.adjust))
                runs.append(pair)
            base_result = _result(base_run)
            if by_source:
                base_result = cast(_Split, base_result).run
            base, base_inputs = base_result.totals, cast(np.ndarray, base_result.inputs)
            metrics = [m for m in available if m in base]
            diffs = {m: np.full((len(all_levers), 2, trials), np.nan) for m in metrics}
            effects: list[dict[str, Any]] = []
            for i, (lever, pair) in enumerate(zip(all_levers, runs)):
                item: dict[str, Any] = {"lever": lever.name, "kind": lever.kind, "scope": lever.scope}
                for j, future in enumerate(pair):
                    if future is None:
                        continue
                    run = _result(future).totals
                    direction = "minus" if j == 0 else "plus"
                    item[direction] = {m: difference_stats(base[m], run[m]) for m in metrics}
                    for m in metrics:
                        diffs[m][i, j] = paired_difference(base[m], run[m])
                    done_runs += 1
                    if progress:
                        progress(done_runs, total_runs)
                effects.append(item)
        except BaseException:
            stop.set()
            for pair in runs:
                for future in pair:
                    if future is not None:
                        future.cancel()
            raise

    def ranked(metric):
        def size(item):
            moved = [abs(item[k][metric]["mean"]) for k in ("minus", "plus") if k in item]
            return max(moved) if moved else 0.0
        return [e["lever"] for e in sorted((e for e in effects if e["scope"] != "all segments"), key=lambda e: -size(e))]

    moves = three_moves(effects, metric, skipped, capped)
    shares = _variance_shares(base[metric], base_inputs, base_sc.segment_names, base_plan.quantity_names,
                              base_plan.same_as)
    base_stats = {m: describe(base[m][:, None])[0] for m in metrics}  # reorders base[m]: after every use
    summary = {"scenario": base_sc.name, "seed": stored_seed(seed), "trials": trials, "step": step,
               "currency": base_sc.currency, "metric": metric, "base": base_stats, "levers": effects, "ranking": ranked(metric),
               "ranking_commission": ranked("commission") if "commission" in metrics else None, "three_moves": moves,
               "variance_shares": shares, "skipped": skipped}
    # only what a run asks for or meets: a default run's sensitivity.json is as before (v2 0.1)
    if convert_step != "relative":
        summary["convert_step"] = convert_step
    if capped:
        summary["capped"] = capped
    notes = event_lead_notes(base_sc)
    if notes:  # v2 F2: the leads levers scale rates, not the events' counts
        summary["notes"] = notes
    if base_sc.outputs.stage_value:  # v2 F9: the base run's stage value table
        summary["stage_value"] = stage_value_summary(base_sc, base_plan.quantity_names, base_inputs)
    ds = xr.Dataset({f"{m}_difference": (("lever", "direction", "trial"), diffs[m]) for m in metrics},
                    coords={"lever": [lv.name for lv in all_levers], "direction": ["minus", "plus"],
                            "trial": np.arange(trials)})
    ds.attrs.update({"scenario": base_sc.name, "seed": stored_seed(seed), "trials": trials, "step": step,
                     "what": "per-trial change of each total when a lever moves by -step / +step "
                             "(common random numbers); NaN where the lever could not move"})
    if convert_step != "relative":
        ds.attrs["convert_step"] = convert_step
    for m in metrics:  # each difference in its metric's unit (the exports and readers show it)
        ds[f"{m}_difference"].attrs["units"] = metric_unit(m, base_sc.currency or "currency")
    return summary, ds
