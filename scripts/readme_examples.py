"""Run the README's marked command examples and rewrite (``--write``) or check (``--check``) them.

An example is an HTML comment that names the command, followed (blank lines allowed) by a
fenced ``text`` block: the block is ``$ COMMAND`` and what the command printed::

    <!-- example: forecaster run scenarios/saas-quarter.yaml --out out/saas --trials 4000
         lines: 1-9 33- -->
    ```text
    $ forecaster run scenarios/saas-quarter.yaml --out out/saas --trials 4000
    saas-fy27-q1: 4,000 trials, seed 2027, 2027-01-01 to 2027-03-31, by month
    ...
    ```

The comment's first line is ``example: COMMAND`` (a shell command line, run with bash);
further lines may set options, ``name: value``:

``lines: RANGES``
    show only these lines of the output (1-based, inclusive, separated by spaces or
    commas: ``1-9 33-36 41-``; ``41-`` runs to the end); each run of lines left out is
    shown as one line ``...``. Without it, the whole output is shown.
``stderr: merged``
    the output is stdout and stderr together, as a terminal shows them (default: stdout
    only, so progress and the kernels' first-compile notice never enter a block).
``status: N``
    the exit status the command must end with (default 0); any other fails the example.

Each command runs in a fresh temporary folder that holds a symbolic link to every
top-level entry of the repository except ``out`` (so ``scenarios/...`` works and ``--out
out/...`` writes into the temporary folder, never into the repository), with this
interpreter's ``bin`` folder first on ``PATH``, ``NO_COLOR=1`` and ``COLUMNS`` unset.

The output is normalised by these rules before it is shown or compared, and nothing else
is skipped:

1. ANSI escape sequences are removed, trailing white space is removed from every line, and
   blank lines at the start and end are dropped.
2. The temporary folder's absolute path is written ``<tmp>``, the repository's ``<repo>``.
3. A duration (a number followed by ``ms``, ``s`` or ``min``, as ``(0.8 s)`` or
   ``12 ms``) is written ``<duration>``: it depends on the machine, not on the program.

``--check`` exits 1 and prints a unified diff for each example whose block differs from
what the command prints today; ``--write`` rewrites those blocks in place. Exit 2: the
file has a marker without a block, or a command failed (the exit status differs from
``status``). Usage::

    python scripts/readme_examples.py --check [README.md]
    python scripts/readme_examples.py --write [README.md]
"""
from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MARKER = re.compile(r"<!--\s*example:\s*(?P<body>.*?)-->", re.S)
FENCE_OPEN = re.compile(r"```text[ \t]*\n")
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
DURATION = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?\s?(?:ms|s|min)\b")
TIMEOUT = 600
"""Seconds a command may take before its example fails."""


class ExampleError(Exception):
    """A marker that cannot be run or shown (exit status 2)."""


@dataclass
class Example:
    command: str
    lines: list[tuple[int, int | None]] | None = None
    stderr: bool = False
    status: int = 0
    start: int = 0      # offset of the block's first content character in the document
    end: int = 0        # offset of the block's closing fence
    line_no: int = 0    # the marker's line, for messages
    current: str = field(default="", repr=False)


def parse_ranges(text: str) -> list[tuple[int, int | None]]:
    """``"1-9 33-36 41-"`` -> [(1, 9), (33, 36), (41, None)] (1-based, inclusive)."""
    ranges = []
    for part in re.split(r"[,\s]+", text.strip()):
        m = re.fullmatch(r"(\d+)(?:-(\d*))?", part)
        if not m:
            raise ExampleError(f"lines: expected ranges such as 1-9 33-36 41-; got {part!r}")
        lo = int(m[1])
        hi = lo if m[2] is None else (int(m[2]) if m[2] else None)
        if lo < 1 or (hi is not None and hi < lo):
            raise ExampleError(f"lines: {part!r} is not a range of lines counted from 1")
        ranges.append((lo, hi))
    return ranges


