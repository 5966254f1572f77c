"""The README's command examples are what the commands print today (scripts/readme_examples.py).

The README's marked blocks are checked as they stand; the script itself is tested on small
documents where the answer is known, so a check that could never fail would show here.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "readme_examples.py"

sys.path.insert(0, str(SCRIPT.parent))
import readme_examples as rx  # noqa: E402


def script(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=900)


def test_the_readme_examples_are_what_the_commands_print():
    proc = script("--check", ROOT / "README.md")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert len(rx.find_examples((ROOT / "README.md").read_text())) >= 3  # run, compare, sensitivity at least


def doc(block: str, marker: str = "<!-- example: printf 'a\\nb\\nc\\nd\\n' -->") -> str:
    return f"# Title\n\ntext\n\n{marker}\n```text\n{block}```\n\nafter\n"


def test_a_stale_block_fails_the_check_with_a_diff_and_write_fixes_it(tmp_path):
    readme = tmp_path / "R.md"
    readme.write_text(doc("$ printf 'a\\nb\\nc\\nd\\n'\na\nB\nc\nd\n"))
    proc = script("--check", readme)
    assert proc.returncode == 1
    assert "-B\n+b\n" in proc.stdout and "1 differ" in proc.stdout
    assert script("--write", readme).returncode == 0
    assert readme.read_text() == doc("$ printf 'a\\nb\\nc\\nd\\n'\na\nb\nc\nd\n")
    assert script("--check", readme).returncode == 0


def test_lines_keeps_ranges_and_marks_each_gap():
    marker = "<!-- example: printf 'a\\nb\\nc\\nd\\ne\\n'\n     lines: 1 3-4 -->"
    (ex,) = rx.find_examples(doc("old\n", marker))
    assert rx.run(ex) == "$ printf 'a\\nb\\nc\\nd\\ne\\n'\na\n...\nc\nd\n...\n"
    assert rx.select(list("abcdef"), rx.parse_ranges("2-3, 5-")) == ["...", "b", "c", "...", "e", "f"]


def test_the_normalisation_rules():
    out = "\x1b[1mBold\x1b[0m   \n/tmp/x/out/f.nc in /repo/a\nran  s1  (0.8 s), 12 ms, 3 min; 4 segments\n\n"
    assert rx.normalise(out, "/tmp/x", "/repo") == ["Bold", "<tmp>/out/f.nc in <repo>/a",
                                                    "ran  s1  (<duration>), <duration>, <duration>; 4 segments"]


def test_a_command_runs_in_a_scratch_folder_that_sees_the_repository(tmp_path):
    (ex,) = rx.find_examples(doc("", "<!-- example: mkdir -p out && ls -d scenarios out && pwd -->"))
    text = rx.run(ex)
    assert text.splitlines()[1:] == ["out", "scenarios", "<tmp>"]
    assert not (ROOT / "out" / "readme-example").exists()


def test_stderr_and_the_exit_status():
    (ex,) = rx.find_examples(doc("", "<!-- example: echo out; echo err >&2; exit 2\n  stderr: merged\n  status: 2 -->"))
    assert rx.run(ex) == "$ echo out; echo err >&2; exit 2\nout\nerr\n"
    (ex,) = rx.find_examples(doc("", "<!-- example: echo out; echo err >&2 -->"))
    assert rx.run(ex) == "$ echo out; echo err >&2\nout\n"
    (ex,) = rx.find_examples(doc("", "<!-- example: exit 3 -->"))
    with pytest.raises(rx.ExampleError, match="exit status 3, expected 0"):
        rx.run(ex)


@pytest.mark.parametrize("text,message", [
    ("<!-- example: ls -->\n\nno block here\n", "must be followed by a ```text block"),
    ("<!-- example: ls\n  colour: red -->\n```text\n```\n", "unknown option"),
    ("<!-- example: ls\n  lines: 3-1 -->\n```text\n```\n", "not a range"),
])
def test_a_malformed_marker_is_an_error_naming_its_line(tmp_path, text, message):
    readme = tmp_path / "R.md"
    readme.write_text("intro\n" + text)
    proc = script("--check", readme)
    assert proc.returncode == 2
    assert "line 2" in proc.stderr and message in proc.stderr
