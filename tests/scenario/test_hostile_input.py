"""Hostile and broken input files (issue 11: never a silent wrong number, never a lost file).

Every file a user can hand forecaster -- the scenario YAML and the pipeline CSV it names --
is refused with exit status 2 and a one-line message naming the file (and the line or key
where known), never a traceback, never "Internal error", never a hang, and never an echo of
a file that is not a CSV. Each case stands for a class: control characters, recursive or
exploding aliases, deep nesting, numbers beyond a float, encodings, non-regular files,
size bounds, binary or secret files named as the pipeline, and dates at the calendar's end.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import VALID

import forecaster as fc
from forecaster.calendar import day_calendar, period_end, periods
from forecaster.cli import main
from forecaster.scenario import loading, pipeline, yamlio

ROOT = Path(__file__).resolve().parents[2]

WITH_PIPELINE = VALID + "pipeline: {file: p.csv}\n"
HEADER = "deal_id,segment,stage,entered_stage,amount\n"
ROW = "D1,direct,lead,2026-12-01,100\n"
SECRET = "hunter2-s3cret"


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_clean_refusal(res, *fragments):
    """Exit status 2, a message, no traceback, no internal error."""
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "Internal error" not in res.output, res.output
    assert res.output.startswith("Error: "), res.output
    for fragment in fragments:
        assert fragment in res.output, (fragment, res.output)


def refused(path) -> str:
    """The message of the ScenarioError ``fc.load_scenario(path)`` raises."""
    with pytest.raises(fc.ScenarioError) as info:
        fc.load_scenario(path)
    return str(info.value)


def write(tmp_path, data, name="s.yaml") -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    path.write_bytes(data)
    return path


# --- the scenario YAML: each case refused by the API and by the CLI, naming file and line ------

DEEP = "a: " + "[" * 3000 + "]" * 3000 + "\n"
BIG_INT = "9" * 401

YAML_CASES = [
    # id, file bytes or text, expected line (None: no line), fragments of the message
    ("nul", b"name: a\x00b\n", 1, ["U+0000 (NUL)", "line 1, column 8"]),
    ("form feed", VALID.replace("trials: 100", "trials: 100\x0c"), 4, ["U+000C (form feed)", "line 4"]),
    ("esc", b'name: "a\x1b[31mb"\n', 1, ["U+001B (ESC)"]),
    ("many NULs (UTF-16 without BOM)", "name: x\n".encode("utf-16-le"), 1, ["binary file or UTF-16"]),
    ("recursive alias", b"a: &x [*x]\n", 1, ["a[0]", "a value cannot hold itself"]),
    ("recursive mapping alias", b"a: &x {b: *x}\n", 1, ["a.b", "cannot hold itself"]),
    ("deep nesting", DEEP, 1, ["more than 100 levels deep"]),
    ("NUL escape in a name", VALID.replace("name: valid", 'name: "val\\0id"'), 1,
     ["name holds the control character U+0000 (NUL)"]),
    ("ESC escape in a value", VALID.replace("name: valid", 'name: "\\e[2Jx"'), 1, ["name", "U+001B (ESC)"]),
    ("lone surrogate", VALID.replace("name: valid", 'name: "a\\ud800"'), 1, ["name", "lone surrogate"]),
    ("control character in a key", VALID.replace("  direct:", '  "dir\\x07ect":'), 7,
     ["segments has a key holding the character U+0007"]),
    ("401-digit integer", VALID.replace("trials: 100", f"trials: {BIG_INT}"), 4,
     ["trials is an integer of 401 digits"]),
    ("5000-digit integer", VALID.replace("median: 3000", "median: " + "1" * 5000), 13,
     ["segments.direct.deal_value.median is an integer of 5,000 digits"]),
    ("hex integer beyond a float", VALID.replace("trials: 100", "trials: 0x" + "f" * 300), 4,
     ["trials is an integer"]),
    ("1e999", VALID.replace("median: 3000", "median: 1e999"), 13,
     ["segments.direct.deal_value.median is '1e999', beyond the largest number"]),
    ("unclosed quote on line 1", 'name: "abc\nstart: 2027-01-01\n' + "".join(f"k{i}: 1\n" for i in range(13)), 1,
     ["quoted scalar that opens at line 1, column 7 is never closed"]),
    ("unclosed bracket", "stages: [lead, won\nname: x\n", 1, ["flow sequence", "line 1"]),
    ("bad indentation", "a:\n  b: 1\n c: 2\n", 3, ["is not valid YAML"]),
    ("latin-1 text", "name: café\n".encode("latin-1"), 1, ["is not UTF-8 text", "0xe9", "save it as UTF-8"]),
    ("latin-1 on a later line", (VALID + "description: café\n").encode("latin-1"), 14, ["is not UTF-8 text"]),
    ("UTF-16 with a BOM", VALID.encode("utf-16"), 1, ["is UTF-16 text"]),
    ("python tag", "name: !!python/object/apply:os.system ['true']\n", 1, ["YAML tag", "not allowed"]),
    ("int tag on text", VALID + "description: !!int abc\n", 14, ["tagged !!int but 'abc' is not one"]),
    ("bool tag on text", VALID.replace("trials: 100", "trials: !!bool maybe"), 4, ["tagged !!bool"]),
    ("duplicate key", VALID + "name: again\n", 14, ["name is given twice in one mapping (lines 1 and 14)"]),
    ("a key of 5000 characters", VALID + '? "' + "k" * 5000 + '"\n: 1\n', 14, ["has a key of 5,000 characters"]),
    (".nan as a key", VALID.replace("{per_week: 120}", "{per_week: 120, seasonality: {.nan: 1}}"), 8,
     ["seasonality has the key .nan"]),
    ("billion laughs", "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcde", "bcdef")), 1,
     ["more than 500,000 values"]),
    ("horizon ending in 9999", VALID.replace("end: 2027-03-31", "end: 9999-12-31"), 3,
     ["end must be on or before 2262-04-11", "got 9999-12-31"]),
    ("horizon at date.max", VALID.replace("start: 2027-01-01", "start: 9999-12-31")
     .replace("end: 2027-03-31", "end: 9999-12-31"), 2, ["start must be on or before 2262-04-11"]),
    ("horizon past datetime64[ns]", VALID.replace("start: 2027-01-01", "start: 2300-01-01")
     .replace("end: 2027-03-31", "end: 2300-03-31"), 3, ["end must be on or before 2262-04-11"]),
    ("horizon at date.min", VALID.replace("start: 2027-01-01", "start: 0001-01-01"), 2,
     ["start must be on or after 1677-09-22"]),
    (".nan where a probability is expected", VALID.replace("convert: 0.25", "convert: .nan"), 10,
     ["segments.direct.funnel.lead.convert must be a probability in [0, 1]; got nan"]),
    (".inf where a finite number is expected", VALID.replace("median: 3000", "median: .inf"), 13,
     ["segments.direct.deal_value.median must be a number > 0; got inf"]),
]


@pytest.mark.parametrize("data,line,fragments", [c[1:] for c in YAML_CASES], ids=[c[0] for c in YAML_CASES])
def test_hostile_yaml_is_refused_with_file_and_line(tmp_path, data, line, fragments):
    path = write(tmp_path, data)
    message = refused(path)
    where = f"{path}:{line}:" if line else f"{path}:"
    assert where in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert len(message) < 6000
    res = cli("validate", path)
    assert_clean_refusal(res, where, *fragments)


@pytest.mark.parametrize("case", ["nul", "recursive alias", "deep nesting", "401-digit integer",
                                  "horizon ending in 9999", "latin-1 text"])
def test_run_refuses_and_writes_nothing(tmp_path, case):
    data = dict((c[0], c[1]) for c in YAML_CASES)[case]
    path = write(tmp_path, data)
    out = tmp_path / "out"
    res = cli("run", path, "--out", out, "--trials", 10, "--quiet")
    assert_clean_refusal(res, str(path))
    assert not out.exists()


def test_safe_loading_never_runs_anything(tmp_path):
    marker = tmp_path / "pwned"
    text = VALID + f"description: !!python/object/apply:os.system ['touch {marker}']\n"
    for tag in ("!!python/object/apply:os.system", "!!python/name:os.system", "!!python/object/new:os.system",
                "!python/object/apply:os.system", "!<tag:yaml.org,2002:python/object/apply:os.system>"):
        path = write(tmp_path, text.replace("!!python/object/apply:os.system", tag))
        assert "is not allowed" in refused(path)
    assert not marker.exists()


def test_bom_and_crlf_are_fine(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbf" + VALID.replace("\n", "\r\n").encode())
    assert fc.load_scenario(path).name == "valid"


def test_empty_and_comment_only_files(tmp_path):
    for data in (b"", b"   \n\n", b"# only a comment\n"):
        path = write(tmp_path, data)
        assert "is empty; expected a scenario mapping" in refused(path)
        assert_clean_refusal(cli("validate", path), str(path))


def test_many_problems_are_summarised(tmp_path):
    path = write(tmp_path, "".join(f"a: {i}\n" for i in range(3000)))
    message = refused(path)
    assert f"and {2999 - yamlio.MAX_PROBLEMS:,} more problems like these" in message
    assert message.count("\n") <= yamlio.MAX_PROBLEMS + 1


def test_long_lines_are_read(tmp_path):
    from forecaster.scenario.validation import MAX_TEXT
    path = write(tmp_path, VALID + "description: " + "y" * MAX_TEXT + "  # " + "z" * 2_000_000 + "\n")
    assert len(fc.load_scenario(path).description) == MAX_TEXT
    path = write(tmp_path, VALID + "description: " + "y" * 2_000_000 + "\n")
    with pytest.raises(fc.ScenarioError, match="description must be at most 100,000 characters; got 2,000,000"):
        fc.load_scenario(path)


def test_load_yaml_api_refuses_too():
    with pytest.raises(fc.ScenarioError, match=r"^f\.yaml:1: .*U\+001B"):
        yamlio.load_yaml("a: \x1b\n", "f.yaml")
    with pytest.raises(fc.ScenarioError, match="cannot hold itself"):
        yamlio.load_yaml("a: &x {b: [*x]}\n", "f.yaml")
    with pytest.raises(fc.ScenarioError, match="more than 100 levels deep"):
        yamlio.load_yaml("a:\n" + "".join("  " * i + f"- k{i}:\n" for i in range(1, 150)), "f.yaml")
    # aliases that share (not contain) a value are fine
    data, _ = yamlio.load_yaml("a: &x {b: 1}\nc: [*x, *x]\n", "f.yaml")
    assert data == {"a": {"b": 1}, "c": [{"b": 1}, {"b": 1}]}
    # text may hold tabs and line breaks
    data, _ = yamlio.load_yaml('a: "x\\ty"\nb: |\n  one\n  two\n', "f.yaml")
    assert data == {"a": "x\ty", "b": "one\ntwo\n"}


# --- not a regular file, too large, unreadable ------------------------------------------------

def test_folder_missing_and_permission(tmp_path, monkeypatch):
    assert "is a folder; expected a YAML file" in refused(tmp_path)
    assert "does not exist" in refused(tmp_path / "nope.yaml")

    def denied(path, limit):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(loading, "read_limited", denied)
    path = write(tmp_path, VALID)
    message = refused(path)
    assert message == f"{path}: cannot be read: Permission denied"
    assert_clean_refusal(cli("validate", path), message)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "s.yaml"
    os.mkfifo(fifo)
    res = subprocess.run([sys.executable, "-m", "forecaster", "validate", str(fifo)], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 2, res.stderr
    assert f"{fifo}: is a FIFO (named pipe); expected a YAML file" in res.stderr
    assert "Traceback" not in res.stderr
    # and as the pipeline
    (tmp_path / "s2.yaml").write_text(VALID + "pipeline: {file: s.yaml}\n")
    assert "pipeline.file names 's.yaml', which is a FIFO (named pipe)" in refused(tmp_path / "s2.yaml")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_dev_zero_is_refused_up_front(tmp_path):
    res = subprocess.run([sys.executable, "-m", "forecaster", "validate", "/dev/zero"], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 2 and "/dev/zero: is a character device; expected a YAML file" in res.stderr
    assert "Traceback" not in res.stderr
    (tmp_path / "s.yaml").write_text(VALID + "pipeline: {file: /dev/zero}\n")
    assert "which is a character device; expected a CSV file" in refused(tmp_path / "s.yaml")


def test_scenario_size_is_bounded(tmp_path, monkeypatch):
    assert loading.MAX_SCENARIO_BYTES == 16 * 2 ** 20
    path = write(tmp_path, VALID + "#" * 200)
    monkeypatch.setattr(loading, "MAX_SCENARIO_BYTES", 64)
    message = refused(path)
    assert message == (f"{path}: is larger than 64 bytes, the most a scenario file may hold; "
                       "is it the right file?")
    monkeypatch.undo()
    big = write(tmp_path, b"#" * (16 * 2 ** 20 + 1), "big.yaml")
    assert_clean_refusal(cli("validate", big), "is larger than 16 MiB, the most a scenario file may hold")


# --- the pipeline CSV -------------------------------------------------------------------------

def pipeline_problem(tmp_path, data) -> str:
    write(tmp_path, data, "p.csv")
    path = write(tmp_path, WITH_PIPELINE)
    message = refused(path)
    assert message.startswith(f"{path}:14: pipeline.file") or message.startswith(f"{path}: "), message
    res = cli("validate", path)
    assert_clean_refusal(res, str(path))
    return message


SHADOW = f"root:$6$salt${SECRET}:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"

NOT_CSV = [
    ("binary with NUL", b"\x7fELF\x02\x01\x01\x00\x00" + SECRET.encode() + b"\x00", "line 1 holds NUL bytes"),
    ("PNG", b"\x89PNG\r\n\x1a\n" + SECRET.encode(), "is not a CSV text file in UTF-8: line 1 holds the byte 0x89"),
    ("shadow-like text", SHADOW, "is not a pipeline CSV: its first line is not a header"),
    ("prose with a comma", f"Dear Sam, the password is {SECRET}\n", "is not a pipeline CSV"),
    ("NUL on a later line", HEADER + ROW + f"D2,dir\x00ect,{SECRET},2026-12-01,1\n", "line 3 holds NUL bytes"),
    ("Windows-1252 on a later line", (HEADER + ROW + f"D2,dirécte,{SECRET},2026-12-01,1\n").encode("cp1252"),
     "line 3 holds the byte 0xe9"),
    ("UTF-16", (HEADER + ROW).encode("utf-16"), "is UTF-16 text, not a UTF-8 CSV text file"),
]


@pytest.mark.parametrize("data,fragment", [c[1:] for c in NOT_CSV], ids=[c[0] for c in NOT_CSV])
def test_a_file_that_is_not_a_csv_is_never_echoed(tmp_path, data, fragment):
    message = pipeline_problem(tmp_path, data)
    assert fragment in message
    assert SECRET not in message and "root:" not in message and "$6$" not in message and "ELF" not in message


def test_a_plausible_header_is_echoed_bounded_and_escaped(tmp_path):
    message = pipeline_problem(tmp_path, "Id,Name,Amount,CloseDate\n1,x,2,2020-01-01\n")
    assert "lacks the columns deal_id, segment, stage, entered_stage; its header is: 'Id', 'Name', " in message
    message = pipeline_problem(tmp_path, "Deal ID,Segment,Stage,Entered Stage\n")
    assert "(column names are exact, in lower case with underscores: deal_id, entered_stage" in message
    long = "deal_id," + "x" * 5000 + "\x1b,seg\n"
    message = pipeline_problem(tmp_path, long)
    assert "x" * 100 not in message and "\x1b" not in message and "(5001 characters)" in message


@pytest.mark.parametrize("data,fragment", [
    (HEADER.replace(",", ";") + ROW.replace(",", ";"), "is separated by semicolons, not commas"),
    (HEADER.strip() + ",amount\n" + ROW.strip() + ",200\n", "names the column amount more than once"),
    (HEADER + "D1,direct,lead,2026-12-01,1,000\n", "line 2: has 6 cells but the header has 5 columns"),
    (HEADER + 'D1,direct,lead,2026-12-01,"' + "1" * 200_000 + '"\n', "line 2 cannot be read as CSV"),
    (HEADER + f"D1,\x1b[2J{'s' * 500},lead,2026-12-01,1\n", "segment '\\x1b[2Jsssss"),
    (HEADER + "D1,direct,lead,2026-12-01,1e999\n", "amount must be a number >= 0 or empty; got '1e999'"),
    (HEADER + "D1,direct,lead,2026-12-01,nan\n", "got 'nan'"),
    (HEADER + "D1,direct,lead,2026-W48-1,1\n", "entered_stage must be an ISO date (YYYY-MM-DD); got '2026-W48-1'"),
    ("", "is empty"),
    ("\n" + HEADER, "is empty or starts with a blank line"),
], ids=["semicolons", "duplicate column", "unquoted comma", "unclosed quote", "escape codes in a cell",
        "inf amount", "nan amount", "week date", "empty", "blank first line"])
def test_pipeline_problems(tmp_path, data, fragment):
    message = pipeline_problem(tmp_path, data)
    assert fragment in message, message
    assert len(message) < 2000 and "\x1b" not in message


def test_pipeline_line_numbers_count_lines_not_records(tmp_path):
    data = HEADER + 'D1,direct,lead,2026-12-01,1\n"D\n2",direct,lead,2026-12-01,1\nD3,bad,lead,2026-12-01,1\n'
    assert "p.csv line 5: segment 'bad' is not a segment" in pipeline_problem(tmp_path, data)


def test_pipeline_size_and_line_length_are_bounded(tmp_path, monkeypatch):
    assert pipeline.MAX_PIPELINE_BYTES == 2 ** 30 and pipeline.MAX_LINE_BYTES == 2 ** 20
    message = pipeline_problem(tmp_path, HEADER + "D1,direct,lead,2026-12-01," + "9" * (2 ** 20 + 10) + "\n")
    assert "p.csv line 2 is longer than 1 MiB" in message
    monkeypatch.setattr(pipeline, "MAX_PIPELINE_BYTES", 100)
    message = pipeline_problem(tmp_path, HEADER + ROW * 10)
    assert "p.csv is larger than 100 bytes, the most a pipeline file may hold" in message


def test_pipeline_permission_denied(tmp_path, monkeypatch):
    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(pipeline, "open_input", denied)
    assert "pipeline.file names 'p.csv', which cannot be read: Permission denied" in pipeline_problem(tmp_path, ROW)


def test_pipeline_folder(tmp_path):
    (tmp_path / "p.csv").mkdir()
    path = write(tmp_path, WITH_PIPELINE)
    assert "pipeline.file names 'p.csv', which is a folder; expected a CSV file" in refused(path)


def test_good_pipelines_still_read_and_hash_as_before(tmp_path):
    for data in (HEADER + ROW, "\ufeff" + HEADER + ROW, (HEADER + ROW).replace("\n", "\r\n"),
                 HEADER + ROW + 'D2,direct,lead,2026-12-01,"2"\n'):
        raw = data.encode()
        write(tmp_path, raw, "p.csv")
        path = write(tmp_path, WITH_PIPELINE)
        sc = fc.load_scenario(path)
        assert sc.pipeline[0].deal_id == "D1" and sc.pipeline[0].amount == 100.0
        assert sc.sha256 == hashlib.sha256(WITH_PIPELINE.encode() + raw).hexdigest()


# --- the calendar at its ends -------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["day", "week", "month", "quarter"])
def test_periods_reach_date_max(kind):
    start, end = date(9999, 10, 1), date.max
    p = periods(start, end, kind)
    n = (end - start).days + 1
    assert len(p.of_day) == n and p.last_day[-1] == n - 1
    assert p.starts[0] == start and np.all(np.diff(p.of_day) >= 0)
    assert period_end(date.max, kind) == date.max
    assert period_end(date(9999, 12, 27), kind) <= date.max


def test_period_end_is_unchanged_elsewhere():
    day = date(2023, 1, 1)
    for _ in range(800):
        for kind, expected in (("month", (date(day.year + day.month // 12, day.month % 12 + 1, 1)
                                          - timedelta(days=1))),
                               ("week", day + timedelta(days=6 - day.weekday()))):
            assert period_end(day, kind) == expected
        day += timedelta(days=1)
    assert period_end(date(2024, 2, 10), "quarter") == date(2024, 3, 31)
    assert period_end(date(2024, 11, 10), "quarter") == date(2024, 12, 31)


def test_day_calendar_and_datetimes_at_the_ends():
    month, month_len, elapsed = day_calendar(date(9999, 11, 30), date.max)
    assert month[-1] == 12 and month_len[-1] == 31 and elapsed[-1] == 1
    with pytest.raises(OverflowError):
        periods(date(2300, 1, 1), date(2300, 3, 31), "month").datetimes()
    got = periods(date(2262, 1, 1), date(2262, 4, 11), "month").datetimes()
    assert str(got[-1]) == "2262-04-01T00:00:00.000000000"


def test_the_last_datable_day_is_accepted(tmp_path):
    text = VALID.replace("start: 2027-01-01", "start: 2262-03-01").replace("end: 2027-03-31", "end: 2262-04-11")
    sc = fc.load_scenario(write(tmp_path, text))
    assert sc.end == date(2262, 4, 11)


def test_scenario_from_dict_refuses_dates_too():
    import yaml

    data = yaml.safe_load(textwrap.dedent(VALID))
    data["end"] = date(9999, 12, 31)
    with pytest.raises(fc.ScenarioError, match=r"<scenario>: end must be on or before 2262-04-11"):
        fc.scenario_from_dict(data)
