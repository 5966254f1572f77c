"""The terminal summary a finance user reads at a glance, and the progress bar."""
from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.table import Table

from .scenario import Scenario


def _money(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}"


def _count(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.1f}" if abs(x) < 1000 else f"{x:,.0f}"


def _metric_table(title: str, metric: dict, fmt) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("period")
    for col in ("mean", "95% CI of mean", "P10", "P50", "P90"):
        table.add_column(col, justify="right")
    rows = [(item["period"], item) for item in metric["by_period"]] + [("total", metric["total"])]
    for i, (label, s) in enumerate(rows):
        table.add_row(label, fmt(s["mean"]), f"{fmt(s['mean_ci_low'])} – {fmt(s['mean_ci_high'])}",
                      fmt(s["p10"]), fmt(s["p50"]), fmt(s["p90"]), end_section=i == len(rows) - 2,
                      style="bold" if label == "total" else None)
    return table


def print_summary(summary: dict, scenario: Scenario, console: Console | None = None) -> None:
    """Print per-period and total revenue, won deals, commission per rep and targets."""
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    cur = f" [{scenario.currency}]" if scenario.currency else ""
    h = summary["horizon"]
    console.print(f"[bold]{summary['scenario']}[/bold]: {summary['trials']:,} trials, seed {summary['seed']}, "
                  f"{h['start']} to {h['end']}, by {h['report_by']}", highlight=False, markup=True)
    m = summary["metrics"]
    console.print(_metric_table(f"Revenue{cur}", m["revenue"], _money))
    console.print(_metric_table("Won deals", m["won_deals"], _count))
    if "commission" in m:
        console.print(_metric_table(f"Commission, all reps{cur}", m["commission"], _money))
    if "reps" in summary and "commission" in m:
        table = Table(title=f"Commission by rep{cur}", title_justify="left", show_edge=False, pad_edge=False)
        for col, just in (("rep", "left"), ("quota", "right"), ("bookings P50", "right"), ("commission mean", "right"),
                          ("P10", "right"), ("P50", "right"), ("P90", "right"), ("P(reach quota)", "right")):
            table.add_column(col, justify=just)
        for name, r in summary["reps"].items():
            c = r["commission"]["total"]
            chances = " / ".join(f"{q['probability']:.0%}" for q in r["quota_attainment"])
            table.add_row(name, _money(r["quota"]), _money(r["bookings"]["total"]["p50"]), _money(c["mean"]),
                          _money(c["p10"]), _money(c["p50"]), _money(c["p90"]), chances)
        console.print(table)
        if any(len(r["quota_attainment"]) > 1 for r in summary["reps"].values()):
            console.print("P(reach quota) is given for each commission period in turn.", style="dim")
    if summary.get("targets"):
        table = Table(title="Targets", title_justify="left", show_edge=False, pad_edge=False)
        for col, just in (("metric", "left"), ("threshold", "right"), ("P(total >= threshold)", "right")):
            table.add_column(col, justify=just)
        for metric, t in summary["targets"].items():
            table.add_row(metric, _money(t["threshold"]), f"{t['probability']:.1%}")
        console.print(table)


class LazyProgress:
    """A progress bar on stderr that appears only if a run lasts longer than a moment."""

    def __init__(self, total: int, label: str, enabled: bool, delay: float = 0.5):
        self.total, self.label, self.enabled, self.delay = total, label, enabled, delay
        self.done = 0
        self.t0 = time.monotonic()
        self.bar = None
        self.task = None

    def __call__(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.bar is None and time.monotonic() - self.t0 >= self.delay and self.done < self.total:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self.bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total, completed=self.done)
        elif self.bar is not None:
            self.bar.update(self.task, completed=self.done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
