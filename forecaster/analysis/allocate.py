"""Budget allocation: the split of a monthly budget over the bought segments that maximises a
forecast, searched on common random numbers.

**The problem.** A scenario's *bought* segments buy their leads with ``leads.budget_per_month``
(and ``cost_per_lead``), optionally through a saturating ``response`` curve (v2 C). Given a
total monthly budget T [currency per month], find the budgets B_g >= 0 with sum_g B_g = T
(and min_g <= B_g <= max_g where asked) that maximise the expected total of a metric over the
horizon (``revenue``, ``won_deals`` or, with customers, ``total_bookings``), or a quantile
of it (``quantile``: e.g. P10, for a cautious plan). A segment's ``budget_by_month`` values
are scaled by the same factor as its ``budget_per_month`` (B_g / the file's budget): the
months keep their ratio to the month's usual budget.

**Common random numbers.** Every split runs with the same seed and trials, and every kind of
draw has its own stream (:mod:`forecaster.analysis.compare`): a change of budget changes only
the mean arrivals of that segment's leads, so two splits are compared trial by trial and the
noise they share cancels. Without a team capacity and without stage values, the total of
the metric is, trial by trial, the sum of its sources' (each segment's new leads, the
pipeline, the installed base), and a segment's budget changes only its own source (see
"runs by source" in :mod:`forecaster.analysis.sensitivity`). The search then simulates one
segment at one budget at a time (a *source run*, a fraction of a whole run) and keeps it:
the per-trial total at a split is the fixed part (the whole run at the file's budgets less
its bought sources) plus each bought segment's source at its budget. With a capacity (or
stage values), every split is a whole run.

**The search.** For the expected metric the objective is separable, F(B) = sum_g f_g(B_g),
and each f_g is concave for a power curve (elasticity <= 1) and for a Hill curve with
slope <= 1 (the expected leads are, and revenue is linear in leads); a concave separable
function on the simplex is maximised where no transfer between two segments pays (equal
marginal returns, or a segment at a bound), and a pairwise-transfer search converges there:

1. *Coarse grid*: the budget left after the minimums, R = T - sum min_g, in steps of R / 8;
   every split of the grid within the bounds is evaluated (one source run per segment and
   grid point) and the best kept (a Hill curve with slope > 1 is S-shaped: the grid finds the
   right region; the transfers then find the local optimum there). With whole runs, or more
   than :data:`MAX_GRID` splits, the search starts from the even split instead (every
   B_g = clip(level, min_g, max_g) with the level that spends T).
2. *Transfers*: from the split, every transfer of delta from one segment to another (clipped
   to the bounds) is evaluated; the best is taken while it improves the objective, else
   delta is halved, from R / 16 down to R x :data:`RESOLUTION`. Each round costs at most two
   source runs per segment.

The found split is within about the last step (R / 512) of the optimum of the simulated
objective, whose own distance from the true optimum is Monte Carlo noise shrunk by the
pairing. A quantile of the total is not separable, and need not be concave; the same search
runs on it (every split's quantile is computed from the stored per-trial sources).

**Marginal returns.** At the best split, each segment's next 1,000 [currency per month] (its
budget_per_month + 1,000, its budget_by_month months scaled alike), as a paired difference of
the metric's total over the horizon with its 95% interval.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
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
from forecaster.analysis.sensitivity import _result
from forecaster.engine._numba import default_threads
from forecaster.engine.blocks import Sources
from forecaster.engine.plan import build_plan
from forecaster.engine.simulation import run_trials
from forecaster.errors import ForecasterError, ScenarioError
from forecaster.results.layout import Layout, MemorySink
from forecaster.results.summary import Z975, describe
from forecaster.scenario.loading import build_scenario, files_folder, load_scenario, read_document
from forecaster.scenario.model import Outputs, Scenario
from forecaster.scenario.validation import suggest
from forecaster.scenario.variants import Literal, apply_changes

METRICS = ("revenue", "won_deals", "total_bookings")
"""What an allocation may maximise: a total over the horizon."""
DEFAULT_TRIALS = 5000
"""Trials per run unless asked: splits are compared trial by trial, so few trials suffice."""
COARSE = 8
"""The coarse grid's steps: the budget left after the minimums in eighths."""
RESOLUTION = 1 / 512
"""The last transfer, as a share of the budget left after the minimums."""
MAX_GRID = 5000
"""Most splits the coarse grid evaluates (beyond, the search starts from the even split)."""
MARGINAL_STEP = 1000.0
"""The marginal return is that of this much more budget a month [currency per month]."""
CURVE_POINTS = 41
"""Budgets per response curve in the report."""
_TIE = 1e-12
"""A move must raise the objective by more than this, relative, to be taken (not rounding)."""


