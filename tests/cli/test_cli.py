"""The command line, as a user meets it."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import SCENARIOS

from forecaster.cli import main


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)


def test_run_prints_a_summary_and_writes_both_files(tmp_path):
    res = invoke("run", SCENARIOS / "saas-quarter.yaml", "--out", tmp_path / "o", "--trials", 800)
    assert res.exit_code == 0, res.output
    for fragment in ("saas-fy27-q1: 800 trials, seed 2027", "Revenue [USD]", "95% CI of mean", "Won deals",
                     "Commission by rep", "P(reach quota)", "chloe", "Targets", "4,500,000"):
        assert fragment in res.output, fragment
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["trials"] == 800 and (tmp_path / "o" / "forecast.nc").exists()


def test_quiet_prints_nothing(tmp_path):
    res = invoke("run", SCENARIOS / "minimal.yaml", "--out", tmp_path / "o", "--trials", 100, "--quiet")
    assert res.exit_code == 0 and res.output == ""


@pytest.mark.parametrize("quiet", [False, True])
def test_quiet_silences_the_first_compile_message_and_errors_still_show(tmp_path, monkeypatch, quiet):
    """A cold cache's "compiling the simulation kernels" line is progress, not an error: -q
    drops it. The kernels are warm in this process, so the run announces a compile of one of
    forecaster's kernels to numba's event listeners, as numba does before compiling it."""
    from numba.core import event

    from forecaster.engine import _numba, kernels
    from forecaster.results import outputs

    monkeypatch.setattr(_numba._first_compile, "said", False)
    monkeypatch.setattr(_numba._first_compile, "silent", False, raising=False)
    real = outputs.run_to_folder

    def compiling_first(*args, **kwargs):
        with event.trigger_event("numba:compile", data={"dispatcher": kernels.response_factor}):
            pass
        return real(*args, **kwargs)

    monkeypatch.setattr(outputs, "run_to_folder", compiling_first)
    flags = ["--quiet"] if quiet else []
    res = CliRunner().invoke(main, ["run", str(SCENARIOS / "minimal.yaml"), "--out", str(tmp_path / "o"),
                                    "--trials", "100", *flags])
    assert res.exit_code == 0, res.output
    assert ("compiling the simulation kernels" in res.stderr) is not quiet, res.stderr
    if quiet:
        assert res.stdout == "" and res.stderr == ""
        assert not _numba.compiles_quiet()  # for the command's duration only
        bad = tmp_path / "bad.yaml"
        bad.write_text("name: x\n")
        res = CliRunner().invoke(main, ["run", str(bad), "--out", str(tmp_path / "b"), "-q"])
        assert res.exit_code == 2 and "bad.yaml" in res.stderr


def test_validate_reports_valid_and_invalid(tmp_path):
    res = invoke("validate", SCENARIOS / "saas-quarter.yaml")
    assert res.exit_code == 0
    assert "valid (saas-fy27-q1: 3 segments, 4 stages, 90 days by month, 340 pipeline deals, 6 reps)" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text((SCENARIOS / "minimal.yaml").read_text().replace("convert: 0.25", "convert: 2")
                   .replace("per_week: 120", "per_wek: 120"))
    res = CliRunner().invoke(main, ["validate", str(bad)])
    assert res.exit_code == 2
    assert "bad.yaml: 3 problems" in res.output  # the bad key, the missing source, the probability
    assert "per_wek is not a known key here (did you mean 'per_week'?)" in res.output
    assert "Traceback" not in res.output



def test_validate_checks_several_files_and_fails_if_any_is_bad(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n")
    files = [SCENARIOS / "minimal.yaml", bad, SCENARIOS / "saas-quarter.yaml"]
    res = CliRunner().invoke(main, ["validate", *map(str, files)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "minimal.yaml: valid (minimal" in res.output and "saas-quarter.yaml: valid (saas-fy27-q1" in res.output
    assert "bad.yaml: 4 problems" in res.output and "1 of 3 files are not valid scenarios" in res.output
    good = CliRunner().invoke(main, ["validate", str(SCENARIOS / "minimal.yaml"), str(SCENARIOS / "saas-quarter.yaml")])
    assert good.exit_code == 0 and good.output.count(": valid (") == 2
    assert CliRunner().invoke(main, ["validate"]).exit_code == 2  # a file is still required
    variant = tmp_path / "v.yaml"  # a batch folder's variant file: batch skips it, validate says so
    variant.write_text("scale:\n  segments.direct.leads.per_week: 2\n")
    res = CliRunner().invoke(main, ["validate", str(SCENARIOS / "minimal.yaml"), str(variant)])
    assert res.exit_code == 0 and "v.yaml: a variant file (changes to a base scenario)" in res.output

def test_bad_input_exits_2_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n")
    res = CliRunner().invoke(main, ["run", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "start is missing" in res.output
    assert not (tmp_path / "o").exists()


def test_usage_errors_exit_2():
    res = CliRunner().invoke(main, ["run", str(SCENARIOS / "minimal.yaml")])
    assert res.exit_code == 2 and "--out" in res.output
    res = CliRunner().invoke(main, ["run", str(SCENARIOS / "minimal.yaml"), "--out", "x", "--trials", "0"])
    assert res.exit_code == 2


def test_internal_errors_exit_1_without_traceback(tmp_path, monkeypatch):
    import forecaster.results.outputs as outputs

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(outputs, "run_to_folder", boom)
    res = CliRunner().invoke(main, ["run", str(SCENARIOS / "minimal.yaml"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert "Internal error: RuntimeError: kaboom" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("command", ["run", "validate", "schema"])
def test_help_shows_an_example(command):
    res = invoke(command, "--help")
    assert res.exit_code == 0 and "Example" in res.output


def test_schema_is_json():
    res = invoke("schema")
    schema = json.loads(res.output)
    assert schema["title"] == "forecaster scenario" and "segments" in schema["properties"]


def test_python_dash_m_and_version():
    out = subprocess.run([sys.executable, "-m", "forecaster", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "forecaster, version" in out.stdout


def test_progress_bar_appears_only_after_a_moment(monkeypatch):
    from forecaster.present.console import LazyProgress

    quick = LazyProgress(1000, "x", enabled=True, delay=60)
    quick(500)
    assert quick.bar is None
    slow = LazyProgress(1000, "x", enabled=True, delay=0)
    slow(500)
    assert slow.bar is not None and slow.bar.tasks[0].completed == 500
    slow(250)
    assert slow.bar.tasks[0].completed == 750
    slow.close()
    off = LazyProgress(1000, "x", enabled=False, delay=0)
    off(500)
    assert off.bar is None and off.done == 500
