"""Generality probe: the calibration on synthetic histories the truth suite does not have.

``benchmarks/synthetic.py`` walks forward through thirteen regimes; calibration was developed
with them in view. This probe asks whether it generalises: fifteen further combinations of
the same generator's knobs (volume from 4 to 3,000 leads a month, cycles from 7 to 150
days, a long-tailed cycle, lumpy amounts, a permanent conversion step, arrivals halving,
growth with stalls and truncation, a team growing into its capacity, ...), each walked
forward like the suite (3 months ahead from month-end cutoffs of a 24-month history).

    python benchmarks/generality.py run [--combos a,b] [--seeds 2] [--cutoffs 5] [--trials 1000] [--cache DIR]
    python benchmarks/generality.py table [--cache DIR]      # writes benchmarks/GENERALITY.md
    python benchmarks/generality.py months COMBO [--notes]   # one combination's months and choices

One process, one (combination, seed) at a time, each cached as JSON in ``--cache`` (default:
a folder in the system's temporary folder). It measures; it never fails on poor scores.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import numpy as np  # noqa: E402
import synthetic as S  # noqa: E402

CACHE = Path(os.environ.get("FORECASTER_GENERALITY_CACHE", Path(tempfile.gettempdir()) / "forecaster-generality"))
MONTHS = 24
# name -> (base regime of make_history (it also seeds the random stream), knobs, special)
COMBOS: dict = {
    "small_volume": ("steady", {"leads_per_month": 40.0}, None),                       # ~10 wins a month
    "huge_volume": ("steady", {"leads_per_month": 3000.0}, None),                      # ~750 wins a month
    # a permanent step: every cohort from month index 15 (2024-04) on converts at 0.5x.
    # make_history's bad_month hits only one cohort, so two histories of the same (regime, seed)
    # (identical arrivals and per-lead draws; convert 0.25 and 0.125) are spliced by cohort month.
    "permanent_step_down": ("steady", {}, {"step_month": 15, "after": {"convert": 0.125}}),
    "growth_stall_truncated": ("growth_ramp", {"stall": 0.25, "truncate_month": 6}, None),
    "decline_slowing_cycle": ("decline", {"win_median": (25.0, 60.0)}, None),
    "long_tail_cycle": ("steady", {"win_sigma": 1.5}, None),
    "short_cycle": ("steady", {"win_median": 7.0}, None),
    "long_cycle": ("steady", {"win_median": 150.0}, None),
    "lumpy_amounts": ("steady", {"amount_sigma": 2.0}, None),                           # median ~1,350, mean 10,000
    # second batch: harsher combinations
    "tiny_volume_long_cycle": ("steady", {"leads_per_month": 16.0, "win_median": 120.0}, None),  # ~4 wins a month
    "volume_halves": ("steady", {}, {"step_month": 15, "after": {"leads_per_month": 200.0}}),   # arrivals step down
    "growth_quarter_push": ("growth_ramp", {"slip": 0.4}, None),
    "stall_no_losses": ("steady", {"stall": 0.25, "record_losses": False}, None),
    "growing_into_capacity": ("growth_ramp", {"capacity": 120}, None),   # 50 wins due at first, ~250 at the end
    # third batch (December 2026): an enterprise team's handful of opportunities
    "few_leads": ("steady", {"leads_per_month": 4.0}, None),                            # ~1 win a month
}


def build_history(combo: str, seed: int):
    regime, knobs, special = COMBOS[combo]
    if not special:
        return S.make_history(regime, seed, MONTHS, **knobs)
    step, after = special["step_month"], special["after"]
    before_h = S.make_history(regime, seed, MONTHS, **knobs)
    after_h = S.make_history(regime, seed, MONTHS, **{**knobs, **after})
    step_date = S.add_months(S.START, step)
    pre = [d for d in before_h.deals if d.entered[0] < step_date]
    post = [replace(d, deal_id="b-" + d.deal_id) for d in after_h.deals if d.entered[0] >= step_date]
    if "leads_per_month" not in after:
        assert len(pre) + len(post) == len(before_h.deals)  # same leads, by construction
    truth = dict(before_h.truth)
    for key in ("convert", "convert_eventual", "arrivals_per_day", "leads_per_month"):
        truth[key] = [b if i < step else a for i, (b, a) in enumerate(zip(before_h.truth[key], after_h.truth[key]))]
    truth["step_month"] = truth["months"][step]
    return replace(before_h, deals=pre + post, truth=truth)


def run_combo(combo: str, seed: int, n_cutoffs: int, trials: int) -> dict:
    import forecaster.history.backtest as bt

    t0 = time.perf_counter()
    months, cutoffs = S.regime_cutoffs(COMBOS[combo][0], MONTHS, S.START, n_cutoffs)
    history = build_history(combo, seed)
    captured, original = {}, bt.calibrate

    def capture(deals, stages, as_of, *args, **kwargs):
        cal = original(deals, stages, as_of, *args, **kwargs)
        captured[as_of] = cal
        return cal

    bt.calibrate = capture
    try:
        result = bt.backtest(history.deals, [S.STAGE], cutoffs, months=3, trials=trials,
                             lost_observed=history.lost_observed)
    finally:
        bt.calibrate = original
    S.every_cutoff_scored(result, f"{combo} seed {seed}")
    t1 = time.perf_counter()
    cal_digest = {}
    for c in cutoffs:
        cal = captured[c]
        first = c + timedelta(days=1)
        hd = (S.add_months(first, 3) - first).days
        d = S.diagnose(history, c, hd, {}, cal)
        cal_digest[c.isoformat()] = {
            "kept": d["kept"], "notes": d["notes"], "warnings": d["warnings"],
            "convert": d["convert"], "win_median_days": d["win_median_days"], "leads_per_month": d["leads_per_month"],
            "days": d["days"], "convert_shock": d["convert_shock"], "open_pipeline": d["open_pipeline"],
            "evidence": getattr(cal, "evidence", None),
        }
    by_month = {}
    for metric in result["average"]:
        by_month[metric] = [
            {"cutoff": c["cutoff"], "month": mo[:7],
             **{key: f[key] for key in ("p10", "p50", "p90", "actual", "in_p10_p90", "in_p5_p95", "crps", "bias")
                if key in f},
             "baselines": {name: s["by_month"][j]["crps"] for name, s in c["metrics"][metric].items()
                           if name != "forecaster" and isinstance(s, dict) and "by_month" in s}}
            for c in result["cutoffs"] for j, (mo, f) in enumerate(zip(c["months"],
                                                                       c["metrics"][metric]["forecaster"]["by_month"]))]
    last = cutoffs[-1].isoformat()
    return {"combo": combo, "regime": COMBOS[combo][0], "knobs": COMBOS[combo][1], "special": COMBOS[combo][2],
            "seed": seed, "cutoffs": [c.isoformat() for c in cutoffs], "deals": len(history.deals),
            "truth": history.truth, "average": result["average"], "by_month": by_month,
            "diagnostics": {k: cal_digest[last][k] for k in ("convert", "win_median_days", "leads_per_month", "kept",
                                                             "convert_shock")} | {"cutoff": last},
            "calibrations": cal_digest,
            "seconds": round(t1 - t0, 1)}


def cmd_run(a) -> None:
    out = Path(a.cache)
    out.mkdir(parents=True, exist_ok=True)
    combos = a.combos.split(",") if a.combos else list(COMBOS)
    for combo in combos:
        for seed in range(a.seeds):
            path = out / f"{combo}__{seed}.json"
            if path.exists() and not a.force:
                print(f"{combo} seed {seed}: cached", flush=True)
                continue
            t0 = time.perf_counter()
            res = run_combo(combo, seed, a.cutoffs, a.trials)
            path.write_text(json.dumps(res, default=str))
            print(f"{combo} seed {seed}: {time.perf_counter() - t0:.0f} s ({res['deals']} deals)", flush=True)


def summarise(runs: list[dict]) -> dict:
    out = {}
    for metric in runs[0]["average"]:
        ms = [m for r in runs for m in r["by_month"][metric]]
        names = sorted({b for m in ms for b in m["baselines"]})
        crps = {"forecaster": float(np.mean([m["crps"] for m in ms]))}
        for b in names:
            crps[b] = float(np.mean([m["baselines"][b] for m in ms]))
        best = min(names, key=crps.get)
        bias = float(np.mean([r["average"][metric]["forecaster"]["bias_month"] for r in runs]))
        inside = sum(bool(m["in_p10_p90"]) for m in ms)
        below = sum(m["actual"] < m["p10"] for m in ms)
        above = sum(m["actual"] > m["p90"] for m in ms)
        lo, hi = S.wilson(inside, len(ms))
        out[metric] = {"months": len(ms), "coverage": inside / len(ms), "wilson": (lo, hi), "below": below,
                       "above": above, "crps": crps, "best": best, "ratio": crps["forecaster"] / crps[best],
                       "bias": bias, "mean_actual": float(np.mean([m["actual"] for m in ms]))}
    return out


HEADER = [
    "# Generality probe", "",
    "Generated by `python benchmarks/generality.py` (see its docstring): combinations of the synthetic",
    "generator's knobs that the truth suite (`SYNTHETIC.md`) does not have, each walked forward like it",
    "(3 months ahead from month-end cutoffs of a 24-month history; here 2 seeds x 5 cutoffs, months 12-21, 1,000",
    "trials: 30 scored months a row). Coverage: the share of months whose actual fell inside P10-P90, with",
    "Wilson's 95% interval and the months below P10 / above P90. fc / best: forecaster's monthly CRPS over the",
    "best naive baseline's. Flags: coverage outside 60-95%, or CRPS more than 10% above the best baseline's.",
    "Seconds are per seed, measured on the 2-core machine with other work running (here the synthetic",
    "suite; the rerun below, a CI run). The runs were made on 6 December 2026 with the in-history check's rule of that day (a part",
    "is added when its gain is consistent, at two thirds of the inner month ends, or robust, still 2%",
    "without the month end where it helps most); against the runs of 7e4377a (the count of agreeing",
    "month ends only), long_cycle's fc / best went 0.86 -> 0.96 (5.2 -> 5.8 won deals a month),",
    "decline_slowing_cycle 0.70 -> 0.68, growth_quarter_push 0.33 -> 0.32, the other rows as before to",
    "0.01. With the robust test alone (tried, not kept) growing_into_capacity went 1.42 -> 1.85: its",
    "capacity, whose gain was all at the latest inner month end, was turned down at one cutoff.",
    "Rerun the same day after calibration's time to convert kept its fitted tail (cd4187f): every fc / best",
    "as before to 0.01 but huge_volume's (won deals 1.22 -> 1.21, revenue 1.09 -> 1.06); long_tail_cycle's",
    "won-deal coverage 97% -> 90%, which takes it off the flags (29 of 30 months inside P10-P90 before, 27",
    "now; 0.83 of the trailing mean's CRPS both times).",
    "Rerun on 7 December after calibration read histories of a few deals a month at their rates (2610e39:",
    "cohorts' conversion read around the pooled rate, arrivals weighed by the window's rate): won deals'",
    "fc / best small_volume 1.02 -> 1.00, tiny_volume_long_cycle 0.97 -> 0.95, stall_no_losses 0.99 -> 0.95",
    "(its revenue 1.06 -> 1.03), tiny_volume_long_cycle's revenue 0.99 -> 0.97, the others as before to 0.01;",
    "coverage moved by at most two months of 30 (stall_no_losses' revenue 90% -> 97%, long_tail_cycle's 90%",
    "-> 83%). few_leads (4 leads a month, about a win a month) added then: 0.73 of the trailing mean's CRPS,",
    "93% covered (run with the code before that change: 0.77, 87%; its conversion at the last cutoff",
    "0.093 / 0.206 for 0.25, now 0.135 / 0.261).",
    "", "Two won-deal rows are flagged (and two revenue rows for their 97% coverage: growth_quarter_push's,",
    "ahead of every baseline at 0.34 of the seasonal naive's CRPS, and stall_no_losses', 1.03 of the",
    "trailing mean's; growing_into_capacity's revenue is flagged with its won deals, 1.61 of the trailing",
    "mean's).",
    "**growing_into_capacity** (arrivals +8% a month from 200 leads, a team that",
    "closes about Poisson(120) a month): 1.42 times the trailing mean's CRPS (2.56 at 60571be, when the",
    "capacity was read as the mean of four quarters, two of them before it bound: 100 against 120). The",
    "capacity is now the level the wins reached (`wins_level`) and is kept at the last two cutoffs of",
    "both seeds; the loss left is at cutoffs where the cap has bound for too few months to be seen (the",
    "wins read as still growing, so no capacity is fitted) and one where the in-history check left the",
    "fitted capacity out (seed 1 as of April 2024: 105 a month, few inner month ends saw it): there the",
    "forecast follows the demand, up to 170 won deals a month for months that brought 97-127.",
    "**huge_volume** (3,000 leads a month): the median is off the true mean by about 2% either",
    "way (estimation noise across leads, conversion and timing, comparable to the Poisson sd at 750 wins a",
    "month), where the trailing mean's error is smaller.", ""]


def cmd_table(a) -> None:
    runs: dict = {}
    for p in sorted(Path(a.cache).glob("*.json")):
        r = json.loads(p.read_text())
        runs.setdefault(r["combo"], []).append(r)
    lines = []
    for metric, dg in (("won_deals", 1), ("revenue", 0)):
        lines += [f"## {metric}", "",
                  "| combo | months | P10–P90 cov [Wilson 95%] (below/above) | CRPS fc | last month | seasonal | "
                  "trailing mean | fc / best | bias/month (mean actual) | s per seed | flag |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for combo in [c for c in COMBOS if c in runs]:
            rs = sorted(runs[combo], key=lambda r: r["seed"])
            s = summarise(rs)[metric]
            c = s["crps"]
            flags = []
            if not 0.60 <= s["coverage"] <= 0.95:
                flags.append("coverage")
            if s["ratio"] > 1.10:
                flags.append(f"CRPS > best ({s['best']})")
            lines.append(
                f"| {combo} | {s['months']} | {s['coverage']:.0%} [{s['wilson'][0]:.0%}–{s['wilson'][1]:.0%}] "
                f"({s['below']}/{s['above']}) | {c['forecaster']:,.{dg}f} | {c.get('last_month_naive', 0):,.{dg}f} | "
                f"{c.get('seasonal_naive', 0):,.{dg}f} | {c.get('trailing_mean', 0):,.{dg}f} | {s['ratio']:.2f} "
                f"({s['best'].replace('_naive', '').replace('_', ' ')}) | {s['bias']:+,.{dg}f} ({s['mean_actual']:,.{dg}f}) | "
                f"{', '.join(str(r['seconds']) for r in rs)} | {'; '.join(flags) or '–'} |")
        lines.append("")
    lines += ["## calibration at the last cutoff (per seed)", "",
              "| combo | seed | conv cal/true | median days cal (family)/true | leads cal/true | kept |", "|---|---|---|---|---|---|"]
    for combo in [c for c in COMBOS if c in runs]:
        for r in sorted(runs[combo], key=lambda r: r["seed"]):
            d = r["diagnostics"]
            w = d["win_median_days"]
            lines.append(f"| {combo} | {r['seed']} | {d['convert']['calibrated']:.3f}/{d['convert']['true_next']:.3f} | "
                         f"{w['calibrated'] or float('nan'):.1f} ({w['family']})/{w['true_next']:.1f} | "
                         f"{d['leads_per_month']['calibrated']:.0f}/{d['leads_per_month']['true_next']:.0f} | "
                         f"{', '.join(d['kept']) or 'none'} |")
    text = "\n".join(HEADER + lines) + "\n"
    (HERE / "GENERALITY.md").write_text(text)
    print(text)


def cmd_months(a) -> None:
    """Per-month forecasts of one combo: p10/p50/p90/actual and the best baseline's CRPS."""
    for p in sorted(Path(a.cache).glob(f"{a.combo}__*.json")):
        r = json.loads(p.read_text())
        print(f"== {a.combo} seed {r['seed']}  ({a.metric})")
        for m in r["by_month"][a.metric]:
            b = m["baselines"]
            print(f"  cut {m['cutoff']} {m['month']}: p10 {m['p10']:9.1f} p50 {m['p50']:9.1f} p90 {m['p90']:9.1f} "
                  f"act {m['actual']:9.1f} {'in ' if m['in_p10_p90'] else 'OUT'} crps {m['crps']:8.1f} "
                  + " ".join(f"{k[:4]} {v:8.1f}" for k, v in sorted(b.items())))
        for c, cal in r["calibrations"].items():
            sel = [n for n in cal["notes"] if n.startswith("selection:")]
            print(f"  cal {c}: kept {cal['kept']}; conv {cal['convert']['calibrated']:.3f}/{cal['convert']['true_next']:.3f}"
                  f" days {cal['win_median_days']['calibrated']}/{cal['win_median_days']['true_next']:.1f}"
                  f" leads {cal['leads_per_month']['calibrated']:.0f}/{cal['leads_per_month']['true_next']:.0f}"
                  f" shock {cal['convert_shock']}")
            if a.notes:
                for n in cal["notes"]:
                    print("      ", n)
                for n in cal["warnings"]:
                    print("   W:", n)
            else:
                for n in sel:
                    print("      ", n)


def main() -> None:
    ap = argparse.ArgumentParser(description="calibration on synthetic histories outside the truth suite")
    ap.add_argument("--cache", default=str(CACHE), help="folder of the cached runs (JSON, one per combination and seed)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--combos")
    r.add_argument("--seeds", type=int, default=2)
    r.add_argument("--cutoffs", type=int, default=5)
    r.add_argument("--trials", type=int, default=1000)
    r.add_argument("--force", action="store_true")
    sub.add_parser("table")
    m = sub.add_parser("months")
    m.add_argument("combo")
    m.add_argument("--metric", default="won_deals")
    m.add_argument("--notes", action="store_true")
    a = ap.parse_args()
    {"run": cmd_run, "table": cmd_table, "months": cmd_months}[a.cmd](a)


if __name__ == "__main__":
    main()