@dataclass(frozen=True)
class Channel:
    """A bought segment: its index among the scenario's segments, the file's budget
    [currency per month] and ``budget_by_month`` months, and its bounds in the allocation."""

    name: str
    index: int
    budget: float
    by_month: tuple = ()
    low: float = 0.0
    high: float = math.inf


def parse_quantile(text: str | None) -> float | None:
    """``P10`` -> 0.10 (P followed by a percentage strictly between 0 and 100); None -> None.

    Raises
    ------
    ForecasterError
        For anything else, saying what was expected.
    """
    if text is None:
        return None
    m = re.fullmatch(r"\s*[Pp](\d+(?:\.\d+)?)\s*", str(text))
    if not m or not 0 < float(m.group(1)) < 100:
        raise ForecasterError(f"--quantile {text!r}: expected P followed by a percentage between 0 and 100, "
                              "such as P10 (the total reached in 9 trials out of 10) or P50")
    return float(m.group(1)) / 100


def parse_bounds(items: Sequence[str], option: str) -> dict[str, float]:
    """``["search=100000", ...]`` -> {"search": 100000.0}: each ``SEGMENT=AMOUNT`` of ``option``
    (``--min`` or ``--max``), an amount >= 0 [currency per month]; a segment named twice is an error."""
    out: dict[str, float] = {}
    for item in items:
        name, eq, amount = str(item).partition("=")
        name = name.strip()
        try:
            value = float(amount.replace(",", "").replace("_", ""))
        except ValueError:
            value = math.nan
        if not eq or not name or not math.isfinite(value) or value < 0:
            raise ForecasterError(f"{option} {item!r}: expected SEGMENT=AMOUNT, a bought segment and a monthly "
                                  f"budget >= 0, such as {option} search=100000")
        if name in out:
            raise ForecasterError(f"{option} {name}: given twice ({out[name]:,.10g} and {value:,.10g}); give each "
                                  "segment once")
        out[name] = value
    return out


def bought_channels(sc: Scenario, minimums: Mapping[str, float] | None = None,
                    maximums: Mapping[str, float] | None = None, total: float | None = None,
                    shown: str = "") -> list[Channel]:
    """The scenario's bought segments as :class:`Channel` records with their bounds, checked.

    Raises
    ------
    ForecasterError
        No bought segment; a bound naming an unknown segment or one that does not buy its
        leads; a minimum above a maximum; bounds that cannot spend ``total`` (the minimums
        sum above it, or every segment has a maximum and they sum below it); a segment with
        ``budget_by_month`` and a ``budget_per_month`` of 0 (nothing to scale the months by).
    """
    minimums, maximums = dict(minimums or {}), dict(maximums or {})
    shown = shown or str(sc.source or sc.name)
    bought = [name for name, seg in sc.segments.items() if seg.leads.budget_per_month is not None]
    if not bought:
        raise ForecasterError(f"{shown}: no segment buys its leads (leads.budget_per_month with cost_per_lead), so "
                              "there is no budget to allocate; segments: " + ", ".join(sc.segments))
    for option, bounds in (("--min", minimums), ("--max", maximums)):
        for name in bounds:
            if name in bought:
                continue
            if name in sc.segments:
                source = sc.segments[name].leads.source
                raise ForecasterError(f"{option} {name}: segment {name} of {shown} does not buy its leads (it has "
                                      f"leads.{source}, not budget_per_month), so it has no budget to allocate; the "
                                      f"bought segments are: {', '.join(bought)}")
            raise ForecasterError(f"{option} {name}: {shown} has no segment {name!r}{suggest(name, bought)}; the bought "
                                  f"segments are: {', '.join(bought)}")
    for name in bought:
        if name in minimums and name in maximums and minimums[name] > maximums[name]:
            raise ForecasterError(f"--min {name}={minimums[name]:,.10g} is above --max {name}={maximums[name]:,.10g}")
    if total is not None:
        low = sum(minimums.get(n, 0.0) for n in bought)
        if low > total:
            raise ForecasterError(f"--min: the minimums sum to {low:,.10g}, more than --total-budget {total:,.10g}; "
                                  "no split can meet them")
        high = sum(maximums.get(n, math.inf) for n in bought)
        if high < total:
            raise ForecasterError(f"--max: every bought segment has a maximum and they sum to {high:,.10g}, less than "
                                  f"--total-budget {total:,.10g}; no split can spend it")
    out = []
    names = list(sc.segments)
    for name in bought:
        leads = sc.segments[name].leads
        budget = float(leads.budget_per_month or 0.0)
        if leads.budget_by_month and budget == 0:
            raise ForecasterError(f"{shown}: segments.{name}.leads.budget_per_month is 0 while budget_by_month is given: "
                                  "an allocation scales every month's budget by the same factor as budget_per_month, "
                                  "which cannot be done from 0; give budget_per_month a positive budget")
        out.append(Channel(name, names.index(name), budget, tuple(sorted(leads.budget_by_month)),
                           float(minimums.get(name, 0.0)), float(maximums.get(name, math.inf))))
    return out


