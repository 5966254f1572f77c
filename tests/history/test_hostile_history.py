"""calibrate and backtest on hostile histories and hostile options: each ends in exit 0 with
a valid scenario, or exit 2 naming the file (and line) and what was expected, with nothing
written, no traceback and the history untouched.

The histories are tiny (three months, so calibrate's in-history walk-forward has no month
end to simulate from and stays fast)."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from forecaster.cli import main

HEADER = "deal_id,lead,outcome,closed,amount"
AS_OF = "2025-03-31"


def rows(n: int = 45) -> list[str]:
    """``n`` deals over January to March 2025: won, lost and open in turn."""
    out = []
    for i in range(n):
        month, outcome = 1 + i % 3, ("won", "lost", "open")[i % 3]
        closed = "" if outcome == "open" else f"2025-{month:02d}-28"
        out.append(f"d{i},2025-{month:02d}-{1 + i % 27:02d},{outcome},{closed},{100 + i}")
    return out


def write(path: Path, lines: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def calibrate(history, out, *extra):
    return invoke("calibrate", history, "--stages", "lead", "--as-of", AS_OF, "-o", out, *extra)


def files_under(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden temporaries included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_fifo()}


def assert_refused(res, *fragments):
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "Internal error" not in res.output, res.output
    for f in fragments:
        assert f in res.output, (f, res.output)


def assert_valid(path):
    res = invoke("validate", path)
    assert res.exit_code == 0 and "valid" in res.output, res.output


@pytest.fixture
def good(tmp_path):
    return write(tmp_path / "h.csv", rows())


# --- 1. nothing is written unless all of it is valid, and then all at once ------------------

def test_a_one_row_history_never_leaves_an_invalid_scenario(tmp_path):
    history = write(tmp_path / "one.csv", ["d1,2025-01-05,won,2025-01-20,100"])
    out = tmp_path / "o" / "one.yaml"
    # as of the end of its month: within the 14 quiet days it has shown (later is refused, as past the export)
    res = invoke("calibrate", history, "--stages", "lead", "--as-of", "2025-01-31", "-o", out, "--report")
    assert "Traceback" not in res.output and "Internal error" not in res.output, res.output
    assert res.exit_code == 0, res.output  # every deal won says p is high, not certain: a sane scenario
    assert_valid(out)
    import yaml
    convert = yaml.safe_load(out.read_text())["segments"]["all"]["funnel"]["lead"]["convert"]
    assert 0 < convert["mean"] < 1


def test_a_lone_ancient_deal_does_not_break_seasonality(tmp_path):
    # one deal in 1990, the rest in 2024-2025: calendar months with no arrivals in any other
    # year get a seasonal factor of 0, which the arrival series must not divide by
    lines = ["old,1990-06-01,lost,1990-06-20,10"] + rows()
    history = write(tmp_path / "h.csv", lines)
    res = calibrate(history, tmp_path / "s.yaml")
    assert res.exit_code == 0 and "Internal error" not in res.output, res.output


def test_won_amounts_of_zero_count_as_zero(tmp_path):
    from datetime import date

    from forecaster.history.estimate import _deal_value
    from forecaster.history.parts import Calibration
    from forecaster.history.readers import Deal

    deals = [Deal(f"d{i}", "all", [date(2025, 1, 1)], "won", date(2025, 2, 1), a)
             for i, a in enumerate([0.0, 0.0, 100.0, None])]
    cal = Calibration({}, [])
    assert _deal_value(deals, date(2025, 3, 31), cal, "all", deals) == {"dist": "empirical", "values": [0.0, 0.0, 100.0]}
    assert any("1 of 4 won deals have no amount" in w for w in cal.warnings)
    assert not any("are 0" in w for w in cal.warnings)
    zero = Calibration({}, [])
    assert _deal_value(deals[:2], date(2025, 3, 31), zero, "all", deals) == {"dist": "empirical", "values": [0.0, 0.0]}
    assert any("all: all 2 won amounts are 0, so its revenue is forecast as 0" in w for w in zero.warnings), \
        zero.warnings  # review: a zero revenue forecast, without a word


@pytest.mark.parametrize("won, lost, said", [
    ("quarter", "quarter", ["won deals' close dates by 2025-03-31 (90%) fall on a quarter's last day: they look set "
                            "by the quarter", "lost deals' close dates by 2025-03-31 (90%) fall on a quarter's"]),
    ("month", None, ["won deals' close dates by 2025-03-31 (90%) fall on a month's last day"]),
    ("quarter", None, ["won deals' close dates by 2025-03-31 (90%) fall on a quarter's last day"]),  # losses real
    (None, "quarter", ["lost deals' close dates by 2025-03-31 (90%) fall on a quarter's last day: they look set by "
                       "the quarter (lost deals closed in bulk"]),  # the wins' dates are real: not said of them
    (None, None, []),
])
def test_close_dates_set_by_the_period_are_said(won, lost, said):
    """Review: every close date on its quarter's last day (a CRM's default close date) was
    calibrated without a word, and the forecast gave January and February the wins the
    history only ever had on 31 March; pooled, wins pinned beside real loss dates were missed."""
    from forecaster.calendar import period_end
    from forecaster.history.quarters import pinned_close_dates
    from forecaster.history.readers import Deal

    deals = []
    for i in range(120):
        entered = date(2024, 1, 1) + timedelta(days=2 * i)
        closed = entered + timedelta(days=20 + i % 17)
        outcome = ("won", "lost")[i % 2]
        pinned = won if outcome == "won" else lost
        if pinned and i % 20 > 1:  # nine in ten on the period's last day
            closed = period_end(closed, pinned)
        deals.append(Deal(f"d{i}", "all", [entered], outcome, closed, 100.0))
    warnings = pinned_close_dates(deals, date(2025, 3, 31))
    assert len(warnings) == len(said) and all(s in w for s, w in zip(said, warnings)), warnings
    assert all(w.startswith("54 of the 60 ") for w in warnings), warnings
    assert pinned_close_dates(deals[:40], date(2025, 3, 31)) == []  # too few closes of each to say


@pytest.mark.parametrize("per_month, empty, as_of, said", [
    (20, [5, 6, 7, 8], date(2024, 12, 31), "no deal entered from 2024-05 to 2024-08 (4 whole months), where the "
                                           "months before brought 20 a month: a gap in the export"),
    (20, [9, 10, 11], date(2024, 11, 30), "no deal entered from 2024-09 to 2024-11 (3 whole months)"),  # up to as_of
    (20, [5, 6], date(2024, 12, 31), None),     # two empty months: a pause, not said
    (2, [5, 6, 7], date(2024, 12, 31), None),   # a few leads a month: empty months happen
    (20, [9, 10, 11], date(2024, 11, 15), None),  # as_of's month is not whole: two whole months only
])
def test_months_without_a_new_deal_amid_busy_ones_are_said(per_month, empty, as_of, said):
    """Review: six empty months between two busy ones, a gap in the export, were read as no
    leads (the lead shock rose to 0.59) without a word."""
    from forecaster.history.estimate import arrival_gap
    from forecaster.history.readers import Deal

    deals = [Deal(f"d{m}-{i}", "all", [date(2024, m, 1 + i % 28)], "open", None, None)
             for m in range(1, 13) if m not in empty for i in range(per_month)]
    warning = arrival_gap(deals, as_of)
    assert (warning is None) if said is None else (said in warning), warning


def test_a_season_or_an_old_gap_is_not_said_and_the_latest_gap_is():
    """Review: a school-year business (no leads June to August, every year) was told of a gap
    in its export, and of the oldest of several gaps, outside the months the arrivals are read
    from."""
    from forecaster.history.estimate import arrival_gap
    from forecaster.history.readers import Deal

    def history(empty):
        return [Deal(f"d{y}-{m}-{i}", "all", [date(y, m, 1 + i)], "open", None, None)
                for y in (2022, 2023, 2024) for m in range(1, 13) if (y, m) not in empty for i in range(20)]
    summers = {(y, m) for y in (2022, 2023, 2024) for m in (6, 7, 8)}
    assert arrival_gap(history(summers), date(2024, 12, 31)) is None
    old = {(2022, m) for m in (3, 4, 5, 6)}  # more than 12 months before as_of
    assert arrival_gap(history(old), date(2024, 12, 31)) is None
    both = old | {(2024, m) for m in (2, 3, 4)}
    assert "from 2024-02 to 2024-04 (3 whole months)" in arrival_gap(history(both), date(2024, 12, 31))
    first_summer = {(2022, m) for m in (6, 7, 8)} | {(2023, m) for m in (6, 7, 8)}  # 2023s: past the 12 months
    assert arrival_gap(history(first_summer), date(2024, 12, 31)) is None


def test_the_count_of_problems_includes_those_not_listed(tmp_path):
    """Review: 600 bad rows were announced as "21 problems" (the 20 listed and the line
    saying how many more)."""
    lines = rows(60)
    lines = [line.rsplit(",", 1)[0] + ",abc" for line in lines]
    res = calibrate(write(tmp_path / "h.csv", lines), tmp_path / "o" / "s.yaml")
    assert_refused(res, "h.csv: 60 problems", "and 40 more problems like these")


def test_an_invalid_calibration_writes_neither_scenario_nor_pipeline_nor_report(tmp_path, good, monkeypatch):
    import forecaster.history.calibrate as calibration

    real = calibration.calibrate

    def broken(*args, **kwargs):
        cal = real(*args, **kwargs)
        cal.scenario["segments"]["all"]["funnel"]["lead"]["convert"] = 1.5
        return cal

    monkeypatch.setattr(calibration, "calibrate", broken)
    res = calibrate(good, tmp_path / "new" / "deeper" / "s.yaml", "--report")
    assert_refused(res, "is not valid, so nothing was written", "segments.all.funnel.lead.convert")
    assert not (tmp_path / "new").exists()  # the folders made for it are gone too
    kept = tmp_path / "kept"
    kept.mkdir()
    before = {"s.yaml": b"earlier\n", "s-pipeline.csv": b"deal_id\n", "s-calibration.md": b"# earlier\n"}
    for name, data in before.items():
        (kept / name).write_bytes(data)
    assert_refused(calibrate(good, kept / "s.yaml", "--report"))
    assert files_under(kept) == before


def test_scenario_pipeline_and_report_are_written_whole_into_a_new_folder(tmp_path, good):
    out = tmp_path / "a" / "b" / "q1.yaml"
    res = calibrate(good, out, "--report")
    assert res.exit_code == 0, res.output
    assert sorted(files_under(tmp_path / "a")) == ["b/q1-calibration.md", "b/q1-pipeline.csv", "b/q1.yaml"]
    assert_valid(out)
    assert "q1-pipeline.csv" in out.read_text()


def test_write_together_puts_back_what_it_replaced_when_a_rename_fails(tmp_path, monkeypatch):
    from forecaster.errors import OutputError
    from forecaster.results.files import write_together

    (tmp_path / "a.yaml").write_text("old a\n")
    real = os.replace

    def failing(src, dst):  # the second file's rename fails, after the first's went through
        if Path(dst).name == "b.csv":
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OutputError, match="No space left on device; nothing was written"):
        write_together(tmp_path, {"a.yaml": "new a\n", "b.csv": "new b\n"}, "-o a.yaml")
    assert files_under(tmp_path) == {"a.yaml": b"old a\n"}  # a put back, b not written, no temporaries
    with pytest.raises(OutputError):
        write_together(tmp_path / "x" / "y", {"a.yaml": "1\n", "b.csv": "2\n"}, "-o x/y/a.yaml")
    assert not (tmp_path / "x").exists()
    monkeypatch.setattr(os, "replace", real)
    assert write_together(tmp_path / "x" / "y", {"a.yaml": "1\n"}, "-o x/y/a.yaml") == [tmp_path / "x" / "y" / "a.yaml"]
    assert (tmp_path / "x" / "y" / "a.yaml").read_text() == "1\n"


# --- 2. an output never overwrites an input ---------------------------------------------------

@pytest.mark.parametrize("case", ["itself", "symlink", "hard link", "dot-dot", "pipeline", "report"])
def test_an_output_that_is_the_history_is_refused_before_any_work(tmp_path, case):
    history = write(tmp_path / ("q-pipeline.csv" if case == "pipeline" else
                                "q-calibration.md" if case == "report" else "h.csv"), rows())
    out = {"itself": history, "symlink": tmp_path / "link.yaml", "hard link": tmp_path / "hard.yaml",
           "dot-dot": tmp_path / "not-yet" / ".." / "h.csv", "pipeline": tmp_path / "q.yaml",
           "report": tmp_path / "q.yaml"}[case]
    if case == "symlink":
        out.symlink_to(history)
    if case == "hard link":
        os.link(history, out)
    before = files_under(tmp_path)
    res = calibrate(history, out, *(["--report"] if case == "report" else []))
    assert_refused(res, "is the history", "(the same file)", "choose another output name")
    assert files_under(tmp_path) == before and not (tmp_path / "not-yet").exists()


def test_outputs_that_cannot_be_files_are_refused(tmp_path, good):
    (tmp_path / "folder.yaml").mkdir()
    assert_refused(calibrate(good, tmp_path / "folder.yaml"), "is a directory")
    (tmp_path / "s-pipeline.csv").mkdir()  # where the pipeline would go
    assert_refused(calibrate(good, tmp_path / "s.yaml"), "s-pipeline.csv is a folder")
    assert_refused(calibrate(good, good / "s.yaml"), "h.csv is a file, not a folder")
    os.mkfifo(tmp_path / "fifo.yaml")
    assert_refused(calibrate(good, tmp_path / "fifo.yaml"), "fifo.yaml is a FIFO")
    assert_refused(calibrate(good, ""), "expected a file name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.yaml", "folder.yaml", "h.csv", "s-pipeline.csv"]


def test_backtest_never_writes_over_its_history(tmp_path):
    folder = tmp_path / "bt"
    folder.mkdir()
    history = write(folder / "backtest.json", rows())
    before = history.read_bytes()
    common = ["--stages", "lead", "--cutoffs", "2025-02-28", "--trials", 100]
    assert_refused(invoke("backtest", history, *common, "--out", folder), "is the history", "(the same file)")
    assert_refused(invoke("backtest", history, *common, "--out", history), "is a file")
    assert history.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["backtest.json"]


# --- 3. amounts and dates: a clear rule ------------------------------------------------------

@pytest.mark.parametrize("amount, found", [
    ("-5", "found '-5'"), ("nan", "found 'nan'"), ("inf", "found 'inf'"), ("-inf", "found '-inf'"),
    ("1e400", "found '1e400'"), ("1e16", "expected a deal value of at most 1e+15; found '1e16'"),
])
def test_an_amount_that_is_not_a_value_is_refused_with_its_line(tmp_path, amount, found):
    lines = rows()
    lines[3] = lines[3].rsplit(",", 1)[0] + f",{amount}"  # line 5 of the file
    res = calibrate(write(tmp_path / "h.csv", lines), tmp_path / "o" / "s.yaml")
    assert_refused(res, "h.csv:5: amount (column 'amount'):", found)
    assert not (tmp_path / "o").exists()


def test_a_deal_closed_before_it_was_created_is_refused_with_both_dates(tmp_path):
    lines = rows()
    lines[0] = "d0,2025-01-20,won,2025-01-05,100"  # line 2
    history = write(tmp_path / "h.csv", lines, header="deal_id,Created,outcome,Closed On,amount")
    res = invoke("calibrate", history, "--stages", "lead", "--column", "lead=Created", "--column", "closed=Closed On",
                 "--as-of", AS_OF, "-o", tmp_path / "o" / "s.yaml")
    assert_refused(res, "h.csv:2: closed 2025-01-05 (column 'Closed On') is before lead 2025-01-20 (column "
                        "'Created'); expected a deal to close on or after it entered its first stage")
    assert not (tmp_path / "o").exists()


def test_drop_bad_rows_leaves_them_out_and_counts_them_by_reason(tmp_path):
    lines = rows()
    lines[0] = "d0,2025-01-20,won,2025-01-05,100"   # line 2: closed before created
    lines[3] = "d3,2025-01-04,won,2025-01-28,-70"   # line 5: a negative amount
    lines[6] = "d6,2025-01-07,won,2025-01-28,nan"   # line 8: not a number
    lines[9] = "d9,0025-01-10,won,2025-01-28,10"    # line 11: year 25
    history = write(tmp_path / "h.csv", lines)
    out = tmp_path / "o" / "s.yaml"
    res = calibrate(history, out, "--drop-bad-rows")
    assert res.exit_code == 0, res.output
    assert ("h.csv: left out 4 rows that cannot be read as a deal (--drop-bad-rows): 1 with a close before its "
            "first stage (line 2); 1 with a negative amount (line 5); 1 with an amount that is not a number "
            "(line 8); 1 with a date outside 1900-01-01 to 2199-12-31 (line 11)") in res.output
    assert_valid(out)
    res = calibrate(write(tmp_path / "all.csv", ["d1,2025-01-05,won,2025-01-20,-1"]), out, "--drop-bad-rows")
    assert_refused(res, "all.csv: has no deal left: left out 1 row")


def test_drop_bad_rows_refuses_to_leave_out_most_of_an_outcome_or_a_fifth_of_the_file(tmp_path):
    """A new user's Pipedrive-style export (won and lost times in two columns) mapped the won
    time as ``closed`` and dropped every lost deal as "won or lost but no close date": the
    won deals alone read a conversion of 0.75 for a true 0.26, with one line of warning."""
    lines = rows(60)
    lines = [line.replace(",lost,2025-01-28,", ",lost,,").replace(",lost,2025-02-28,", ",lost,,")
             .replace(",lost,2025-03-28,", ",lost,,") for line in lines]
    out = tmp_path / "o" / "s.yaml"
    res = calibrate(write(tmp_path / "h.csv", lines), out, "--drop-bad-rows")
    assert_refused(res, "h.csv: --drop-bad-rows would leave out 20 of the 20 lost deals, and the conversion would "
                        "be read without them (too high)", "20 with an outcome won or lost but no close date",
                   "--column closed= must name one column holding the close dates of won and lost deals alike")
    assert not (tmp_path / "o").exists()
    # a few bad rows are left out; a fifth of the file is no longer a few
    lines = rows(60)
    lines = [line.rsplit(",", 1)[0] + ",-5" if i % 9 == 0 or i in (1, 2, 4, 5) else line for i, line in enumerate(lines)]
    res = calibrate(write(tmp_path / "h2.csv", lines), out, "--drop-bad-rows")  # 11 of 60 (18%): a few
    assert res.exit_code == 0, res.output
    assert "h2.csv: left out 11 rows that cannot be read as a deal (--drop-bad-rows): 11 with a negative amount" \
        in res.output
    lines = [line.rsplit(",", 1)[0] + ",-5" if i % 4 == 0 else line for i, line in enumerate(rows(60))]
    res = calibrate(write(tmp_path / "h3.csv", lines), out, "--drop-bad-rows")  # 15 of 60: a quarter
    assert_refused(res, "h3.csv: --drop-bad-rows would leave out 15 of the 60 rows (25%; it is for a few bad rows, "
                        "at most 20%): 15 with a negative amount", "Check the columns mapped (--column)")


@pytest.mark.parametrize("cell, found", [
    ("0001-01-05", "expected a date from 1900-01-01 to 2199-12-31; found '0001-01-05'"),
    ("9999-12-31", "expected a date from 1900-01-01 to 2199-12-31; found '9999-12-31'"),
    ("2025-02-30", "'2025-02-30' is not a date"),
    # day and month in either order: the column's one such date does not say which (issue 14)
    ("05/01/2025", "dates like '05/01/2025' can be read day first or month first, and no date in the column "
                   "settles which (none has a day above 12); give --date-format %d/%m/%Y (day first) or "
                   "--date-format %m/%d/%Y (month first)"),
    ("31/02/2025", "'31/02/2025' is not a date (day is out of range for month; read day first, the column's "
                   "order)"),
    ("２０２５-01-05", "expected a date (2024-11-27, 11/27/2024, 27/11/2024 or 27.11.2024, optionally with a time); "
                     "found '２０２５-01-05'"),
])
def test_dates_out_of_range_or_unreadable_are_refused_with_their_line(tmp_path, cell, found):
    lines = rows()
    lines[4] = f"d4,2025-01-05,won,{cell},100"  # line 6
    res = calibrate(write(tmp_path / "h.csv", lines), tmp_path / "o" / "s.yaml")
    assert_refused(res, "h.csv:6: closed (column 'closed'): " + found)
    assert not (tmp_path / "o").exists()


def test_an_odd_but_valid_export_calibrates(tmp_path):
    """A BOM, CRLF line ends, a quoted note spanning lines, extra columns, an open deal whose
    (ignored) close date is a 9999 placeholder, and a file name that would end a YAML comment."""
    lines = ["deal_id,lead,outcome,closed,amount,note"]
    lines += [r + ',"called, then\r\nsigned"' for r in rows()]
    lines += ["x1,2025-03-20,open,9999-12-31,,"]
    history = tmp_path / "h\ninjected: 7.csv"
    history.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    out = tmp_path / "o" / "s.yaml"
    res = calibrate(history, out, "--report")
    assert res.exit_code == 0, res.output
    assert_valid(out)
    doc = yaml.safe_load(out.read_text())
    assert "injected" not in doc  # the file name stayed inside its comment
    assert "h\\ninjected: 7.csv" in out.read_text().splitlines()[0]
    assert "x1,all,lead,2025-03-20" in (tmp_path / "o" / "s-pipeline.csv").read_text()


# --- 4. files that are no history ------------------------------------------------------------

@pytest.mark.parametrize("name, data, found", [
    ("empty", b"", "empty.csv: is empty; expected a header row and one row per deal"),
    ("blank", b"\n , ,\n\n", "blank.csv: is empty"),
    ("header", (HEADER + "\n").encode(), "header.csv: has a header but no deals"),
    ("binary", bytes(range(256)) * 4, "binary.csv:1: is not text: it holds a NUL byte (byte 0)"),
    ("nul", (HEADER + "\nd1,2025-01-05,won,2025-01-20,1\nd\x002,2025-01-05,won,2025-01-20,1\n").encode(),
     "nul.csv:3: is not text: it holds a NUL byte"),
    ("utf16", (HEADER + "\n").encode("utf-16"), "utf16.csv: is UTF-16 text; save it as UTF-8 CSV"),
    ("latin1", (HEADER + "\nd1,2025-01-05,Gagné,2025-01-20,1\n").encode("latin-1"),
     "latin1.csv:2: is not UTF-8 text"),
    ("columns", (HEADER + "," + ",".join(f"c{i}" for i in range(20_000)) + "\n").encode(),
     "columns.csv:1: has 20,005 columns, more than the 10,000 a history may have"),
    ("longrow", (HEADER + "\n" + ",".join(['"' + "a" * 100_000 + '"'] * 12) + "\n").encode(),
     "longrow.csv:2: has a row longer than 1,048,576 characters"),
    ("bigcell", (HEADER + "\n" + '"' + "a" * 200_000 + '"\n').encode(), "bigcell.csv:2: is not a readable CSV file"),
    ("unclosed", (HEADER + '\nd1,2025-01-05,won,"2025-01-20,1\n' + "d2,2025-01-05,won,2025-01-20,1\n" * 5).encode(),
     "(a cell spanning lines: is a quote before it never closed?)"),
    ("twice", b"deal_id,lead,outcome,closed,lead\nd1,2025-01-05,won,2025-01-20,2025-01-06\n",
     "twice.csv:1: has 2 columns named 'lead' (columns 2, 5); expected each column read once"),
    ("missing", b"deal_id,lead,state\nd1,2025-01-05,won\n",
     "missing.csv: lacks outcome (column 'outcome'), closed (column 'closed'); its columns are: deal_id, lead, state"),
    ("duplicate", (HEADER + "\nd1,2025-01-05,won,2025-01-20,1\nd1,2025-01-05,lost,2025-01-20,\n").encode(),
     "duplicate.csv:3: deal_id 'd1' is also on line 2, with other values; expected one row per deal"),
    ("segment", b"deal_id,segment,lead,outcome,closed,amount\nd1,\"a\nb\",2025-01-05,won,2025-01-20,1\n",
     "segment.csv:2: segment (column 'segment') 'a\\nb'"),
    ("bidi", "deal_id,segment,lead,outcome,closed,amount\nd1,ab\u202ecd,2025-01-05,won,2025-01-20,1\n".encode(),
     "bidi.csv:2: segment (column 'segment') 'ab\\u202ecd' holds a bidirectional override (U+202E"),
])
def test_files_that_are_no_history_are_refused_with_what_was_expected(tmp_path, name, data, found):
    history = tmp_path / f"{name}.csv"
    history.write_bytes(data)
    extra = ["--segment-column", "segment"] if name in ("segment", "bidi") else []
    res = calibrate(history, tmp_path / "o" / "s.yaml", *extra)
    assert_refused(res, found)
    assert not (tmp_path / "o").exists()


def test_a_wide_header_lists_only_its_first_columns(tmp_path):
    history = tmp_path / "wide.csv"
    history.write_text(",".join(f"c{i}" for i in range(500)) + "\n" + ",".join("x" * 500) + "\n")
    res = calibrate(history, tmp_path / "o" / "s.yaml")
    assert_refused(res, "lacks deal_id", "c0, c1,", "c39 and 460 more")
    assert len(res.output) < 2000


def test_what_is_not_a_regular_file_is_refused_without_reading_it(tmp_path):
    assert_refused(calibrate(tmp_path, tmp_path / "o" / "s.yaml"), "is a folder; expected a CSV file")
    assert_refused(calibrate("/dev/zero", tmp_path / "o" / "s.yaml"),
                   "/dev/zero: is a character device, not a regular file")
    big = tmp_path / "big.csv"
    with open(big, "wb") as f:
        f.truncate(300 * 2**20)  # sparse: nothing is written to disk
    assert_refused(calibrate(big, tmp_path / "o" / "s.yaml"), "big.csv: is larger than 256 MiB")
    os.mkfifo(tmp_path / "fifo.csv")  # no writer: opening it for reading would wait for ever
    res = subprocess.run([sys.executable, "-m", "forecaster", "calibrate", str(tmp_path / "fifo.csv"), "--stages",
                          "lead", "--as-of", AS_OF, "-o", str(tmp_path / "o" / "s.yaml")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "fifo.csv: is a FIFO (named pipe), not a regular file" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "o").exists()


def test_the_olist_preset_checks_its_folder(tmp_path, good):
    res = invoke("calibrate", good, "--preset", "olist", "--as-of", AS_OF, "-o", tmp_path / "o" / "s.yaml")
    assert_refused(res, "h.csv: is not a folder; --preset olist reads the Olist marketing-funnel folder")
    folder = tmp_path / "olist"
    folder.mkdir()
    (folder / "olist_marketing_qualified_leads_dataset.csv").write_text(
        "mql_id,first_contact_date,landing_page_id,origin\nm1,2018-01-05,p,organic\nm2,01/06/2018,p,paid\n")
    res = invoke("calibrate", folder, "--preset", "olist", "--as-of", "2018-03-31", "-o", tmp_path / "o" / "s.yaml")
    assert_refused(res, "olist_closed_deals_dataset.csv is not there")
    (folder / "olist_closed_deals_dataset.csv").write_text("mql_id,seller_id\nm1,s\n")
    res = invoke("calibrate", folder, "--preset", "olist", "--as-of", "2018-03-31", "-o", tmp_path / "o" / "s.yaml")
    assert_refused(res, "olist_closed_deals_dataset.csv: lacks 'won_date'")
    (folder / "olist_closed_deals_dataset.csv").write_text("mql_id,won_date\nm1,2018-02-01 10:00:00\n")
    res = invoke("calibrate", folder, "--preset", "olist", "--as-of", "2018-03-31", "-o", tmp_path / "o" / "s.yaml")
    assert_refused(res, "olist_marketing_qualified_leads_dataset.csv:3: first_contact_date: expected an ISO date")
    assert not (tmp_path / "o").exists()
    # past the 20 listed, the rest are counted (review: 600 bad rows said "20 problems")
    (folder / "olist_marketing_qualified_leads_dataset.csv").write_text(
        "mql_id,first_contact_date,landing_page_id,origin\n" + "".join(f"m{i},01/06/2018,p,paid\n" for i in range(30)))
    res = invoke("calibrate", folder, "--preset", "olist", "--as-of", "2018-03-31", "-o", tmp_path / "o" / "s.yaml")
    assert_refused(res, "olist: 30 problems", "and 10 more problems like these")


# --- 5. options --------------------------------------------------------------------------------

@pytest.mark.parametrize("args, found", [
    (["--as-of", "yesterday"], "Invalid value for '--as-of': expected an ISO date (YYYY-MM-DD); got 'yesterday'"),
    (["--as-of", "9999-12-31"], "expected a date from 1900-01-01 to 2199-12-31; got '9999-12-31'"),
    (["--as-of", "2025-02-29"], "expected a day that exists (YYYY-MM-DD); got '2025-02-29'"),
    (["--as-of", "2000-01-01"], "cannot calibrate on 2000-01-01: no deal had entered any stage by 2000-01-01"),
    (["--as-of", AS_OF, "--horizon", "soon"], "Invalid value for '--horizon': expected days (90 or 90d) or months"),
    (["--as-of", AS_OF, "--horizon", "0"], "got '0'"),
    (["--as-of", AS_OF, "--horizon", "-3m"], "got '-3m'"),
    (["--as-of", AS_OF, "--horizon", "99999999999m"], "from 1 to 3660 days or 120 months"),
    (["--as-of", AS_OF, "--horizon", "3661d"], "got '3661d'"),
    (["--as-of", AS_OF, "--horizon", "²"], "got '²'"),
    (["--as-of", AS_OF, "--outcome", "maybe=Stalled"], "whose outcome 'maybe' is not one of won, lost, open"),
    (["--as-of", AS_OF, "--column", "lead=Created"], "lacks lead (column 'Created'); its columns are: deal_id"),
    (["--as-of", AS_OF, "--column", "amount=a", "--column", "amount=b"], "--column maps amount twice"),
    (["--as-of", AS_OF, "--column", "closed=lead"], "closed and lead would all read column 'lead'"),
    (["--as-of", AS_OF, "--column", "lead=nope", "--stages", "le\tad"], "--stages: the stage 'le\\tad' holds"),
    (["--as-of", AS_OF, "--segment-column", "region"], "lacks segment (column 'region')"),
])
def test_bad_calibrate_options_are_refused(tmp_path, good, args, found):
    if "--stages" not in args:
        args = ["--stages", "lead", *args]
    res = invoke("calibrate", good, *args, "-o", tmp_path / "o" / "s.yaml")
    assert_refused(res, found)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, found", [
    (["--cutoffs", "soon"], "expected an ISO date (YYYY-MM-DD); got 'soon'"),
    (["--cutoffs", "2025-02-15"], "got '2025-02-15', which is not a month's last day"),
    (["--cutoffs", ","], "Invalid value for '--cutoffs'"),
    (["--cutoffs", "2025-02-28,2025-02-28"], "got 2025-02-28 twice"),
    (["--cutoffs", "9999-12-31"], "expected a date from 1900-01-01 to 2199-12-31"),
    (["--cutoffs", "2025-02-28", "--months", "0"], "Invalid value for '--months'"),
    (["--cutoffs", "2025-02-28", "--months", "100000"], "Invalid value for '--months'"),
    (["--cutoffs", "2025-02-28", "--trials", "10000000000"], "Invalid value for '--trials'"),
    (["--cutoffs", "1999-12-31"], "cutoff 1999-12-31 is before the history's first deal"),
])
def test_bad_backtest_options_are_refused(tmp_path, good, args, found):
    res = invoke("backtest", good, "--stages", "lead", *args, "--out", tmp_path / "bt")
    assert_refused(res, found)
    assert not (tmp_path / "bt").exists()


def test_backtest_reads_the_history_as_calibrate_does(tmp_path):
    lines = rows()
    lines[3] = "d3,2025-01-04,won,2025-01-28,-70"
    history = write(tmp_path / "h.csv", lines)
    res = invoke("backtest", history, "--stages", "lead", "--cutoffs", "2025-01-31", "--out", tmp_path / "bt")
    assert_refused(res, "h.csv:5: amount (column 'amount')")
    assert_refused(invoke("backtest", "/dev/zero", "--stages", "lead", "--cutoffs", "2025-01-31", "--out",
                          tmp_path / "bt"), "is a character device")
    assert not (tmp_path / "bt").exists()


# --- an as-of date or a backtest's months past what the export recorded ----------------------

def test_an_as_of_date_past_the_export_is_refused_rather_than_read_as_no_deals(tmp_path, good):
    # the history's last record is 2025-03-27 (its longest quiet spell: 4 days)
    res = invoke("calibrate", good, "--stages", "lead", "--as-of", "2025-06-30", "-o", tmp_path / "o" / "c.yaml")
    assert_refused(res, "h.csv: cannot calibrate on 2025-06-30: the as-of date is past the history",
                   "last recorded date is 2025-03-27", "95 days before 2025-06-30",
                   "more than the 4 days that count as seen after it (its longest spell without a record in the "
                   "year before, at least 3)", "use an as-of date up to 2025-03-31, or a later export")
    assert not (tmp_path / "o").exists()
    # within its quiet spells, the days after the last record count as seen
    res = calibrate(good, tmp_path / "c.yaml")
    assert res.exit_code == 0, res.output


def test_a_backtest_whose_months_run_past_the_export_is_refused_before_any_work(tmp_path, good):
    res = invoke("backtest", good, "--stages", "lead", "--cutoffs", "2025-01-31,2025-02-28", "--months", "2",
                 "--out", tmp_path / "bt")
    assert_refused(res, "cutoff 2025-02-28 is scored on the 2 months to 2025-04-30, past the history",
                   "last recorded date is 2025-03-27", "the latest cutoff it can score over 2 months is 2025-01-31",
                   "(or use fewer --months)")
    assert not (tmp_path / "bt").exists()
    res = invoke("backtest", good, "--stages", "lead", "--cutoffs", "2025-01-31", "--months", "3",
                 "--out", tmp_path / "bt")
    assert_refused(res, "it holds no 3 whole months after a cutoff on or after its first deal (2025-01-01), so no "
                        "cutoff can be scored over 3 months (or use fewer --months)")
    assert not (tmp_path / "bt").exists()


def test_the_days_after_the_last_record_count_as_seen_only_within_the_usual_quiet_spells():
    from datetime import date, timedelta

    from forecaster.history.readers import Deal, beyond_records, recorded_through

    # deals created every weekday from January to March 2025 (none at weekends), each lost a
    # week later, or open with an expected close date far ahead (which is no record)
    days = [date(2025, 1, 1) + timedelta(days=k) for k in range(90)]
    weekdays = [d for d in days if d.weekday() < 5 and d <= date(2025, 3, 28)]  # the last: Friday 28 March
    deals = [Deal(f"d{k}", "all", [d], "lost", d + timedelta(days=7), None) for k, d in enumerate(weekdays)
             if d + timedelta(days=7) <= date(2025, 3, 28)]
    deals.append(Deal("open", "all", [date(2025, 3, 28)], "open", None, None))
    assert recorded_through(deals) == (date(2025, 3, 28), 3)  # weekends: two quiet days; at least 3 count
    assert beyond_records(deals, date(2025, 3, 31)) is None  # Monday: within the 3 days
    why = beyond_records(deals, date(2025, 4, 1))
    assert why is not None and "4 days before 2025-04-01" in why and "more than the 3 days" in why
    # a record every day: the export's own day and a weekend (3 days) still count as seen
    daily = [Deal(f"e{k}", "all", [d], "open", None, None) for k, d in enumerate(days)]
    assert recorded_through(daily) == (days[-1], 3)
    assert beyond_records(daily, days[-1] + timedelta(days=3)) is None
    assert beyond_records(daily, days[-1] + timedelta(days=4)) is not None
    # only the last year's quiet spells count: a stray record years before does not open the gate
    stray = [Deal("old", "all", [date(2019, 5, 1)], "open", None, None), *daily]
    assert recorded_through(stray) == (days[-1], 3)
    # a record far after all the others (a placeholder close date on a lost deal) is not the export's end
    odd = [*daily, Deal("x", "all", [days[10]], "lost", date(2099, 12, 31), None)]
    assert recorded_through(odd) == (days[-1], 3)
    assert recorded_through([]) is None and beyond_records([], date(2025, 1, 1)) is None


def test_a_few_close_dates_typed_a_year_ahead_are_not_the_export_end_and_are_said(tmp_path):
    """Five won deals' close dates typed 2027 for 2026, days and weeks apart from each other:
    each gap among them looked usual beside the 184-day silence before them, so the export
    read as going on to March 2027 and an as-of date up to September 2027 was accepted. A few
    stray days together (at most 2% of the days) are passed over as one is; calibrate names
    them, as the close dates no export shows."""
    from forecaster.history.calibrate import after_the_export
    from forecaster.history.readers import Deal, beyond_records, recorded_through

    days = [date(2025, 1, 1) + timedelta(days=k) for k in range(400)]
    daily = [Deal(f"e{k}", "all", [d], "lost", d + timedelta(days=5), None) for k, d in enumerate(days)
             if d + timedelta(days=5) <= days[-1]]
    typed = [date(2027, 1, 1), date(2027, 1, 11), date(2027, 1, 31), date(2027, 3, 6), date(2027, 3, 7)]
    late = [Deal(f"t{k}", "all", [days[100 + k]], "won", d, 100.0) for k, d in enumerate(typed)]
    history = [*daily, *late]
    assert recorded_through(history) == (days[-1], 3)
    assert beyond_records(history, date(2026, 9, 1)) is not None
    said = after_the_export(history, days[-1], recorded_through(history))
    assert said is not None and said.startswith("5 deals won or lost after the history's last record (2026-02-04)")
    assert "t0 won on 2027-01-01, t1 won on 2027-01-11, t2 won on 2027-01-31, ..." in said
    assert after_the_export(daily, days[-1], recorded_through(daily)) is None
    # a history that went quiet for months and came back is not cut: its later days are many,
    # or, when few (5 days after a silence: under 2% of the days), deals entered then
    for n_back in (60, 5):
        back = [*daily, *(Deal(f"b{k}", "all", [date(2026, 9, 1) + timedelta(days=k)], "open", None, None)
                          for k in range(n_back))]
        assert recorded_through(back)[0] == date(2026, 9, 1) + timedelta(days=n_back - 1)


@pytest.mark.parametrize("name", ["1e3", "3E8", "0o17", "0x1F", ".5", "-2e-3", "1_000", "012", "1:30", "null", "yes",
                                  "True", "~", ".inf", "2025-01-01"])
def test_segment_names_that_read_as_numbers_or_dates_stay_names(tmp_path, name):
    """YAML 1.2 reads 1e3 and 0o17 as numbers where PyYAML's writer (YAML 1.1) sees text: the
    scenario quotes every name either would read as something else."""
    lines = [f"{line},{name if i % 2 else 'other'}" for i, line in enumerate(rows(60))]
    history = write(tmp_path / "h.csv", lines, header=HEADER + ",segment")
    res = invoke("calibrate", history, "--stages", "lead", "--segment-column", "segment", "--as-of", AS_OF,
                 "-o", tmp_path / "c.yaml")
    assert res.exit_code == 0, res.output
    from forecaster.scenario.yamlio import load_yaml

    data, _ = load_yaml((tmp_path / "c.yaml").read_text(), "c.yaml")
    assert sorted(data["segments"]) == sorted([name, "other"])
    assert_valid(tmp_path / "c.yaml")


def test_the_scenario_writer_round_trips_every_plain_value():
    from forecaster.scenario.yamlio import dump_yaml, load_yaml

    doc = {"a": 1, "b": 1.5, "c": 1e20, "d": True, "e": None, "f": "1e3", "g": ["0o17", 3, "x"], "1e3": {"0x1F": 2.5e-7}}
    data, _ = load_yaml(dump_yaml(doc), "x.yaml")
    assert data == doc


@pytest.mark.parametrize("name, shown", [
    ("M\u00fcnchen", True), ("\u65e5\u672c", True), ("Cafe\u0301", True), ("emoji\U0001f600", True),
    ("\u00a0nbsp", True), ("x\u0085y", False), ("a\u2028b", False), ("rtl\u202eabc", False), ("\ufeffz", False),
    ("\u200dq", False),
])
def test_the_scenario_writer_writes_names_as_they_read_and_escapes_what_would_not_show(name, shown):
    """Review: every name outside ASCII was escaped (``"\\u65E5\\u672C"`` for a segment 日本),
    unreadable in a scenario a user edits. Written as it reads now, unless some string holds a
    character that would not read back (NEL became a line break) or not show."""
    from forecaster.scenario.yamlio import dump_yaml, load_yaml

    doc = {"name": name, "segments": {name if shown else "plain": {"x": 1}}}  # a key holds no control character
    text = dump_yaml(doc)
    if "\u0085" not in name:  # a control character: the reader refuses it in any text, escaped or not
        assert load_yaml(text, "x.yaml")[0] == doc
    assert (name in text) == shown and text.isascii() != shown, text


def test_a_segment_without_won_amounts_resamples_the_whole_historys(tmp_path):
    """Revenue sums segments in one currency: a segment with no win yet is valued as the
    whole history's wins (as its conversion borrows from the whole), not at 1 a deal."""
    lines = [f"{line},{'big' if i % 4 else 'new'}" for i, line in enumerate(rows(80))]
    lines = [line if not line.endswith(",new") else line.replace(",won,", ",lost,") for line in lines]
    history = write(tmp_path / "h.csv", lines, header=HEADER + ",segment")
    res = invoke("calibrate", history, "--stages", "lead", "--segment-column", "segment", "--as-of", AS_OF,
                 "-o", tmp_path / "c.yaml")
    assert res.exit_code == 0, res.output
    assert "new: no won deal with an amount by 2025-03-31 (none won): deal_value resamples the" in res.output
    doc = yaml.safe_load((tmp_path / "c.yaml").read_text())
    big, new = doc["segments"]["big"]["deal_value"], doc["segments"]["new"]["deal_value"]
    won = sorted(float(line.split(",")[4]) for line in lines if ",won," in line)
    assert big == new == {"dist": "empirical", "values": won}
    # a history with no amount at all still counts won deals (deal_value 1), and says so
    bare = write(tmp_path / "bare.csv", [line.rsplit(",", 2)[0] + ",," + line.rsplit(",", 1)[1] for line in lines],
                 header=HEADER + ",segment")
    res = invoke("calibrate", bare, "--stages", "lead", "--segment-column", "segment", "--as-of", AS_OF,
                 "-o", tmp_path / "b.yaml")
    assert res.exit_code == 0, res.output
    assert "deal_value is 1, so revenue counts won deals" in res.output
    assert yaml.safe_load((tmp_path / "b.yaml").read_text())["segments"]["new"]["deal_value"] == 1


