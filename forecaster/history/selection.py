"""Which optional parts of a calibrated scenario to keep: evidence from inside the history.

Calibration fits every optional part it can (:data:`forecaster.history.parts.MECHANISMS`:
shared shocks, stalled deals, drifting cycle speed, a trend in arrivals, seasonality,
quarter-end slips, team capacity). Each helps on some histories and hurts on others (slips
fitted to a growth ramp, a capacity read from a ramp), so none is switched on by default.
Instead, a walk-forward *inside the history known on the as-of date* decides:

1. Inner cutoffs: the last :data:`INNER_CUTOFFS` month ends before the as-of date with at
   least one whole month known after them, each at least :data:`MIN_HISTORY_MONTHS` months
   after the history's first deal and :data:`MIN_CLOSED_MONTHS` after its first close; each
   is scored on the months known after it, at most
   ``min(3, the horizon's months)`` (the latest ones on one or two months: the most recent
   evidence, and the most data to fit parts such as quarter-end slips).
2. At each, the scenario is calibrated on what was known then (same families as the outer
   fit, no selection of its own, and the parts the outer fit found fitted without their own
   significance tests: ``fit_candidates(like=...)``), and every candidate set of parts is
   simulated (:data:`TRIALS` trials, the same seed: common random numbers) and scored by the
   CRPS of each month's won deals, and revenue when the history has amounts, each divided by
   the mean actual so the two weigh alike.
3. Forward selection: starting from the parts forced on, the part whose addition lowers the
   mean score most is added, while it lowers it by at least :data:`MIN_GAIN` (relative),
   among at least two inner cutoffs where it changes the forecast at all (a cutoff too
   early to fit the part is no evidence either way), and does so either consistently
   (lower at two thirds, :data:`MIN_AGREE`, of those cutoffs) or robustly (still lower by
   :data:`MIN_GAIN` without the cutoff where it helps most): one lucky window is not
   evidence. (Until December 2026 only the count of agreeing cutoffs was asked: blind to
   sizes, it turned down quarter-end slips that halved the score because they cost a
   little at two month ends and saved much at two others. The robust test alone was tried
   and turned down a capacity a team had just grown into, whose gain was all at the latest
   cutoff, the one the team's cap had begun to bind at. Also tried, in December 2026:
   when the lowest part lacks evidence, adding the next lowest that has it, rather than
   stopping. On the synthetic suite it changed 6 of 420 cutoffs, 3 for the better and 3
   for the worse (the quarter-end push's won-deal CRPS 6.7 -> 6.9: shocks, with evidence of
   their own, let in behind a quarter-end slip without it, then widened x4), and no row's
   paired difference moved by more than 0.2: not kept, as it did not earn its place.)
4. Honesty check, as sharp as honesty allows (Gneiting's "maximise sharpness subject to
   calibration"): with its shared spread as fitted (factor 1), the kept set's walk-forward
   P10-P90 covers some share of the inner months' won deals. Short of 80%, the spread is
   multiplied by the smallest factor of :data:`SCALE` (up to 4) that reaches 80%; at 80% or
   more, by the factor at most 1 (down to 0.5) with the lowest walk-forward score among
   those still covering 80%: narrowed when the history shows the intervals needlessly wide,
   never widened because a wider one scored a little better over a dozen months (on a
   saturated team that bought x1.5 the width the next months did not need). If no factor
   reaches 80%, the one covering most, with a warning. The spread widened is itself chosen
   the same way (the lowest score of each set's choice): the kept set's own (its shocks and
   a kept capacity's cv: a team whose deals wait wins what its capacity allows), or, when
   the shocks are not kept, the set with the shocks added back (always tried when the set's
   coverage is short of 80%; a capacity's cv alone cannot widen months the cap does not
   bind). Tried in December 2026 and not kept: widening only a shortfall beyond chance (7 or
   fewer of 12 inner months inside, what an honest 80% interval leaves at most 10% of the
   time; 9 or fewer, which widens now, it leaves 44% of the time). The synthetic suite (6
   seeds) liked it: the twelve 24-month regimes' won-deal CRPS 82.2 -> 81.2, eleven lower,
   coverage 72-84%. The generality probe did not: growth with stalls and truncation fell to
   57% coverage (from 70%, CRPS 0.53 -> 0.58 of the trailing mean's) and the team growing
   into its capacity to 57% (from 80%, 1.42 -> 1.47): where the flow changes, a shortfall
   inside the history within chance was still a real one.

Two parts explain the same sign and are never kept together unless both are forced on
(:data:`EXCLUSIVE`): the drifting **speed** and the team's **capacity**. Both read wins that
come later and later; the speed part as a cycle that slows (it stretches the time to win
and extrapolates the stretch), the capacity as deals waiting for a team that closes what it
can. Together the wait is counted twice: the stretched cycle makes fewer wins due than the
cap, and the forecast falls below what the team closes every month (on the synthetic
saturated team, 58 won deals a month forecast against a cap of 81 and 98 actual; with the
capacity alone, 81). So once one of them is kept, the other is no longer a candidate.
Tried in December 2026 and not kept: asking a capacity to beat the speed part, by the test
of step 3, before it is kept in its place (a cap is the stronger claim about the future),
and keeping the speed where neither beats the other. On the synthetic cycle slowing down
(6 seeds), where the speed part forced on scores 5.57 won deals a month against the
trailing mean's 5.69 and the capacity stands in for it at 4 of 6 last cutoffs, it moved
the score only 5.94 -> 5.90, since at most cutoffs the capacity does beat the speed inside
the history (the inner calibrations' trend through fewer cohorts extrapolates poorly);
and it cost the saturated team 6.32 -> 6.71, whose first cutoffs' capacity and speed also
read alike.

Fewer than 2 inner cutoffs: no evidence, so only the shared shocks and the stalled deals
(both fitted from the history's own variation) are kept, plus what is forced on.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from forecaster.calendar import months_after
from forecaster.errors import ScenarioError
from forecaster.history.baselines import actuals
from forecaster.history.estimate import fit_candidates
from forecaster.history.parts import MECHANISMS, build_scenario, new_lead_share, pipeline_csv
from forecaster.results.dataset import simulate
from forecaster.scenario.loading import scenario_from_dict
from forecaster.scenario.model import Scenario

INNER_CUTOFFS = 5
MIN_HISTORY_MONTHS = 4
MIN_CLOSED_MONTHS = 3
"""An inner cutoff also comes at least this many calendar months after the history's first
close: before, a calibration sees the first deals resolve and nothing else (Olist records
wins only from December 2017, its leads from June)."""
TRIALS = 400
MIN_GAIN = 0.02
MIN_AGREE = 2 / 3
SCALE = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0)
NOMINAL = 0.8
UNCHECKED = "P10-P90 are not checked and may be too narrow"
"""What a calibration without an in-history check says of its intervals."""
EXCLUSIVE = (frozenset({"speed", "capacity"}),)
"""Pairs of parts that explain the same sign (module docstring): once one is kept (or
forced on), the other is not a candidate; both are kept only when both are forced on."""


def excluded_by(kept) -> set[str]:
    """The parts that may no longer join ``kept`` (:data:`EXCLUSIVE`)."""
    return {other for pair in EXCLUSIVE for part in kept if part in pair for other in pair if other != part}


def _month_end(y: int, m: int) -> date:
    return (date(y + (m == 12), m % 12 + 1, 1)) - timedelta(days=1)


def inner_cutoffs(deals, as_of: date, months: int) -> list[tuple[date, int]]:
    """Inner cutoffs, latest first: month ends c with at least one whole month known after
    them by ``as_of``, each with the number of months (at most ``months``) it is scored on."""
    firsts = [d.entered[0] for d in deals if d.entered[0] is not None and d.entered[0] <= as_of]
    closes = [d.closed for d in deals if d.closed is not None and d.closed <= as_of and d.outcome in ("won", "lost")]
    if not firsts or not closes:
        return []
    first, first_close = min(firsts), min(closes)
    y, m = as_of.year, as_of.month
    if _month_end(y, m) != as_of:  # as_of inside a month: the last whole month is the one before
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    out = []
    for k in range(1, 1 + INNER_CUTOFFS):
        yy, mm = divmod(m - 1 - k, 12)
        c = _month_end(y + yy, mm + 1)
        if months_after(first, c) < MIN_HISTORY_MONTHS or months_after(first_close, c) < MIN_CLOSED_MONTHS:
            break
        out.append((c, min(k, months)))
    return out


def _months_after(c: date, n: int) -> list[date]:
    out, d = [], c + timedelta(days=1)
    for _ in range(n):
        out.append(d)
        d = _month_end(d.year, d.month) + timedelta(days=1)
    return out


def _actuals(deals, months: list[date]) -> tuple[np.ndarray, np.ndarray]:
    """Won deals and their value in each month (first days of months), as the backtest
    counts them (:func:`forecaster.history.baselines.actuals`: a won deal without an amount
    at its month's mean): two arrays of shape (months,)."""
    got = actuals(deals, months)
    return np.array(got["won_deals"]), np.array(got["revenue"], dtype=float)


def crps(samples: np.ndarray, y: float) -> float:
    """CRPS of an empirical forecast distribution at the outcome ``y`` (the backtest's too).

    ``samples``: shape (n,), in the metric's unit; the CRPS is in the same unit: mean |X - y|
    minus half the mean |X - X'|, the latter from the sorted samples.
    """
    x = np.sort(np.asarray(samples, dtype=float))
    n = x.size
    return float(np.mean(np.abs(x - y)) - np.sum((2 * np.arange(1, n + 1) - n - 1) * x) / n ** 2)


def why_not_better(a: np.ndarray, b: np.ndarray, cutoffs: list[date]) -> str | None:
    """Why a set of parts scoring ``a`` is not better than one scoring ``b``, or None when it
    is (module docstring, step 3). ``a``, ``b``: each inner cutoff's mean relative CRPS,
    shape (cutoffs,), inf where a part could not be simulated; ``cutoffs`` in the same order.

    Better: lower by at least :data:`MIN_GAIN` on average, with at least two cutoffs where it
    changes anything (where a part could not be fitted yet it changes nothing, which is no
    evidence either way), and either consistently (lower at two thirds, :data:`MIN_AGREE`,
    of those cutoffs) or robustly (still lower by :data:`MIN_GAIN` without the cutoff where
    it helps most): one lucky window is not evidence."""
    informative = np.abs(a - b) > 1e-12 * np.maximum(np.abs(b), 1e-12)
    n, lower = int(informative.sum()), int(np.sum(informative & (a < b)))
    gain = 1 - a.mean() / b.mean() if b.mean() > 0 else 0.0
    if not np.all(np.isfinite(a)):
        return "could not be simulated at every month end (the format refused a part fitted there)"
    if not a.mean() <= b.mean() * (1 - MIN_GAIN):
        return (f"{'lowers' if gain > 0 else 'does not lower'} the score"
                + (f" by {gain:.1%}, less than the {MIN_GAIN:.0%} asked" if gain > 0 else ""))
    if n < 2:
        return f"changes the forecast at {n} month end{'s' * (n != 1)} only, and 2 are asked"
    if lower >= math.ceil(MIN_AGREE * n):
        return None
    luckiest = int(np.argmin(a - b))
    rest = np.arange(a.size) != luckiest
    if a[rest].mean() <= b[rest].mean() * (1 - MIN_GAIN):
        return None
    rest_gain = 1 - a[rest].mean() / b[rest].mean() if b[rest].mean() > 0 else 0.0
    return (f"lowers the score by {gain:.1%}, but at only {lower} of the {n} month ends where it changes the "
            f"forecast ({math.ceil(MIN_AGREE * n)} asked), and without the one where it helps most "
            f"({cutoffs[luckiest].isoformat()}) "
            + (f"by only {rest_gain:.1%}" if rest_gain > 0
               else f"it raises the score by {-rest_gain:.1%}" if rest_gain < 0 else "it does not lower the score")
            + ": one month end is not evidence")


def _ordered(parts) -> tuple:
    """A set of parts as a tuple in :data:`MECHANISMS` order (one spelling of each set)."""
    return tuple(sorted(parts, key=MECHANISMS.index))


def spread_configs(kept: tuple, fitted, forced_off, coverage_before: float) -> list[tuple]:
    """The sets of parts whose shared spread the honesty check may scale (module docstring,
    step 4): the kept set's own, when it has shocks or a capacity (its cv); and, when the
    shocks were fitted but not kept (nor forced off), the kept set with the shocks added back,
    tried whenever the kept set covers less than :data:`NOMINAL` or has a spread of its own
    (a capacity's cv alone cannot widen months the cap does not bind). Empty: nothing to scale."""
    configs = [kept] if "shocks" in kept or "capacity" in kept else []
    if "shocks" in fitted and "shocks" not in forced_off and "shocks" not in kept \
            and (coverage_before < NOMINAL or configs):
        configs.append(_ordered(set(kept) | {"shocks"}))
    return configs


def choose_spread(configs: list[tuple], coverage, score, factors=SCALE) -> tuple[tuple, float, float]:
    """The honesty check's rule: as sharp as honesty allows (Gneiting's "maximise sharpness
    subject to calibration"). For each set ``parts`` in ``configs``, whose walk-forward
    P10-P90 covers ``coverage(parts, factor)`` of the inner months:

    * honest as fitted (factor 1 covers at least :data:`NOMINAL`): of the factors at most 1
      that stay honest, the one with the lowest walk-forward score (``score(parts,
      factor)``, mean relative CRPS): narrowed when the history shows the intervals
      needlessly wide, never widened only because a wider one scored a little better in a
      dozen months (that buys the score with width the next months rarely need);
    * short as fitted: the smallest factor above 1 that reaches :data:`NOMINAL`, widened
      no more than honesty needs.

    Of the sets' candidates, the lowest score wins. If no set can be made honest, the
    (parts, factor) covering most (the wider factor on a tie). Returns (parts, factor,
    coverage reached).

    Each (parts, factor) is a walk-forward simulation at every inner cutoff, so only those the
    rule needs are asked for, each once: the coverage at factor 1 of every set, an honest
    set's factors at most 1, a short one's factors above 1 in increasing order up to the first
    that reaches :data:`NOMINAL`; the score of the candidates only (an honest set's factors
    that stay honest, each set's choice); the coverage at every factor only when no set can be
    made honest. The choice is the one asking for all of them would make (ties go to the
    first in ``configs`` and ``factors`` order either way)."""
    covered: dict[tuple[tuple, float], float] = {}
    scored: dict[tuple[tuple, float], float] = {}

    def cov(key: tuple[tuple, float]) -> float:
        if key not in covered:
            covered[key] = coverage(*key)
        return covered[key]

    def sc(key: tuple[tuple, float]) -> float:
        if key not in scored:
            scored[key] = score(*key)
        return scored[key]

    candidates = []
    for c in configs:
        if cov((c, 1.0)) >= NOMINAL:
            honest = [(c, f) for f in factors if f <= 1.0 and cov((c, f)) >= NOMINAL]
            if honest:
                candidates.append(min(honest, key=sc))
        else:
            wider = next(((c, f) for f in sorted(factors) if f > 1.0 and cov((c, f)) >= NOMINAL), None)
            if wider is not None:
                candidates.append(wider)
    if candidates:
        chosen = min(candidates, key=sc)
    else:
        chosen = max(((c, f) for c in configs for f in factors), key=lambda k: (cov(k), k[1]))
    return chosen[0], chosen[1], cov(chosen)


def select_mechanisms(deals, stages, as_of: date, cal, *, horizon_days: int, lost_observed: bool,
                      forced_on=(), forced_off=()) -> tuple[list[str], float]:
    """The parts of ``cal`` to keep and the factor on the shared shocks (module docstring).

    Records what it tried, the scores and the in-history coverage in ``cal.evidence``.
    """
    fitted = [m for m in MECHANISMS if m in cal.mechanisms]
    months = max(1, min(3, round(horizon_days / 30.4375)))
    known = dict(inner_cutoffs(deals, as_of, months))  # cutoff -> months scored
    cuts = list(known)
    default = [m for m in fitted if m in ("shocks", "stalled") and m not in forced_off]
    if len(cuts) < 2:
        cal.evidence = {"cutoffs": [c.isoformat() for c in cuts], "note": "fewer than 2 inner cutoffs: no evidence"}
        cal.notes.append("selection: fewer than 2 month ends inside the history with a whole horizon after them: "
                         "the optional parts are not tested; kept the shared shocks and stalled deals where fitted ("
                         + (", ".join(default) or "neither was") + ")"
                         + (f" and what was forced on ({', '.join(forced_on)})" if forced_on else ""))
        cal.warnings.append(f"the history is too young to check the intervals against it (an in-history check needs "
                            f"two month ends at least {MIN_HISTORY_MONTHS} months after its first deal and "
                            f"{MIN_CLOSED_MONTHS} after its first close, each with a whole month known after it): "
                            f"{UNCHECKED}")
        return sorted(set(default) | set(forced_on), key=MECHANISMS.index), 1.0
    revenue = any(d.amount for d in deals)
    inner = []
    for c in cuts:
        try:
            icalib = fit_candidates(deals, stages, c, horizon_days=(_months_after(c, months + 1)[-1] - c).days - 1,
                                    name="inner", lost_observed=lost_observed, families=cal.families, like=cal,
                                    new_lead_share=new_lead_share)
        except ValueError:
            continue
        won, value = _actuals([d for d in deals if d.closed is None or d.closed <= as_of],
                              _months_after(c, known[c]))
        inner.append((c, icalib, won, value))
    if len(inner) < 2:
        cal.evidence = {"cutoffs": [c.isoformat() for c in cuts], "note": "inner calibrations failed"}
        cal.warnings.append(f"the in-history check could not calibrate on {len(cuts) - len(inner)} of its "
                            f"{len(cuts)} month ends: {UNCHECKED}")
        return sorted(set(default) | set(forced_on), key=MECHANISMS.index), 1.0
    scale_won = max(float(np.mean([w.mean() for _, _, w, _ in inner])), 1.0)
    scale_value = max(float(np.mean([v.mean() for _, _, _, v in inner])), 1e-9)
    # each inner cutoff's (won deals, revenue) samples, None when a part refused to simulate
    cache: dict[tuple[tuple, float], list[tuple[np.ndarray, np.ndarray]] | None] = {}

    # each inner calibration's open deals, as read from its pipeline CSV the first time one of
    # its scenarios is built: every set of parts has the same file, checked against the same
    # start, segments and stages (the parts change none of them), so the later sets take the
    # deals as read rather than writing and reading thousands of rows again
    read: dict[int, Scenario] = {}

    def scenario(i: int, icalib, doc: dict) -> Scenario:
        if i in read:
            sc = scenario_from_dict({k: v for k, v in doc.items() if k != "pipeline"})
            return replace(sc, pipeline_file=read[i].pipeline_file, pipeline=read[i].pipeline)
        with tempfile.TemporaryDirectory() as tmp:
            if icalib.pipeline:
                (Path(tmp) / doc["pipeline"]["file"]).write_text(pipeline_csv(icalib.pipeline), encoding="utf-8")
            sc = scenario_from_dict(doc, base_dir=tmp)
        if icalib.pipeline:
            read[i] = sc
        return sc

    def simulated(kept: tuple, widen: float) -> list[tuple[np.ndarray, np.ndarray]] | None:
        out = []
        for i, (_, icalib, _, _) in enumerate(inner):
            doc = build_scenario(icalib, kept, widen)
            try:
                ds = simulate(scenario(i, icalib, doc), trials=TRIALS, seed=0)
            except ScenarioError:  # a part fitted to odd data that the format refuses: not a candidate
                return None
            out.append((ds["won_deals"].values.astype(float)[:, :months],
                        ds["revenue"].values.astype(float)[:, :months]))
        return out

    def samples(kept: tuple, widen: float = 1.0) -> list[tuple[np.ndarray, np.ndarray]] | None:
        key = (kept, widen)
        if key not in cache:
            cache[key] = simulated(kept, widen)
        return cache[key]

    def by_cutoff(kept: tuple, widen: float = 1.0) -> np.ndarray:
        """Each inner cutoff's mean relative CRPS over its months (and metrics)."""
        out: list[float] = []
        drawn = samples(kept, widen)
        if drawn is None:
            return np.full(len(inner), np.inf)
        for (won_s, value_s), (_, _, won, value) in zip(drawn, inner):
            total = 0.0
            for k in range(won.size):
                total += crps(won_s[:, k], won[k]) / scale_won
                if revenue:
                    total += crps(value_s[:, k], value[k]) / scale_value
            out.append(total / won.size)
        return np.array(out)

    def score(kept: tuple, widen: float = 1.0) -> float:
        return float(np.mean(by_cutoff(kept, widen)))

    def short_of(new: tuple, old: tuple) -> str | None:
        """Why ``new`` is not better than ``old`` (:func:`why_not_better`), or None when it is."""
        return why_not_better(by_cutoff(new), by_cutoff(old), [c for c, *_ in inner])

    def coverage(kept: tuple, widen: float = 1.0) -> float:
        drawn = samples(kept, widen)
        if drawn is None:
            return 0.0
        inside = [bool(np.percentile(won_s[:, k], 10) <= won[k] <= np.percentile(won_s[:, k], 90))
                  for (won_s, _), (_, _, won, _) in zip(drawn, inner) for k in range(won.size)]
        return float(np.mean(inside))

    kept = _ordered(forced_on)
    steps = [{"kept": list(kept), "score": score(kept)}]
    candidates = [m for m in fitted if m not in kept and m not in forced_off and m not in excluded_by(kept)]
    while candidates:
        tries = {m: score(_ordered(kept + (m,))) for m in candidates}
        best = min(tries, key=tries.__getitem__)
        why = short_of(_ordered(kept + (best,)), kept)
        steps.append({"tried": {m: round(v, 5) for m, v in tries.items()}, "best": best, "added": why is None,
                      **({"why_not": why} if why else {})})
        if why:
            break
        kept = _ordered(kept + (best,))
        candidates = [m for m in candidates if m != best and m not in excluded_by(kept)]
    selected = kept
    before = coverage(kept)
    configs = spread_configs(kept, fitted, forced_off, before)
    widen, reached = 1.0, before
    if configs:
        kept, widen, reached = choose_spread(configs, coverage, score)
        if reached < NOMINAL:
            cal.warnings.append(f"in-history coverage of P10-P90 is {reached:.0%} even with the shared spread "
                                f"x{widen:g}: the intervals are likely too narrow")
    cal.evidence = {"cutoffs": [c.isoformat() for c, *_ in inner], "scored": [int(w.size) for _, _, w, _ in inner],
                    "months": months, "steps": steps,
                    "selected": list(selected), "kept": list(kept), "score": score(kept, widen),
                    "score_base": score(()), "widen": widen, "coverage_p10_p90": reached,
                    "coverage_before_widening": before}
    added = [m for m in kept if m not in selected]
    cal.notes.append(f"selection: walk-forward inside the history from {len(inner)} month ends "
                     f"({', '.join(c.isoformat() for c, *_ in inner)}), {months} months each: kept "
                     f"{', '.join(kept) or 'nothing optional'}"
                     + (f" ({', '.join(added)} added by the honesty check: {before:.0%} coverage without)"
                        if added else "")
                     + f"; relative CRPS {score(kept, widen):.4f} against {score(()):.4f} with none; "
                     f"{spread_said(kept, widen)}; in-history P10-P90 coverage {reached:.0%}")
    return list(kept), widen


def spread_said(kept, widen: float) -> str:
    """What the honesty check scaled, in words: ``shared spread (shocks) x1.25``, or that
    the kept parts have none (neither shocks nor a capacity's cv)."""
    parts = [name for part, name in (("shocks", "shocks"), ("capacity", "capacity cv")) if part in kept]
    return f"shared spread ({' and '.join(parts)}) x{widen:g}" if parts else "no shared spread to scale"