def even_split(channels: Sequence[Channel], total: float) -> np.ndarray:
    """B_g = clip(level, min_g, max_g) with the level at which the split spends ``total``
    (bisection; the bounds are assumed feasible)."""
    low = np.array([c.low for c in channels])
    high = np.array([c.high for c in channels])
    a, b = 0.0, float(total)
    for _ in range(200):
        mid = (a + b) / 2
        if np.clip(mid, low, high).sum() < total:
            a = mid
        else:
            b = mid
    split = np.clip(b, low, high)
    return _spend(split, low, high, total)


def _spend(split: np.ndarray, low: np.ndarray, high: np.ndarray, total: float) -> np.ndarray:
    """``split`` with the rounding of its sum put on a segment that has room, so it spends ``total``."""
    gap = total - split.sum()
    for g in range(split.size):
        if low[g] <= split[g] + gap <= high[g]:
            split = split.copy()
            split[g] += gap
            break
    return split


# --- response curves (the report's) ------------------------------------------------------------

def response_factor(curve: str | None, x: np.ndarray, beta=None, kappa=None, n=None) -> np.ndarray:
    """g(B) / g(B0) at budget ratios ``x`` = B / B0 (v2 C.2), as
    :func:`forecaster.engine.kernels.response_factor`, for arrays that broadcast: x^beta for
    ``power``; x^n (kappa^n + 1) / (kappa^n + x^n) for ``hill`` (kappa = K / B0); x for None
    (no response: leads in proportion to the budget)."""
    x = np.asarray(x, dtype=float)
    if curve is None:
        return x
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if curve == "power":
            out = np.where(x > 0, np.power(np.maximum(x, 1e-300), beta), 0.0)
        else:
            a, b = n * np.log(kappa), n * np.log(np.maximum(x, 1e-300))
            out = np.where(x > 0, np.exp(b + np.logaddexp(0.0, -a) - np.logaddexp(0.0, b - a)), 0.0)
    return out


def lead_curves(sc: Scenario, channels: Sequence[Channel], inputs: np.ndarray, quantity_names,
                budgets: Mapping[str, np.ndarray]) -> dict[str, dict]:
    """Each channel's expected leads a month at each of ``budgets[name]`` [currency per month]:
    L(B) = (B0 / c) g(B) / g(B0) with each trial's cost per lead c and curve parameters
    (``inputs``, shape (trials, segments, quantities)); without a response, B / c. Returns per
    channel the budgets and the mean, P10 and P90 over the trials [leads per month]. (Before
    seasonality, growth, dispersion and shocks: the curve itself.)"""
    names = [str(q) for q in quantity_names]
    out = {}
    for ch in channels:
        row = inputs[:, ch.index, :]
        cost = row[:, names.index("leads")][:, None]
        response = sc.segments[ch.name].leads.response
        b = np.asarray(budgets[ch.name], dtype=float)[None, :]
        if response is None:
            leads = b / cost
        else:
            b0 = response.reference_budget
            j = names.index("response.elasticity")
            beta, k, n = (row[:, j + i][:, None] for i in range(3))
            leads = (b0 / cost) * response_factor(response.curve, b / b0, beta, k / b0, n)
        q = np.percentile(leads, (10, 90), axis=0)
        out[ch.name] = {"budget": b[0].tolist(), "mean": leads.mean(axis=0).tolist(), "p10": q[0].tolist(),
                        "p90": q[1].tolist(), "curve": response.curve if response else "linear"}
    return out


