"""Hostile inputs to `batch`, `report` and the terminal output (issue 11).

batch: run folder names made from hostile file names stay inside --out and never collide
with the batch's own files; a symbolic link inside --out is never followed; a bad
scenario (not UTF-8, a recursive alias, a bug) fails alone. Nothing outside --out is
created, changed or deleted (the tests snapshot everything beside it).
Terminal: names with rich markup, control or bidi characters are printed as text.
report: names escaped in Markdown and HTML; a malformed folder is exit 2 naming the file.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SCENARIOS
from rich.console import Console

import forecaster as fc
from forecaster.cli import main
from forecaster.present.batch import MANIFEST, run_folder_names, safe_name
from forecaster.present.report import render_html, render_markdown, write_report
from forecaster.results.outputs import run_to_folder

TINY = (SCENARIOS / "minimal.yaml").read_text() + "trials: 200\n"
HOSTILE_NAMES = ["[/]", "[link=https://evil.example]click[/link]", "[bold red]x", "a\\", ":smile:"]


def tiny(name: str = "minimal", **extra: str) -> str:
    text = TINY.replace("name: minimal", f"name: {json.dumps(name)}")
    return text + "".join(f"{k}: {json.dumps(v)}\n" for k, v in extra.items())


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict:
    """Every path under ``root`` (links not followed, ``skip`` subtrees left out) with its
    type, size, modification time and content hash or link target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if str(rel_dir / d) not in skip]
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            if os.path.islink(path):
                detail = os.readlink(path)
            elif path.is_file():
                detail = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                detail = None
            out[str(rel_dir / name)] = (st.st_mode, st.st_size if detail is not None else 0, st.st_mtime_ns, detail)
    return out


def clean(res) -> None:
    assert "Traceback" not in res.output and "Internal error" not in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)


def batch(folder: Path, out: Path, *args: str):
    return CliRunner().invoke(main, ["batch", str(folder), "--out", str(out), *args])


@pytest.fixture
def work(tmp_path):
    """tmp_path/sc (scenarios), tmp_path/out (--out), and things beside them to stay untouched."""
    (tmp_path / "sc").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "beside.txt").write_text("mine\n")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "summary.json").write_text('{"mine": true}\n')
    (victim / ".forecast.nc.1.abcdef012345.tmp").write_text("not a temporary file of forecaster's\n")
    (victim / "notes.txt").write_text("keep me\n")
    return tmp_path


# --- batch: run folder names -------------------------------------------------------------------------------------


def is_safe_folder_name(name: str) -> bool:
    return (name not in ("", ".", "..") and not name.startswith(".") and "/" not in name and "\\" not in name
            and not any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name)
            and len(name.encode("utf-8")) <= 200)


def test_run_folder_names_are_safe_unique_and_never_the_batch_files():
    stems = ["...", "..", ".", ".hidden", "manifest.json", "Summaries.CSV", "MANIFEST.JSON", "targets.csv", "Reps.csv",
             "a", "A", "a-2",
             "x\x1by", "b\\c", "\u202eevil", "tab\there", "new\nline", "con", "é" * 200, ""]
    files = [Path(f"/s/{s}.yaml") for s in stems] + [Path("/s/a.yml")]
    names = run_folder_names(files)
    assert len(names) == len(files)
    folded = [n.casefold() for n in names.values()]
    assert len(set(folded)) == len(folded), names
    assert not {"manifest.json", "summaries.csv", "targets.csv", "reps.csv"} & set(folded)
    assert all(is_safe_folder_name(n) for n in names.values()), names
    assert names[Path("/s/....yaml")] == "_.." and names[Path("/s/..yaml")] == "_"
    assert names[Path("/s/con.yaml")] == "_con"
    assert run_folder_names(list(reversed(files))) == names  # a rerun maps alike, whatever the listing order
    for stem in stems:
        assert safe_name(safe_name(stem)) == safe_name(stem)