def find_examples(text: str) -> list[Example]:
    """Every marked example of ``text``, with where its block lies."""
    examples = []
    for m in MARKER.finditer(text):
        line_no = text.count("\n", 0, m.start()) + 1
        head, *rest = m["body"].strip().splitlines()
        ex = Example(command=head.strip(), line_no=line_no)
        if not ex.command:
            raise ExampleError(f"line {line_no}: the marker names no command")
        for line in rest:
            key, sep, value = line.strip().partition(":")
            key, value = key.strip(), value.strip()
            if not sep:
                raise ExampleError(f"line {line_no}: expected 'name: value' in the marker; got {line.strip()!r}")
            if key == "lines":
                try:
                    ex.lines = parse_ranges(value)
                except ExampleError as exc:
                    raise ExampleError(f"line {line_no}: {exc}") from None
            elif key == "stderr" and value in ("merged", "stdout"):
                ex.stderr = value == "merged"
            elif key == "status" and value.isdigit():
                ex.status = int(value)
            else:
                raise ExampleError(f"line {line_no}: unknown option {key}: {value} (lines, stderr: merged, status)")
        after = text[m.end():]
        gap = re.match(r"[ \t]*\n(?:[ \t]*\n)*", after)
        rest_at = m.end() + (gap.end() if gap else 0)
        fence = FENCE_OPEN.match(text, rest_at)
        if not fence:
            raise ExampleError(f"line {line_no}: the marker must be followed by a ```text block")
        close = text.find("\n```", fence.end() - 1)
        if close < 0:
            raise ExampleError(f"line {line_no}: the ```text block is not closed")
        ex.start, ex.end = fence.end(), close + 1
        ex.current = text[ex.start:ex.end]
        examples.append(ex)
    return examples


def normalise(output: str, tmp: str, repo: str = str(ROOT)) -> list[str]:
    """The output by the module's rules 1-3, as lines."""
    text = ANSI.sub("", output)
    for path, name in sorted(((tmp, "<tmp>"), (os.path.realpath(tmp), "<tmp>"), (repo, "<repo>")),
                             key=lambda p: -len(p[0])):
        text = text.replace(path, name)
    text = DURATION.sub("<duration>", text)
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return lines


def select(lines: list[str], ranges) -> list[str]:
    """``lines`` kept by ``ranges``; each run left out becomes ``...``."""
    if ranges is None:
        return lines
    keep: set[int] = set()
    for lo, hi in ranges:
        if lo > len(lines):
            raise ExampleError(f"lines: {lo} is past the output's last line ({len(lines)})")
        keep.update(range(lo - 1, len(lines) if hi is None else min(hi, len(lines))))
    shown, skipping = [], False
    for i, line in enumerate(lines):
        if i in keep:
            shown.append(line)
            skipping = False
        elif not skipping:
            shown.append("...")
            skipping = True
    return shown


def workspace(tmp: Path, repo: Path = ROOT) -> None:
    """Link every top-level entry of the repository except out/ (and .git) into ``tmp``."""
    for entry in repo.iterdir():
        if entry.name in ("out", ".git"):
            continue
        (tmp / entry.name).symlink_to(entry)


def run(example: Example, repo: Path = ROOT) -> str:
    """The block's text for ``example``: ``$ COMMAND`` and its normalised output."""
    with tempfile.TemporaryDirectory(prefix="readme-example-") as tmp:
        workspace(Path(tmp), repo)
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR")}
        env["NO_COLOR"] = "1"
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        try:
            proc = subprocess.run(["bash", "-c", example.command], cwd=tmp, env=env, text=True,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT if example.stderr else subprocess.PIPE,
                                  timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ExampleError(f"line {example.line_no}: {example.command}: still running after {TIMEOUT} s") from None
        if proc.returncode != example.status:
            raise ExampleError(f"line {example.line_no}: {example.command}: exit status {proc.returncode}, expected "
                               f"{example.status}\n{proc.stdout[-2000:]}{proc.stderr[-2000:] if proc.stderr else ''}")
        lines = select(normalise(proc.stdout, tmp, str(repo)), example.lines)
    return "\n".join([f"$ {example.command}", *lines]) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 with a diff if an example's block is stale")
    mode.add_argument("--write", action="store_true", help="rewrite every stale block in place")
    parser.add_argument("file", nargs="?", default=str(ROOT / "README.md"))
    args = parser.parse_args(argv)
    path = Path(args.file)
    text = path.read_text(encoding="utf-8")
    try:
        examples = find_examples(text)
        fresh = [run(ex) for ex in examples]
    except ExampleError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 2
    if not examples:
        print(f"{path}: no marked examples (<!-- example: COMMAND --> before a ```text block)", file=sys.stderr)
        return 2
    stale = [(ex, new) for ex, new in zip(examples, fresh) if ex.current != new]
    if args.write:
        for ex, new in sorted(stale, key=lambda p: -p[0].start):
            text = text[:ex.start] + new + text[ex.end:]
        if stale:
            path.write_text(text, encoding="utf-8")
        print(f"{path}: {len(examples)} examples, {len(stale)} rewritten")
        return 0
    for ex, new in stale:
        sys.stdout.writelines(difflib.unified_diff(ex.current.splitlines(keepends=True), new.splitlines(keepends=True),
                                                   f"{path}:{ex.line_no} (README)", f"{ex.command} (today)"))
    print(f"{path}: {len(examples)} examples, {len(stale)} differ from what the commands print"
          + ("; run python scripts/readme_examples.py --write" if stale else ""))
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
