"""A command's output folder holds one result, never a mix of this run's files and an older one's.

Issue 14: re-running ``forecaster run`` without ``--report`` into a folder left the old
``report.md`` (10,000 trials) beside the new ``summary.json`` (500 trials). Each command now
declares every file it may write (``forecaster.results.files.OUTPUTS``), and publishing its
marker file removes the files of that set it did not write this time, and nothing else.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SCENARIOS, VALID

from forecaster.cli import main
from forecaster.results import files
from forecaster.results.files import OUTPUTS, Outputs, Staged

SCENARIO = VALID.replace("name: valid", "name: st")
VARIANT = "name: v\nscale: {segments.direct.leads.per_week: 2}\n"
EXPORTS = ("forecast.xlsx", "trials.parquet", "reps.parquet", "tables/periods.csv", "tables/reps.csv")


def _history() -> str:
    rows = []
    for i in range(45):
        month, outcome = 1 + i % 3, ("won", "lost", "open")[i % 3]
        closed = "" if outcome == "open" else f"2025-{month:02d}-28"
        rows.append(f"d{i},2025-{month:02d}-{1 + i % 27:02d},{outcome},{closed},{100 + i}")
    return "\n".join(["deal_id,lead,outcome,closed,amount", *rows]) + "\n"


@pytest.fixture
def case(tmp_path, monkeypatch):
    """s.yaml, v.yaml, b/s.yaml and h.csv in a working directory of their own."""
    (tmp_path / "s.yaml").write_text(SCENARIO)
    (tmp_path / "v.yaml").write_text(VARIANT)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "s.yaml").write_text(SCENARIO)
    (tmp_path / "h.csv").write_text(_history())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args):
    result = CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def listing(folder: Path) -> set[str]:
    """Every file under ``folder``, relative, temporaries included (there must be none)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}


def user_files(out: Path) -> dict[str, bytes]:
    """Files a user keeps in an output folder: forecaster must never touch them."""
    (out / "tables").mkdir(parents=True, exist_ok=True)
    made = {"notes.md": b"my notes\n", "report.md.bak": b"old copy\n", "tables/README.txt": b"mine\n",
            "tables/my-pivot.csv": b"my,own\n", "summary.json.txt": b"x\n"}
    for name, data in made.items():
        (out / name).write_bytes(data)
    return made


def still_there(out: Path, made: dict[str, bytes]) -> bool:
    return all((out / name).read_bytes() == data for name, data in made.items())


def fake_exports(out: Path) -> None:
    """Export files as ``run --export`` writes them (their content does not matter here)."""
    for name in EXPORTS:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("from an older run\n")


# --- run ---------------------------------------------------------------------------------------

def test_a_run_without_report_removes_the_previous_runs_report_and_exports(case):
    out = case / "out"
    invoke("run", "s.yaml", "--out", out, "--trials", "400", "--report", "-q")
    assert {"report.md", "report.html"} <= listing(out)
    fake_exports(out)
    mine = user_files(out)
    invoke("run", "s.yaml", "--out", out, "--trials", "300", "-q")
    assert listing(out) == {"forecast.nc", "summary.json", *mine}
    assert json.loads((out / "summary.json").read_text())["trials"] == 300
    assert still_there(out, mine)


def test_a_run_with_report_leaves_a_report_of_this_run(case):
    out = case / "out"
    invoke("run", "s.yaml", "--out", out, "--trials", "400", "--report", "-q")
    invoke("run", "s.yaml", "--out", out, "--trials", "300", "--report", "-q")
    assert listing(out) == {"forecast.nc", "summary.json", "report.md", "report.html"}
    assert "300 trials" in (out / "report.md").read_text()
    assert "400 trials" not in (out / "report.md").read_text()


def test_keep_summary_leaves_the_summary_alone(case):
    out = case / "out"
    invoke("run", "s.yaml", "--out", out, "--trials", "400", "--report", "-q")
    fake_exports(out)
    invoke("run", "s.yaml", "--out", out, "--trials", "300", "--keep", "summary", "-q")
    assert listing(out) == {"summary.json"}  # tables/ emptied of its files is removed too
    assert not (out / "tables").exists()


def test_the_python_api_replaces_the_result_set_too(case):
    import forecaster as fc

    out = case / "out"
    invoke("run", "s.yaml", "--out", out, "--trials", "400", "--report", "-q")
    fc.run("s.yaml", out, trials=300)
    assert listing(out) == {"forecast.nc", "summary.json"}


def test_a_link_in_place_of_a_stale_file_is_removed_not_what_it_points_to(case):
    out = case / "out"
    invoke("run", "s.yaml", "--out", out, "--trials", "300", "-q")
    (case / "elsewhere.md").write_text("a user's file\n")
    (out / "report.md").symlink_to(case / "elsewhere.md")
    invoke("run", "s.yaml", "--out", out, "--trials", "300", "-q")
    assert not os.path.lexists(out / "report.md")
    assert (case / "elsewhere.md").read_text() == "a user's file\n"