def test_batch_with_hostile_file_names_writes_only_inside_out(work):
    stems = ["...", "..", ".hidden", "manifest.json", "summaries.csv", "targets.csv", "REPS.csv", "MANIFEST.JSON", "a",
             "A", "esc\x1b[31m",
             "bidi\u202eflip", "back\\slash", "tab\tname", "=HYPERLINK(1)"]
    for stem in stems:
        (work / "sc" / f"{stem}.yaml").write_text(tiny())
    (work / "sc" / "a.yml").write_text(tiny())
    before = snapshot(work, skip=("out",))
    res = batch(work / "sc", work / "out")
    clean(res)
    assert res.exit_code == 0, res.output
    assert snapshot(work, skip=("out",)) == before
    manifest = json.loads((work / "out" / MANIFEST).read_text())
    entries = manifest["scenarios"]
    assert sorted(e["file"] for e in entries.values()) == sorted([f"{s}.yaml" for s in stems] + ["a.yml"])
    assert all(e["status"] == "ok" for e in entries.values())
    listing = {p.name: p for p in (work / "out").iterdir()}
    assert all(listing.pop(own).is_file() for own in ("manifest.json", "summaries.csv", "targets.csv", "reps.csv"))
    assert set(listing) == set(entries)
    for name, path in listing.items():
        assert is_safe_folder_name(name) and path.is_dir() and not path.is_symlink()
        assert {p.name for p in path.iterdir()} == {"forecast.nc", "summary.json", "report.html", "report.md"}
    assert "\x1b" not in res.output and "\u202e" not in res.output
    rows = (work / "out" / "summaries.csv").read_text()
    assert "\x1b" not in rows and "'=HYPERLINK(1)" in rows
    again = batch(work / "sc", work / "out")  # the same names on a rerun: nothing runs again
    assert again.exit_code == 0 and set(json.loads((work / "out" / MANIFEST).read_text())["last_run"].values()) == {
        "unchanged"}


# --- batch: symbolic links inside --out ---------------------------------------------------------------------------


def test_batch_never_writes_or_deletes_through_a_link_inside_out(work):
    out = work / "out"
    for name in ("linked", "inner", "plain", "good"):
        (work / "sc" / f"{name}.yaml").write_text(tiny(name))
    (out / "linked").symlink_to(work / "victim", target_is_directory=True)  # a run folder that is a link
    (out / "inner").mkdir()
    (out / "inner" / "summary.json").symlink_to(work / "victim" / "summary.json")  # a run file that is a link
    (out / "plain").write_text("a file where a run folder goes\n")
    before = snapshot(work, skip=("out",))
    res = batch(work / "sc", out)
    clean(res)
    assert res.exit_code == 2, res.output
    assert snapshot(work, skip=("out",)) == before  # the victim's summary.json and its '.tmp' file are intact
    assert (out / "linked").is_symlink() and (out / "inner" / "summary.json").is_symlink()
    assert (out / "plain").read_text() == "a file where a run folder goes\n"
    entries = json.loads((out / MANIFEST).read_text())["scenarios"]
    assert entries["good"]["status"] == "ok" and (out / "good" / "summary.json").is_file()
    for name in ("linked", "inner", "plain"):
        assert entries[name]["status"] == "failed", name
        assert f"Error: {name}:" in res.output
    assert "symbolic link" in entries["linked"]["error"] and "symbolic link" in entries["inner"]["error"]
    assert "is a file" in entries["plain"]["error"]


@pytest.mark.parametrize("own", ["manifest.json", "summaries.csv", "targets.csv", "reps.csv"])
def test_batch_refuses_a_link_where_its_own_files_go(work, own):
    (work / "sc" / "good.yaml").write_text(tiny("good"))
    (work / "out" / own).symlink_to(work / "victim" / "summary.json")
    before = snapshot(work, skip=("out",))
    res = batch(work / "sc", work / "out")
    clean(res)
    assert res.exit_code == 2 and own in res.output and "symbolic link" in res.output, res.output
    assert snapshot(work, skip=("out",)) == before
    assert not (work / "out" / "good").exists()


def test_a_hand_edited_manifest_cannot_lead_the_batch_outside_out(work):
    out = work / "out"
    (work / "sc" / "good.yaml").write_text(tiny("good"))
    escape = {"status": "ok", "file": "x.yaml"}
    (out / MANIFEST).write_text(json.dumps({"scenarios": {"../victim": escape, "..": escape, "/etc": escape,
                                                          "good": "not an entry"}}))
    before = snapshot(work, skip=("out",))
    res = batch(work / "sc", out)
    clean(res)
    assert res.exit_code == 0, res.output
    assert snapshot(work, skip=("out",)) == before
    assert set(json.loads((out / MANIFEST).read_text())["scenarios"]) == {"good"}
    assert "mine" not in (out / "summaries.csv").read_text()


