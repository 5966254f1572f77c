"""v2 D in the console and the report: each rep's spif, clawback, net commission, payout,
draw balance, draws and P(net < draws), and the commission expense by period, read from the
run's own summary; a plan without the extras shows none of it."""
from __future__ import annotations

import io

from conftest import SCENARIOS

import forecaster as fc
from forecaster.present.console import Console, print_summary
from forecaster.present.report import render_html, render_markdown
from forecaster.results.outputs import run_to_folder


def _printed(summary, scenario) -> str:
    buf = io.StringIO()
    print_summary(summary, scenario, Console(file=buf, width=160))
    return buf.getvalue()


def test_the_extras_are_shown_per_rep_with_the_commission_expense(tmp_path):
    sc = fc.load_scenario(SCENARIOS / "saas-commission-plan.yaml").with_run(trials=200, seed=2)
    run_to_folder(sc, tmp_path)
    summary = __import__("json").loads((tmp_path / "summary.json").read_text())
    text = _printed(summary, sc)
    assert "Commission extras by rep" in text and "P(net < draws)" in text and "Commission expense" in text
    nia = summary["reps"]["nia"]
    extras = text[text.index("Commission extras by rep"):]
    line = next(row for row in extras.splitlines() if row.startswith("nia"))
    assert f"{nia['draw']['probability_net_below']:.1%}" in line and f"{nia['payout']['total']['mean']:,.0f}" in line
    html = render_html(summary, {"revenue": __import__("numpy").zeros((200, 6))}, "now")
    assert "Spifs, clawbacks and draws" in html and "Commission expense (net commission, amortised)" in html
    assert "clawback after end" in html
    render_markdown(summary, "now")


def test_a_plan_without_the_extras_shows_none_of_them(tmp_path):
    sc = fc.load_scenario(SCENARIOS / "saas-quarter.yaml").with_run(trials=200, seed=2)
    summary = fc.summarize(fc.simulate(sc), sc)
    assert not {"spif", "clawback", "net_commission", "payout", "commission_expense"} & set(summary["metrics"])
    assert all(set(r) <= {"quota", "bookings", "commission", "quota_attainment"} for r in summary["reps"].values())
    text = _printed(summary, sc)
    assert "Commission extras" not in text and "Commission expense" not in text
