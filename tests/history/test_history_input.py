"""Reading real CRM exports on the command line: --outcome, --column, degenerate histories,
and calibrate never writing a scenario that ``validate`` refuses."""
from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from datetime import date, timedelta

import numpy as np
import pytest
from click.testing import CliRunner

from forecaster.cli import main

AS_OF = date(2026, 6, 30)
OPEN_STAGES = ("Prospecting", "Qualification", "Needs Analysis", "Negotiation/Review")
CUSTOM_STAGES = ("Discovery", "Demo Booked", "Security Review", "Legal/Procurement")
"""Open stages of a customised sales process, which no preset maps."""


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_valid(path):
    res = invoke("validate", path)
    assert res.exit_code == 0 and "valid" in res.output, res.output


def salesforce_export(path, n=500, seed=3, open_stages=OPEN_STAGES):
    """A Salesforce-like opportunity export known on AS_OF: a BOM, CRLF line ends, times after
    the dates, open deals in the standard open stages with an expected CloseDate (some in the
    past), a quoted name with a comma, and blank rows at the end. Returns the open stages'
    row counts."""
    rng = np.random.default_rng(seed)
    first = AS_OF - timedelta(days=540)
    rows = ["Id,Name,StageName,CreatedDate,CloseDate,Amount,Type"]
    opens = Counter()
    for i in range(n):
        created = first + timedelta(days=int(rng.integers(0, 540)))
        days = int(rng.lognormal(np.log(30), 0.6))
        end = created + timedelta(days=days)
        amount = round(float(rng.lognormal(9, 0.5)), 2)
        if end > AS_OF:
            stage = open_stages[int(rng.integers(0, len(open_stages)))]
            opens[stage] += 1
            close = created + timedelta(days=int(rng.integers(5, 60)))  # expected, not an event
        else:
            stage = "Closed Won" if rng.random() < 0.35 else "Closed Lost"
            close = end
        rows.append(f'006{i:06d},"Acme, deal {i}",{stage},{created}T{i % 24:02d}:15:00.000Z,{close},{amount},'
                    "New Business")
    rows += [",,,,,,", ",,,,,,"]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode() + b"\r\n")
    return opens


# --- --outcome -----------------------------------------------------------------------------

def test_outcome_maps_the_open_stages_of_a_salesforce_export(tmp_path):
    # the standard open stages are the preset's (crm is salesforce's earlier name)
    standard = tmp_path / "standard.csv"
    salesforce_export(standard)
    res = invoke("calibrate", standard, "--preset", "crm", "--as-of", AS_OF, "-o", tmp_path / "std" / "q3.yaml")
    assert res.exit_code == 0, res.output
    # a customised process's open stages are named with --outcome, as the error says
    history = tmp_path / "opportunities.csv"
    opens = salesforce_export(history, open_stages=CUSTOM_STAGES)
    out = tmp_path / "cal" / "q3.yaml"
    res = invoke("calibrate", history, "--preset", "crm", "--as-of", AS_OF, "-o", out)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "column 'StageName' (the outcome) holds 4 values mapped to no outcome" in res.output
    for stage, count in opens.items():
        assert re.search(rf"'{re.escape(stage)}': {count} rows \(first on line \d+\)", res.output), stage
    assert not out.parent.exists()
    # the message says exactly what to type
    typed = [line.strip() for line in res.output.splitlines() if line.strip().startswith("--outcome")]
    assert len(typed) == 1 and set(shlex.split(typed[0])[1].partition("=")[2].split(",")) == set(CUSTOM_STAGES)
    res = invoke("calibrate", history, "--preset", "crm", "--as-of", AS_OF, "-o", out, *shlex.split(typed[0]))
    assert res.exit_code == 0, res.output
    assert_valid(out)
    pipeline = (tmp_path / "cal" / "q3-pipeline.csv").read_text().splitlines()
    # every open deal is in the pipeline, also those whose expected close date has passed
    assert len(pipeline) - 1 == sum(opens.values())
    # matched case-insensitively, surrounding spaces ignored
    res = invoke("calibrate", history, "--preset", "crm", "--as-of", AS_OF, "-o", tmp_path / "b" / "q3.yaml",
                 "--outcome", "open= discovery , DEMO BOOKED,security review",
                 "--outcome", "OPEN=legal/procurement ")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "b" / "q3.yaml").read_text().split("\n", 1)[1] == out.read_text().split("\n", 1)[1]