def test_blank_segments_and_spellings_of_one_segment_are_said_and_read_as_one(tmp_path):
    names = ["Inbound", "inbound ", "", "Out bound", "INBOUND", "Out  Bound", "Inbound"]
    lines = [f"{line},{names[i % len(names)]}" for i, line in enumerate(rows(70))]
    history = write(tmp_path / "h.csv", lines, header=HEADER + ",segment")
    res = invoke("calibrate", history, "--stages", "lead", "--segment-column", "segment", "--as-of", AS_OF,
                 "-o", tmp_path / "c.yaml")
    assert res.exit_code == 0, res.output
    assert ("h.csv: 10 deals with a blank segment (column 'segment'; lines 4, 11, 18, 25, 32, 39, 46, 53 and 2 more) "
            "make a segment of their own, '(no segment)'") in res.output
    assert ("segment names that differ only in case or spacing are read as one: 'inbound' (10 deals) as 'Inbound' "
            "(20); 'INBOUND' (10 deals) as 'Inbound' (20); 'Out  Bound' (10 deals) as 'Out bound' (10)\n") in res.output
    doc = yaml.safe_load((tmp_path / "c.yaml").read_text())
    assert sorted(doc["segments"]) == ["(no segment)", "Inbound", "Out bound"]
    assert_valid(tmp_path / "c.yaml")


