"""Reports (HTML in a real headless browser, Markdown) and batch runs."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess

import pytest
from click.testing import CliRunner
from conftest import SCENARIOS

import forecaster as fc
from forecaster.cli import main
from forecaster.present.batch import run_batch, safe_cell
from forecaster.present.report import write_report
from forecaster.results.outputs import run_to_folder

EVIL = """\
name: "<b>evil</b>"
description: "<script>alert('x')</script> & co"
start: 2027-01-01
end: 2027-03-31
trials: 300
stages: [a]
segments:
  "<script>alert(1)</script>":
    leads: {per_day: 5}
    funnel: {a: {convert: 0.5, days: 2}}
    deal_value: 100
team:
  reps:
    - {name: "<img src=x onerror=alert(2)>", segments: ["<script>alert(1)</script>"], quota: 1000}
commission: {period: month, tiers: [{rate: 0.1}]}
targets: {revenue: 10000}
"""


@pytest.fixture
def evil_run(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text(EVIL)
    run_to_folder(fc.load_scenario(path), tmp_path / "out")
    write_report(tmp_path / "out")
    return tmp_path / "out"


def test_report_has_its_parts_and_escapes_every_name(evil_run):
    page = (evil_run / "report.html").read_text()
    for part in ('class="chart fan"', 'class="chart histogram"', 'class="chart bars"', 'class="chart ranges"',
                 "Revenue P50", "P(revenue ≥ 10,000)", "By segment", "Commission per rep"):
        assert part in page, part
    assert "<script" not in page and "<img" not in page and "<b>evil" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch: self-contained
    md = (evil_run / "report.md").read_text()
    assert md.startswith("# \\<b\\>evil\\</b\\>: forecast") and "| period | revenue mean |" in md and "- Won deals: P50 " in md


def test_report_of_a_folder_without_a_run_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "no summary.json" in res.output


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(not CHROMIUM and os.environ.get("FORECASTER_REQUIRE_BROWSER") != "1",
                                   reason="no chromium here (.ci/run installs it and requires this test)")


@needs_browser
def test_report_renders_in_headless_chromium_without_console_errors(evil_run, tmp_path):
    assert CHROMIUM, "FORECASTER_REQUIRE_BROWSER=1 but chromium is not installed"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    url = (evil_run / "report.html").as_uri()
    shot = tmp_path / "report.png"
    run = subprocess.run([CHROMIUM, *flags, "--window-size=1000,2400", f"--screenshot={shot}", url],
                         capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<svg") >= 4 and "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    shutil.copy(shot, evil_run / "screenshot.png")  # kept with the run, for a look


# --- batch ---------------------------------------------------------------------------------

def _folder(tmp_path):
    folder = tmp_path / "scenarios"
    folder.mkdir()
    shutil.copy(SCENARIOS / "minimal.yaml", folder / "minimal.yaml")
    shutil.copy(SCENARIOS / "minimal.yaml", folder / "=HYPERLINK(1).yaml")
    (folder / "broken.yaml").write_text("name: broken\nstart: 2027-01-01\n")
    (folder / "v.yaml").write_text("scale:\n  segments.direct.leads.per_week: 2\n")
    return folder


def test_batch_runs_each_scenario_and_one_bad_one_fails_alone(tmp_path):
    folder, out = _folder(tmp_path), tmp_path / "out"
    res = CliRunner().invoke(main, ["batch", str(folder), "--out", str(out), "--trials", "500"])
    assert res.exit_code == 2, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    entries = manifest["scenarios"]
    assert entries["minimal"]["status"] == "ok" and entries["=HYPERLINK(1)"]["status"] == "ok"
    assert entries["broken"]["status"] == "failed" and "end is missing" in entries["broken"]["error"]
    assert entries["v"]["status"] == "skipped"
    ok = entries["minimal"]
    assert ok["trials"] == 500 and ok["seed"] == 0 and len(ok["input_sha256"]) == 64 and ok["seconds"] > 0
    assert {"forecast.nc", "summary.json", "report.html", "report.md"} <= {p.name for p in (out / "minimal").iterdir()}
    rows = list(csv.DictReader((out / "summaries.csv").open()))
    assert {r["scenario"] for r in rows} == {"minimal", "'=HYPERLINK(1)"}  # no formula reaches a spreadsheet
    assert {r["period"] for r in rows} == {"total", "2027-01-01", "2027-02-01", "2027-03-01"}
    assert "Error: broken:" in res.output


def test_batch_skips_what_did_not_change_and_reruns_what_did(tmp_path):
    folder, out = _folder(tmp_path), tmp_path / "out"
    run_batch(folder, out, trials=300)
    stamp = (out / "minimal" / "forecast.nc").stat().st_mtime_ns
    again = run_batch(folder, out, trials=300)
    assert again["last_run"]["minimal"] == "unchanged"
    assert (out / "minimal" / "forecast.nc").stat().st_mtime_ns == stamp
    (folder / "minimal.yaml").write_text((folder / "minimal.yaml").read_text().replace("per_week: 120", "per_week: 130"))
    changed = run_batch(folder, out, trials=300)
    assert changed["last_run"]["minimal"] == "ran" and changed["last_run"]["=HYPERLINK(1)"] == "unchanged"
    forced = run_batch(folder, out, trials=300, force=True)
    assert forced["last_run"]["=HYPERLINK(1)"] == "ran"


def _interrupt_second_report(monkeypatch) -> list:
    """Make the batch's second report raise KeyboardInterrupt (a Ctrl-C there); returns the
    run folders whose report was asked for, in order."""
    import forecaster.present.report as report

    real, calls = report.write_report, []

    def interrupt_second(target):
        calls.append(target)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(target)

    monkeypatch.setattr(report, "write_report", interrupt_second)
    return calls


def test_an_interrupted_batch_keeps_finished_work_and_the_next_run_completes_it(tmp_path, monkeypatch):
    import forecaster.present.report as report

    folder, out = _folder(tmp_path), tmp_path / "out"
    real = report.write_report
    calls = _interrupt_second_report(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_batch(folder, out, trials=300)
    first = calls[0].name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["scenarios"][first]["status"] == "ok"
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")], "half-written files left behind"
    monkeypatch.setattr(report, "write_report", real)
    done = run_batch(folder, out, trials=300)
    assert done["last_run"][first] == "unchanged"
    assert all(done["scenarios"][n]["status"] == "ok" for n in ("minimal", "=HYPERLINK(1)"))


def test_an_interrupted_batch_leaves_summaries_csv_with_what_finished_and_says_it_did_not_finish(tmp_path,
                                                                                                  monkeypatch):
    """The manifest is saved after each scenario; summaries.csv, written at the end, is also
    written on the way out of an interrupted batch, so the two agree; last_run is this run's
    and last_run_finished stays null."""
    import forecaster.present.report as report

    folder, out = _folder(tmp_path), tmp_path / "out"
    run_batch(folder, out, trials=300)
    before = {r["scenario"]: r["mean"] for r in csv.DictReader((out / "summaries.csv").open())
              if r["metric"] == "revenue" and r["period"] == "total"}
    for name in ("minimal.yaml", "=HYPERLINK(1).yaml"):  # both change: more leads
        (folder / name).write_text((folder / name).read_text().replace("per_week: 120", "per_week: 240"))
    real = report.write_report
    calls = _interrupt_second_report(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_batch(folder, out, trials=300)
    first, second = calls[0].name, calls[1].name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["last_run_finished"] is None and manifest["last_run"][first] == "ran"
    assert second not in manifest["last_run"]
    after = {r["scenario"].lstrip("'"): r["mean"] for r in csv.DictReader((out / "summaries.csv").open())
             if r["metric"] == "revenue" and r["period"] == "total"}
    total = json.loads((out / first / "summary.json").read_text())["metrics"]["revenue"]["total"]["mean"]
    assert float(after[first]) == total and total > 1.5 * float(before[first.replace("=", "'=")])
    # the second was stopped between its new summary and its report: the manifest still names the
    # old inputs, the folder holds neither result whole, so it has no row (not the new one under the old)
    assert second not in after and manifest["scenarios"][second]["input_sha256"] != \
        json.loads((out / second / "summary.json").read_text())["scenario_sha256"]
    monkeypatch.setattr(report, "write_report", real)
    done = run_batch(folder, out, trials=300)
    assert done["last_run_finished"] is not None and done["last_run"][second] == "ran"
    rows = {r["scenario"].lstrip("'") for r in csv.DictReader((out / "summaries.csv").open())}
    assert {first, second} <= rows

    def interrupt_first(target):  # stopped in its first scenario: the manifest already says unfinished
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write_report", interrupt_first)
    with pytest.raises(KeyboardInterrupt):
        run_batch(folder, out, trials=300, force=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["last_run_finished"] is None and manifest["last_run"] == {}


def test_a_second_batch_into_the_same_out_is_refused_while_the_first_runs(tmp_path, monkeypatch):
    import forecaster.present.batch as batch

    folder, out = _folder(tmp_path), tmp_path / "out"
    out.mkdir()
    with batch._exclusive(out):  # a first batch holds OUT
        res = CliRunner().invoke(main, ["batch", str(folder), "--out", str(out), "--trials", "300"])
        assert res.exit_code == 2 and "another `forecaster batch` is writing there (process" in res.output
        assert "Traceback" not in res.output
        assert sorted(p.name for p in out.iterdir()) == [batch.LOCK]  # nothing written
    assert list(out.iterdir()) == []  # the lock file goes with the lock
    assert run_batch(folder, out, trials=300)["last_run_finished"]
    assert not (out / batch.LOCK).exists()


HOLD_THE_LOCK = """
import sys, time
from pathlib import Path
from forecaster.present.batch import _exclusive
out, flag = Path(sys.argv[1]), Path(sys.argv[2])
with _exclusive(out):
    print("held", flush=True)
    while not flag.exists():
        time.sleep(0.02)
