"""Batch runs: every scenario of a folder, each with its outputs and report, never losing work.

For a folder of scenarios, :func:`run_batch` writes ``OUT/<scenario file stem>/`` with
``forecast.nc``, ``summary.json``, ``report.html`` and ``report.md``, then
``OUT/manifest.json`` (status, input hash, version, seed, trials, timings, error per
scenario) and ``OUT/summaries.csv``. One bad scenario fails alone. Every file is written
under a temporary name and renamed, and the manifest is rewritten after each scenario, so
an interrupted batch leaves every finished scenario intact and no half-written file; the
next run skips the scenarios whose inputs and forecaster version did not change (unless
``force``) and completes the rest.
"""
from __future__ import annotations

import csv
import io
import json
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from .errors import ForecasterError, OutputError

STOP = threading.Event()
"""Set by a signal handler: the batch stops at the next scenario boundary even if the
KeyboardInterrupt the handler raised was swallowed (Python ignores exceptions raised
inside garbage-collection callbacks)."""

MANIFEST = "manifest.json"
CSV_FILE = "summaries.csv"
STATS = ("mean", "std", "p5", "p10", "p50", "p90", "p95", "mean_ci_low", "mean_ci_high")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_atomic(folder: Path, name: str, text: str) -> None:
    from .outputs import _Staged

    with _Staged(folder) as staged:
        staged.path(name).write_text(text, encoding="utf-8")
        staged.publish()


def safe_cell(value) -> str:
    """A CSV cell a spreadsheet will not run: text starting with = + - @ or a control
    character is prefixed with an apostrophe (OWASP's advice against formula injection)."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r", "\n") else text


def summaries_csv(summaries: dict) -> str:
    """One row per scenario, metric and period (``total`` for the whole horizon)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["scenario", "metric", "period", *STATS])
    for name, s in summaries.items():
        for metric, m in s["metrics"].items():
            for period, stats in [("total", m["total"]), *((p["period"], p) for p in m["by_period"])]:
                w.writerow([safe_cell(name), metric, period, *("" if stats[k] is None else repr(float(stats[k]))
                                                               for k in STATS)])
    return buf.getvalue()


def scenario_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise OutputError(f"{folder}: not a folder of scenarios")
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def run_batch(folder: str | Path, out: str | Path, *, force: bool = False, trials: int | None = None,
              threads: int | None = None, on_start=None, progress=None) -> dict:
    """Run every scenario in ``folder`` into ``out``; returns the manifest.

    ``on_start(index, total, name)`` is called before each scenario and ``progress(n)``
    with trials done, for a display.
    """
    from . import __version__
    from .loading import load_scenario
    from .outputs import prepare_folder, run_to_folder
    from .report import write_report
    from .variants import is_variant
    from .yamlio import load_yaml

    folder, out = Path(folder), prepare_folder(out)
    files = scenario_files(folder)
    manifest_path = out / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except (FileNotFoundError, ValueError):
        manifest = {}
    entries = manifest.get("scenarios", {})
    actions = {}  # what this run did with each scenario: ran, unchanged, failed, skipped

    def save():
        manifest.update({"forecaster_version": __version__, "updated": _now(), "folder": str(folder),
                         "scenarios": entries})
        _write_atomic(out, MANIFEST, json.dumps(manifest, indent=2) + "\n")

    STOP.clear()
    for i, path in enumerate(files):
        if STOP.is_set():
            raise KeyboardInterrupt
        name = path.stem
        if on_start:
            on_start(i, len(files), name)
        target = out / name
        entry = {"file": path.name, "forecaster_version": __version__}
        try:
            data, _ = load_yaml(path.read_text(encoding="utf-8-sig"), str(path))
            if is_variant(data):
                entries[name] = {**entry, "status": "skipped", "error": "a variant file (changes to a base "
                                 "scenario), not a whole scenario; run it with `forecaster compare`"}
                actions[name] = "skipped"
                save()
                continue
            sc = load_scenario(path).with_run(trials=trials)
        except ForecasterError as exc:
            entries[name] = {**entry, "status": "failed", "error": str(exc), "finished": _now()}
            actions[name] = "failed"
            save()
            continue
        entry.update({"input_sha256": sc.sha256, "seed": sc.seed, "trials": sc.trials})
        previous = entries.get(name, {})
        unchanged = (previous.get("status") == "ok" and previous.get("input_sha256") == sc.sha256
                     and previous.get("forecaster_version") == __version__ and previous.get("trials") == sc.trials
                     and all((target / f).exists() for f in ("summary.json", "forecast.nc", "report.html")))
        if unchanged and not force:
            actions[name] = "unchanged"
            if progress:
                progress(sc.trials)
            continue
        for stale in target.glob(".*.tmp") if target.is_dir() else ():
            stale.unlink(missing_ok=True)  # left by a run that was killed
        started, t0 = _now(), time.perf_counter()
        try:
            run_to_folder(sc, target, threads=threads, progress=progress)
            write_report(target)
        except ForecasterError as exc:
            entries[name] = {**entry, "status": "failed", "error": str(exc), "started": started, "finished": _now()}
            actions[name] = "failed"
            save()
            continue
        entries[name] = {**entry, "status": "ok", "started": started, "finished": _now(),
                         "seconds": round(time.perf_counter() - t0, 3)}
        actions[name] = "ran"
        save()
    if STOP.is_set():
        raise KeyboardInterrupt
    summaries = {}
    for name, e in entries.items():
        if e.get("status") == "ok" and (out / name / "summary.json").exists():
            summaries[name] = json.loads((out / name / "summary.json").read_text())
    _write_atomic(out, CSV_FILE, summaries_csv(summaries))
    manifest["last_run"] = actions
    save()
    return manifest
