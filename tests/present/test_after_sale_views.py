"""The after-sale outputs (v2 A.3, issue 13) in the console, the report and the batch CSV;
and a scenario without customers shows exactly what it showed before.

The after-sale scenario puts open deals at a single stage with ``convert: 1.0, days: 0`` (so
customers exist from the first day, as in the shared conformance checks), in a subscription
segment (with cancellations and new leads) and a repeat-purchase segment. The views are
checked against the run's own summary.json: the engine's numbers are tested elsewhere.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SCENARIOS

import forecaster as fc
from forecaster.cli import main
from forecaster.present import console as console_module, report as report_module
from forecaster.present.batch import STATS, run_batch
from forecaster.present.console import Console, print_summary
from forecaster.present.report import period_end_name, period_name, write_report
from forecaster.results.outputs import run_to_folder

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
UNCHANGED = Path(__file__).resolve().parent / "golden" / "without-customers.json"

SCENARIO = """\
name: after-sale views
start: 2027-01-01
end: 2027-06-30
report_by: month
currency: EUR
trials: 300
seed: 5
stages: [close]
segments:
  subs:
    leads: {per_week: 2}
    funnel:
      close: {convert: 1.0, days: 0}
    deal_value: 1200
    customer:
      subscription: {term_months: 1, renew: 0.9}
      cancel: {probability: 0.05, days: {dist: uniform, low: 0, high: 20}}
  shop:
    leads: {per_day: 0}
    funnel:
      close: {convert: 1.0, days: 0}
    deal_value: 200
    customer:
      repeat: {per_month: 0.5, dropout: 0.2, value: 50}
pipeline: {file: deals.csv}
"""
SUBSCRIPTIONS_ONLY = """\
name: subscriptions only
start: 2027-01-01
end: 2027-03-31
trials: 50
stages: [close]
segments:
  subs:
    leads: {per_day: 0}
    funnel:
      close: {convert: 1.0, days: 0}
    deal_value: 100
    customer:
      subscription: {renew: 0.9}
