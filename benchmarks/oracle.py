"""The oracle: the best forecast of the truth suite's monthly won deals, made from its truth.

``python benchmarks/oracle.py [--results benchmarks/synthetic.json] [--out benchmarks]``

For every month the truth suite (``benchmarks/synthetic.py``) scored, the forecast of a
forecaster that knows what the generator knows, except the draws still to come:

* the generator's rules and parameters: the arrival rate of every day (a growth ramp's
  too), each cohort month's conversion and median time to win, the stall share, the laws
  of the times to win and to lose, the quarter-end slips, the team's capacity;
* every lead's state on the cutoff, including what the export hides: resolved (won or
  lost by then, even a loss the export never records), won and waiting (a slipped win, or
  one queued for a saturated team: it closes later, as drawn; the export shows it open),
  or unresolved, which it knows no more of than the export does (stalled, or a future win
  or loss): the unresolved lead of age a days in a cohort with conversion p, stall share
  s, survival S_w and S_l of the times to win and to lose wins with probability
  (1-s) p S_w(a) / (s + (1-s) p S_w(a) + (1-s)(1-p) S_l(a)), at a time drawn from the time
  to win given that it exceeds a (the scenario format's conditioning, with stalls);
* not what is yet to be drawn: the leads still to arrive (Poisson, each day), their fates,
  a future cohort's conversion where it is random (a random walk's next steps are drawn;
  a one-off bad month is not foreseen: cohorts after the cutoff convert at the regime's
  rule), each month's capacity (Poisson around its mean).

Its won deals a month are then sampled exactly: the unresolved leads' wins (each lead in
at most one month, with its probabilities), the new leads' (Poisson, thinned by each
day's fate probabilities), the waiting wins, and with a capacity the queue served month by
month (oldest first, as the generator serves it: only the counts matter). Scored like the
suite (CRPS from the samples, P10-P90 coverage).

What it is for: a regime where the best naive baseline's CRPS is close to the oracle's has
nothing left for a model to win (a tie is the best outcome there); the gap between
forecaster and the oracle bounds what a better model could still gain (a little of it is
out of any model's reach: the hidden states above; on the quarter-end push, drawing the
slipped wins' count from its law instead of knowing it raised the oracle's CRPS from 5.17
to 5.51 won deals a month, 20 seeds x 9 cutoffs, measured by a review). Its coverage is a
check of the oracle itself (about 80% when it is right).
"""
from __future__ import annotations

import argparse
import json
import sys
import zlib
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from scipy.special import expit, logit
from scipy.stats import norm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import synthetic as syn  # noqa: E402  (the suite's generator: benchmarks/ is not a package)

DRAWS = 4000
"""Samples of each cutoff's months."""
SEED = 20261206


def _survival(x, median: float, sigma: float):
    """P(T >= x) for T lognormal(median, sigma) [days]; 1 where x <= 0."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore"):
        z = (np.log(np.where(x > 0, x, 1.0)) - np.log(median)) / sigma
    return np.where(x > 0, norm.sf(z), 1.0)


def _month_edges(history, cutoff: date, months: int) -> tuple[list[date], np.ndarray]:
    """The horizon's month starts (months + 1 of them) and their offsets [days from start]."""
    first = cutoff + timedelta(days=1)
    starts = [syn.add_months(first, k) for k in range(months + 1)]
    return starts, np.array([(m - history.start).days for m in starts])


def _slip_matrix(history, starts: list[date]) -> np.ndarray:
    """(months + 1, months + 1): row j (due in month j; the last row and column: outside the
    horizon) -> the month it closes in, with the regime's quarter-end slips."""
    months = len(starts) - 1
    slip = history.truth["slip"]
    out = np.eye(months + 1)
    if slip <= 0:
        return out
    for j in range(months):
        pos = (starts[j].month - 1) % 3  # 0, 1, 2: month of its quarter
        if pos != 2:
            out[j, j] = 1 - slip
            target = j + (2 - pos)
            out[j, target if target < months else months] += slip
    return out