def test_a_segment_in_two_unicode_forms_is_one_and_an_outcome_with_a_no_break_space_matches(tmp_path):
    """Review: 'Café' written composed and with its accent apart (macOS) made two segments
    that print alike; 'Closed<no-break space>Won' could not be mapped by typing the value."""
    names = ["Caf\u00e9", "Cafe\u0301", "Caf\u00e9"]
    outcomes = {"won": "Closed\u00a0Won", "lost": "Closed  Lost", "open": "In Progress"}
    lines = []
    for i, line in enumerate(rows(60)):
        deal, lead, outcome, closed, amount = line.split(",")
        lines.append(",".join([deal, lead, outcomes[outcome], closed, amount, names[i % 3]]))
    history = write(tmp_path / "h.csv", lines, header=HEADER + ",segment")
    res = invoke("calibrate", history, "--stages", "lead", "--segment-column", "segment", "--as-of", AS_OF,
                 "--outcome", "won=Closed Won", "--outcome", "lost=Closed Lost", "--outcome", "open=In Progress",
                 "-o", tmp_path / "c.yaml")
    assert res.exit_code == 0, res.output
    assert "'Cafe\u0301' (20 deals) as 'Caf\u00e9' (40) (the same name in another Unicode form)" in res.output
    doc = yaml.safe_load((tmp_path / "c.yaml").read_text())
    assert list(doc["segments"]) == ["Caf\u00e9"]
    assert_valid(tmp_path / "c.yaml")