@pytest.mark.parametrize("junk", ["[1, 2]", "{", '{"scenarios": [1]}', "\xff"])
def test_a_corrupt_manifest_is_started_afresh(work, junk):
    (work / "sc" / "good.yaml").write_text(tiny("good"))
    (work / "out" / MANIFEST).write_text(junk, encoding="latin-1")
    res = batch(work / "sc", work / "out")
    clean(res)
    assert res.exit_code == 0, res.output
    assert json.loads((work / "out" / MANIFEST).read_text())["scenarios"]["good"]["status"] == "ok"


# --- batch: a bad scenario fails alone ----------------------------------------------------------------------------


def test_bad_scenario_files_fail_alone_and_the_good_ones_are_written(work):
    sc = work / "sc"
    (sc / "good.yaml").write_text(tiny("good"))
    (sc / "latin1.yaml").write_bytes(TINY.replace("name: minimal", "name: caf\xe9").encode("latin-1"))
    (sc / "binary.yaml").write_bytes(b"\xff\xfe\x00\x01garbage")
    (sc / "alias.yaml").write_text("a: &a [*a]\nname: x\n")
    (sc / "deep.yaml").write_text("x: " + "[" * 5000 + "]" * 5000 + "\n")
    (sc / "list.yaml").write_text("- 1\n- 2\n")
    (sc / "empty.yaml").write_text("")
    (sc / "folder.yaml").mkdir()  # not a file: not a scenario
    before = snapshot(work, skip=("out",))
    res = batch(sc, work / "out")
    clean(res)
    assert res.exit_code == 2, res.output
    assert snapshot(work, skip=("out",)) == before
    entries = json.loads((work / "out" / MANIFEST).read_text())["scenarios"]
    assert entries["good"]["status"] == "ok" and (work / "out" / "good" / "report.html").is_file()
    bad = ("latin1", "binary", "alias", "deep", "list", "empty")
    for name in bad:
        assert entries[name]["status"] == "failed" and entries[name]["error"], name
        assert not entries[name].get("internal_error"), entries[name]
        assert f"Error: {name}:" in res.output
        assert not (work / "out" / name).exists()
    assert "UTF-8" in entries["latin1"]["error"] and "UTF-8" in entries["binary"]["error"]
    assert "folder" not in entries
    rows = (work / "out" / "summaries.csv").read_text().splitlines()
    assert {r.split(",")[0] for r in rows[1:]} == {"good"}


def test_a_bug_in_one_scenario_fails_it_alone_and_says_so(work, monkeypatch):
    import forecaster.present.report as report

    for name in ("first", "second"):
        (work / "sc" / f"{name}.yaml").write_text(tiny(name))
    real = report.write_report

    def broken_for_first(target):
        if Path(target).name == "first":
            raise RuntimeError("kaboom")
        return real(target)

    monkeypatch.setattr(report, "write_report", broken_for_first)
    res = batch(work / "sc", work / "out")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "Internal error: first:" in res.output and "kaboom" in res.output
    entries = json.loads((work / "out" / MANIFEST).read_text())["scenarios"]
    assert entries["first"]["status"] == "failed" and entries["first"]["internal_error"] is True
    assert entries["second"]["status"] == "ok"


# --- terminal output ----------------------------------------------------------------------------------------------


def test_run_compare_and_sensitivity_print_markup_in_names_as_text(tmp_path):
    runner = CliRunner()
    name = " ".join(HOSTILE_NAMES)  # markup only: a bidi override in a name is refused (next lines)
    bidi = tmp_path / "bidi.yaml"
    bidi.write_text(tiny(name + " \u202e"))
    res = runner.invoke(main, ["run", str(bidi), "--out", str(tmp_path / "b")])
    assert res.exit_code == 2 and "bidirectional override" in res.output and "\u202e" not in res.output
    assert not (tmp_path / "b").exists()
    base = tmp_path / "base.yaml"
    base.write_text(tiny(name, currency="[/]"))
    variant = tmp_path / "variant.yaml"
    variant.write_text(tiny("[/] variant [link=x]", currency="[/]").replace("per_week: 120", "per_week: 150"))
    commands = [["run", str(base), "--out", str(tmp_path / "r"), "--report"],
                ["compare", str(base), str(variant), "--out", str(tmp_path / "c")],
                ["sensitivity", str(base), "--out", str(tmp_path / "s"), "--trials", "200"]]
    for args in commands:
        res = runner.invoke(main, args)
        clean(res)
        assert res.exit_code == 0, (args, res.output)
        for shown in ("[/]", "[link=https://evil.example]click[/link]", ":smile:"):
            assert shown in res.output, (args, shown)
        if args[0] == "compare":
            assert "[/] variant [link=x]" in res.output


