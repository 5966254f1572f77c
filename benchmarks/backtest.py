"""Backtests on the public datasets: ``python benchmarks/backtest.py DATA_FOLDER``.

DATA_FOLDER holds ``maven-crm-sales-opportunities/`` and ``olist-marketing-funnel/`` (the
data is not in this repository: its licences do not allow it). Writes
``benchmarks/BACKTEST.md`` and ``benchmarks/backtest.json``.
"""
from __future__ import annotations

import json
import sys
from datetime import date, timedelta
from pathlib import Path

from forecaster.history.backtest import backtest
from forecaster.history.baselines import LABELS, MONTH_BASELINES
from forecaster.history.readers import PRESETS, read_history, read_olist

HERE = Path(__file__).resolve().parent


def month_ends(*pairs):
    """The last day of each (year, month)."""
    return [date(y + (m == 12), m % 12 + 1, 1) - timedelta(days=1) for y, m in pairs]


def num(x) -> str:
    return "–" if x is None else f"{x:,.1f}"


def signed(x) -> str:
    return "–" if x is None else f"{x:+,.1f}"


def pct(x) -> str:
    return "–" if x is None else f"{x:.0%}"


def main(folder: Path) -> None:
    runs = {}
    maven = PRESETS["maven"]
    deals = read_history(folder / "maven-crm-sales-opportunities" / "sales_pipeline.csv", maven["stages"],
                         maven["columns"], maven["outcomes"])
    cutoffs = month_ends(*[(2017, m) for m in range(3, 10)])
    runs["maven (3 months ahead)"] = backtest(deals, maven["stages"], cutoffs, months=3)
    runs["maven, with the team's capacity (3 months ahead)"] = backtest(deals, maven["stages"], cutoffs, months=3,
                                                                         capacity=True)
    olist = read_olist(folder / "olist-marketing-funnel")
    runs["olist (2 months ahead)"] = backtest(olist, ["lead"], month_ends((2018, 1), (2018, 2), (2018, 3)),
                                              months=2, lost_observed=False)
    for name, result in runs.items():  # the cutoffs here are ours: one too early is a mistake, not a skip
        if result["skipped"]:
            raise RuntimeError(f"{name}: cutoffs skipped as too early to calibrate on: {result['skipped']}")
    lines = ["# Backtest results", "", "Regenerate with `python benchmarks/backtest.py ../shared/data`. Each cutoff "
             "calibrates on what was known then (`forecaster calibrate`), forecasts with 4,000 trials and is scored "
             "against the deals actually won. Coverage is the share of months (or horizon totals) whose actual value "
             "fell inside the central 50% (P25–P75), 80% (P10–P90) or 90% (P5–P95) interval; CRPS and bias are "
             "averages, in won deals or revenue a month (or a horizon), lower CRPS is better.", "",
             "Baselines: the **last-month naive** (every month as the last whole month before the cutoff), the "
             "**trailing 3-month mean** (won deals Poisson with the mean of the 3 months to the cutoff, revenue "
             "compound Poisson over the amounts won by then; as many samples as forecaster's trials, so it has "
             "intervals), the **seasonal naive** (same month last quarter) and the **weighted pipeline** (open "
             "deals × their stage's win rate, valued at the mean won amount known on the cutoff: no look-ahead; "
             "scored on the horizon total only). Paired differences: forecaster's CRPS minus the baseline's on the "
             "same months (negative: forecaster better), with a 90% interval from 2,000 bootstrap resamples of "
             "whole cutoffs.", ""]
    no_amounts = {"olist (2 months ahead)": "Olist records no deal amounts: only won deals are scored."}
    for name, result in runs.items():
        cut = ", ".join(c["cutoff"] for c in result["cutoffs"])
        lines += [f"## {name}", "", f"Cutoffs: {cut}. {no_amounts.get(name, '')}".rstrip(), "",
                  "| metric | method | coverage 50 / 80 / 90%, month | 80%, total | CRPS month | CRPS month, "
                  "where the seasonal naive has data | CRPS month, from cutoffs with a whole quarter of wins | "
                  "CRPS total | bias month |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for metric, avg in result["average"].items():
            n = avg["seasonal_naive"]
            fair, whole = f"({n['months_naive_has_data']} months)", f"({n['months_whole_quarter']} months)"
            for method in ("forecaster", *MONTH_BASELINES):
                m = avg[method]
                coverage = " / ".join(pct(m.get(f"coverage_{k}_month")) for k in ("p25_p75", "p10_p90", "p5_p95"))
                coverage = "–" if "coverage_p10_p90_month" not in m else coverage
                lines.append(f"| {metric} | {LABELS[method]} | {coverage} | {pct(m.get('coverage_p10_p90_total'))} | "
                             f"{num(m['crps_month'])} | {num(m['crps_month_naive_has_data'])} {fair} | "
                             f"{num(m['crps_month_whole_quarter'])} {whole} | {num(m['crps_total'])} | "
                             f"{signed(m['bias_month'])} |")
            lines.append(f"| {metric} | {LABELS['weighted_pipeline']} | – | – | – | – | – | "
                         f"{num(avg['weighted_pipeline']['crps_total'])} | – |")
        lines += ["", "Forecaster − baseline, CRPS (negative: forecaster better), with the 90% bootstrap interval "
                  "over cutoffs.", "", "| metric | baseline | scored on | difference | 90% interval | cutoffs |",
                  "|---|---|---|---|---|---|"]
        for metric, avg in result["average"].items():
            for base, p in avg["paired"].items():
                month = "crps_month_diff" in p
                diff = p["crps_month_diff"] if month else p["crps_total_diff"]
                lines.append(f"| {metric} | {LABELS[base]} | {'months' if month else 'horizon totals'} | "
                             f"{signed(diff)} | {signed(p['ci90'][0])} to {signed(p['ci90'][1])} | {p['cutoffs']} |")
        pit = {metric: avg["forecaster"]["pit_histogram"] for metric, avg in result["average"].items()}
        lines += ["", "PIT of the actual in forecaster's months, counts in 10 bins from 0 to 1 (calibrated: flat): "
                  + "; ".join(f"{metric} {' '.join(map(str, h))}" for metric, h in pit.items()) + ".", ""]
        lines += ["Won deals month by month: the forecast's P10 / P50 / P90, what happened, and the baselines "
                  "(seasonal naive, last-month naive, trailing mean's P10–P90).", "",
                  "| cutoff | month | P10 | P50 | P90 | actual | inside P10–P90 | seasonal naive | last month | "
                  "trailing mean P10–P90 |", "|---|---|---|---|---|---|---|---|---|---|"]
        for c in result["cutoffs"]:
            won = c["metrics"]["won_deals"]
            for month, f, n, last, tm in zip(c["months"], won["forecaster"]["by_month"], won["seasonal_naive"]["by_month"],
                                             won["last_month_naive"]["by_month"], won["trailing_mean"]["by_month"]):
                lines.append(f"| {c['cutoff']} | {month[:7]} | {f['p10']:,.0f} | {f['p50']:,.0f} | {f['p90']:,.0f} | "
                             f"{f['actual']:,.0f} | {'yes' if f['in_p10_p90'] else 'no'} | {n['forecast']:,.0f} | "
                             f"{last['forecast']:,.0f} | {tm['p10']:,.0f}–{tm['p90']:,.0f} |")
        lines.append("")
    (HERE / "BACKTEST.md").write_text("\n".join(lines))
    (HERE / "backtest.json").write_text(json.dumps(runs, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parent.parent / "shared" / "data"))