def test_a_report_footer_is_set_aside_and_said_but_a_one_cell_row_among_deals_is_refused(tmp_path):
    footer = ["", '"Opportunity Pipeline"', '"Copyright (c) 2000-2024 salesforce.com, inc. All rights reserved."',
              '"Generated By:  Jane Doe  7/1/2024 9:14 AM"']
    history = write(tmp_path / "h.csv", rows() + footer)
    res = calibrate(history, tmp_path / "c.yaml")
    assert res.exit_code == 0, res.output
    assert ("h.csv: the last 3 rows (lines 48, 49, 50) hold one cell each or a total, as a report's footer does "
            "('Opportunity Pipeline', ...): not read as deals") in res.output
    assert_valid(tmp_path / "c.yaml")
    # the same row before a deal is a bad row, reported with its line
    lines = rows()
    lines.insert(10, '"Opportunity Pipeline"')
    res = calibrate(write(tmp_path / "bad.csv", lines), tmp_path / "d.yaml")
    assert_refused(res, "bad.csv: column 'outcome' (the outcome) holds 1 value mapped to no outcome (1 row)",
                   "(first on line 12)")
    assert not (tmp_path / "d.yaml").exists()
    # a table of nothing but one-cell rows is no history, said as before
    res = calibrate(write(tmp_path / "ids.csv", ["d1", "d2"]), tmp_path / "e.yaml")
    assert_refused(res, "ids.csv: column 'outcome' (the outcome) holds 1 value mapped to no outcome (2 rows)")


