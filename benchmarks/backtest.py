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

from forecaster.backtest import backtest
from forecaster.history import PRESETS, read_history, read_olist

HERE = Path(__file__).resolve().parent


def month_ends(*pairs):
    """The last day of each (year, month)."""
    return [date(y + (m == 12), m % 12 + 1, 1) - timedelta(days=1) for y, m in pairs]


def num(x) -> str:
    return "–" if x is None else f"{x:,.1f}"


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
    lines = ["# Backtest results", "", "Regenerate with `python benchmarks/backtest.py ../shared/data`. Each cutoff "
             "calibrates on what was known then (`forecaster calibrate`), forecasts with 4,000 trials and is scored "
             "against the deals actually won. Coverage is the share of months (or horizon totals) whose actual value "
             "fell inside the interval; CRPS and bias are averages (lower CRPS is better).", ""]
    no_amounts = {"olist (2 months ahead)": "Olist records no deal amounts: only won deals are scored."}
    for name, result in runs.items():
        cut = ", ".join(c["cutoff"] for c in result["cutoffs"])
        lines += [f"## {name}", "", f"Cutoffs: {cut}. {no_amounts.get(name, '')}".rstrip(), "",
                  "| metric | method | P10–P90 coverage, month / total | P5–P95, month | CRPS month | CRPS month, "
                  "where the naive has data | CRPS month, from cutoffs with a whole quarter of wins | CRPS total "
                  "| bias month |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for metric, avg in result["average"].items():
            f, n, w = avg["forecaster"], avg["seasonal_naive"], avg["weighted_pipeline"]
            fair, whole = f"({n['months_naive_has_data']} months)", f"({n['months_whole_quarter']} months)"
            lines.append(f"| {metric} | forecaster | {f['coverage_p10_p90_month']:.0%} / {f['coverage_p10_p90_total']:.0%} | "
                         f"{f['coverage_p5_p95_month']:.0%} | {f['crps_month']:,.1f} | "
                         f"{num(f['crps_month_naive_has_data'])} {fair} | {num(f['crps_month_whole_quarter'])} {whole} | "
                         f"{f['crps_total']:,.1f} | {f['bias_month']:+,.1f} |")
            lines.append(f"| {metric} | seasonal naive | – | – | {n['crps_month']:,.1f} | "
                         f"{num(n['crps_month_naive_has_data'])} {fair} | {num(n['crps_month_whole_quarter'])} {whole} | "
                         f"{n['crps_total']:,.1f} | {n['bias_month']:+,.1f} |")
            lines.append(f"| {metric} | weighted pipeline | – | – | – | – | – | {w['crps_total']:,.1f} | – |")
        lines += ["", "Won deals month by month: the forecast's P10 / P50 / P90, what happened, and the seasonal "
                  "naive forecast.", "", "| cutoff | month | P10 | P50 | P90 | actual | inside P10–P90 | naive |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in result["cutoffs"]:
            won = c["metrics"]["won_deals"]
            for month, f, n in zip(c["months"], won["forecaster"]["by_month"], won["seasonal_naive"]["by_month"]):
                lines.append(f"| {c['cutoff']} | {month[:7]} | {f['p10']:,.0f} | {f['p50']:,.0f} | {f['p90']:,.0f} | "
                             f"{f['actual']:,.0f} | {'yes' if f['in_p10_p90'] else 'no'} | {n['forecast']:,.0f} |")
        lines.append("")
    (HERE / "BACKTEST.md").write_text("\n".join(lines))
    (HERE / "backtest.json").write_text(json.dumps(runs, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parent.parent / "shared" / "data"))