def oracle_samples(history, cutoff: date, months: int = 3, draws: int = DRAWS, seed: int = SEED) -> np.ndarray:
    """The oracle's won deals in each of the ``months`` calendar months after ``cutoff``
    (module docstring): shape (draws, months), from a generator seeded by ``seed``, the
    history's regime, seed and the cutoff."""
    t, lat = history.truth, history.latent
    knobs = t["knobs"]
    rng = np.random.default_rng([seed, history.seed, cutoff.toordinal(), zlib.crc32(history.regime.encode())])
    if t["capacity_mean"] is not None and t["slip"] > 0:
        raise ValueError(f"{history.regime}: the oracle has no model of slips and a team's queue together")
    starts, edges = _month_edges(history, cutoff, months)
    cut = edges[0]  # the first day after the cutoff [days from start]
    n_months = len(t["months"])
    kc = syn.months_after(history.start, cutoff)  # cutoff's month index
    s, sw, sl, lmed = t["stall_share"], t["win_sigma"], t["lose_sigma"], t["lose_median_days"]
    medians = np.array(t["win_median_days"])
    p_rule = np.array(t["convert"])
    if t["bad_month"] is not None:  # the bad month is known once its cohort has arrived, not before
        bad = t["months"].index(t["bad_month"])
        if bad > kc:
            p_rule[bad] /= knobs["bad_factor"]
    slips = _slip_matrix(history, starts)

    # the leads on the cutoff
    offset, cohort, won, stalled = lat["offset"], lat["cohort"], lat["won"], lat["stalled"]
    close, due = lat["close"], lat["due"]
    arrived = offset < cut
    waiting = arrived & won & (due < cut) & (close >= cut)  # won, closes later as drawn
    unresolved = arrived & (stalled | (~stalled & (due >= cut)))
    # unresolved leads: P(win) and the month each win falls due in (the last column: later)
    ages = (cut - offset[unresolved]).astype(float)
    c = cohort[unresolved]
    pc, mc = p_rule[c], medians[c]
    s_w, s_l = _survival(ages, mc, sw), _survival(ages, lmed, sl)
    q = (1 - s) * pc * s_w / (s + (1 - s) * pc * s_w + (1 - s) * (1 - pc) * s_l)
    lo = edges[:-1][None, :] - offset[unresolved][:, None]
    hi = edges[1:][None, :] - offset[unresolved][:, None]
    due_k = np.where(s_w[:, None] > 0, (_survival(lo, mc[:, None], sw) - _survival(hi, mc[:, None], sw))
                     / np.maximum(s_w[:, None], 1e-300), 0.0)
    probs = np.column_stack([q[:, None] * due_k, np.zeros(len(q))])
    probs[:, -1] = 1 - probs[:, :-1].sum(axis=1)  # not won in the horizon

    # new leads: arrivals each day of the horizon, each cohort month's expected wins due in each month
    days = np.arange(cut, edges[-1])
    by_day = np.searchsorted(np.array([(syn.add_months(history.start, i) - history.start).days
                                       for i in range(1, n_months + 1)]), days, side="right")
    if by_day.max(initial=0) >= n_months:
        raise ValueError(f"{history.regime}: the horizon after {cutoff} runs past the generated months")
    lam = np.array(t["arrivals_per_day"])[by_day]
    lo_n = edges[:-1][None, :] - days[:, None]
    hi_n = edges[1:][None, :] - days[:, None]
    due_new = _survival(lo_n, medians[by_day][:, None], sw) - _survival(hi_n, medians[by_day][:, None], sw)
    cohorts = np.unique(by_day)
    weight = np.array([(lam[by_day == i][:, None] * (1 - s) * due_new[by_day == i]).sum(axis=0) for i in cohorts])

    out = np.zeros((draws, months))
    # the unresolved leads' wins: each lead's month drawn from its probabilities (chunks of draws)
    cum = np.cumsum(probs, axis=1)
    cum[:, -1] = 1.0
    for a in range(0, draws, 500):
        b = min(draws, a + 500)
        u = rng.random((b - a, len(q), 1))
        month = (u > cum[None, :, :]).sum(axis=2)  # (chunk, leads): 0..months (months: none)
        for k in range(months):
            out[a:b, k] += (month == k).sum(axis=1)
    # the new leads' wins due in each month: Poisson, a random walk's cohorts drawn per sample
    p_draw = np.repeat(p_rule[cohorts][None, :], draws, axis=0)
    ahead = cohorts > kc  # cohorts arriving after the cutoff's month (all of the horizon's)
    if knobs["drift_sd"] > 0 and ahead.any():  # the random walk's next steps, drawn per sample
        steps = rng.normal(0.0, knobs["drift_sd"], (draws, int(ahead.sum())))
        p_draw[:, ahead] = expit(logit(p_rule[kc]) + np.cumsum(steps, axis=1))
    mean_new = p_draw @ weight  # (draws, months): wins due in each month
    new_due = rng.poisson(mean_new)
    # wins known on the cutoff that close later (slipped): in the month they close in
    waits = np.zeros(months + 1)
    for d in close[waiting]:
        k = int(np.searchsorted(edges, d, side="right")) - 1
        waits[min(k, months)] += 1
    if t["capacity_mean"] is None:
        due_all = np.column_stack([out + new_due, np.zeros(draws)])
        if t["slip"] > 0:  # a quarter's first two months' wins slip to its last: each sample's, binomially
            due_all = _slipped(due_all, slips, rng)
        return due_all[:, :months] + waits[None, :months]
    # a capacity: the queue served month by month, oldest first (counts only)
    backlog = np.full(draws, float(waiting.sum()))
    served = np.zeros((draws, months))
    for k in range(months):
        caps = np.maximum(rng.poisson(t["capacity_mean"], draws), 1)
        available = backlog + out[:, k] + new_due[:, k]
        served[:, k] = np.minimum(caps, available)
        backlog = available - served[:, k]
    return served


