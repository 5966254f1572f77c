"""Writing a run's results: ``forecast.nc`` and ``summary.json``, whole or not at all.

Each file is written under a temporary name in the output folder and renamed into place
once complete, so a reader never sees a half-written file and a failed or interrupted run
leaves the previous results. :func:`run_to_folder` streams trials into the NetCDF file in
chunks (memory bounded whatever the trial count) and summarises them from there.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from .errors import OutputError
from .scenario import Scenario

FORECAST = "forecast.nc"
SUMMARY = "summary.json"


def prepare_folder(out: str | Path) -> Path:
    """Create the output folder if needed; refuse a file in its place."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot create the folder: {exc.strerror}") from None
    return out


def _temp_name(out: Path, name: str) -> Path:
    """A fresh hidden temporary name beside ``name`` (the file is not created)."""
    return out / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"


class _Staged:
    """Temporary files in the output folder, renamed into place together by :meth:`publish`."""

    def __init__(self, out: Path):
        self.out = out
        self.files: dict[str, Path] = {}

    def path(self, name: str) -> Path:
        # registered before it exists: an interruption at any point leaves nothing behind
        tmp = self.files[name] = _temp_name(self.out, name)
        try:
            tmp.touch(mode=0o600, exist_ok=False)
        except OSError as exc:
            raise OutputError(f"--out {self.out}: cannot write there: {exc.strerror}") from None
        return tmp

    def publish(self) -> dict[str, Path]:
        written = {}
        for name, tmp in self.files.items():  # summary.json last: it marks a finished run
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.out / name)
            written[name] = self.out / name
        self.files = {}
        return written

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for tmp in self.files.values():
            tmp.unlink(missing_ok=True)


def _dump(summary: dict) -> str:
    return json.dumps(summary, indent=2, allow_nan=False) + "\n"


def write_outputs(out: str | Path, ds, summary: dict) -> dict[str, Path]:
    """Write an in-memory Dataset and its summary into the folder ``out`` atomically."""
    out = prepare_folder(out)
    try:
        with _Staged(out) as staged:
            ds.to_netcdf(staged.path(FORECAST), engine="h5netcdf")
            staged.path(SUMMARY).write_text(_dump(summary))
            return staged.publish()
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot write the results: {exc}") from None


def run_to_folder(sc: Scenario, out: str | Path, *, threads: int | None = None, progress=None,
                  runner=None) -> dict:
    """Simulate ``sc`` straight into ``out/forecast.nc``, summarise it, and publish both files.

    Only one chunk of trials is in memory at a time (see
    :func:`forecaster.simulation.chunk_trials_for`); the summary reads the file back one
    column of trials at a time, so its quantiles are exact. ``runner`` (a
    :class:`forecaster.cluster.DaskRunner`) runs the blocks on a cluster. Returns the summary.
    """
    from .plan import build_plan
    from .results import Layout, NetCDFSink
    from .simulation import chunk_trials_for, run_trials
    from .summary import Meta, funnel_expectation, summarize_columns

    plan = build_plan(sc)
    layout = Layout.of(sc, plan)
    out = prepare_folder(out)
    try:
        with _Staged(out) as staged:
            chunk = chunk_trials_for(layout)
            sink = NetCDFSink(layout, staged.path(FORECAST), chunk)
            try:
                run_trials(plan, sc, sink, chunk_trials=chunk, threads=threads, progress=progress, runner=runner)
                summary = summarize_columns(sink.columns(), Meta.of_layout(layout))
                summary["funnel"] = funnel_expectation(plan, sink.vars["inputs"][:])
            finally:
                sink.close()
            staged.path(SUMMARY).write_text(_dump(summary))
            staged.publish()
            return summary
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot write the results: {exc}") from None


def write_comparison(out: str | Path, ds, summary: dict, stem: str = "compare") -> dict[str, Path]:
    """Write ``<stem>.nc`` (per-trial values and differences) and ``<stem>.json`` atomically."""
    out = prepare_folder(out)
    try:
        with _Staged(out) as staged:
            ds.to_netcdf(staged.path(f"{stem}.nc"), engine="h5netcdf")
            staged.path(f"{stem}.json").write_text(_dump(summary))
            return staged.publish()
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot write the results: {exc}") from None


def run(scenario_path: str | Path, out: str | Path, *, trials: int | None = None, seed: int | None = None,
        threads: int | None = None) -> dict:
    """Load, simulate, summarise and write, as ``forecaster run`` does. Returns the summary."""
    from .loading import load_scenario

    return run_to_folder(load_scenario(scenario_path).with_run(trials, seed), out, threads=threads)