# --- evaluating splits on common random numbers -------------------------------------------------

def _metric_total(layout: Layout, arrays: tuple, metric: str) -> np.ndarray:
    """A run's per-trial total of ``metric`` over the horizon, shape (trials,), from its kernel arrays."""
    revenue, won = arrays[0], arrays[1]
    if metric == "revenue":
        return cast(np.ndarray, revenue.sum(axis=2).sum(axis=1))
    if metric == "won_deals":
        return cast(np.ndarray, won.sum(axis=2).astype(float).sum(axis=1))
    derived = layout.derive(*arrays)
    return horizon_total(metric, derived[metric].astype(float))


@dataclass
class _Evaluator:
    """Per-trial totals of a metric at any split of the channels' budgets, on common random
    numbers, keeping every run it makes (see the module docstring: source runs, or whole
    runs). Runs go on ``workers`` threads, each run on one."""

    path: str
    doc: dict
    raw: bytes
    base: Scenario
    channels: list
    metric: str
    trials: int
    seed: int
    workers: int
    separable: bool
    stop: threading.Event = field(default_factory=threading.Event)
    parts: dict = field(default_factory=dict)       # (g, budget) -> Future of (trials,)
    wholes: dict = field(default_factory=dict)      # split -> Future of (trials,)
    fixed: np.ndarray | None = None
    inputs: np.ndarray | None = None
    quantity_names: tuple = ()
    source_runs: int = 0
    whole_runs: int = 0
    pool: ThreadPoolExecutor | None = None

    def scenario(self, budgets: Mapping[int, float]) -> Scenario:
        """The scenario with channel ``g``'s monthly budget ``budgets[g]`` (its budget_by_month
        scaled alike), through the variant machinery (``set:``/``scale:`` by key path), checked
        like any scenario."""
        set_, scale = {}, {}
        budgets = {g: max(0.0, _round(b)) for g, b in budgets.items()}  # a residue of 1e-55 is 0
        for g, budget in budgets.items():
            ch = self.channels[g]
            set_[Literal(("segments", ch.name, "leads", "budget_per_month"))] = float(budget)
            for m in ch.by_month:
                scale[Literal(("segments", ch.name, "leads", "budget_by_month", m))] = float(budget) / ch.budget
        doc, problems = apply_changes(self.doc, {"set": set_, "scale": scale}, "")
        shown = ", ".join(f"{self.channels[g].name} {b:,.2f}" for g, b in budgets.items())
        if problems:
            raise ScenarioError(f"{self.path} (budgets {shown})", problems)
        sc = build_scenario(doc, {}, f"{self.path} (budgets {shown})", base_dir=files_folder(Path(self.path), doc),
                            raw=self.raw, source=Path(self.path))
        return dataclasses.replace(sc, outputs=Outputs(spend=False)).with_run(self.trials, self.seed)

    def _run(self, sc: Scenario, segment: int | None, keep_inputs: bool = False):
        """One run of ``sc``: whole (``segment`` None) or of the new leads of the scenario's
        segment ``segment`` (its index among all segments) alone; the metric's per-trial totals."""
        plan = build_plan(sc)
        sink = MemorySink(Layout.of(sc, plan))
        sources = None if segment is None else Sources((segment,), False)
        run_trials(plan, sc, sink, chunk_trials=sc.trials, threads=1, stop=self.stop, sources=sources)
        total = _metric_total(sink.layout, sink.kernel_arrays, self.metric)
        if keep_inputs:
            return total, sink.kernel_arrays[3], plan.quantity_names
        return total

    def start(self) -> None:
        """Run the file's split whole (the current forecast and each trial's inputs) and, by
        source, its bought sources: the fixed part of every split."""
        assert self.pool is not None
        current = tuple(ch.budget for ch in self.channels)
        whole = self.pool.submit(self._run, self.scenario({}), None, True)
        self.whole_runs += 1
        if self.separable:
            self._need([(g, ch.budget) for g, ch in enumerate(self.channels)])
        total, self.inputs, self.quantity_names = _result(whole)
        if self.separable:
            self.fixed = total - sum(self._part(g, b) for g, b in enumerate(current))
        else:
            done: Future = Future()
            done.set_result(total)
            self.wholes[_key(current)] = done

    def _need(self, wanted) -> None:
        assert self.pool is not None
        for g, budget in wanted:
            key = (g, _round(budget))
            if key not in self.parts:
                self.parts[key] = self.pool.submit(self._run, self.scenario({g: budget}), self.channels[g].index)
                self.source_runs += 1

    def _part(self, g: int, budget: float) -> np.ndarray:
        return cast(np.ndarray, _result(self.parts[(g, _round(budget))]))

    def totals(self, splits: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per-trial totals at each split, shape (trials,) each (runs what is missing, at once)."""
        assert self.pool is not None
        if self.separable:
            self._need([(g, b) for split in splits for g, b in enumerate(split)])
            fixed = cast(np.ndarray, self.fixed)
            out = []
            for split in splits:
                total = fixed.copy()
                for g, b in enumerate(split):
                    total += self._part(g, b)
                out.append(total)
            return out
        for split in splits:
            key = _key(split)
            if key not in self.wholes:
                self.wholes[key] = self.pool.submit(self._run, self.scenario(dict(enumerate(split))), None)
                self.whole_runs += 1
        return [cast(np.ndarray, _result(self.wholes[_key(s)])) for s in splits]


def _round(budget: float) -> float:
    """A budget as a cache key: to a millionth of the currency, so that a split reached two
    ways is one run."""
    return round(float(budget), 6)


def _key(split) -> tuple:
    return tuple(_round(b) for b in split)


# --- the search -----------------------------------------------------------------------------------

def objective_of(quantile: float | None) -> Callable[[np.ndarray], float]:
    """The mean of the per-trial totals, or their ``quantile`` (linear interpolation, as the
    summaries' P10 is computed)."""
    if quantile is None:
        return lambda x: float(np.mean(x))
    return lambda x: float(np.percentile(x, 100 * quantile))


def _grid_splits(low: np.ndarray, high: np.ndarray, rest: float, steps: int) -> list[np.ndarray] | None:
    """Every split low + j * rest / steps (whole j >= 0 summing to ``steps``) within ``high``;
    None when there are more than :data:`MAX_GRID`."""
    k = low.size
    h = rest / steps
    caps = [min(steps, int(math.floor((hi - lo) / h + 1e-9))) if math.isfinite(hi) else steps
            for lo, hi in zip(low, high)]
    if math.comb(steps + k - 1, k - 1) > MAX_GRID:
        return None
    out = []
    for cut in itertools.combinations(range(steps + k - 1), k - 1):  # stars and bars
        js = np.diff(np.array((-1, *cut, steps + k - 1))) - 1
        if all(j <= c for j, c in zip(js, caps)):
            split = low + js * h
            out.append(split)
    return out


def search(evaluate: Callable[[Sequence[np.ndarray]], list[np.ndarray]], objective: Callable[[np.ndarray], float],
           low: np.ndarray, high: np.ndarray, total: float, *, grid: bool = True,
           resolution: float = RESOLUTION) -> tuple[np.ndarray, dict]:
    """Maximise ``objective(evaluate([split])[0])`` over splits with sum ``total`` and
    ``low`` <= split <= ``high``: a coarse grid (``grid``), then pairwise transfers with
    halving steps (see the module docstring). Returns the best split and what the search did
    (``evaluated``: splits evaluated; ``moves``; ``last_step`` [currency per month])."""
    k = low.size
    rest = total - float(low.sum())
    finest = rest * resolution
    evaluated = 0

    def values(splits):
        nonlocal evaluated
        evaluated += len(splits)
        return [objective(t) for t in evaluate(splits)]

    start = even_split([Channel("", g, 0.0, (), float(lo), float(hi)) for g, (lo, hi) in enumerate(zip(low, high))],
                       total)
    if k == 1 or rest <= 0:
        return start, {"evaluated": 0, "moves": 0, "last_step": 0.0, "start": "the only split"}
    cands = [start]
    how = "even split"
    splits = _grid_splits(low, high, rest, COARSE) if grid else None
    if splits:
        cands = [start, *splits]
        how = f"best of a grid of {len(splits)} splits in steps of {rest / COARSE:,.6g}"
    vals = values(cands)
    i = int(np.argmax(vals))
    best, best_value = cands[i], vals[i]
    delta = rest / (2 * COARSE)
    moves = 0
    while delta >= finest * (1 - 1e-9):
        trial = []
        for a, b in itertools.permutations(range(k), 2):
            t = min(delta, best[a] - low[a], high[b] - best[b])
            if t > delta * 1e-6:
                s = best.copy()
                s[a] -= t
                s[b] += t
                trial.append(s)
        if not trial:
            break
        vals = values(trial)
        i = int(np.argmax(vals))
        if vals[i] > best_value + _TIE * abs(best_value):
            best, best_value = trial[i], vals[i]
            moves += 1
        else:
            delta /= 2
    return best, {"evaluated": evaluated, "moves": moves, "last_step": delta * 2, "start": how}


# --- the command's work -----------------------------------------------------------------------------

def allocate(path, *, total_budget: float, metric: str = "revenue", quantile: float | None = None,
             minimums: Mapping[str, float] | None = None, maximums: Mapping[str, float] | None = None,
             trials: int | None = None, seed: int | None = None, threads: int | None = None,
             by_source: bool = True) -> dict:
    """The split of ``total_budget`` [currency per month] over the bought segments of the
    scenario at ``path`` that maximises the expected total of ``metric`` over the horizon (or
    its ``quantile``, e.g. 0.1), with each split's forecast, the file's split, their paired
    difference and the marginal return of the next :data:`MARGINAL_STEP` in each channel.

    ``by_source``: simulate one segment's source per budget and keep it (see the module
    docstring; not with a capacity or stage values); False makes every split a whole run and
    starts from the even split (the same totals up to rounding, at many times the work: the
    benchmark ``benchmarks/allocate.py`` measures both).

    ``minimums``/``maximums``: bounds per bought segment [currency per month]. Runs use the
    scenario's trials, at most :data:`DEFAULT_TRIALS` unless ``trials`` says.

    Returns
    -------
    dict
        The contents of ``allocate.json``: ``best`` and ``current`` (each ``split``
        [currency per month] and ``forecast``: mean, std, P5..P95 and the mean's interval of
        the metric's total), ``difference`` (best - current, paired: mean, its 95% interval,
        P10/P50/P90, probability_higher), ``marginal_return`` per channel, ``curves`` (the
        report's response curves), ``search`` (method, runs, seconds).

    Raises
    ------
    ForecasterError
        Bad input (see :func:`bought_channels`), a metric the scenario does not report.
    """
    began = time.perf_counter()
    if not (isinstance(total_budget, (int, float)) and math.isfinite(total_budget) and total_budget > 0):
        raise ForecasterError(f"--total-budget {total_budget!r}: expected a monthly budget > 0")
    if metric not in METRICS:
        raise ForecasterError(f"metric {metric!r}: an allocation maximises one of {', '.join(METRICS)}")
    base_sc = load_scenario(path)
    data, _, raw = read_document(path)
    doc = cast(dict, copy.deepcopy(data))
    doc.pop("outputs", None)  # an allocation reads totals: no output that adds arrays to a run
    channels = bought_channels(base_sc, minimums, maximums, total_budget, str(path))
    if metric == "total_bookings" and not base_sc.has_customers:
        raise ForecasterError(f"{path}: metric total_bookings is not available: the scenario has no after-sale outputs "
                              "(no segment has a `customer` block); maximise revenue or won_deals instead. Nothing was "
                              "run.")
    base_sc = dataclasses.replace(base_sc, outputs=Outputs())
    trials = min(base_sc.trials, DEFAULT_TRIALS) if trials is None else trials
    seed = base_sc.seed if seed is None else seed
    plan = build_plan(base_sc)
    separable = by_source and not plan.has_capacity and not plan.has_stage_values
    workers = max(1, threads or default_threads())
    parts_kept = 8 * trials * (len(channels) * 200)  # about the source runs a search keeps
    check_memory(trials, (workers + 1) * memory_per_trial([base_sc]) + parts_kept // max(trials, 1),
                 f"allocating {path}'s budget over {len(channels)} segments")
    evaluator = _Evaluator(str(path), doc, raw, base_sc, channels, metric, trials, seed, workers, separable)
    objective = objective_of(quantile)
    low = np.array([c.low for c in channels])
    high = np.array([c.high for c in channels])
    with ThreadPoolExecutor(workers) as pool:
        evaluator.pool = pool
        try:
            evaluator.start()
            best, how = search(evaluator.totals, objective, low, high, float(total_budget), grid=separable)
            current = np.array([c.budget for c in channels])
            best_t, current_t = evaluator.totals([best, current])
            bumped = []
            for g in range(len(channels)):
                s = best.copy()
                s[g] += MARGINAL_STEP
                bumped.append(s)
            bumped_t = evaluator.totals(bumped)
        except BaseException:
            evaluator.stop.set()
            for f in [*evaluator.parts.values(), *evaluator.wholes.values()]:
                f.cancel()
            raise
    seconds = time.perf_counter() - began
    currency = base_sc.currency or "currency"
    unit = metric_unit(metric, currency)

    def forecast(x: np.ndarray) -> dict:
        stats = describe(np.array(x, dtype=float)[:, None])[0]
        if quantile is not None:
            stats["objective"] = objective(x)
        return stats

    def split_of(values) -> dict:
        return {ch.name: float(v) for ch, v in zip(channels, values)}

    current_sum = float(current.sum())
    marginal = {}
    for g, ch in enumerate(channels):
        stats = difference_stats(best_t, bumped_t[g])
        marginal[ch.name] = {"step": MARGINAL_STEP, **stats, "per_currency": (stats["mean"] or 0.0) / MARGINAL_STEP}
    spans = {ch.name: np.linspace(0.0, 1.0, CURVE_POINTS) ** 1.5 * max(2.0 * max(best[g], ch.budget), total_budget / len(channels))
             for g, ch in enumerate(channels)}
    curves = lead_curves(base_sc, channels, cast(np.ndarray, evaluator.inputs), evaluator.quantity_names, spans)
    for g, ch in enumerate(channels):
        curves[ch.name].update(best=float(best[g]), current=ch.budget,
                               reference_budget=(base_sc.segments[ch.name].leads.response.reference_budget
                                                 if base_sc.segments[ch.name].leads.response else None))
    d = paired_difference(current_t, best_t)
    summary: dict[str, Any] = {
        "scenario": base_sc.name, "seed": stored_seed(seed), "trials": trials, "currency": base_sc.currency,
        "metric": metric, "unit": unit, "objective": "mean" if quantile is None else f"p{100 * quantile:g}",
        "total_budget": float(total_budget),
        "channels": [{"segment": ch.name, "file_budget": ch.budget, "min": ch.low,
                      "max": ch.high if math.isfinite(ch.high) else None,
                      "budget_by_month": {str(m): base_sc.segments[ch.name].leads.budget_by_month[m] for m in ch.by_month}}
                     for ch in channels],
        "best": {"split": split_of(best), "forecast": forecast(best_t)},
        "current": {"split": split_of(current), "sum": current_sum,
                    "matches_total": bool(abs(current_sum - total_budget) <= 1e-9 * total_budget),
                    "forecast": forecast(current_t)},
        "difference": difference_stats(current_t, best_t),
        "marginal_return": marginal,
        "curves": curves,
        "search": {"method": ("coarse grid, then pairwise transfers with halving steps on common random numbers; "
                              + ("each segment's source simulated alone and kept" if separable else
                                 "every split a whole run (a team capacity or stage values couple the sources)")),
                   "start": how["start"], "splits_evaluated": how["evaluated"], "moves": how["moves"],
                   "last_step": how["last_step"], "source_runs": evaluator.source_runs,
                   "whole_runs": evaluator.whole_runs,
                   "runs": evaluator.whole_runs + evaluator.source_runs, "seconds": seconds,
                   "threads": workers},
        "notes": ["budget_by_month months are scaled by the factor of their segment's budget_per_month (the new "
                  "budget over the file's)" if any(ch.by_month for ch in channels) else "",
                  "" if abs(current_sum - total_budget) <= 1e-9 * total_budget else
                  f"the file's budgets sum to {current_sum:,.2f}, not --total-budget {total_budget:,.2f}: the current "
                  "split is shown as the file has it",
                  "" if all(c.low <= c.budget <= c.high for c in channels) else
                  "the file's split is outside the bounds (" + ", ".join(
                      f"{c.name} {c.budget:,.0f}" for c in channels if not c.low <= c.budget <= c.high)
                  + "): it is shown as the file has it, and may do better than any split within them"],
    }
    summary["notes"] = [n for n in summary["notes"] if n]
    if quantile is not None:
        summary["difference"]["objective"] = objective(best_t) - objective(current_t)
    summary["difference"]["std"] = float(d.std(ddof=1)) if d.size > 1 else None
    summary["difference"]["half_width"] = (Z975 * summary["difference"]["std"] / math.sqrt(d.size)
                                           if d.size > 1 else None)
    return summary
