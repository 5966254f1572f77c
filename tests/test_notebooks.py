"""The notebooks run from top to bottom, and the outputs stored in them are today's.

The notebooks are kept executed (a reader sees numbers and charts without running them).
Each test executes a notebook headless (nbclient, a python3 kernel, Jupyter's inline
backend for figures) and compares every code cell's outputs with the stored ones: the
printed text and each result's text form must be equal, and a cell that stored a figure
must draw one again. A notebook whose stored outputs are stale fails, with the cell.

To store fresh outputs after a change (the code's numbers moved, a cell was edited):

    python tests/test_notebooks.py            # every notebook
    python tests/test_notebooks.py 03-sales-ops.ipynb
"""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

FOLDER = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))
TIMEOUT = 600
"""Seconds a cell may take (the notebooks take well under a minute each on a quiet machine)."""

_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def execute(path: Path):
    """The notebook at ``path`` executed afresh, and the seconds it took."""
    book = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    NotebookClient(book, timeout=TIMEOUT, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return book, time.perf_counter() - started


def outputs(cell) -> list:
    """What a code cell showed, in a form to compare: each stream's text, each result's
    text/plain (object addresses removed), and which kinds of figure it drew."""
    shown = []
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream":
            shown.append((o["name"], o["text"]))
        elif o["output_type"] in ("execute_result", "display_data"):
            data = o["data"]
            shown.append(("result", _ADDRESS.sub("", data.get("text/plain", "")),
                          sorted(k for k in data if k.startswith("image/"))))
        else:
            shown.append((o["output_type"], o.get("ename"), o.get("evalue")))
    return shown


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["01-walkthrough.ipynb", "02-finance-commit.ipynb", "03-sales-ops.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_stored_executed(path):
    book = nbformat.read(path, as_version=4)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code), "store the notebook executed (see above)"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "executed top to bottom, once"
    assert any(c.outputs for c in code), "stored without outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_are_what_the_notebook_gives_today(path):
    stored = nbformat.read(path, as_version=4)
    fresh, seconds = execute(path)
    print(f"{path.name}: executed in {seconds:.1f} s")
    for i, (old, new) in enumerate(zip(stored.cells, fresh.cells)):
        if old.cell_type != "code":
            continue
        got = outputs(new)
        assert not [o for o in got if o[0] == "error"], f"{path.name} cell {i}: {got}"
        assert got == outputs(old), (f"{path.name} cell {i} shows something else today: run "
                                     f"python tests/test_notebooks.py {path.name}\nstored: {outputs(old)}\ntoday:  {got}")


def test_the_walkthrough_draws_inline():
    book = nbformat.read(FOLDER / "01-walkthrough.ipynb", as_version=4)
    source = "\n".join(c.source for c in book.cells if c.cell_type == "code")
    assert "matplotlib.use(" not in source  # forcing a backend hides the figure in Jupyter
    figures = [o for c in book.cells if c.cell_type == "code" for o in c.outputs
               if o["output_type"] == "display_data" and "image/png" in o["data"]]
    assert len(figures) == 1


def test_quota_chances_are_labelled_by_quarter():
    book = nbformat.read(FOLDER / "02-finance-commit.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in book.cells if c.cell_type == "code" for o in c.outputs)
    lines = [line for line in text.splitlines() if "Q1:" in line]
    assert lines and all(re.fullmatch(r"\w+: Q1: \d+%, Q2: \d+%, Q3: \d+%, Q4: \d+%", line) for line in lines), lines


def write(paths) -> None:
    """Execute each notebook and store it with its outputs."""
    for path in paths:
        book, seconds = execute(path)
        nbformat.write(book, path)
        print(f"{path.name}: executed in {seconds:.1f} s and stored")


if __name__ == "__main__":
    write([FOLDER / name for name in sys.argv[1:]] or NOTEBOOKS)