def test_a_totals_row_at_the_end_is_set_aside_but_a_deal_named_total_is_read(tmp_path):
    """A report's last row of totals (``Grand Totals (45 records)`` over the amount column) was
    refused as a row without an outcome, which --drop-bad-rows did not help. It has no date,
    as every deal has: set aside as a footer and said. A deal whose id begins with "Total"
    has its dates, and is read."""
    history = write(tmp_path / "h.csv", rows() + ["Grand Totals (45 records),,,,6990"])
    res = calibrate(history, tmp_path / "c.yaml")
    assert res.exit_code == 0, res.output
    assert ("the last row (line 47) holds one cell or a total, as a report's footer does ('Grand Totals (45 records) · "
            "6990')") in res.output
    res = calibrate(write(tmp_path / "t.csv", rows() + ["Total Rewards,2025-03-02,open,,500"]), tmp_path / "d.yaml")
    assert res.exit_code == 0 and "footer" not in res.output, res.output
    assert "Total Rewards" in (tmp_path / "d-pipeline.csv").read_text()
    # nor one whose dates have a month's name (no ISO date for the pattern to see)
    named = [",".join([c[0], date.fromisoformat(c[1]).strftime("%d %b %Y"), c[2],
                       c[3] and date.fromisoformat(c[3]).strftime("%d %b %Y"), c[4]])
             for c in (line.split(",") for line in rows())]
    res = calibrate(write(tmp_path / "n.csv", named + ["Total Quality,02 Mar 2025,open,,500"]), tmp_path / "e.yaml",
                    "--date-format", "%d %b %Y")
    assert res.exit_code == 0 and "footer" not in res.output, res.output
    assert "Total Quality" in (tmp_path / "e-pipeline.csv").read_text()