"""


def test_a_batch_is_refused_while_another_process_holds_out_and_runs_once_it_is_gone(tmp_path):
    import sys

    folder, out, flag = _folder(tmp_path), tmp_path / "out", tmp_path / "done"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(out), str(flag)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        cmd = [sys.executable, "-m", "forecaster", "batch", str(folder), "--out", str(out), "--trials", "200"]
        refused = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2 and "another `forecaster batch` is writing there (process " in refused.stderr
        assert "Traceback" not in refused.stderr and sorted(p.name for p in out.iterdir()) == [".batch.lock"]
    finally:
        flag.touch()
        holder.communicate(timeout=60)
    assert not (out / ".batch.lock").exists()
    ran = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 2, ran.stderr  # broken.yaml fails, the others run
    assert json.loads((out / "manifest.json").read_text())["scenarios"]["minimal"]["status"] == "ok"


def test_the_lock_never_writes_through_a_hard_link_and_a_file_system_without_locks_runs_unlocked(tmp_path,
                                                                                                 monkeypatch):
    import errno
    import fcntl

    import forecaster.present.batch as batch
    from forecaster.errors import OutputError

    folder, out = _folder(tmp_path), tmp_path / "out"
    out.mkdir()
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    os.link(precious, out / batch.LOCK)
    with pytest.raises(OutputError, match="hard link"):
        run_batch(folder, out, trials=200)
    assert precious.read_text() == "keep me"
    (out / batch.LOCK).unlink()

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    assert run_batch(folder, out, trials=200)["scenarios"]["minimal"]["status"] == "ok"
    assert not (out / batch.LOCK).exists()


def test_a_removed_scenario_is_marked_and_leaves_summaries_csv_and_names_stay_put(tmp_path):
    folder, out = tmp_path / "sc", tmp_path / "out"
    folder.mkdir()
    for stem in ("A", "a", "b"):
        shutil.copy(SCENARIOS / "minimal.yaml", folder / f"{stem}.yaml")
    shutil.copy(SCENARIOS / "minimal.yaml", folder / "a.yml")
    first = run_batch(folder, out, trials=200)
    names = {e["file"]: n for n, e in first["scenarios"].items()}
    assert names == {"A.yaml": "A", "a.yaml": "a-2", "a.yml": "a-3", "b.yaml": "b"}
    (folder / "A.yaml").unlink()
    (folder / "b.yaml").unlink()
    res = CliRunner().invoke(main, ["batch", str(folder), "--out", str(out), "--trials", "200"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    entries = manifest["scenarios"]
    # the remaining files keep their folders: a dashboard's link to a-2 still shows a.yaml
    assert {e["file"]: n for n, e in entries.items() if e["status"] == "ok"} == {"a.yaml": "a-2", "a.yml": "a-3"}
    assert manifest["last_run"] == {"A": "removed", "b": "removed", "a-2": "unchanged", "a-3": "unchanged"}
    assert entries["b"]["status"] == "removed" and "no longer in" in entries["b"]["error"]
    assert (out / "b" / "summary.json").exists()  # its last results are kept, not deleted
    assert {r["scenario"] for r in csv.DictReader((out / "summaries.csv").open())} == {"a-2", "a-3"}
    assert "  removed  b" in res.output
    (folder / "b.yaml").write_text((SCENARIOS / "minimal.yaml").read_text())  # back again: runs as before
    again = run_batch(folder, out, trials=200)
    assert again["last_run"]["b"] == "ran" and again["scenarios"]["b"]["status"] == "ok"
    assert "A" not in again["last_run"]  # said once, not on every run


def test_a_new_file_never_takes_the_folder_a_removed_scenario_left_whatever_its_case(tmp_path):
    folder, out = tmp_path / "sc", tmp_path / "out"
    folder.mkdir()
    shutil.copy(SCENARIOS / "minimal.yaml", folder / "b.yaml")
    run_batch(folder, out, trials=200)
    (folder / "b.yaml").rename(folder / "B.yaml")  # b.yaml removed, B.yaml new
    second = run_batch(folder, out, trials=200)
    assert second["last_run"] == {"b": "removed", "B-2": "ran"}  # not b/, where b.yaml's results stay
    shutil.copy(folder / "B.yaml", folder / "b.yml")
    shutil.copy(folder / "B.yaml", folder / "b.yaml")  # back again: its own folder
    third = run_batch(folder, out, trials=200)
    assert third["last_run"] == {"b": "ran", "B-2": "unchanged", "b-3": "ran"}
    assert {n: e["file"] for n, e in third["scenarios"].items()} == {"b": "b.yaml", "B-2": "B.yaml", "b-3": "b.yml"}
    assert all(e["status"] == "ok" for e in third["scenarios"].values())


def test_two_manifest_entries_naming_one_file_keep_the_one_with_results(tmp_path):
    folder, out = tmp_path / "sc", tmp_path / "out"
    folder.mkdir()
    shutil.copy(SCENARIOS / "minimal.yaml", folder / "a.yaml")
    first = run_batch(folder, out, trials=200)
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["scenarios"] = {"a-2": dict(first["scenarios"]["a"]), "a": first["scenarios"]["a"]}  # edited by hand
    path.write_text(json.dumps(manifest))
    again = run_batch(folder, out, trials=200)
    assert again["last_run"] == {"a-2": "removed", "a": "unchanged"}
    assert "a.yaml runs into a/" in again["scenarios"]["a-2"]["error"]


def test_names_at_the_length_limit_keep_their_suffix_and_stay_put(tmp_path):
    folder, out = tmp_path / "sc", tmp_path / "out"
    folder.mkdir()
    for end in "ab":
        shutil.copy(SCENARIOS / "minimal.yaml", folder / ("x" * 198 + f"{end}.yaml"))
    shutil.copy(SCENARIOS / "minimal.yaml", folder / ("x" * 198 + "a.yml"))
    first = run_batch(folder, out, trials=200)
    assert all(len(n.encode()) <= 200 for n in first["scenarios"])
    again = run_batch(folder, out, trials=200)
    assert set(again["last_run"].values()) == {"unchanged"}, again["last_run"]


@pytest.mark.parametrize("layout", ["empty", "only subfolders", "only variants"])
def test_a_folder_without_a_scenario_is_an_error_not_a_batch_that_succeeded(tmp_path, layout):
    folder, out = tmp_path / "sc", tmp_path / "out"
    folder.mkdir()
    if layout == "only subfolders":
        (folder / "emea").mkdir()
        shutil.copy(SCENARIOS / "minimal.yaml", folder / "emea" / "minimal.yaml")
    if layout == "only variants":
        (folder / "v.yaml").write_text("scale:\n  segments.direct.leads.per_week: 2\n")
    res = CliRunner().invoke(main, ["batch", str(folder), "--out", str(out), "--quiet"])
    assert res.exit_code == 2, res.output
    if layout == "only variants":
        assert "only variant files" in res.output
    else:
        assert "holds no scenario (*.yaml, *.yml; subfolders are not searched)" in res.output
        assert not out.exists()  # nothing written
    missing = CliRunner().invoke(main, ["batch", str(tmp_path / "nope"), "--out", str(out)])
    assert missing.exit_code == 2 and "nope: does not exist" in missing.output


def test_a_scenario_failing_after_a_success_keeps_its_files_dated_and_a_new_failure_leaves_no_empty_folder(tmp_path,
                                                                                                         monkeypatch):
    import forecaster.present.batch as batch
    from forecaster.errors import OutputError

    folder, out = _folder(tmp_path), tmp_path / "out"
    good = run_batch(folder, out, trials=300)["scenarios"]["minimal"]
    (folder / "minimal.yaml").write_text((folder / "minimal.yaml").read_text().replace("2027-03-31", "2026-03-31"))
    entry = run_batch(folder, out, trials=300)["scenarios"]["minimal"]
    assert entry["status"] == "failed" and "end" in entry["error"]
    assert entry["outputs_from"] == {k: good[k] for k in ("finished", "input_sha256", "seed", "trials")}
    again = run_batch(folder, out, trials=300)["scenarios"]["minimal"]  # failing again: still those files
    assert again["outputs_from"] == entry["outputs_from"]

    shutil.copy(SCENARIOS / "minimal.yaml", folder / "fresh.yaml")

    def full_disk(*args, **kwargs):
        raise OutputError("no room")

    monkeypatch.setattr(batch, "run_to_folder", full_disk)
    failed = run_batch(folder, out, trials=300)["scenarios"]["fresh"]
    assert failed["status"] == "failed" and "outputs_from" not in failed
    assert not (out / "fresh").exists()  # no empty folder that looks like a result


def test_batch_precision_and_compress_are_run_options_whose_change_reruns(tmp_path):
    import xarray as xr

    folder, out = _folder(tmp_path), tmp_path / "out"
    (folder / "broken.yaml").unlink()
    run_batch(folder, out, trials=300)
    assert run_batch(folder, out, trials=300)["last_run"]["minimal"] == "unchanged"
    res = CliRunner().invoke(main, ["batch", str(folder), "--out", str(out), "--trials", "300",
                                    "--precision", "float32", "--compress"])
    assert res.exit_code == 0, res.output
    assert "      ran  minimal" in res.output
    with xr.open_dataset(out / "minimal" / "forecast.nc") as ds:
        assert ds["revenue"].dtype == "float32"
        assert ds["revenue"].encoding.get("zlib") or ds["revenue"].encoding.get("compression")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["scenarios"]["minimal"]["precision"] == "float32" and manifest["scenarios"]["minimal"]["compress"]
    assert run_batch(folder, out, trials=300, precision="float32", compress=True)["last_run"]["minimal"] == "unchanged"


@pytest.mark.parametrize("damage", ["forecast.nc", "summary.json"])
def test_a_damaged_result_is_run_again_not_kept_as_unchanged(tmp_path, damage):
    folder, out = _folder(tmp_path), tmp_path / "out"
    run_batch(folder, out, trials=300)
    (out / "minimal" / damage).write_text("junk\n")
    again = run_batch(folder, out, trials=300)
    assert again["last_run"]["minimal"] == "ran" and again["last_run"]["=HYPERLINK(1)"] == "unchanged"
    assert json.loads((out / "minimal" / "summary.json").read_text())["trials"] == 300


def test_each_scenario_is_told_as_it_ends(tmp_path):
    folder, out = _folder(tmp_path), tmp_path / "out"
    told = []
    manifest = run_batch(folder, out, trials=300, on_done=lambda name, action, entry: told.append(
        (name, action, json.loads((out / "manifest.json").read_text())["last_run"].get(name))))
    assert [(n, a) for n, a, _ in told] == list(manifest["last_run"].items())
    assert all(a == saved for _, a, saved in told)  # the manifest already says so when it is told


@pytest.mark.parametrize("text,safe", [("=1+1", "'=1+1"), ("+x", "'+x"), ("-x", "'-x"), ("@x", "'@x"),
                                       ("\tx", "'\tx"), ("plain", "plain"), ("a=b", "a=b")])
def test_csv_cells_cannot_become_formulas(text, safe):
    assert safe_cell(text) == safe


def test_compare_and_sensitivity_folders_get_their_charts(tmp_path):
    folder = tmp_path / "f.yaml"
    folder.write_text((SCENARIOS / "minimal.yaml").read_text().replace("name: minimal", "name: m") + "trials: 400\n")
    (tmp_path / "v.yaml").write_text("name: more\nscale:\n  segments.direct.leads.per_week: 1.5\n")
    runner = CliRunner()
    assert runner.invoke(main, ["compare", str(folder), str(tmp_path / "v.yaml"), "--out", str(tmp_path / "c"),
                                "--quiet"]).exit_code == 0
    assert runner.invoke(main, ["sensitivity", str(folder), "--out", str(tmp_path / "s"), "--quiet"]).exit_code == 0
    for sub, page, chart in (("c", "compare.html", "signed differences"), ("s", "sensitivity.html", "signed tornado")):
        res = runner.invoke(main, ["report", str(tmp_path / sub)])
        assert res.exit_code == 0, res.output
        html_text = (tmp_path / sub / page).read_text()
        assert f'class="chart {chart}"' in html_text
    assert "tornado" in (tmp_path / "s" / "sensitivity.html").read_text()
    assert "P(higher)" in (tmp_path / "c" / "compare.html").read_text()


def test_a_killed_batch_leaves_no_half_written_file_and_the_next_run_completes_it(tmp_path):
    import signal
    import sys
    import time

    folder, out = tmp_path / "many", tmp_path / "out"
    folder.mkdir()
    for i in range(6):
        (folder / f"s{i}.yaml").write_text((SCENARIOS / "minimal.yaml").read_text().replace("name: minimal", f"name: s{i}"))
    cmd = [sys.executable, "-m", "forecaster", "batch", str(folder), "--out", str(out), "--trials", "200000", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # wait until one scenario is finished
        try:
            if json.loads((out / "manifest.json").read_text())["scenarios"]:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    assert proc.poll() is None, "the batch finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0, stderr
    left = [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert not left, f"half-written files left behind: {left}\n{stderr}"
    finished = json.loads((out / "manifest.json").read_text())["scenarios"]
    assert finished and all(e["status"] == "ok" for e in finished.values())
    assert len(finished) < 6
    for name in finished:
        assert json.loads((out / name / "summary.json").read_text())["trials"] == 200000
    again = run_batch(folder, out, trials=200000)
    assert all(again["last_run"][n] == "unchanged" for n in finished)
    assert all(e["status"] == "ok" for e in again["scenarios"].values()) and len(again["scenarios"]) == 6


def test_batch_progress_shows_scenario_n_of_n():
    from forecaster.present.console import BatchProgress

    with BatchProgress(enabled=True) as display:
        display.start(1, 3, "second")
        display.advance(500)
        tasks = display.bar.tasks
        assert tasks[0].description == "scenario 2 of 3" and tasks[0].total == 3
        assert tasks[1].description == "second" and tasks[1].completed == 500


def test_a_stop_request_ends_the_batch_at_the_next_scenario_even_if_the_interrupt_was_lost(tmp_path, monkeypatch):
    import forecaster.present.batch as batch
    import forecaster.present.report as report

    folder, out = _folder(tmp_path), tmp_path / "out"
    real = report.write_report

    def lose_the_interrupt(target):  # a signal arrives, but its exception is swallowed
        batch.STOP.set()
        return real(target)

    monkeypatch.setattr(report, "write_report", lose_the_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_batch(folder, out, trials=300)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["status"] for e in manifest["scenarios"].values()].count("ok") == 1  # it stopped after one


def test_batch_leaves_an_ignored_signal_ignored_and_puts_the_handlers_back(tmp_path, monkeypatch):
    """A batch started with SIGINT ignored (nohup, a background job of a shell without job
    control) keeps it ignored while it runs, as every other command does, and SIGTERM gets the
    batch's handler; after the command, both handlers are the ones from before."""
    import signal

    import forecaster.present.batch as batch

    seen = {}

    def fake_run_batch(*args, **kwargs):
        seen.update({sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)})
        return {"scenarios": {}, "last_run": {}}

    monkeypatch.setattr(batch, "run_batch", fake_run_batch)
    folder = tmp_path / "in"
    folder.mkdir()
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        res = CliRunner().invoke(main, ["batch", str(folder), "--out", str(tmp_path / "out"), "--quiet"])
        assert res.exit_code == 0, res.output
        assert seen[signal.SIGINT] is signal.SIG_IGN
        assert callable(seen[signal.SIGTERM]) and seen[signal.SIGTERM] is not before[signal.SIGTERM]
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # as it was when the command started
        assert signal.getsignal(signal.SIGTERM) is before[signal.SIGTERM]
    finally:
        signal.signal(signal.SIGINT, before[signal.SIGINT])