def test_outcome_wins_over_the_preset(tmp_path):
    from forecaster.history.readers import load_deals, parse_outcomes

    history = tmp_path / "opportunities.csv"
    salesforce_export(history, n=60)
    deals, _, _ = load_deals(history, "crm", outcomes=parse_outcomes(
        ["open=" + ",".join(OPEN_STAGES), "lost=Closed Won"]))  # a perverse, but the user's, map
    assert {d.outcome for d in deals} == {"open", "lost"}
    assert all(d.closed is None for d in deals if d.outcome == "open")  # an open deal's CloseDate is a forecast


def test_unmapped_values_are_counted_and_the_likely_column_questioned(tmp_path):
    from forecaster.history.readers import parse_outcomes

    history = tmp_path / "h.csv"
    rows = ["deal_id,lead,outcome,closed,amount,rep"]
    rows += [f"d{i},2026-01-0{1 + i % 9},{'won' if i % 3 else 'Closed Lost'},2026-02-01,100,rep{i}" for i in range(40)]
    rows += ["x1,2026-01-05,,2026-02-01,100,rep0", 'x2,2026-01-05,"Closed, Duplicate",2026-02-01,,rep0']
    history.write_text("\n".join(rows) + "\n")
    res = invoke("calibrate", history, "--stages", "lead", "--as-of", "2026-03-31", "-o", tmp_path / "o" / "s.yaml")
    assert res.exit_code == 2
    assert "holds 3 values mapped to no outcome (16 rows)" in res.output
    assert "'Closed Lost': 14 rows (first on line 2)" in res.output
    assert "(blank): 1 row (first on line 42)" in res.output and "a blank outcome cannot be mapped" in res.output
    assert "'Closed, Duplicate': 1 row (first on line 43)" in res.output
    typed = [line.strip() for line in res.output.splitlines() if line.strip().startswith("--outcome")]
    assert typed == ["--outcome 'lost=Closed Lost,\"Closed, Duplicate\"'"]  # a value with a comma, CSV-quoted
    assert parse_outcomes(shlex.split(typed[0])[1:]) == {"closed lost": "lost", "closed, duplicate": "lost"}
    res = invoke("calibrate", history, "--stages", "lead", "--as-of", "2026-03-31", "-o", tmp_path / "o" / "s.yaml",
                 "--column", "outcome=rep")
    assert res.exit_code == 2
    assert "holds 40 values mapped to no outcome" in res.output and "and 30 more values (30 rows)" in res.output
    assert "is 'rep' the outcome column? If not, name it with --column outcome=SOURCE" in res.output


@pytest.mark.parametrize("command", ["calibrate", "backtest"])
@pytest.mark.parametrize("item, found", [
    ("open", "which has no '='"),
    ("maybe=Stalled", "whose outcome 'maybe' is not one of won, lost, open"),
    ("open=", "which names no values"),
    ("open= , ", "which names no values"),
])
def test_malformed_outcome_is_a_usage_error(tmp_path, command, item, found):
    history = tmp_path / "h.csv"
    history.write_text("deal_id,lead,outcome,closed,amount\nd1,2026-01-01,won,2026-01-09,5\n")
    extra = ["--as-of", "2026-03-31", "-o", tmp_path / "o" / "s.yaml"] if command == "calibrate" else \
        ["--cutoffs", "2026-01-31", "--out", tmp_path / "o"]
    res = invoke(command, history, "--stages", "lead", *extra, "--outcome", item)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "Invalid value for '--outcome'" in res.output
    assert "expected OUTCOME=VALUES" in res.output and repr(item) in res.output and found in res.output
    assert not (tmp_path / "o").exists()


def test_one_value_mapped_to_two_outcomes_is_a_usage_error(tmp_path):
    history = tmp_path / "h.csv"
    history.write_text("deal_id,lead,outcome,closed,amount\nd1,2026-01-01,won,2026-01-09,5\n")
    res = invoke("calibrate", history, "--stages", "lead", "--as-of", "2026-03-31", "-o", tmp_path / "s.yaml",
                 "--outcome", "won=Done", "--outcome", "lost=done")
    assert res.exit_code == 2 and "'done' is mapped to both won and lost" in res.output


# --- --column on backtest ------------------------------------------------------------------