pipeline: {file: deals.csv}
"""
MONEY = ("recognised_revenue", "total_bookings", "renewal_bookings", "repeat_revenue", "cancellations")
CUSTOMERS = ("active_customers", "mrr", "new_customers", "churned_customers")


def _deals(path: Path, rows: list[tuple[str, int, int]]) -> None:
    """Open deals at the stage `close`, entered on the first day: (segment, how many, value)."""
    lines = [f"{seg}-{i},{seg},close,2027-01-01,{value}," for seg, n, value in rows for i in range(n)]
    path.write_text("deal_id,segment,stage,entered_stage,amount,owner\n" + "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def after_sale(tmp_path_factory):
    """A run with customers and its reports: (folder, scenario, summary)."""
    tmp = tmp_path_factory.mktemp("after-sale")
    _deals(tmp / "deals.csv", [("subs", 40, 1200), ("shop", 60, 200)])
    (tmp / "after-sale.yaml").write_text(SCENARIO)
    sc = fc.load_scenario(tmp / "after-sale.yaml")
    summary = run_to_folder(sc, tmp / "out")
    write_report(tmp / "out")
    return tmp / "out", sc, summary


def _print(summary: dict, sc, width: int) -> str:
    buf = io.StringIO()
    print_summary(summary, sc, console=Console(file=buf, width=width, color_system=None))
    return buf.getvalue()


def _after_sale_rows(text: str) -> dict[str, dict[str, list[str]]]:
    """The data rows of the console's after-sale tables, joined across tables in order:
    label -> {"means": first-line cells, "ranges": second-line cells}."""
    rows: dict[str, dict[str, list[str]]] = {}
    label = None
    section = text[text.index("After the sale"):].split("Customer lifetime value")[0]  # its own table follows
    for line in section.splitlines():
        if "│" not in line:
            continue
        first, *cells = [c.strip() for c in line.split("│")]
        if first:
            label = first
            rows.setdefault(label, {"means": [], "ranges": []})["means"] += cells
        else:
            assert label is not None
            rows[label]["ranges"] += cells
    return rows


def _expected(summary: dict) -> dict[str, dict[str, list[str]]]:
    money, count = console_module._money, console_module._count
    m = summary["metrics"]

    def cells(stats: list[dict], total: bool) -> dict[str, list[str]]:
        s = dict(zip(MONEY + CUSTOMERS, stats))
        means = [money(s[n]["mean"]) for n in MONEY]
        ranges = [f"{money(s[n]['p10'])} – {money(s[n]['p90'])}" for n in MONEY]
        if total:  # stocks: no total (their level at the end is the last period's)
            means += ["", "", count(s["new_customers"]["mean"]), count(s["churned_customers"]["mean"])]  # one line
        else:
            means += [count(s["active_customers"]["mean"]), money(s["mrr"]["mean"]), count(s["new_customers"]["mean"]),
                      count(s["churned_customers"]["mean"])]
            ranges += [f"{count(s['active_customers']['p10'])} – {count(s['active_customers']['p90'])}",
                       f"{money(s['mrr']['p10'])} – {money(s['mrr']['p90'])}", "", ""]
        return {"means": means, "ranges": ranges}

    out = {p["period"]: cells([m[n]["by_period"][i] for n in MONEY + CUSTOMERS], False)
           for i, p in enumerate(m["revenue"]["by_period"])}
    out["total"] = cells([m[n]["total"] for n in MONEY + CUSTOMERS], True)
    return out


# --- console ---------------------------------------------------------------------------------

def test_console_shows_the_after_sale_tables_with_the_numbers_of_summary_json(after_sale):
    folder, sc, summary = after_sale
    assert summary == json.loads((folder / "summary.json").read_text())
    text = _print(summary, sc, 200)
    for part in ("After the sale [EUR]: each month's mean, with P10 – P90 below it", "Money in each month",
                 "recognised", "total", "bookings", "renewals", "repeat", "cancellations", "Customers",
                 "active customers", "at month end", "MRR [EUR]", "churned",
                 "total bookings = new deals (Revenue above) + renewals + repeat revenue − cancellations",
                 "Active customers and MRR are levels at the end of each month",
                 "the level at the end, 2027-06-30"):
        assert part in text, part
    assert "Left out" not in text  # every after-sale flow happens in this scenario
    assert text.index("Won deals") < text.index("After the sale") < text.index("Customers")
    assert _after_sale_rows(text) == _expected(summary)
    # customer lifetime value: one row per segment with a customer block, the numbers of summary.json
    clv = text[text.index("Customer lifetime value [EUR]"):].splitlines()
    for seg, st in summary["clv"].items():
        row = next(line for line in clv if f" {seg} " in line)
        assert [c.strip() for c in row.split("│")[2:6]] == [console_module._money(st[k])
                                                            for k in ("mean", "p10", "p50", "p90")], seg


def test_console_stays_within_100_columns_with_the_same_numbers(after_sale):
    _, sc, summary = after_sale
    text = _print(summary, sc, 100)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert _after_sale_rows(text) == _expected(summary)


def test_a_wide_money_table_is_split_in_two_and_keeps_every_number(after_sale):
    _, sc, summary = after_sale
    wide = json.loads(json.dumps(summary))
    for name in MONEY + ("mrr",):  # a company a thousand times larger
        for s in [wide["metrics"][name]["total"], *wide["metrics"][name]["by_period"]]:
            for k in STATS:
                s[k] *= 1000
    text = _print(wide, sc, 100)
    assert "Recognised revenue and bookings in each month" in text
    assert "Bookings besides new deals in each month" in text and "Money in each month" not in text
    assert max(len(line) for line in text.splitlines()) <= 100
    assert _after_sale_rows(text) == _expected(wide)
    assert "Money in each month" in _print(wide, sc, 160)


def test_console_leaves_out_the_flows_that_never_happen_and_says_so(tmp_path):
    _deals(tmp_path / "deals.csv", [("subs", 30, 100)])
    (tmp_path / "s.yaml").write_text(SUBSCRIPTIONS_ONLY)
    sc = fc.load_scenario(tmp_path / "s.yaml")
    summary = run_to_folder(sc, tmp_path / "out")
    text = _print(summary, sc, 100)
    assert "Left out, 0 in every trial: repeat revenue, cancellations." in text
    assert "repeat\n" not in text and "cancellations │" not in text and "MRR" in text
    assert "total bookings = new deals (Revenue above) + renewals;" in text
    assert "After the sale: each month's mean" in text  # no currency: no unit in brackets
    rows = _after_sale_rows(text)
    m = summary["metrics"]
    assert rows["2027-02-01"]["means"] == [console_module._money(m[n]["by_period"][1]["mean"]) for n in
                                           ("recognised_revenue", "total_bookings", "renewal_bookings")] + [
        console_module._count(m["active_customers"]["by_period"][1]["mean"]),
        console_module._money(m["mrr"]["by_period"][1]["mean"]),
        console_module._count(m["new_customers"]["by_period"][1]["mean"]),
        console_module._count(m["churned_customers"]["by_period"][1]["mean"])]


def test_total_bookings_without_customers_shows_the_money_alone():
    """With F11's stage values and no customers a run has total_bookings (and stage_revenue)
    alone: the money table shows them, and nothing about customers appears."""
    summary = json.loads((GOLDEN / "saas-quarter.json").read_text())["summary"]
    m = summary["metrics"]
    m["total_bookings"] = json.loads(json.dumps(m["revenue"]))
    m["stage_revenue"] = json.loads(json.dumps(m["won_deals"]))
    sc = fc.load_scenario(SCENARIOS / "saas-quarter.yaml")
    text = _print(summary, sc, 100)
    assert "Money in each month" in text and "Customers" not in text and "Left out" not in text
    assert "total bookings = new deals (Revenue above) + stage revenue.\n" in text
    rows = _after_sale_rows(text[:text.index("Commission, all reps")])
    money = console_module._money
    assert rows["total"]["means"] == [money(m["total_bookings"]["total"]["mean"]),
                                      money(m["stage_revenue"]["total"]["mean"])]
    page = report_module.render_html(summary, {"revenue": np.ones((10, 3))}, "now")
    assert 'class="chart after-sale bookings"' in page and "after-sale customers" not in page
    assert "Flows: summed over the horizon" in page and "Stocks:" not in page and "<td>stage revenue</td>" in page
    markdown = report_module.render_markdown(summary, "now")
    assert "| month | total bookings |" in markdown and "Stocks" not in markdown and "active customers" not in markdown


def test_run_prints_the_after_sale_tables(after_sale, tmp_path):
    folder, _, _ = after_sale
    scenario = folder.parent / "after-sale.yaml"
    res = CliRunner().invoke(main, ["run", str(scenario), "--out", str(tmp_path / "o"), "--trials", "50",
                                    "--report"])
    assert res.exit_code == 0, res.output
    assert "After the sale [EUR]" in res.output and "Customers" in res.output
    assert "After the sale" in (tmp_path / "o" / "report.html").read_text()


# --- report ----------------------------------------------------------------------------------

def test_report_charts_recognised_revenue_against_bookings_and_active_customers(after_sale):
    folder, _, summary = after_sale
    page = (folder / "report.html").read_text()
    m = summary["metrics"]
    for part in ("<h2>After the sale</h2>", "Recognised revenue against bookings per month EUR",
                 'class="chart after-sale bookings"', 'class="chart after-sale customers"',
                 "Active customers at the end of each month", ">recognised revenue</text>",
                 ">new-deal bookings (revenue)</text>", ">total bookings</text>", ">active customers</text>",
                 ">EUR per month</text>", ">customers</text>", ">at the end of each month</text>",
                 "lines: P50 · bands: P10–P90", ">Jan 2027</text>", "<td>2027-01-31</td>", "<td>2027-06-30</td>",
                 "table.after-sale td{white-space:nowrap}",
                 "Flows: summed over the horizon, 2027-01-01 to 2027-06-30",
                 "Stocks: levels at the end of the horizon, 2027-06-30 (never summed over periods)"):
        assert part in page, part
    money, count = report_module.money, report_module._count1
    assert not re.search(r"\bnan\b|\binf\b", page, re.IGNORECASE)
    for label, value in (("Revenue (new-deal bookings) P50", money(m["revenue"]["total"]["p50"])),
                         ("Recognised revenue P50", money(m["recognised_revenue"]["total"]["p50"])),
                         ("Total bookings P50", money(m["total_bookings"]["total"]["p50"])),
                         ("Active customers on 2027-06-30 P50", f"{m['active_customers']['total']['p50']:,.0f}")):
        assert f"<div>{label}<b>{value}</b></div>" in page, label
    bookings = re.search(r'<svg class="chart after-sale bookings".*?</svg>', page).group(0)
    assert bookings.count('class="band"') == 3 and bookings.count('class="median"') == 3
    for line in re.findall(r'class="median"[^>]*points="([^"]*)"', bookings):
        assert len(line.split()) == 6  # one point per month
    customers = re.search(r'<svg class="chart after-sale customers".*?</svg>', page).group(0)
    assert customers.count("<circle") == 6  # a stock: a dot at each month's end
    # the tables carry summary.json's numbers: totals of flows, stocks at the end
    for name, label in (("recognised_revenue", "recognised revenue"), ("renewal_bookings", "renewals"),
                        ("repeat_revenue", "repeat revenue"), ("cancellations", "cancellations"),
                        ("total_bookings", "total bookings"), ("mrr", "MRR")):
        t = m[name]["total"]
        assert (f"<tr><td>{label}</td><td>EUR</td><td>{money(t['mean'])}</td><td>{money(t['mean_ci_low'])} – "
                f"{money(t['mean_ci_high'])}</td><td>{money(t['p10'])}</td><td>{money(t['p50'])}</td>"
                f"<td>{money(t['p90'])}</td></tr>") in page, name
    for name, label in (("new_customers", "new customers"), ("churned_customers", "churned customers"),
                        ("active_customers", "active customers"), ("regular_customers", "regular customers")):
        t = m[name]["total"]
        assert f"<tr><td>{label}</td><td>customers</td><td>{count(t['mean'])}</td>" in page, name
    assert page.index("Flows: summed") < page.index("<td>total bookings</td><td>EUR") < page.index("Stocks: levels") \
        < page.index("<td>active customers</td><td>customers")
    jan, total = m["recognised_revenue"]["by_period"][0], m["recognised_revenue"]["total"]
    assert f"<tr><td>Jan 2027</td><td>{money(jan['mean'])}</td><td>{money(jan['p10'])} – {money(jan['p90'])}</td>" \
        in page
    assert f"<tr><td>total</td><td>{money(total['mean'])}</td>" in page
    act = m["active_customers"]["by_period"][5]
    assert (f"<tr><td>2027-06-30</td><td>{count(act['mean'])}</td><td>{count(act['p10'])}</td>"
            f"<td>{count(act['p50'])}</td><td>{count(act['p90'])}</td>") in page


def test_markdown_report_has_the_after_sale_tables(after_sale):
    folder, _, summary = after_sale
    text = (folder / "report.md").read_text()
    m = summary["metrics"]
    money, count = report_module.money, report_module._count1
    assert "## After the sale" in text
    assert "| month | recognised revenue | total bookings | active customers at month end | MRR at month end |" in text
    r, a = m["recognised_revenue"]["by_period"][0], m["active_customers"]["by_period"][0]
    assert re.search(rf"^\| Jan 2027 \| {re.escape(money(r['mean']))} \({re.escape(money(r['p10']))} – "
                     rf"{re.escape(money(r['p90']))}\) \| .* \| {re.escape(count(a['mean']))} ", text, re.MULTILINE)
    t = m["total_bookings"]["total"]
    assert f"| total bookings | EUR | {money(t['mean'])} |" in text
    assert f"| active customers | customers | {count(m['active_customers']['total']['mean'])} |" in text
    assert "Totals. Flows: summed over the horizon" in text and "Totals. Stocks: levels at the end" in text
    assert "Customer lifetime value (EUR)." in text
    for seg, st in summary["clv"].items():
        assert f"| {report_module.md(seg)} | {money(st['mean'])} | {money(st['p10'])} |" in text


def test_report_of_a_malformed_after_sale_metric_is_exit_2_naming_the_file(after_sale, tmp_path):
    folder, _, _ = after_sale
    copy = tmp_path / "run"
    shutil.copytree(folder, copy)
    summary = json.loads((copy / "summary.json").read_text())
    summary["metrics"]["mrr"]["by_period"][2]["p90"] = "a lot"
    (copy / "summary.json").write_text(json.dumps(summary))
    res = CliRunner().invoke(main, ["report", str(copy)])
    assert res.exit_code == 2 and "metrics.mrr.by_period[2].p90 must be a finite number" in res.output


def test_period_names_read_as_dates():
    assert period_name("2027-01-01", "month") == "Jan 2027" and period_name("2027-02-15", "month") == "Feb 2027"
    assert period_name("2027-07-01", "quarter") == "Q3 2027"
    assert period_name("2027-01-04", "week") == "4 Jan 2027" and period_name("2027-03-09", "day") == "9 Mar 2027"
    assert period_name("<b>", "month") == "<b>"  # not a date: as it is (escaped where it is shown)
    assert period_end_name("2027-02-01", "month", "2027-12-31") == "2027-02-28"
    assert period_end_name("2027-10-01", "quarter", "2027-11-15") == "2027-11-15"  # cut to the horizon
    assert period_end_name("2027-01-04", "week", "2027-12-31") == "2027-01-10"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(not CHROMIUM and os.environ.get("FORECASTER_REQUIRE_BROWSER") != "1",
                    reason="no chromium here (.ci/run installs it and requires this test)")
def test_after_sale_report_renders_in_headless_chromium_without_console_errors(after_sale, tmp_path):
    assert CHROMIUM, "FORECASTER_REQUIRE_BROWSER=1 but chromium is not installed"
    folder, _, _ = after_sale
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    url = (folder / "report.html").as_uri()
    shot = tmp_path / "report.png"
    run = subprocess.run([CHROMIUM, *flags, "--window-size=1000,4000", f"--screenshot={shot}", url],
                         capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<svg") >= 5 and 'class="chart after-sale customers"' in dom


# --- batch -----------------------------------------------------------------------------------

def test_batch_csv_has_the_after_sale_metrics_with_the_same_columns(after_sale, tmp_path):
    folder = tmp_path / "scenarios"
    folder.mkdir()
    shutil.copy(after_sale[0].parent / "after-sale.yaml", folder)
    shutil.copy(after_sale[0].parent / "deals.csv", folder)
    shutil.copy(SCENARIOS / "minimal.yaml", folder)
    out = tmp_path / "out"
    manifest = run_batch(folder, out, trials=60)
    assert {k: v["status"] for k, v in manifest["scenarios"].items()} == {"after-sale": "ok", "minimal": "ok"}
    with (out / "summaries.csv").open() as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["scenario", "metric", "period", *STATS, "unit", "period_end", "kind"]
        rows = list(reader)
    summary = json.loads((out / "after-sale" / "summary.json").read_text())
    mine = [r for r in rows if r["scenario"] == "after-sale"]
    # each segment's totals, as summary.json has them
    by_segment = [r for r in mine if r["metric"].startswith("segment.")]
    assert [r["metric"] for r in by_segment] == [f"segment.{seg}.{m}" for seg, block in summary["segments"].items()
                                                 for m in block]
    for r in by_segment:
        _, seg, metric = r["metric"].split(".")
        assert r["period"] == "total" and float(r["mean"]) == summary["segments"][seg][metric]["total"]["mean"]
        assert r["kind"] == "flow"
    mine = [r for r in mine if not r["metric"].startswith("segment.")]
    assert [r["metric"] for r in mine if r["period"] == "total" and not r["metric"].startswith("clv.")] \
        == list(summary["metrics"])
    clv = {r["metric"]: r for r in mine if r["metric"].startswith("clv.")}  # per segment, a total row only
    assert set(clv) == {f"clv.{seg}" for seg in summary["clv"]} and clv
    for seg, st in summary["clv"].items():
        assert clv[f"clv.{seg}"]["period"] == "total" and float(clv[f"clv.{seg}"]["mean"]) == st["mean"]
    mine = [r for r in mine if not r["metric"].startswith("clv.")]
    assert set(MONEY + CUSTOMERS + ("repeat_customers", "regular_customers")) <= {r["metric"] for r in mine}
    for r in mine:
        m = summary["metrics"][r["metric"]]
        stats = m["total"] if r["period"] == "total" else next(p for p in m["by_period"] if p["period"] == r["period"])
        assert {k: float(r[k]) for k in STATS} == {k: float(stats[k]) for k in STATS}
    assert len(mine) == len(summary["metrics"]) * 7  # the total and the 6 months
    # a stock's total is its level at the end: the last month's, not a sum
    end = {r["period"]: float(r["mean"]) for r in mine if r["metric"] == "active_customers"}
    assert end["total"] == end["2027-06-01"]
    assert {r["metric"] for r in rows if r["scenario"] == "minimal"} \
        == {"revenue", "won_deals", "segment.direct.revenue", "segment.direct.won_deals"}
    # each row says what it counts: a batch mixes currencies and counts in one column
    unit = {r["metric"]: r["unit"] for r in rows if r["scenario"] == "after-sale"}
    assert {m: unit[m] for m in (*MONEY, "mrr", "revenue")} == dict.fromkeys((*MONEY, "mrr", "revenue"), "EUR")
    assert {m: unit[m] for m in ("active_customers", "new_customers", "churned_customers")} \
        == dict.fromkeys(("active_customers", "new_customers", "churned_customers"), "customers")
    assert unit["won_deals"] == "deals" and {unit[f"clv.{seg}"] for seg in summary["clv"]} == {"EUR"}
    assert {(r["metric"].rpartition(".")[2], r["unit"]) for r in rows if r["scenario"] == "minimal"} \
        == {("revenue", "currency"), ("won_deals", "deals")}  # a scenario without a currency says so
    # a BI tool tells a stock's total (its level at the end) from a flow's (the sum) without summary.json
    kind = {r["metric"]: r["kind"] for r in rows if r["scenario"] == "after-sale"}
    assert kind["active_customers"] == kind["mrr"] == "stock" and kind["revenue"] == kind["new_customers"] == "flow"
    assert {kind[f"clv.{seg}"] for seg in summary["clv"]} == {"lifetime"}
    ends = {(r["metric"], r["period"]): r["period_end"] for r in rows if r["scenario"] == "after-sale"}
    assert ends[("revenue", "2027-01-01")] == "2027-01-31" and ends[("revenue", "2027-02-01")] == "2027-02-28"
    assert ends[("active_customers", "total")] == "2027-06-30"
    assert "After the sale" in (out / "after-sale" / "report.html").read_text()
    assert "After the sale" not in (out / "minimal" / "report.html").read_text()


# --- a scenario without customers: exactly as before -------------------------------------------

EXAMPLES = ("minimal", "saas-quarter", "enterprise-long-cycle", "hardware-quarter-end", "ecommerce-channels")


def render_without_customers(case: str, console_mod=console_module, report_mod=report_module) -> dict:
    """The console (100 and 120 columns), report.md and a digest of report.html of an example
    scenario's golden summary (tests/golden), rendered by ``console_mod`` and ``report_mod``;
    the per-trial revenue the page charts is a fixed array."""
    summary = json.loads((GOLDEN / f"{case}.json").read_text())["summary"]
    sc = fc.load_scenario(SCENARIOS / f"{case}.yaml")
    out = {}
    for width in (100, 120):
        buf = io.StringIO()
        console_mod.print_summary(summary, sc, console=console_mod.Console(file=buf, width=width, color_system=None))
        out[f"console{width}"] = buf.getvalue()
    periods = len(summary["metrics"]["revenue"]["by_period"])
    revenue = (np.arange(200)[:, None] % 17) * 1000.0 + np.arange(periods)[None, :] * 250.0
    out["markdown"] = report_mod.render_markdown(summary, "2027-01-01 00:00 UTC")
    page = report_mod.render_html(summary, {"revenue": revenue}, "2027-01-01 00:00 UTC")
    out["html_sha256"] = hashlib.sha256(page.encode()).hexdigest()
    return out


@pytest.mark.parametrize("case", EXAMPLES)
def test_a_scenario_without_customers_shows_exactly_what_it_showed_before(case):
    """Against the output of the console and report before the after-sale views (commit
    f393aba); rewrite with FORECASTER_WRITE_GOLDEN=1 when a change to them is meant."""
    got = render_without_customers(case)
    assert "After the sale" not in got["console120"] + got["markdown"]
    if os.environ.get("FORECASTER_WRITE_GOLDEN") == "1":
        golden = json.loads(UNCHANGED.read_text()) if UNCHANGED.exists() else {}
        golden[case] = got
        UNCHANGED.parent.mkdir(exist_ok=True)
        UNCHANGED.write_text(json.dumps(golden, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
        pytest.fail(f"rewrote {UNCHANGED.name} for {case}; run again without FORECASTER_WRITE_GOLDEN")
    assert got == json.loads(UNCHANGED.read_text())[case]


def test_a_scenario_without_customers_never_loads_the_after_sale_code(tmp_path):
    code = textwrap.dedent(f"""
        import io, json, sys
        import forecaster as fc
        from forecaster.present.console import Console, print_summary
        summary = json.loads(open({str(GOLDEN / 'minimal.json')!r}).read())["summary"]
        print_summary(summary, fc.load_scenario({str(SCENARIOS / 'minimal.yaml')!r}),
                      console=Console(file=io.StringIO(), width=120))
        print("forecaster.results.layout" in sys.modules)
        """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "False", res.stderr