def test_a_folder_named_like_an_output_is_never_removed(case):
    out = case / "out"
    invoke("run", "s.yaml", "--out", out, "--trials", "300", "-q")
    (out / "tables" / "odd.csv").mkdir(parents=True)  # a folder, though the glob names it
    invoke("run", "s.yaml", "--out", out, "--trials", "300", "-q")
    assert (out / "tables" / "odd.csv").is_dir()


# --- the other commands --------------------------------------------------------------------------

def test_compare_removes_the_previous_comparisons_chart(case):
    out = case / "out"
    invoke("compare", "s.yaml", "v.yaml", "--out", out, "--trials", "200", "-q")
    invoke("report", out)
    assert "compare.html" in listing(out)
    mine = user_files(out)
    invoke("compare", "s.yaml", "v.yaml", "--out", out, "--trials", "150", "-q")
    assert listing(out) == {"compare.nc", "compare.json", *mine}
    assert still_there(out, mine)


def test_sensitivity_removes_the_previous_sensitivitys_chart(case):
    out = case / "out"
    invoke("sensitivity", "s.yaml", "--out", out, "--trials", "100", "-q")
    invoke("report", out)
    assert "sensitivity.html" in listing(out)
    invoke("sensitivity", "s.yaml", "--out", out, "--trials", "100", "-q")
    assert listing(out) == {"sensitivity.nc", "sensitivity.json"}


def test_backtest_removes_the_previous_backtests_chart(case):
    out = case / "out"
    args = ("backtest", "h.csv", "--stages", "lead", "--cutoffs", "2025-02-28", "--months", "1", "--trials", "100",
            "--out", out)
    invoke(*args)
    invoke("report", out)
    assert "backtest.html" in listing(out)
    invoke(*args)
    assert listing(out) == {"backtest.json"}


def test_a_batch_run_folder_loses_the_exports_of_an_older_run(case):
    out = case / "out"
    invoke("batch", "b", "--out", out, "--trials", "100", "--quiet")
    fake_exports(out / "s")
    invoke("batch", "b", "--out", out, "--trials", "100", "--quiet", "--force")
    assert listing(out / "s") == {"forecast.nc", "summary.json", "report.md", "report.html"}


def test_results_of_different_commands_share_a_folder(case):
    """One command's result never removes another's: a run and a comparison in one folder."""
    out = case / "out"
    invoke("run", "s.yaml", "--out", out, "--trials", "300", "-q")
    invoke("compare", "s.yaml", "v.yaml", "--out", out, "--trials", "150", "-q")
    invoke("run", "s.yaml", "--out", out, "--trials", "300", "-q")
    assert listing(out) == {"forecast.nc", "summary.json", "compare.nc", "compare.json"}


# --- the declaration is complete and consistent ----------------------------------------------------