def renamed_history(path, n=300, seed=4):
    """A one-stage history over 2025 whose columns have the CRM's own names."""
    rng = np.random.default_rng(seed)
    rows = ["Opportunity ID,Created,Result,Closed On,Value,Region"]
    for i in range(n):
        created = date(2025, 1, 1) + timedelta(days=int(rng.integers(0, 360)))
        closed = created + timedelta(days=int(rng.gamma(3.0, 6.0)))
        result = "won" if rng.random() < 0.4 else "lost"
        if closed > date(2025, 12, 31):
            rows.append(f"o{i},{created},open,,,{'north' if i % 2 else 'south'}")
        else:
            rows.append(f"o{i},{created},{result},{closed},{round(float(rng.lognormal(7, 0.4)), 2)},"
                        f"{'north' if i % 2 else 'south'}")
    path.write_text("\n".join(rows) + "\n")


def test_column_maps_the_history_for_backtest(tmp_path):
    history = tmp_path / "export.csv"
    renamed_history(history)
    common = [history, "--stages", "lead", "--cutoffs", "2025-08-31,2025-09-30", "--months", 2, "--trials", 100]
    res = invoke("backtest", *common, "--out", tmp_path / "bad")
    assert res.exit_code == 2 and "lacks deal_id (column 'deal_id')" in res.output
    assert "--column NAME=SOURCE" in res.output and not (tmp_path / "bad").exists()
    mapping = ["--column", "deal_id=Opportunity ID", "--column", "lead=Created", "--column", "outcome=Result",
               "--column", "closed=Closed On", "--column", "amount=Value"]
    res = invoke("backtest", *common, *mapping, "--out", tmp_path / "bt")
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "bt" / "backtest.json").read_text())
    assert [c["cutoff"] for c in result["cutoffs"]] == ["2025-08-31", "2025-09-30"]
    assert set(result["cutoffs"][0]["metrics"]) == {"won_deals", "revenue"}  # the amounts were read
    # the same mapping reads as on calibrate
    res = invoke("calibrate", history, "--stages", "lead", *mapping, "--column", "segment=Region",
                 "--as-of", "2025-09-30", "-o", tmp_path / "cal" / "s.yaml")
    assert res.exit_code == 0, res.output
    assert "north:" in (tmp_path / "cal" / "s.yaml").read_text()


@pytest.mark.parametrize("item, message", [
    ("deal_id", "expected NAME=SOURCE"),
    ("=Created", "expected NAME=SOURCE"),
    ("dael_id=Opportunity ID", ("'dael_id' is not one of our names; expected one of deal_id, segment, outcome, "
                                "closed, amount, currency, lead")),
    ("amount=Valeu", "lacks amount (column 'Valeu')"),  # named by the user: it must be there
])
def test_bad_column_items_are_clear(tmp_path, item, message):
    history = tmp_path / "export.csv"
    renamed_history(history, n=20)
    res = invoke("backtest", history, "--stages", "lead", "--cutoffs", "2025-08-31", "--out", tmp_path / "bt",
                 "--column", "deal_id=Opportunity ID", "--column", "lead=Created", "--column", "outcome=Result",
                 "--column", "closed=Closed On", "--column", item)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert message in res.output, res.output


# --- calibrate writes only what validate accepts -------------------------------------------

def test_an_invalid_calibration_is_refused_and_nothing_is_written(tmp_path, monkeypatch):
    import forecaster.history.calibrate as calibration

    real = calibration.calibrate

    def broken(*args, **kwargs):
        cal = real(*args, **kwargs)
        for seg in cal.scenario["segments"].values():
            seg["funnel"]["lead"]["days"] = {"dist": "lognormal", "median": 0.0, "sigma": 0.5}
        return cal

    monkeypatch.setattr(calibration, "calibrate", broken)
    history = tmp_path / "export.csv"
    renamed_history(history)
    mapping = ["--column", "deal_id=Opportunity ID", "--column", "lead=Created", "--column", "outcome=Result",
               "--column", "closed=Closed On", "--column", "amount=Value"]
    fresh = tmp_path / "fresh" / "s.yaml"
    res = invoke("calibrate", history, "--stages", "lead", *mapping, "--as-of", "2025-09-30", "-o", fresh)
    assert res.exit_code == 2 and "Traceback" not in res.output and "Internal error" not in res.output
    assert "the scenario calibrated on 2025-09-30 is not valid, so nothing was written" in res.output
    assert "segments.all.funnel.lead.days" in res.output and "median" in res.output
    assert not fresh.parent.exists()
    # a folder with an earlier scenario keeps it as it was, and gets no temporary files
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "s.yaml").write_text("earlier\n")
    res = invoke("calibrate", history, "--stages", "lead", *mapping, "--as-of", "2025-09-30", "-o", kept / "s.yaml")
    assert res.exit_code == 2
    assert sorted(p.name for p in kept.iterdir()) == ["s.yaml"] and (kept / "s.yaml").read_text() == "earlier\n"


