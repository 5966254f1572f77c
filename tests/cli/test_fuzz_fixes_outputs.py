"""Fuzz battery findings on outputs and command-line options (benchmarks/fuzz.py, families
out, options and variants): every user error exits 2 with a one-line message and writes
nothing; none is an internal error (exit 1)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import VALID

from forecaster.cli import main
from forecaster.errors import OutputError
from forecaster.results import files, outputs
from forecaster.results.files import write_together

MINIMAL = VALID.replace("name: valid", "name: fz").replace("trials: 100", "trials: 200")
VARIANT = "name: v\nscale: {segments.direct.leads.per_week: 2}\n"
LONG_NAME = "n" * 300
LONG_PATH = "/".join(["d" * 200] * 25)


def _history() -> str:
    rows = []
    for i in range(45):
        month, outcome = 1 + i % 3, ("won", "lost", "open")[i % 3]
        closed = "" if outcome == "open" else f"2025-{month:02d}-28"
        rows.append(f"d{i},2025-{month:02d}-{1 + i % 27:02d},{outcome},{closed},{100 + i}")
    return "\n".join(["deal_id,lead,outcome,closed,amount", *rows]) + "\n"


@pytest.fixture
def case(tmp_path, monkeypatch):
    """A folder with s.yaml, v.yaml, b/s.yaml and h.csv, made the working directory."""
    (tmp_path / "s.yaml").write_text(MINIMAL)
    (tmp_path / "v.yaml").write_text(VARIANT)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "s.yaml").write_text(MINIMAL)
    (tmp_path / "h.csv").write_text(_history())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def tree(folder: Path) -> set:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)


def refused(result, *words):
    """Exit 2, no internal error, and an Error line holding every one of ``words``."""
    assert result.exit_code == 2, result.output
    assert "Internal error" not in result.output
    line = next(x for x in result.output.splitlines() if x.startswith("Error:"))
    for w in words:
        assert w in line, line
    return line


COMMANDS = {
    "run": lambda o: ["run", "s.yaml", "--out", o, "--trials", "100"],
    "compare": lambda o: ["compare", "s.yaml", "v.yaml", "--out", o, "--trials", "100"],
    "sensitivity": lambda o: ["sensitivity", "s.yaml", "--out", o, "--trials", "100", "--quiet"],
    "batch": lambda o: ["batch", "b", "--out", o, "--trials", "100", "--quiet"],
    "backtest": lambda o: ["backtest", "h.csv", "--stages", "lead", "--cutoffs", "2025-02-28", "--months", "1",
                           "--trials", "100", "--out", o],
}


# 1. a name or path too long: exit 2 naming --out (shortened), nothing created

@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("target", [LONG_NAME, LONG_PATH], ids=["long-name", "long-path"])
def test_an_out_too_long_is_refused_and_nothing_is_created(case, command, target):
    before = tree(case)
    line = refused(invoke(*COMMANDS[command](target)), "--out", "too long")
    assert len(line) < 400  # the path is shortened in the message
    assert tree(case) == before


@pytest.mark.parametrize("target", [LONG_NAME + ".yaml", LONG_PATH + "/c.yaml", "x/y/" + "n" * 240 + ".yaml"],
                         ids=["long-name", "long-path", "long-name-in-new-folders"])
def test_calibrate_output_too_long_is_refused_and_nothing_is_created(case, target):
    before = tree(case)
    refused(invoke("calibrate", "h.csv", "--stages", "lead", "--as-of", "2025-03-31", "-o", target), "-o", "too long")
    assert tree(case) == before


def test_check_path_and_stat_never_raise_a_bare_oserror(tmp_path):
    with pytest.raises(OutputError, match="too long"):
        files.check_out(tmp_path / LONG_NAME)
    with pytest.raises(OutputError, match="too long"):
        files.prepare_folder(tmp_path / LONG_PATH)
    assert not any(tmp_path.iterdir())
    assert files.check_out(tmp_path) is True
    assert files.check_out(tmp_path / "new") is False


# 2. a failed write removes every folder it created

def test_write_together_removes_every_folder_it_made(tmp_path):
    folder = tmp_path / "a" / "b" / "c"
    with pytest.raises(OutputError):
        write_together(folder, {"ok.txt": "x", "n" * 300: "y"}, "-o test")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_comparison_write_removes_the_folders_it_made(case, monkeypatch):
    def fail(ds, path):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(outputs, "_to_netcdf", fail)
    before = tree(case)
    refused(invoke(*COMMANDS["compare"]("new/deeper/out")), "--out", "Input/output error")
    assert tree(case) == before


# 3. -o ending in a separator, or naming a folder, is not a file name

@pytest.mark.parametrize("target", ["o/", "o/.", "./", "d"])
def test_calibrate_o_must_name_a_file(case, target):
    (case / "d").mkdir()
    before = tree(case)
    result = invoke("calibrate", "h.csv", "--stages", "lead", "--as-of", "2025-03-31", "-o", target)
    assert result.exit_code == 2, result.output
    assert "-o" in result.output and ("expected a file name" in result.output or "is a directory" in result.output)
    assert tree(case) == before
    assert not (case / "o").exists()


# 4. every target checked before anything is written

@pytest.mark.parametrize("folder_name, extra", [("summary.json", []), ("forecast.nc", []),
                                                ("forecast.nc", ["--keep", "summary"])])
def test_run_refuses_a_folder_in_place_of_an_output_before_writing(case, folder_name, extra):
    (case / "out" / folder_name).mkdir(parents=True)
    before = tree(case)
    refused(invoke("run", "s.yaml", "--out", "out", "--trials", "100", *extra), "--out", folder_name)
    assert tree(case) == before


@pytest.mark.parametrize("command, name", [("compare", "compare.json"), ("sensitivity", "sensitivity.nc")])
def test_compare_and_sensitivity_refuse_a_folder_in_place_of_an_output(case, command, name):
    (case / "out" / name).mkdir(parents=True)
    before = tree(case)
    refused(invoke(*COMMANDS[command]("out")), "--out", name)
    assert tree(case) == before


# 5. --seed within 0..2**63-1 for every command; a scenario's larger seed is stored as text

@pytest.mark.parametrize("command", ["run", "compare", "sensitivity"])
@pytest.mark.parametrize("seed", ["9" * 30, str(2 ** 63), str(2 ** 64)])
def test_a_seed_beyond_64_bits_is_refused(case, command, seed):
    before = tree(case)
    refused(invoke(*COMMANDS[command]("out"), "--seed", seed), "--seed", str(2 ** 63 - 1))
    assert tree(case) == before


def test_the_largest_seed_runs(case):
    result = invoke("run", "s.yaml", "--out", "out", "--trials", "100", "--seed", str(2 ** 63 - 1), "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads((case / "out" / "summary.json").read_text())["seed"] == 2 ** 63 - 1


def test_compare_and_sensitivity_store_a_huge_scenario_seed(case):
    (case / "s.yaml").write_text(MINIMAL + f"seed: {2 ** 64}\n")
    for command, name in (("compare", "compare.json"), ("sensitivity", "sensitivity.json")):
        result = invoke(*COMMANDS[command]("out"), "--quiet")
        assert result.exit_code == 0, result.output
        assert json.loads((case / "out" / name).read_text())["seed"] == str(2 ** 64)


# 6. --trials from 2 to MAX_TRIALS for every command; memory checked before compare and sensitivity

@pytest.mark.parametrize("command", sorted(set(COMMANDS) - {"backtest"}))
@pytest.mark.parametrize("trials, words", [("100000001", ("--trials", "100,000,000")), ("9" * 30, ("--trials",)),
                                           ("1", ("--trials", "at least 2 trials are needed")),
                                           ("0", ("--trials", "at least 2"))])
def test_trials_outside_2_to_the_limit_are_refused(case, command, trials, words):
    before = tree(case)
    refused(invoke(*COMMANDS[command]("out"), "--trials", trials), *words)
    assert tree(case) == before


def test_trials_1_names_the_scenario_and_2_runs(case):
    refused(invoke("run", "s.yaml", "--out", "out", "--trials", "1"), "s.yaml", "--trials")
    result = invoke("run", "s.yaml", "--out", "out", "--trials", "2", "--quiet")
    assert result.exit_code == 0, result.output
    total = json.loads((case / "out" / "summary.json").read_text())["metrics"]["revenue"]["total"]
    assert total["std"] is not None and total["mean_ci_low"] is not None


@pytest.mark.parametrize("command", ["compare", "sensitivity"])
def test_compare_and_sensitivity_refuse_more_trials_than_memory_holds(case, monkeypatch, command):
    monkeypatch.setattr(outputs, "memory_total", lambda: 80 << 20)
    before = tree(case)
    refused(invoke(*COMMANDS[command]("out"), "--trials", "1000000"), "--trials", "memory", "fit")
    assert tree(case) == before


# 7. comparability problems name the variant's file and the base's, not the scenarios' names

@pytest.mark.parametrize("variant, words", [
    ("name: v\nset:\n  end: 2027-06-30\n", ("v.yaml: end", "the base s.yaml")),
    ("name: v\nset:\n  report_by: week\n", ("v.yaml: report_by", "the base s.yaml")),
    ("name: fz\nscale: {segments.direct.leads.per_week: 2}\n", ("v.yaml: name 'fz'", "the base s.yaml")),
])
def test_compare_names_the_files_that_do_not_compare(case, variant, words):
    (case / "v.yaml").write_text(variant)
    line = refused(invoke(*COMMANDS["compare"]("out")), *words)
    assert not line.startswith("Error: fz:")
    assert not (case / "out").exists()


def test_a_whole_scenario_with_two_problems_names_its_file(case):
    (case / "v.yaml").write_text(MINIMAL.replace("2027-03-31", "2027-06-30"))
    result = invoke(*COMMANDS["compare"]("out"))
    assert result.exit_code == 2
    assert "Error: v.yaml: 2 problems" in result.output
    assert "v.yaml: end is 2027-06-30, but the base s.yaml has 2027-03-31" in result.output
    assert not os.path.exists(case / "out")