def test_a_manifest_with_nan_or_entries_naming_no_file_is_read_as_not_ours(tmp_path):
    """A hand-edited manifest: its entry without a file neither keeps its name from the file
    that would have it nor reads as removed, and the manifest written back is strict JSON
    (NaN, which strict JSON lacks, reads as null)."""
    folder, out = tmp_path / "sc", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    shutil.copy(SCENARIOS / "minimal.yaml", folder / "good.yaml")
    (out / "manifest.json").write_text('{"scenarios": {"good": {"seconds": NaN}, "old": {"file": "old.yaml", '
                                       '"status": "ok", "seconds": Infinity}}}')
    manifest = run_batch(folder, out, trials=200)
    assert manifest["last_run"] == {"old": "removed", "good": "ran"}

    def strict(constant):
        raise ValueError(constant)

    written = json.loads((out / "manifest.json").read_text(), parse_constant=strict)
    assert written["scenarios"]["old"]["seconds"] is None and written["scenarios"]["good"]["status"] == "ok"


def test_a_manifest_name_with_a_non_ascii_digit_suffix_is_no_claim(tmp_path):
    """``a-²`` is a safe folder name whose suffix Python calls a digit but int() refuses: a
    hand-edited manifest holding it neither stops the batch nor gives the name to a.yaml."""
    folder, out = tmp_path / "sc", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    shutil.copy(SCENARIOS / "minimal.yaml", folder / "a.yaml")
    (out / "manifest.json").write_text(json.dumps({"scenarios": {"a-\u00b2": {"file": "a.yaml", "status": "ok"}}}))
    manifest = run_batch(folder, out, trials=200)
    assert manifest["scenarios"]["a"]["status"] == "ok" and manifest["last_run"]["a"] == "ran"