def degenerate_history(path, convert_days, lost_days, n=400, seed=1):
    """Two segments (a, b) and two stages (lead, proposal) over 18 months before AS_OF: half
    the deals won, each step taking ``convert_days(rng)`` days, half lost from lead after
    ``lost_days(rng)`` days; ten deals still open on AS_OF."""
    rng = np.random.default_rng(seed)
    rows = ["deal_id,segment,lead,proposal,outcome,closed,amount"]
    first = AS_OF - timedelta(days=540)
    for i in range(n):
        lead = first + timedelta(days=int(rng.integers(0, 530)))
        seg = "a" if i % 2 else "b"
        if rng.random() < 0.5:
            proposal = lead + timedelta(days=convert_days(rng))
            rows.append(f"d{i},{seg},{lead},{proposal},won,{proposal + timedelta(days=convert_days(rng))},100")
        else:
            rows.append(f"d{i},{seg},{lead},,lost,{lead + timedelta(days=lost_days(rng))},")
    rows += [f"o{j},a,{AS_OF - timedelta(days=j % 3)},,open,," for j in range(10)]
    path.write_text("\n".join(rows) + "\n")


def calibrate_degenerate(tmp_path, convert_days, lost_days):
    history = tmp_path / "h.csv"
    degenerate_history(history, convert_days, lost_days)
    out = tmp_path / "o" / "s.yaml"
    res = invoke("calibrate", history, "--stages", "lead,proposal", "--segment-column", "segment", "--as-of", AS_OF,
                 "-o", out)
    assert res.exit_code == 0, res.output
    assert_valid(out)


def test_a_history_whose_conversions_are_all_same_day_calibrates_to_a_valid_scenario(tmp_path):
    calibrate_degenerate(tmp_path, lambda rng: 0, lambda rng: 0)


def test_a_history_whose_durations_are_all_0_or_1_day_calibrates_to_a_valid_scenario(tmp_path):
    calibrate_degenerate(tmp_path, lambda rng: int(rng.random() < 0.5), lambda rng: 0)


# --- what real files hold ------------------------------------------------------------------

def test_bad_rows_are_all_reported_with_their_lines(tmp_path):
    history = tmp_path / "h.csv"
    history.write_text("deal_id,lead,outcome,closed,amount\n"
                       "d1,2026-01-01,won,2026-01-09,100\n"
                       "d2,01/02/2026,won,2026-01-09,100\n"      # line 3: not ISO
                       "d3,2026-01-02,won,2026-02-30,100\n"      # line 4: no such day
                       "d4,2026-01-02,won,2026-01-09,1O0,200\n"  # line 5: not a number (and a stray cell)
                       "d1,2026-01-03,lost,2026-01-09,\n"        # line 6: d1 again, other values
                       "d6,2026-01-03,won,,100\n"                # line 7: won, never closed
                       ",2026-01-03,lost,2026-01-04,\n"          # line 8: no id
                       "d8,2026-01-03,won,2026-01-09,nan\n")     # line 9
    res = invoke("calibrate", history, "--stages", "lead", "--as-of", "2026-03-31", "-o", tmp_path / "o" / "s.yaml")
    assert res.exit_code == 2 and "Traceback" not in res.output
    out = res.output
    assert "h.csv: 8 problems" in out
    assert "h.csv:5: has 6 cells where the header has 5" in out  # the stray cell: a split amount?
    # a date with day and month in either order, the column's only one (issue 14)
    assert "h.csv:3: lead (column 'lead'): dates like '01/02/2026' can be read day first or month first" in out
    assert "h.csv:4: closed (column 'closed'): '2026-02-30' is not a date" in out
    assert "h.csv:5: amount (column 'amount'): expected an amount >= 0" in out and "found '1O0'" in out
    assert "h.csv:6: deal_id 'd1' is also on line 2, with other values; expected one row per deal" in out
    assert "h.csv:7: the deal is won (outcome 'won') but closed (column 'closed') is blank" in out
    assert "h.csv:8: deal_id (column 'deal_id') is blank" in out
    assert "h.csv:9: amount (column 'amount'): expected a plain number >= 0" in out  # 'nan', read as before
    assert not (tmp_path / "o").exists()