def test_a_history_too_young_to_check_its_intervals_says_so(tmp_path, good):
    res = calibrate(good, tmp_path / "c.yaml")  # three months: no two month ends to check against
    assert res.exit_code == 0, res.output
    assert "the history is too young to check the intervals against it" in res.output
    assert "P10-P90 are not checked and may be too narrow" in res.output


def test_seasonality_left_out_on_months_the_check_never_scored_is_said():
    """The in-history check scores its last few months: a December dip can be left out by a
    check that scored only spring and summer. The months it could not judge are named."""
    from datetime import date

    from forecaster.history.calibrate import unjudged_season
    from forecaster.history.parts import Calibration, Mechanism

    season = {m: 1.0 for m in range(1, 13)} | {12: 0.3, 1: 0.85, 11: 1.3}

    def apply(doc):
        doc["segments"]["a"]["leads"]["seasonality"] = dict(season)

    cal = Calibration({}, [], base={"segments": {"a": {"leads": {}}, "b": {"leads": {}}}},
                      mechanisms={"seasonality": Mechanism("seasonality", apply, "monthly")},
                      evidence={"cutoffs": ["2022-09-30", "2022-08-31", "2022-07-31"], "scored": [1, 2, 3]})
    # horizon November to January; scored: October (from 09-30), September-October (from 08-31),
    # August-October (from 07-31): November (x1.30) and December (x0.30) were never scored,
    # January is within 20% of an average month
    assert unjudged_season(cal, date(2022, 10, 31), 92) == ["November (x1.30)", "December (x0.30)"]
    # a check that scored the December of a year before judged it
    cal.evidence = {"cutoffs": ["2021-11-30", "2021-10-31"], "scored": [1, 2]}
    assert unjudged_season(cal, date(2022, 10, 31), 92) == []


def test_segments_named_elsewhere_match_the_scenarios_spelling():
    """--segment and a customer log's segments are matched as the history's spellings were
    merged: case and runs of spaces aside."""
    from types import SimpleNamespace

    from forecaster.history.customers import _assign
    from forecaster.history.readers import same_segment, segment_key

    assert segment_key(" In  Bound ") == segment_key("in bound") != segment_key("inbound")
    assert same_segment("INBOUND", ["Outbound", "Inbound"]) == "Inbound"
    assert same_segment("partner", ["Outbound", "Inbound"]) == "partner"
    rows = [SimpleNamespace(segment="inbound"), SimpleNamespace(segment="Inbound"), SimpleNamespace(segment=None)]
    assert _assign(rows, ["Inbound", "Outbound"], "Outbound", "log") == {"Inbound": rows[:2], "Outbound": rows[2:]}
    with pytest.raises(ValueError, match="names segment 'partner', not in the scenario"):
        _assign([SimpleNamespace(segment="partner")], ["Inbound"], None, "log")