def _slipped(dues: np.ndarray, slips: np.ndarray, rng) -> np.ndarray:
    """Each sample's wins due in each month moved by ``slips`` (one binomial draw per move)."""
    out = np.zeros_like(dues)
    for j in range(dues.shape[1]):
        moves = np.nonzero(slips[j])[0]
        left = dues[:, j].astype(np.int64)
        rest = 1.0
        for target in moves[:-1]:
            k = rng.binomial(left, min(slips[j, target] / rest, 1.0))
            out[:, target] += k
            left = left - k
            rest -= slips[j, target]
        out[:, moves[-1]] += left
    return out


def actual_wins(history, cutoff: date, months: int = 3) -> np.ndarray:
    """The won deals in each month of the horizon, from the export, counted as the backtest
    counts them (:func:`forecaster.history.baselines.actuals`): shape (months,)."""
    from forecaster.history.baselines import actuals

    starts, _ = _month_edges(history, cutoff, months)
    return np.array(actuals(history.deals, starts[:-1])["won_deals"])


def score_regime(regime: str, run: dict, draws: int = DRAWS) -> list[dict]:
    """The oracle against one (regime, seed) run of the suite (``synthetic.json``'s ``runs``):
    per scored month, the oracle's CRPS and whether its P10-P90 held the actual, beside
    forecaster's and the baselines' CRPS as the suite scored them."""
    from forecaster.history.selection import crps  # the suite's and the backtest's CRPS

    regime = syn.EXTRA_RUNS.get(regime, (regime,))[0]  # a row rerunning a regime with other options
    months_total = syn.SPANS.get(regime, (24, None))[0]
    history = syn.make_history(regime, run["seed"], months_total)
    rows = run["by_month"]["won_deals"]
    out = []
    for cutoff in run["cutoffs"]:
        mine = [r for r in rows if r["cutoff"] == cutoff]
        samples = oracle_samples(history, date.fromisoformat(cutoff), len(mine), draws)
        actual = actual_wins(history, date.fromisoformat(cutoff), len(mine))
        for k, r in enumerate(mine):
            if actual[k] != r["actual"]:
                raise AssertionError(f"{regime} seed {run['seed']} {cutoff} month {k}: the history gives "
                                     f"{actual[k]} won deals, the suite scored {r['actual']}")
            lo, hi = np.percentile(samples[:, k], [10, 90])
            out.append({"seed": run["seed"], "cutoff": cutoff, "month": r["month"], "actual": r["actual"],
                        "oracle": crps(samples[:, k], r["actual"]), "oracle_mean": float(samples[:, k].mean()),
                        "oracle_inside": bool(lo <= r["actual"] <= hi), "forecaster": r["crps"],
                        **r["baselines"]})
    return out