TEAM = """\
name: team
start: 2027-01-01
end: 2027-05-15
trials: 400
stages: [a]
segments:
  smb.eu:
    leads: {per_day: 4}
    funnel: {a: {convert: 0.5, days: 3}}
    deal_value: {dist: lognormal, median: 1000, sigma: 0.5}
  mid:
    leads: {per_day: 1}
    funnel: {a: {convert: 0.4, days: 5}}
    deal_value: 5000
team:
  reps:
    - {name: "=boss", segments: [smb.eu], quota: 60000}
    - {name: ann, segments: [mid, smb.eu], quota: 80000}
commission: {period: quarter, tiers: [{rate: 0.1}]}
targets: {revenue: 570000, won_deals: 320}
"""


def test_batch_tables_carry_targets_quota_chances_segments_and_reps_as_summary_json_has_them(tmp_path):
    """targets.csv, reps.csv and the segment and rep rows of summaries.csv: every number is the
    summary's, bit for bit; a quota period cut short by the horizon ends with it; a scenario
    without targets or reps adds no row, and a batch with none still writes each file's header."""
    folder, out = tmp_path / "sc", tmp_path / "out"
    folder.mkdir()
    (folder / "team.yaml").write_text(TEAM)
    shutil.copy(SCENARIOS / "minimal.yaml", folder / "minimal.yaml")
    res = CliRunner().invoke(main, ["batch", str(folder), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "team" / "summary.json").read_text())

    targets = list(csv.DictReader((out / "targets.csv").open()))
    assert [(r["scenario"], r["metric"], r["unit"], r["kind"]) for r in targets] == [
        ("team", "revenue", "currency", "flow"), ("team", "won_deals", "deals", "flow")]
    for r in targets:
        t = summary["targets"][r["metric"]]
        assert float(r["threshold"]) == t["threshold"] and float(r["probability"]) == t["probability"]
    assert 0 < summary["targets"]["revenue"]["probability"] < 1  # a target the test can tell apart

    reps = list(csv.DictReader((out / "reps.csv").open()))
    assert [(r["scenario"], r["rep"], r["period"], r["period_end"]) for r in reps] == [
        ("team", who, p, end) for who in ("'=boss", "ann")
        for p, end in (("2027-01-01", "2027-03-31"), ("2027-04-01", "2027-05-15"))]
    for r in reps:
        s = summary["reps"][r["rep"].lstrip("'")]
        q = next(q for q in s["quota_attainment"] if q["period"] == r["period"])
        assert float(r["quota"]) == s["quota"] and r["unit"] == "currency"
        assert float(r["probability_reach_quota"]) == q["probability"]
        assert float(r["attainment_p50"]) == q["attainment_p50"]

    rows = {(r["scenario"], r["metric"]): r for r in csv.DictReader((out / "summaries.csv").open())
            if r["period"] == "total"}
    for seg in ("smb.eu", "mid"):
        for metric in ("revenue", "won_deals"):
            r = rows[("team", f"segment.{seg}.{metric}")]
            total = summary["segments"][seg][metric]["total"]
            assert r["period_end"] == "2027-05-15" and r["kind"] == "flow"
            assert all(float(r[k]) == total[k] for k in ("mean", "p10", "p50", "p90"))
            assert r["unit"] == ("currency" if metric == "revenue" else "deals")
    for rep in ("=boss", "ann"):
        for metric in ("bookings", "commission"):
            r = rows[("team", f"rep.{rep}.{metric}")]  # not a formula: the cell starts with "rep."
            assert float(r["mean"]) == summary["reps"][rep][metric]["total"]["mean"] and r["unit"] == "currency"
    # the segments' revenue adds up to the whole's, trial by trial, so their means do too
    whole = float(rows[("team", "revenue")]["mean"])
    assert abs(sum(float(rows[("team", f"segment.{s}.revenue")]["mean"]) for s in ("smb.eu", "mid")) - whole) \
        <= 1e-9 * whole
    assert not {r["scenario"] for r in targets + reps} - {"team"}

    (folder / "team.yaml").unlink()
    res = CliRunner().invoke(main, ["batch", str(folder), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert (out / "targets.csv").read_text() == "scenario,metric,threshold,probability,unit,kind\n"
    assert (out / "reps.csv").read_text().splitlines() == [
        "scenario,rep,period,period_end,quota,probability_reach_quota,attainment_p50,unit"]


def test_a_hand_edited_summary_of_another_shape_loses_only_its_own_rows(tmp_path):
    """A summary.json edited by hand (a threshold too large for a float, reps as a list, a
    segment's statistic as text) leaves its scenario's other rows in summaries.csv and stops
    nothing: before, an OverflowError ended every later batch with an internal error, and a
    list under reps dropped all of the scenario's rows (review)."""
    folder, out = tmp_path / "sc", tmp_path / "out"
    folder.mkdir()
    (folder / "team.yaml").write_text(TEAM)
    assert CliRunner().invoke(main, ["batch", str(folder), "--out", str(out), "--quiet"]).exit_code == 0
    path = out / "team" / "summary.json"
    summary = json.loads(path.read_text())
    summary["targets"]["revenue"]["threshold"] = 10 ** 400
    summary["reps"] = [summary["reps"]]
    summary["segments"]["mid"]["revenue"]["total"]["mean"] = "lots"
    path.write_text(json.dumps(summary))
    res = CliRunner().invoke(main, ["batch", str(folder), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output  # unchanged inputs: the tables are rebuilt from the edited summary
    metrics = {r["metric"] for r in csv.DictReader((out / "summaries.csv").open())}
    assert {"revenue", "won_deals", "commission", "segment.smb.eu.revenue"} <= metrics
    assert not {m for m in metrics if m.startswith(("rep.", "segment.mid."))}
    assert [r["metric"] for r in csv.DictReader((out / "targets.csv").open())] == []
    assert list(csv.DictReader((out / "reps.csv").open())) == []