def test_a_footer_in_a_date_column_decides_no_date_format(tmp_path):
    def us(iso):  # 2025-01-05 -> 1/5/2025: month first, the order a footer's 13/07/2025 contradicts
        return f"{int(iso[5:7])}/{int(iso[8:10])}/{iso[:4]}" if iso else ""

    lines = []
    for r in rows():
        deal_id, lead, outcome, closed, amount = r.split(",")
        lines.append(",".join([us(lead), deal_id, outcome, us(closed), amount]))  # lead first
    history = write(tmp_path / "h.csv", lines + ["", '"13/07/2025"', '"Generated By: Jane Doe 7/1/2025 9:14 AM"'],
                    header="lead,deal_id,outcome,closed,amount")
    res = calibrate(history, tmp_path / "c.yaml")
    assert res.exit_code == 0, res.output
    assert "the last 2 rows (lines 48, 49) hold one cell each" in res.output


# --- found by a hostile-input probe (December 2026) ------------------------------------------

def test_a_row_with_a_cell_too_many_is_refused_not_cut(tmp_path):
    """An unquoted 1,000.50 in the last column splits into 1 and 000.50: read as it was, the
    amount came out as 1.0 and the rest went unseen."""
    lines = rows()
    lines[0] = "d0,2025-01-01,won,2025-01-28,1,000.50"
    out = tmp_path / "s.yaml"
    res = calibrate(write(tmp_path / "h.csv", lines), out)
    assert_refused(res, "h.csv:2", "has 6 cells where the header has 5", "1,000.50")
    assert not out.exists()
    dropped = calibrate(tmp_path / "h.csv", out, "--drop-bad-rows")  # or left out, when asked
    assert dropped.exit_code == 0 and "more cells than the header (line 2)" in dropped.output, dropped.output
    quoted = list(rows())
    quoted[0] = 'd0,2025-01-01,won,2025-01-28,"1,000.50"'
    trailing = [r + ",," for r in rows()]  # empty cells past the header's (a spreadsheet's export): fine
    for name, lines in (("q.csv", quoted), ("t.csv", trailing)):
        res = calibrate(write(tmp_path / name, lines), tmp_path / f"{name}.yaml")
        assert res.exit_code == 0, res.output
    values = yaml.safe_load((tmp_path / "q.csv.yaml").read_text())["segments"]["all"]["deal_value"]["values"]
    assert 1000.5 in values and 1.0 not in values
    # split in a middle column, the row's last cell blank: every cell after the split moves
    # right (the amount read as 1, the segment as '000.50'), and the overflow is blank
    middle = [r + ",main" for r in rows()]
    middle[0] = "d0,2025-01-01,won,2025-01-28,1,000.50,"
    res = calibrate(write(tmp_path / "m.csv", middle, header=HEADER + ",segment"), tmp_path / "m.yaml",
                    "--segment-column", "segment")
    assert_refused(res, "m.csv:2", "has 7 cells where the header has 6")
    # every amount of a thousand or more split: the usual row is the long one, and still refused
    split = [r.rsplit(",", 1)[0] + ",1,500" for r in rows()]
    res = calibrate(write(tmp_path / "s.csv", split[:40] + rows()[40:]), tmp_path / "s.yaml")
    assert_refused(res, "s.csv:2", "has 6 cells where the header has 5 and most rows 6")


def test_a_workbook_note_right_of_the_table_is_no_cell_of_a_deal(tmp_path):
    """A workbook's cells cannot split: a note in a column with no header name stays a note."""
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER.split(","))
    for i, r in enumerate(rows()):
        cells = r.split(",")
        sheet.append(cells + (["checked by Ann"] if i == 1 else []))
    book.save(tmp_path / "h.xlsx")
    res = calibrate(tmp_path / "h.xlsx", tmp_path / "s.yaml")
    assert res.exit_code == 0, res.output


def test_rows_with_no_stage_date_are_said_not_silently_dropped(tmp_path):
    lines = rows()
    for i in (3, 6, 9):  # won deals with amounts and close dates, but no day they entered the funnel
        deal_id, _, outcome, closed, amount = lines[i].split(",")
        lines[i] = ",".join([deal_id, "", outcome, closed, amount])
    res = calibrate(write(tmp_path / "h.csv", lines), tmp_path / "s.yaml")
    assert res.exit_code == 0, res.output
    assert ("3 deals with no date in any stage column ('lead'; lines 5, 8, 11): no lead, conversion or time to close "
            "counts them") in res.output
    blank = [",".join([r.split(",")[0], "", *r.split(",")[2:]]) for r in rows()]
    assert_refused(calibrate(write(tmp_path / "b.csv", blank), tmp_path / "b.yaml"),
                   "has no date in any stage column ('lead') on any row")


def test_a_column_named_in_another_case_is_read_and_said(tmp_path):
    res = calibrate(write(tmp_path / "h.csv", rows(), header="deal_id,Lead,outcome,closed,Amount"), tmp_path / "s.yaml")
    assert res.exit_code == 0, res.output
    assert "amount read from column 'Amount' (no column 'amount'; the names differ only in case)" in res.output
    values = yaml.safe_load((tmp_path / "s.yaml").read_text())["segments"]["all"]["deal_value"]["values"]
    assert sorted(values) == sorted(float(r.split(",")[4]) for r in rows() if ",won," in r)


def _monthly_flow(months: int = 15, per_month: int = 30) -> list[str]:
    """``per_month`` deals a month from January 2024, 40% won 20 days after they enter, the rest
    lost after 10: deals entered near the end still open on 2025-03-25."""
    out = []
    for m in range(months):
        year, month = 2024 + m // 12, 1 + m % 12
        for k in range(per_month):
            day = 1 + (k * 27) // per_month
            entered = f"{year}-{month:02d}-{day:02d}"
            e = date(year, month, day)
            won = k % 5 < 2
            closed = e + timedelta(days=20 if won else 10)
            if closed > date(2025, 3, 25):
                out.append(f"m{m}-{k},{entered},open,,{100 + k},main")
            else:
                out.append(f"m{m}-{k},{entered},{'won' if won else 'lost'},{closed},{100 + k},main")
    return out


def _lead_rates(history: Path, as_of: date, horizon_days: int, segment_column: str | None = None) -> dict:
    """Each segment's calibrated leads a month, as fitted before any optional part is chosen
    (``fit_candidates``' base: what the in-history selection starts from)."""
    from forecaster.history.estimate import fit_candidates
    from forecaster.history.readers import read_history

    deals = read_history(history, ["lead"], {}, segment_column=segment_column)
    base = fit_candidates(deals, ["lead"], as_of, horizon_days=horizon_days, lost_observed=True).base
    return {seg: doc["leads"]["per_month"]["mean"] for seg, doc in base["segments"].items()}


def test_quiet_segments_take_their_share_from_the_others_not_on_top(tmp_path):
    """Thirty segments with no deal in the last year got half a deal's share of the level
    each on top of the active one's whole share: the segments' leads summed to 1.17 times the
    whole's. Now they sum to the same as the history read as one segment."""
    flow = _monthly_flow()
    quiet = [f"old{j},2024-02-01,lost,2024-02-20,100,legacy{j}" for j in range(30)]
    header = HEADER + ",segment"
    split = write(tmp_path / "split.csv", flow + quiet, header=header)
    whole = write(tmp_path / "whole.csv", flow + [r.rsplit(",", 1)[0] + ",main" for r in quiet], header=header)
    as_of = date(2025, 3, 25)
    split_rates = _lead_rates(split, as_of, 91, "segment")
    assert len(split_rates) == 31
    assert sum(split_rates.values()) == pytest.approx(sum(_lead_rates(whole, as_of, 91, "segment").values()),
                                                      rel=1e-3)


def test_the_lead_rate_does_not_grow_with_the_horizon(tmp_path):
    """The first months' rate was the level's mean at the horizon's middle month, which a
    log random walk raises with its variance: 28.9 leads a month with 3 months, 56.6 with
    120, for the same months. Past three calendar months the rate is that of three."""
    history = write(tmp_path / "h.csv", [r.rsplit(",", 1)[0] for r in _monthly_flow()])
    as_of = date(2025, 3, 31)
    rates = [_lead_rates(history, as_of, days)["all"] for days in (92, 365, 3650)]
    assert rates[0] == rates[1] == rates[2], rates


