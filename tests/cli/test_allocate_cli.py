"""``forecaster allocate`` as a user meets it: what it prints and writes, and its bad input."""
from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from conftest import SCENARIOS

from forecaster.cli import main

EXAMPLE = SCENARIOS / "channel-budgets.yaml"


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)


def test_allocate_prints_the_splits_and_writes_json_and_page(tmp_path):
    out = tmp_path / "o"
    res = invoke("allocate", EXAMPLE, "--total-budget", "400000", "--trials", 300, "--out", out, "--min",
                 "events=20000")
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    for fragment in ("400,000 USD a month over 3 bought segments, maximising the expected total revenue",
                     "Monthly budget by segment [USD per month]", "current (the file's)", "20,000 – no max",
                     "Forecast of total revenue over the horizon [USD]", "best − current, paired trial by trial",
                     "Marginal return of 1,000 USD more a month: the mean change of the total over the horizon [USD]",
                     "splits evaluated with",
                     "the file's budgets sum to 500,000.00, not --total-budget 400,000.00",
                     "budget_by_month months are scaled by the factor", "allocate.json and"):
        assert fragment in text, fragment
    summary = json.loads((out / "allocate.json").read_text())
    assert sum(summary["best"]["split"].values()) == pytest.approx(400_000)
    assert summary["best"]["split"]["events"] >= 20_000
    assert summary["current"]["split"] == {"search": 250_000, "social": 150_000, "events": 100_000}
    assert summary["current"]["matches_total"] is False and summary["current"]["sum"] == 500_000
    assert set(summary["marginal_return"]) == {"search", "social", "events"}
    assert summary["search"]["runs"] > 0 and summary["trials"] == 300
    # the printed numbers are the file's
    best_mean = f"{summary['best']['forecast']['mean']:,.0f}"
    assert best_mean in res.output
    page = (out / "allocate.html").read_text()
    assert page.count('<svg class="chart response"') == 3
    for label in ("monthly budget [USD per month]", "leads per month", "P10–P90 over the trials", "best budget",
                  "current budget 250,000"):
        assert label in page, label
    assert not [p for p in out.iterdir() if p.name not in ("allocate.json", "allocate.html")]


def test_quantile_and_metric_are_reported(tmp_path):
    res = invoke("allocate", EXAMPLE, "--total-budget", "500000", "--trials", 200, "--quantile", "P10", "--metric",
                 "won_deals", "--max", "search=200000", "--quiet", "--out", tmp_path / "o")
    assert res.exit_code == 0 and res.output == ""
    summary = json.loads((tmp_path / "o" / "allocate.json").read_text())
    assert summary["objective"] == "p10" and summary["metric"] == "won_deals" and summary["unit"] == "deals"
    assert summary["best"]["split"]["search"] <= 200_000 + 1e-6
    assert "objective" in summary["difference"]


def test_without_out_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = invoke("allocate", EXAMPLE, "--total-budget", "500000", "--trials", 100)
    assert res.exit_code == 0, res.output
    assert "P10 of" not in res.output and "expected total revenue" in " ".join(res.output.split())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--total-budget", "0"], "must be a monthly budget > 0; got '0'"),
    (["--total-budget", "-5"], "must be a monthly budget > 0"),
    (["--total-budget", "lots"], "expected a monthly budget such as 500000"),
    (["--total-budget", "500000", "--quantile", "10%"], "expected P followed by a percentage"),
    (["--total-budget", "500000", "--min", "radio=1000"], "--min radio: .*has no segment 'radio'"),
    (["--total-budget", "500000", "--max", "serch=1000"], "did you mean 'search'"),
    (["--total-budget", "500000", "--min", "organic=1000"], "segment organic .* does not buy its leads"),
    (["--total-budget", "500000", "--min", "search=300000", "--min", "events=300000"],
     "the minimums sum to 600,000, more than --total-budget 500,000"),
    (["--total-budget", "500000", "--max", "search=1", "--max", "social=1", "--max", "events=1"],
     "they sum to 3, less than --total-budget 500,000"),
    (["--total-budget", "500000", "--min", "search"], "expected SEGMENT=AMOUNT"),
    (["--total-budget", "500000", "--metric", "total_bookings"], "metric total_bookings is not available"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "o"
    res = CliRunner().invoke(main, ["allocate", str(EXAMPLE), *args, "--trials", "50", "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert re.search(message, " ".join(res.output.split())), res.output
    assert "Traceback" not in res.output
    assert not out.exists()


def test_a_scenario_without_bought_segments(tmp_path):
    res = CliRunner().invoke(main, ["allocate", str(SCENARIOS / "minimal.yaml"), "--total-budget", "1000", "--out",
                                    str(tmp_path / "o")])
    assert res.exit_code == 2 and "no segment buys its leads" in res.output and "minimal.yaml" in res.output
    assert not (tmp_path / "o").exists()