def test_control_and_bidi_characters_never_reach_the_terminal(tmp_path):
    from forecaster.present.console import print_comparison, print_summary

    path = tmp_path / "s.yaml"
    path.write_text(tiny("plain"))
    sc = fc.load_scenario(path)
    summary = run_to_folder(sc, tmp_path / "o")
    evil = "x\x1b[2J\x1b]8;;http://e\x1b\\y\x07\r\n\u202e\u2066z[/]"
    summary["scenario"] = evil
    summary["metrics"]["revenue"]["by_period"][0]["period"] = evil
    buf = io.StringIO()
    print_summary(summary, sc, console=Console(file=buf, width=200, color_system=None))
    text = buf.getvalue()
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]", text), repr(text)
    assert "x\\x1b[2J" in text and "[/]" in text
    compared = {"base": evil, "seed": 0, "trials": 10, "scenarios": {evil: {"revenue": {"total": {"mean": 1.0}}}},
                "differences": {}}
    buf = io.StringIO()
    print_comparison(compared, "\x1b[31m", console=Console(file=buf, width=200, color_system=None))
    assert "\x1b" not in buf.getvalue() and "\u202e" not in buf.getvalue()


def test_progress_bars_show_markup_in_names_as_text():
    from forecaster.present.console import BatchProgress, LazyProgress

    for name in HOSTILE_NAMES:
        with BatchProgress(enabled=True) as display:
            display.start(0, 2, name)
            display.advance(10)
            buf = io.StringIO()
            Console(file=buf, width=200, color_system=None).print(display.bar.make_tasks_table(display.bar.tasks))
            assert name in buf.getvalue()
        with LazyProgress(100, f"{name}: trials", enabled=True, delay=0) as bar:
            bar(1)
            bar(1)
            bar.bar.refresh()


# --- report: escaping ---------------------------------------------------------------------------------------------

MARKDOWN_NAME = "**bold** _it_ `code` <b>x</b> [l](http://e.example) &amp; #h | pipe ~~s~~ $x$ \\ end"


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    text = (tiny(MARKDOWN_NAME) + 'team:\n  reps:\n    - {name: "r | <i>s</i> **t**", segments: [direct], quota: 1000}\n'
            "commission: {period: month, tiers: [{rate: 0.1}]}\n")
    (folder / "s.yaml").write_text(text)
    run_to_folder(fc.load_scenario(folder / "s.yaml"), folder / "out")
    write_report(folder / "out")
    return folder / "out"


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_markdown_report_escapes_names(run_folder):
    md = (run_folder / "report.md").read_text()
    head = md.splitlines()[0]
    assert head.startswith("# ") and head.endswith(": forecast")
    for raw in ("**bold**", "<b>", "`code`", "[l]", " &amp;", "~~s~~", "<i>"):
        assert raw not in md, raw
    assert "\\*\\*bold\\*\\*" in head and "\\<b\\>x\\</b\\>" in head and "\\&amp;" in head
    rep_rows = [line for line in md.splitlines() if line.startswith("| r ")]
    assert len(rep_rows) == 1 and unescaped_pipes(rep_rows[0]) == 5, rep_rows
    assert all(unescaped_pipes(line) == 8 for line in md.splitlines() if line.startswith("| 2027-"))  # revenue 4, won deals 2
    page = (run_folder / "report.html").read_text()
    assert "<b>x" not in page and "<i>s" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