def test_a_row_whose_outcome_is_not_mapped_is_not_also_a_bad_row(tmp_path):
    """Until its outcome is mapped, a row's close date may be an open deal's forecast (before
    its lead date, or years ahead): the file is refused for the unmapped value alone, not also
    for rows that are fine once mapped, with --drop-bad-rows offered for them."""
    history = tmp_path / "h.csv"
    history.write_text("deal_id,lead,outcome,closed\nd1,2026-01-05,won,2026-01-20\n"
                       "d2,2026-01-10,In Progress,2026-01-01\nd3,2026-01-10,In Progress,2099-12-31\n"
                       "d4,2026-01-10,lost,2026-01-30\n")
    res = invoke("calibrate", history, "--stages", "lead", "--as-of", "2026-02-28", "-o", tmp_path / "o" / "s.yaml")
    assert res.exit_code == 2 and "'In Progress': 2 rows" in res.output, res.output
    assert "before lead" not in res.output and "drop-bad-rows" not in res.output and "2099" not in res.output


def test_odd_but_readable_rows_are_read_with_a_warning(tmp_path):
    history = tmp_path / "h.csv"
    rng = np.random.default_rng(8)
    rows = ["deal_id,lead,proposal,outcome,closed,amount"]
    for i in range(80):
        lead = date(2025, 10, 1) + timedelta(days=int(rng.integers(0, 90)))
        proposal = lead + timedelta(days=int(rng.gamma(2.0, 5.0)))
        closed = proposal + timedelta(days=int(rng.gamma(2.0, 8.0)))
        rows.append(f"d{i},{lead},{proposal},{'won' if i % 2 else 'lost'},{closed},{100 + i}")
    rows += [rows[5],                                           # line 82: the same row again
             "e1,2026-01-10 09:30,2026-01-05,won,2026-01-20,50",  # line 83: proposal before lead
             "e2,2026-01-10,2026-01-15,lost,2026-01-12T23:59:59+02:00,",   # line 84: closed before it entered
             '"e3","2026-01-10","","open","2026-01-01",""', ""]
    history.write_text("\n".join(rows) + "\n")
    res = invoke("calibrate", history, "--stages", "lead,proposal", "--as-of", "2026-02-28",
                 "-o", tmp_path / "o" / "s.yaml")
    assert res.exit_code == 0, res.output
    assert "h.csv: 1 row identical to an earlier row, read once (line 82)" in res.output
    assert "h.csv: 1 deal entered a stage before the one preceding it (line 83): those times count as 0 days" \
        in res.output
    assert "h.csv: 1 deal closed before entering their last stage (line 84)" in res.output
    assert_valid(tmp_path / "o" / "s.yaml")
    assert "e3,all,lead,2026-01-10" in (tmp_path / "o" / "s-pipeline.csv").read_text()


def test_a_file_that_is_not_utf8_is_a_clear_error(tmp_path):
    history = tmp_path / "h.csv"
    history.write_bytes("deal_id,lead,outcome,closed,amount\nd1,2026-01-01,won,2026-01-09,100\n"
                        "d2,2026-01-01,won,2026-01-09,100\nd3,2026-01-01,Gagné,2026-01-09,100\n".encode("cp1252"))
    res = invoke("calibrate", history, "--stages", "lead", "--as-of", "2026-03-31", "-o", tmp_path / "s.yaml")
    assert res.exit_code == 2 and "h.csv:4: is not UTF-8 text" in res.output and "save it as UTF-8 CSV" in res.output


def test_lines_are_counted_in_the_file_when_a_cell_spans_lines(tmp_path):
    history = tmp_path / "h.csv"
    history.write_text('deal_id,lead,outcome,closed,amount,note\n'
                       'd1,2026-01-01,won,2026-01-09,100,"called twice,\nthen\nsigned"\n'
                       'd2,2026-01-01,won,2026-13-09,100,\n')  # line 5 of the file, the third record
    res = invoke("calibrate", history, "--stages", "lead", "--as-of", "2026-03-31", "-o", tmp_path / "s.yaml")
    assert res.exit_code == 2 and "h.csv:5: closed (column 'closed'): '2026-13-09' is not a date" in res.output