def test_a_horizon_longer_than_the_history_is_said(tmp_path, good):
    """Review: a 10-year horizon from a year of history was taken without a word (its median
    wins fell to 2-3 a month by the seventh year, its P10 to 0)."""
    res = calibrate(good, tmp_path / "long.yaml", "--horizon", "12m")
    assert res.exit_code == 0, res.output
    assert ("the horizon (365 days) is longer than the history known on 2025-03-31 (90 days, from 2025-01-01)"
            in res.output), res.output
    assert "is longer than the history" in (tmp_path / "long.yaml").read_text()  # and in the scenario's warnings
    res = calibrate(good, tmp_path / "short.yaml", "--horizon", "60d")
    assert res.exit_code == 0 and "is longer than the history" not in res.output, res.output


def test_warnings_about_single_segments_past_ten_are_counted_not_printed():
    """Review: an owner column of 300 names read as segments printed 900 warning lines."""
    from forecaster.cli.calibrate import SEGMENT_WARNINGS_SHOWN, _shown_warnings
    from forecaster.history.parts import SegmentWarning

    segments = [f"Doe, Jane {i}" for i in range(59)] + ["seasonality"]  # names with ', ' or a part's name
    warnings = ["the horizon is long"] + [SegmentWarning(f"{s}: only 3 won amounts to resample", s) for s in segments] \
        + [SegmentWarning(f"{s}, lead: only 3 conversions", s) for s in segments[:5]] \
        + ["seasonality: left out, but the in-history check ..."]  # the whole's, not the segment's
    shown = _shown_warnings(warnings, segments)
    assert shown[:1 + SEGMENT_WARNINGS_SHOWN] == warnings[:1 + SEGMENT_WARNINGS_SHOWN]
    assert shown[-2] == "seasonality: left out, but the in-history check ..."
    assert shown[-1] == ("and 55 more warnings about single segments (60 of the 60 segments have one; the scenario's "
                         "header lists every one); so many segments with too few deals of their own: is "
                         "--segment-column the lead source?")
    assert len(shown) == 1 + SEGMENT_WARNINGS_SHOWN + 2
    assert _shown_warnings(warnings[:11], segments) == warnings[:11]  # ten or fewer: all printed
    assert _shown_warnings(warnings, ["Doe, Jane 1"]) == warnings  # one segment: its warnings are the whole's


def test_a_warning_about_a_segment_survives_pickle_and_copy():
    import copy
    import pickle

    from forecaster.history.parts import SegmentWarning

    w = SegmentWarning("Doe, Jane: only 3 won amounts", "Doe, Jane")
    for back in (pickle.loads(pickle.dumps(w)), copy.deepcopy(w), copy.copy(w)):
        assert back == w and back.segment == "Doe, Jane" and isinstance(back, SegmentWarning)


def test_calibrate_counts_the_warnings_about_single_segments_past_ten(tmp_path):
    lines = [f"{line},\"Doe, Jane {i % 15}\"" for i, line in enumerate(rows(90))]
    history = write(tmp_path / "h.csv", lines, header=HEADER + ",owner")
    res = calibrate(history, tmp_path / "c.yaml", "--segment-column", "owner")
    assert res.exit_code == 0, res.output
    printed = [line for line in res.output.splitlines() if line.startswith("warning: Doe, Jane")]
    assert len(printed) == 10, res.output
    assert "more warnings about single segments (15 of the 15 segments have one" in res.output, res.output
    header = (tmp_path / "c.yaml").read_text()
    assert sum(1 for line in header.splitlines() if line.startswith("#   Doe, Jane")) > 10  # all in the scenario


def test_a_dash_for_the_output_is_refused_not_written_as_a_file(tmp_path, good, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    res = invoke("calibrate", good, "--stages", "lead", "--as-of", AS_OF, "-o", "-")
    assert_refused(res, "Invalid value for '-o'", "got '-' (the scenario comes with a pipeline CSV beside it")
    assert files_under(tmp_path) == before  # nothing named '-' or '.yaml' beside it


def test_a_rate_read_from_a_few_days_of_arrivals_is_said_to_be(tmp_path):
    """A history whose deals all entered on one day got a lead rate with a cv of 0.003 from
    Poisson counting alone, and no word that a day says little of a month."""
    lines = [f"d{i},2025-03-20,{('won', 'lost', 'open')[i % 3]},{'' if i % 3 == 2 else '2025-03-24'},100"
             for i in range(300)]
    res = invoke("calibrate", write(tmp_path / "h.csv", lines), "--stages", "lead", "--as-of", "2025-03-26",
                 "-o", tmp_path / "s.yaml")
    assert res.exit_code == 0, res.output
    assert "all: its arrivals span only 7 days before 2025-03-26: the rate a month (" in res.output, res.output
    month = calibrate(write(tmp_path / "m.csv", rows()), tmp_path / "m.yaml")  # three months: no such warning
    assert month.exit_code == 0 and "its arrivals span only" not in month.output, month.output


def test_a_presets_alternative_named_in_another_case_is_read(tmp_path):
    """HubSpot's deal id is 'Record ID' or 'Deal ID'; an export that writes 'Record Id' was
    refused as lacking it while a single name in another case was read."""
    header = "Record Id,Create Date,Deal Stage,Close Date,Amount"
    lines = [r.replace(",won,", ",closedwon,").replace(",lost,", ",closedlost,").replace(",open,", ",appointmentscheduled,")
             for r in rows()]
    res = invoke("calibrate", write(tmp_path / "h.csv", lines, header=header), "--preset", "hubspot",
                 "--as-of", AS_OF, "-o", tmp_path / "s.yaml")
    assert res.exit_code == 0, res.output
    assert "deal_id read from column 'Record Id' (no column 'Record ID' or 'Deal ID'; the names differ only in case)" \
        in res.output


def test_open_deals_keep_their_own_amount_only_when_asked_and_only_if_still_open(tmp_path):
    """A new user's export carried amounts on 95% of its open deals (up to $169k in 'Contract
    sent'); the pipeline CSV blanked them all, without a word. Now calibrate says so, and
    --open-amounts writes each still-open deal's own amount (never the final amount of a deal
    open on the as-of date that the export shows closed later: that was not known then)."""
    lines = rows(45)
    lines.append("late,2025-03-02,won,2025-04-20,99000")  # open on the as-of date, won after it
    lines.append("zero,2025-03-03,open,,0")  # a CRM's blank: valued as the segment's wins, not at 0
    history = write(tmp_path / "h.csv", lines)
    out = tmp_path / "o" / "s.yaml"
    res = calibrate(history, out)
    assert res.exit_code == 0, res.output
    assert ("15 of the 17 open deals carry an amount (mean 123.00), not used: every open deal is valued as a won "
            "deal of its segment is (its won amounts, resampled); --open-amounts values each by its own") in res.output
    import csv as csv_
    with open(tmp_path / "o" / "s-pipeline.csv", newline="") as f:
        plain = {r["deal_id"]: r["amount"] for r in csv_.DictReader(f)}
    assert len(plain) == 17 and set(plain.values()) == {""}
    res = calibrate(history, out, "--open-amounts")
    assert res.exit_code == 0, res.output
    assert "carry an amount" not in res.output
    # the export goes on to April: its open deals' amounts are its own, perhaps not March's
    assert ("--open-amounts: the open deals' amounts are those of the export, whose last record is 2025-04-20, "
            "not those known on 2025-03-31") in res.output
    with open(tmp_path / "o" / "s-pipeline.csv", newline="") as f:
        own = {r["deal_id"]: r["amount"] for r in csv_.DictReader(f)}
    assert own["late"] == own["zero"] == ""  # late's 99,000 is what it closed at in April, unknown on 31 March
    assert {k: float(v) for k, v in own.items() if k not in ("late", "zero")} == {
        f"d{i}": 100.0 + i for i in range(45) if i % 3 == 2}
    assert_valid(out)
    assert "valued at their own amount (mean 123.00)" in out.read_text()
    # at the export's own end no such warning, even beside a placeholder close date far after it
    lines[-2] = "late,2025-03-02,lost,2099-12-31,99000"
    res = calibrate(write(tmp_path / "h2.csv", lines), out, "--open-amounts")
    assert res.exit_code == 0, res.output
    assert "--open-amounts: the open deals' amounts" not in res.output
    assert "none of the" not in res.output
    # asked for where no open deal has an amount: said, not ignored (review)
    blank = [line.rsplit(",", 1)[0] + "," if ",open," in line else line for line in lines]
    res = calibrate(write(tmp_path / "h3.csv", blank), out, "--open-amounts")
    assert res.exit_code == 0, res.output
    assert ("--open-amounts: none of the 17 open deals is valued at its own amount: 1 carries the amount it closed "
            "at after 2025-03-31 (not known then); 16 carry none (blank or 0); every open deal is valued as a won deal "
            "of its segment is") in res.output