def summarise(regime: str, rows: list[dict]) -> dict:
    """Mean CRPS a month of the oracle, forecaster and the best naive baseline; the paired
    differences from the oracle's, with 90% intervals from resampling whole (seed, cutoff)
    groups as the suite does (:func:`synthetic.cluster_bootstrap`); the oracle's coverage."""
    naive = ("last_month_naive", "seasonal_naive", "trailing_mean")
    mean = {m: float(np.mean([r[m] for r in rows])) for m in ("oracle", "forecaster", *naive)}
    best = min(naive, key=mean.__getitem__)

    def gap(method: str) -> dict:
        groups: dict = {}
        for r in rows:
            groups.setdefault((r["seed"], r["cutoff"]), []).append(r[method] - r["oracle"])
        return syn.cluster_bootstrap(list(groups.values()))

    inside = sum(r["oracle_inside"] for r in rows)
    return {"regime": regime, "months": len(rows), "oracle": mean["oracle"], "forecaster": mean["forecaster"],
            "best_naive": best, "best_naive_crps": mean[best], "best_naive_gap": gap(best),
            "forecaster_gap": gap("forecaster"), "oracle_inside": inside, "oracle_coverage": inside / len(rows)}


def _gap(g: dict) -> str:
    return f"{g['mean']:+.1f} [{g['ci'][0]:+.1f}, {g['ci'][1]:+.1f}]"


def report(summaries: list[dict], source: str) -> str:
    lines = [
        "# The oracle against the truth suite",
        "",
        f"Generated by `python benchmarks/oracle.py` from `{source}` (see its docstring): for every month",
        "the truth suite scored, the won deals forecast by an oracle that knows the generator's rules,",
        "parameters and every lead's state on the cutoff, but not the draws still to come. Its CRPS is",
        "about the least any forecast can score there; the gaps say how much a model can still win over",
        "the best naive baseline, and how much forecaster leaves. Its P10-P90 coverage checks the oracle.",
        "",
        "| regime | months | oracle CRPS | best naive (CRPS) | forecaster CRPS | best naive − oracle [90%] | "
        "forecaster − oracle [90%] | oracle P10–P90 coverage |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(f"| {s['regime'].replace('_', ' ')} | {s['months']} | {s['oracle']:.1f} | "
                     f"{s['best_naive'].replace('_', ' ')} ({s['best_naive_crps']:.1f}) | {s['forecaster']:.1f} | "
                     f"{_gap(s['best_naive_gap'])} | {_gap(s['forecaster_gap'])} | "
                     f"{s['oracle_coverage']:.0%} ({s['oracle_inside']} of {s['months']}) |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=HERE / "synthetic.json", help="the truth suite's results")
    ap.add_argument("--out", type=Path, default=HERE, help="folder for ORACLE.md and oracle.json")
    ap.add_argument("--regimes", default="", help="comma-separated regimes (default: every one in the results)")
    ap.add_argument("--draws", type=int, default=DRAWS)
    a = ap.parse_args(argv)
    results = json.loads(a.results.read_text())
    names = [r for r in (a.regimes.split(",") if a.regimes else results["regimes"]) if r]
    summaries, by_run = [], {}
    for name in names:
        if name in syn.DERIVED:  # scored on part of another regime's months
            regime, keep = syn.DERIVED[name]
            if regime not in by_run:
                by_run[regime] = [(run, score_regime(regime, run, a.draws)) for run in results["regimes"][regime]["runs"]]
            rows = [row for run, mine in by_run[regime] for row in mine if keep(run, row)]
        else:
            by_run[name] = [(run, score_regime(name, run, a.draws)) for run in results["regimes"][name]["runs"]]
            rows = [row for _, mine in by_run[name] for row in mine]
        summaries.append(summarise(name, rows))
        print(f"{name}: oracle {summaries[-1]['oracle']:.2f}, forecaster {summaries[-1]['forecaster']:.2f}, "
              f"{summaries[-1]['best_naive']} {summaries[-1]['best_naive_crps']:.2f}, "
              f"oracle coverage {summaries[-1]['oracle_coverage']:.0%}", flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "ORACLE.md").write_text(report(summaries, a.results.name))
    (a.out / "oracle.json").write_text(json.dumps({"results": a.results.name, "draws": a.draws, "seed": SEED,
                                                   "summaries": summaries}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