def test_reports_show_control_characters_as_escapes_and_keep_markdown_on_one_line(run_folder):
    summary = json.loads((run_folder / "summary.json").read_text())
    summary["scenario"] = "a\nb\r\n# injected\x1b[31m\u202e"
    summary["reps"]["r | <i>s</i> **t**"]["quota"] = 1000.0
    md = render_markdown(summary, "now")
    assert md.splitlines()[0].startswith("# a b") and "\n\\# injected" not in md and "\n# injected" not in md
    assert "\x1b" not in md and "\u202e" not in md
    import numpy as np

    page = render_html(summary, {"revenue": np.ones((5, 3))}, "now")
    assert "\x1b" not in page and "\u202e" not in page and "\\x1b[31m" in page


# --- report: malformed folders ------------------------------------------------------------------------------------


def _edit(key_path, value):
    def edit(folder):
        data = json.loads((folder / "summary.json").read_text())
        node = data
        for k in key_path[:-1]:
            node = node[k]
        node[key_path[-1]] = value
        (folder / "summary.json").write_text(json.dumps(data))
    return edit


MALFORMED = {
    "no summary.json": (lambda f: (f / "summary.json").unlink(), "no summary.json"),
    "no forecast.nc": (lambda f: (f / "forecast.nc").unlink(), "forecast.nc"),
    "summary.json not JSON": (lambda f: (f / "summary.json").write_text("{ nope"), "summary.json"),
    "summary.json not UTF-8": (lambda f: (f / "summary.json").write_bytes(b"\xff\xfe{}"), "summary.json"),
    "summary.json a list": (lambda f: (f / "summary.json").write_text("[]"), "summary.json"),
    "summary.json empty": (lambda f: (f / "summary.json").write_text(""), "summary.json"),
    "summary.json too deep": (lambda f: (f / "summary.json").write_text("[" * 50000 + "]" * 50000), "summary.json"),
    "summary.json a folder": (lambda f: ((f / "summary.json").unlink(), (f / "summary.json").mkdir()), "summary.json"),
    "trials as text": (_edit(["trials"], "many"), "summary.json: trials"),
    "metrics missing": (_edit(["metrics"], None), "summary.json: metrics"),
    "period a number": (_edit(["metrics", "revenue", "by_period", 0, "period"], 7), "summary.json"),
    "p50 as text": (_edit(["metrics", "revenue", "total", "p50"], "1"), "summary.json"),
    "reps a list": (_edit(["reps"], [1]), "summary.json: reps"),
    "no commission for a rep": (lambda f: _edit(["reps", "r | <i>s</i> **t**", "commission"], None)(f), "summary.json"),
    "forecast.nc corrupt": (lambda f: (f / "forecast.nc").write_bytes(b"not HDF5 at all"), "forecast.nc"),
    "forecast.nc empty": (lambda f: (f / "forecast.nc").write_bytes(b""), "forecast.nc"),
    "forecast.nc a folder": (lambda f: ((f / "forecast.nc").unlink(), (f / "forecast.nc").mkdir()), "forecast.nc"),
    "backtest.json wrong": (lambda f: (f / "backtest.json").write_text('{"cutoffs": 3}'), "backtest.json"),
    "compare.json wrong": (lambda f: (f / "compare.json").write_text('{"base": "x", "scenarios": {}}'), "compare.json"),
    "sensitivity.json a list": (lambda f: (f / "sensitivity.json").write_text("[1]"), "sensitivity.json"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_report_of_a_malformed_folder_is_exit_2_naming_the_file(run_folder, tmp_path, case):
    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    for page in ("report.html", "report.md"):
        (folder / page).unlink()
    setup, expected = MALFORMED[case]
    setup(folder)
    res = CliRunner().invoke(main, ["report", str(folder)])
    clean(res)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("Error: ") and expected in res.output, res.output
    assert not (folder / "report.html").exists() and not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("what", ["empty folder", "missing folder", "a file"])
def test_report_of_no_run_folder_is_exit_2(tmp_path, what):
    target = tmp_path / "x"
    if what == "empty folder":
        target.mkdir()
    elif what == "a file":
        target.write_text("hello")
    res = CliRunner().invoke(main, ["report", str(target)])
    clean(res)
    assert res.exit_code == 2 and str(target) in res.output, res.output
    with pytest.raises(fc.ForecasterError if hasattr(fc, "ForecasterError") else Exception):
        write_report(target)
