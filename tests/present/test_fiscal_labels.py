"""Fiscal quarters are named as finance names them (FY27 Q1) in the console, the report and
the commission table; compare refuses quarters of two different fiscal years."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from forecaster.analysis.compare import compare
from forecaster.errors import ScenarioError
from forecaster.present.console import print_summary, quota_chances
from forecaster.present.report import period_end_name, period_name, render_markdown
from forecaster.results.dataset import simulate
from forecaster.results.summary import summarize
from forecaster.scenario.loading import load_scenario

ROOT = Path(__file__).resolve().parents[2]


def _scenario(tmp_path: Path, file: str = "s.yaml", **changes) -> Path:
    doc = yaml.safe_load((ROOT / "scenarios" / "saas-quarter.yaml").read_text())
    doc.update({"end": "2027-12-31", "report_by": "quarter", "trials": 300, **changes})
    (tmp_path / file).write_text(yaml.safe_dump(doc))
    (tmp_path / doc["pipeline"]["file"]).write_bytes((ROOT / "scenarios" / doc["pipeline"]["file"]).read_bytes())
    return tmp_path / file


def test_period_names_follow_the_fiscal_year():
    assert period_name("2027-02-01", "quarter", 2) == "FY28 Q1"
    assert period_name("2027-01-01", "quarter", 2) == "FY27 Q4"
    assert period_name("2027-01-01", "quarter") == "Q1 2027"
    assert period_name("2027-02-01", "month", 2) == "Feb 2027"
    assert period_end_name("2027-02-01", "quarter", "2027-12-31", 2) == "2027-04-30"
    assert period_end_name("2027-02-01", "quarter", "2027-12-31") == "2027-03-31"


def test_console_and_report_name_fiscal_quarters(tmp_path):
    sc = load_scenario(_scenario(tmp_path, fiscal_year_start=2))
    summary = summarize(simulate(sc), sc)
    assert summary["horizon"]["fiscal_year_start"] == 2
    assert [p["period"] for p in summary["metrics"]["revenue"]["by_period"]] == [
        "2027-01-01", "2027-02-01", "2027-05-01", "2027-08-01", "2027-11-01"]
    out = io.StringIO()
    print_summary(summary, sc, Console(file=out, width=200))
    text = out.getvalue()
    assert "2027-02-01 FY28 Q1" in text and "2027-01-01 FY27 Q4" in text
    # each rep's chance of quota is named by its fiscal quarter, in order
    row = next(line for line in text.splitlines() if line.startswith("ana "))
    assert re.findall(r"FY2\d Q\d", row) == ["FY27 Q4", "FY28 Q1", "FY28 Q2", "FY28 Q3", "FY28 Q4"]
    markdown = render_markdown(summary, "now")
    assert "| 2027-08-01 FY28 Q3 |" in markdown
    assert "FY27 Q4: 0%, FY28 Q1: " in markdown  # each rep's chances, named
    assert quota_chances(summary["reps"]["ana"], summary["horizon"]).startswith("FY27 Q4: 0%, FY28 Q1: ")  # html


def test_calendar_quarters_are_named_as_before(tmp_path):
    sc = load_scenario(_scenario(tmp_path))
    summary = summarize(simulate(sc), sc)
    out = io.StringIO()
    print_summary(summary, sc, Console(file=out, width=200))
    assert "FY" not in out.getvalue()
    row = next(line for line in out.getvalue().splitlines() if line.startswith("ana "))
    assert re.findall(r"Q\d 2027", row) == ["Q1 2027", "Q2 2027", "Q3 2027", "Q4 2027"]


def test_compare_refuses_quarters_of_two_fiscal_years(tmp_path):
    base = load_scenario(_scenario(tmp_path, "a.yaml", fiscal_year_start=2))
    other = load_scenario(_scenario(tmp_path, "b.yaml", name="other", fiscal_year_start=4))
    with pytest.raises(ScenarioError) as err:
        compare(base, [other], trials=50)
    assert "fiscal_year_start" in str(err.value)


def test_huge_amounts_are_never_cut_short_in_the_console(tmp_path):
    """Review: amounts of 1e15 printed as '3,700,000,000,000,…' in a 120-column console (a
    number with its last digits hidden). They fold onto a second line instead."""
    sc = load_scenario(_scenario(tmp_path))
    summary = summarize(simulate(sc), sc)
    for item in [summary["metrics"]["revenue"]["total"], *summary["metrics"]["revenue"]["by_period"]]:
        for key in ("mean", "mean_ci_low", "mean_ci_high", "p10", "p50", "p90"):
            item[key] = 3_700_000_000_000_123.0  # below 2**53: exact
    out = io.StringIO()
    print_summary(summary, sc, Console(file=out, width=120))
    text = out.getvalue()
    assert "…" not in text
    rows: list[list[list[str]]] = []  # each row's cells, as their pieces on the lines it takes
    for line in text.split("Won deals")[0].split("━\n", 1)[1].splitlines():
        cells = [c.strip() for c in line.replace("┼", "│").split("│")]
        if len(cells) < 6 or set("".join(cells)) <= set("─"):
            continue
        if cells[0]:  # a period's first line
            rows.append([[] for _ in cells])
        for piece, cell in zip(rows[-1], cells):
            piece.append(cell)
    assert len(rows) == len(summary["metrics"]["revenue"]["by_period"]) + 1
    for row in rows:  # every cell holds the whole number, folded onto the lines below if need be
        assert all("3,700,000,000,000,123" in "".join(pieces) for pieces in row[1:]), row
