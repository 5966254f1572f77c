"""Fixes for failures the fuzz battery (benchmarks/fuzz.py) found, each checked directly.

- batch: a missing scenario folder is refused before --out is created; every *.yaml entry
  that is not a regular file (a FIFO, /dev/null, a link that loops or leads nowhere) is
  listed as failed in the manifest, unopened, never silently dropped; a file named
  ``.yaml`` runs.
- report: a summary.json or compare.json that is a FIFO is refused without waiting on it.
- cluster: --workers is bounded before anything starts; a local cluster leaves no
  ``dask-scratch-space`` behind.
- terminal: stdout into a closed pipe ends quietly (status 0, results kept); stdout on a
  full device is exit 2 with one line; neither is an "Internal error".

FIFOs and closed pipes are exercised in a child process with a timeout, so a regression
fails the test instead of hanging it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SCENARIOS

from forecaster.cli import main
from forecaster.present.batch import MANIFEST, scenario_files, scenario_problem

TINY = (SCENARIOS / "minimal.yaml").read_text() + "trials: 200\n"
fifo_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")


def cli(*args, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], **kwargs)


def forecaster(*args, cwd: Path, stdout=subprocess.PIPE, timeout: float = 120):
    """``python -m forecaster ARGS`` in ``cwd``; ``stdout`` may be a file descriptor. On a
    timeout (a regression that hangs) the whole process group is killed, workers included."""
    env = {k: v for k, v in os.environ.items() if k != "FORECASTER_DEBUG"}
    p = subprocess.Popen([sys.executable, "-m", "forecaster", *map(str, args)], cwd=cwd, stdout=stdout,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail(f"forecaster {' '.join(map(str, args))} still running after {timeout:g} s")
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def closed_pipe() -> int:
    """The write end of a pipe whose read end is already closed."""
    r, w = os.pipe()
    os.close(r)
    return w


def no_bug(stderr: bytes | str) -> None:
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    assert "Traceback" not in text and "Internal error" not in text, text


# --- batch ------------------------------------------------------------------------------------------------------


def test_batch_of_a_missing_folder_creates_no_out(tmp_path):
    res = cli("batch", tmp_path / "nope", "--out", tmp_path / "out")
    assert res.exit_code == 2 and "nope" in res.output, res.output
    no_bug(res.output)
    assert not (tmp_path / "out").exists()


@fifo_only
def test_every_yaml_entry_is_listed_and_the_special_ones_are_refused_unopened(tmp_path):
    sc = tmp_path / "sc"
    sc.mkdir()
    (sc / "good.yaml").write_text(TINY)
    (sc / ".yaml").write_text(TINY)  # a hidden file, but a scenario: it runs
    os.mkfifo(sc / "f.yaml")
    os.symlink("loop.yaml", sc / "loop.yaml")
    os.symlink("/dev/null", sc / "null.yml")
    os.symlink("gone.yaml", sc / "dangling.yaml")
    (sc / "folder.yaml").mkdir()  # a folder is not a scenario entry at all
    (sc / "notes.txt").write_text("not a scenario")
    files = scenario_files(sc)
    assert [p.name for p in files] == sorted([".yaml", "dangling.yaml", "f.yaml", "good.yaml", "loop.yaml",
                                              "null.yml"])
    problems = {p.name: scenario_problem(p) for p in files}
    assert problems["good.yaml"] is None and problems[".yaml"] is None
    assert "FIFO" in problems["f.yaml"] and "not a regular file" in problems["f.yaml"]
    assert "loops" in problems["loop.yaml"]
    assert "character device" in problems["null.yml"] and "/dev/null" in problems["null.yml"]
    assert "does not exist" in problems["dangling.yaml"] and "gone.yaml" in problems["dangling.yaml"]


@fifo_only
def test_batch_with_a_fifo_and_devices_fails_them_and_runs_the_rest(tmp_path):
    sc = tmp_path / "in"
    sc.mkdir()
    (sc / "good.yaml").write_text(TINY)
    (sc / ".yaml").write_text(TINY)
    os.mkfifo(sc / "f.yaml")
    os.symlink("l.yaml", sc / "l.yaml")
    os.symlink("/dev/zero", sc / "z.yaml")
    # stdout is a closed pipe as well: the failures still set the status and reach stderr
    w = closed_pipe()
    try:
        res = forecaster("batch", "in", "--out", "out", cwd=tmp_path, stdout=w)
    finally:
        os.close(w)
    no_bug(res.stderr)
    assert res.returncode == 2, res.stderr
    entries = json.loads((tmp_path / "out" / MANIFEST).read_text())["scenarios"]
    by_file = {e["file"]: e for e in entries.values()}
    assert set(by_file) == {"good.yaml", ".yaml", "f.yaml", "l.yaml", "z.yaml"}
    assert by_file["good.yaml"]["status"] == by_file[".yaml"]["status"] == "ok"
    for name, words in (("f.yaml", "FIFO"), ("l.yaml", "loops"), ("z.yaml", "character device")):
        assert by_file[name]["status"] == "failed" and words in by_file[name]["error"], by_file[name]
        assert not by_file[name].get("internal_error")
        assert f"Error: {Path(name).stem}: " in res.stderr.decode()
    assert (tmp_path / "out" / "good" / "summary.json").is_file()
    assert (tmp_path / "out" / "_yaml" / "summary.json").is_file()


# --- report -----------------------------------------------------------------------------------------------------


@fifo_only
@pytest.mark.parametrize("name", ["summary.json", "compare.json"])
def test_report_refuses_a_fifo_json_without_waiting(tmp_path, name):
    folder = tmp_path / "r"
    folder.mkdir()
    os.mkfifo(folder / name)
    res = forecaster("report", "r", cwd=tmp_path, timeout=60)
    err = res.stderr.decode()
    no_bug(err)
    assert res.returncode == 2 and name in err and "FIFO" in err, err
    assert sorted(p.name for p in folder.iterdir()) == [name]


# --- cluster ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["9" * 30, "100000"])
def test_workers_beyond_the_limit_are_refused_before_anything_starts(tmp_path, workers):
    (tmp_path / "s.yaml").write_text(TINY)
    res = forecaster("run", "s.yaml", "--out", "o", "--workers", workers, cwd=tmp_path, timeout=60)
    err = res.stderr.decode()
    no_bug(err)
    assert res.returncode == 2 and "--workers" in err and "from 1 to" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


def test_check_workers_names_the_range():
    from forecaster.engine.cluster import ClusterError, check_workers, max_workers

    assert 1 <= max_workers() <= 256
    assert check_workers(1) == 1 and check_workers(max_workers()) == max_workers()
    for bad in (0, -1, max_workers() + 1, 10 ** 29, True):
        with pytest.raises(ClusterError, match=r"--workers .*from 1 to \d+"):
            check_workers(bad)


def test_a_local_cluster_leaves_no_scratch_space(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    from forecaster.engine.cluster import dask_client

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with dask_client(workers=1) as client:
        assert client.submit(sum, [1, 2], pure=False).result() == 3
        during = list(tmp_path.iterdir())
        assert len(during) == 1 and during[0].name.startswith("forecaster-dask-"), during  # nothing loose
    assert list(tmp_path.iterdir()) == []


# --- the terminal -----------------------------------------------------------------------------------------------


def test_schema_into_a_closed_pipe_ends_quietly(tmp_path):
    w = closed_pipe()
    try:
        res = forecaster("schema", cwd=tmp_path, stdout=w, timeout=60)
    finally:
        os.close(w)
    assert res.returncode == 0 and res.stderr == b"", res.stderr


def test_run_into_a_closed_pipe_keeps_its_results_and_ends_quietly(tmp_path):
    (tmp_path / "s.yaml").write_text(TINY)
    w = closed_pipe()
    try:
        res = forecaster("run", "s.yaml", "--out", "out", cwd=tmp_path, stdout=w)
    finally:
        os.close(w)
    assert res.returncode == 0 and res.stderr == b"", res.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["trials"] == 200


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_run_with_stdout_on_a_full_device_is_a_one_line_error(tmp_path):
    (tmp_path / "s.yaml").write_text(TINY)
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        res = forecaster("run", "s.yaml", "--out", "out", cwd=tmp_path, stdout=fd)
    finally:
        os.close(fd)
    err = res.stderr.decode()
    no_bug(err)
    assert res.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot write to stdout (forecaster run s.yaml)"), err
    assert "No space left on device" in err and "out are kept" in err
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["trials"] == 200


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["run", "--help"]])
def test_help_into_a_closed_pipe_ends_quietly(tmp_path, args):
    w = closed_pipe()
    try:
        res = forecaster(*args, cwd=tmp_path, stdout=w, timeout=60)
    finally:
        os.close(w)
    assert res.returncode == 0 and res.stderr == b"", res.stderr


@pytest.mark.parametrize("args", [["validate", "nope.yaml"], ["run", "s.yaml", "--out", "o", "--workers", "0"]])
def test_an_error_keeps_its_status_when_stderr_is_a_closed_pipe(tmp_path, args):
    (tmp_path / "s.yaml").write_text(TINY)
    r, w = os.pipe()
    os.close(r)
    env = {k: v for k, v in os.environ.items() if k != "FORECASTER_DEBUG"}
    try:
        res = subprocess.run([sys.executable, "-m", "forecaster", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=w, stdin=subprocess.DEVNULL, env=env, timeout=60)
    finally:
        os.close(w)
    assert res.returncode == 2 and res.stdout == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]