COMMANDS = {
    "run": ["run", "s.yaml", "--out", "o", "--trials", "200", "--report", "-q"],
    "compare": ["compare", "s.yaml", "v.yaml", "--out", "o", "--trials", "100", "-q"],
    "sensitivity": ["sensitivity", "s.yaml", "--out", "o", "--trials", "100", "-q"],
    "backtest": ["backtest", "h.csv", "--stages", "lead", "--cutoffs", "2025-02-28", "--months", "1", "--trials",
                 "100", "--out", "o"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_file_a_command_writes_is_declared(case, command):
    """A file a command (and `forecaster report` after it) writes that OUTPUTS does not name
    would be left behind by the next run: the declaration must list it."""
    invoke(*COMMANDS[command])
    if command != "run":
        invoke("report", "o")
    written = listing(case / "o")
    assert written and set(OUTPUTS[command].present(case / "o")) == written


EXPORTED = {
    "run saas-quarter": ["run", SCENARIOS / "saas-quarter.yaml", "--out", "o", "--trials", "100", "--export",
                         "csv,xlsx,parquet", "-q"],
    "run saas-subscriptions": ["run", SCENARIOS / "saas-subscriptions.yaml", "--out", "o", "--trials", "100",
                               "--export", "csv,xlsx,parquet", "-q"],
    "compare": [*COMMANDS["compare"], "--export", "csv,xlsx,parquet"],
    "sensitivity": [*COMMANDS["sensitivity"], "--export", "csv,xlsx,parquet"],
    "backtest": [*COMMANDS["backtest"], "--export", "csv,xlsx"],
}


@pytest.mark.parametrize("case_name", sorted(EXPORTED))
def test_every_table_an_export_writes_is_declared(case, case_name):
    """Every export file (each table's CSV by its exact name) is in the command's OUTPUTS."""
    args = EXPORTED[case_name]
    command = args[0]
    invoke(*args)
    written = listing(case / "o")
    tables = {n for n in written if n.endswith(".csv")}
    assert tables and written == set(OUTPUTS[command].present(case / "o"))
    assert not any("*" in n for n in OUTPUTS[command].names)


@pytest.mark.parametrize("export", [["--export", "csv"], []], ids=["with --export", "without --export"])
def test_a_users_own_csv_in_the_tables_folder_survives_re_runs(case, export):
    out = case / "out"
    invoke("run", "s.yaml", "--out", out, "--trials", "200", "--export", "csv,xlsx", "-q")
    assert (out / "tables" / "periods.csv").exists()
    (out / "tables" / "my-pivot.csv").write_text("x\n")
    invoke("run", "s.yaml", "--out", out, "--trials", "150", *export, "-q")
    assert (out / "tables" / "my-pivot.csv").read_text() == "x\n"
    exported = {n for n in listing(out) if n.startswith("tables/") and n != "tables/my-pivot.csv"}
    assert bool(exported) == bool(export)
    invoke("run", "s.yaml", "--out", out, "--trials", "150", "-q")
    assert listing(out) == {"forecast.nc", "summary.json", "tables/my-pivot.csv"}


def test_no_file_belongs_to_two_commands():
    seen: dict[str, str] = {}
    for outputs in OUTPUTS.values():
        for name in outputs.names:
            assert name not in seen, f"{name} is declared by {seen[name]} and {outputs.command}"
            seen[name] = outputs.command
        assert not any(o.owns(outputs.marker) for o in OUTPUTS.values() if o is not outputs)


def test_the_batch_run_folder_files_are_the_runs():
    from forecaster.present.batch import RUN_FILES

    assert all(OUTPUTS["run"].owns(name) for name in RUN_FILES)


def test_a_glob_owns_only_its_own_folder():
    run = OUTPUTS["run"]
    assert run.owns("tables/periods.csv") and run.owns("report.md")
    assert not run.owns("tables/sub/periods.csv") and not run.owns("periods.csv")
    assert not run.owns("tables/my-pivot.csv")  # exact names: a user's own CSV beside the tables is theirs
    assert not run.owns("tables/notes.txt") and not run.owns("report.md.bak")
    with pytest.raises(ValueError, match="marker"):
        Outputs("x", "x.json", ("x.nc",))


# --- the publication is one step --------------------------------------------------------------------

def test_a_failed_publication_puts_the_stale_files_back(tmp_path, monkeypatch):
    out = tmp_path
    old = {"forecast.nc": b"old nc", "summary.json": b"old json", "report.md": b"old md", "tables/revenue.csv": b"c"}
    for name, data in old.items():
        (out / name).parent.mkdir(exist_ok=True)
        (out / name).write_bytes(data)
    real = os.replace
    calls = []

    def failing(src, dst, *a, **k):
        calls.append(dst)
        if str(dst).endswith("summary.json"):
            raise OSError(28, "No space left on device")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(files.os, "replace", failing)
    with pytest.raises(OSError), Staged(out) as staged:
        staged.path("forecast.nc").write_bytes(b"new nc")
        staged.path("summary.json").write_bytes(b"new json")
        staged.publish()
    assert {name: (out / name).read_bytes() for name in old} == old
    assert listing(out) == set(old)  # no temporary left


def test_a_publication_without_the_marker_removes_nothing(tmp_path):
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "forecast.xlsx").write_text("x")
    with Staged(tmp_path) as staged:
        staged.path("report.md").write_text("r")
        staged.publish()
    assert listing(tmp_path) == {"summary.json", "forecast.xlsx", "report.md"}


def test_files_in_a_subfolder_are_staged_and_published_together(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "reps.csv").write_text("stale")  # an older run's table: removed
    (tmp_path / "tables" / "old.csv").write_text("mine")  # not a declared name: the user's, kept
    with Staged(tmp_path) as staged:
        staged.path("tables/periods.csv").write_text("r")
        staged.path("summary.json").write_text("{}")
        staged.publish()
    assert listing(tmp_path) == {"tables/periods.csv", "tables/old.csv", "summary.json"}


def test_an_unpublished_subfolder_is_removed_again(tmp_path):
    with pytest.raises(RuntimeError), Staged(tmp_path) as staged:
        staged.path("tables/revenue.csv").write_text("r")
        raise RuntimeError("failed before publishing")
    assert list(tmp_path.iterdir()) == []


def test_check_outputs_refuses_a_folder_where_a_stale_file_would_go(tmp_path):
    from forecaster.errors import OutputError

    (tmp_path / "summary.json").mkdir()
    with pytest.raises(OutputError, match="summary.json is a folder"):
        files.check_outputs(tmp_path, "run")
