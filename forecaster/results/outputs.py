"""Writing a run's results: ``forecast.nc`` and ``summary.json``, whole or not at all.

:func:`run_to_folder` streams trials into the NetCDF file in chunks (memory bounded whatever
the trial count) and summarises them from there. The files are staged and published
together (:class:`forecaster.results.files.Staged`). Before anything is allocated or
written, the size of the outputs is estimated from the trial count and the layout
(:func:`estimate`) and the run is refused when it exceeds the free space of the output
folder's filesystem, the process's file-size limit (``ulimit -f``) or the machine's memory
(:func:`check_room`).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from forecaster.engine.plan import build_plan
from forecaster.engine.simulation import run_trials
from forecaster.errors import OutputError
from forecaster.results import layout as sizing  # its budgets read at call time, as the sinks read them
from forecaster.results.files import (
    GuardedFile,
    Staged,
    check_out,
    check_targets,
    checkpoint,
    create_out_folder,
    handle_interrupts,
    nearest_existing,
    remove_folders,
    shorten,
)
from forecaster.results.layout import (
    Columns,
    Layout,
    MemorySink,
    NetCDFSink,
    chunk_trials_for,
)
from forecaster.results.summary import Meta, funnel_expectation, stage_value_summary, summarize_columns
from forecaster.scenario.loading import load_scenario
from forecaster.scenario.model import Scenario

FORECAST = "forecast.nc"
SUMMARY = "summary.json"

KEEP = ("all", "summary")
"""What a run writes: every trial (``forecast.nc``) and ``summary.json``, or the summary only."""
PRECISION = ("float64", "float32")
"""How ``forecast.nc`` stores its real-valued variables."""


def _dump(summary: dict) -> str:
    return json.dumps(summary, indent=2, allow_nan=False) + "\n"


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _to_netcdf(ds, path: Path) -> None:
    """``ds.to_netcdf`` through a :class:`GuardedFile`: errors raise, the library survives."""
    guard = GuardedFile(path)
    try:
        try:
            ds.to_netcdf(guard, engine="h5netcdf")
        except (OSError, RuntimeError) as exc:
            guard.check()
            raise OSError(getattr(exc, "errno", None), _first_line(exc)) from None
        guard.fsync()
    finally:
        guard.close()
    guard.check()


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


# --- sizes and room --------------------------------------------------------------------------

def format_bytes(n: float) -> str:
    """Bytes for people: 113.4 GiB, 15 KiB."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024:
            return f"{n:,.0f} {unit}" if unit in ("bytes", "KiB") else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} PiB"


def _meminfo(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup(name: str) -> int | None:
    try:
        text = Path("/sys/fs/cgroup", name).read_text().strip()
        return None if text == "max" else int(text)
    except (OSError, ValueError):
        return None


def memory_total() -> int | None:
    """Memory this process may use at most [bytes]: the machine's, or its cgroup's limit."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = None
    limit = _cgroup("memory.max")
    return min(x for x in (total, limit) if x) if (total or limit) else None


def memory_available() -> int | None:
    """Memory free for use now [bytes] (MemAvailable, within the cgroup's limit)."""
    avail = _meminfo("MemAvailable")
    limit, used = _cgroup("memory.max"), _cgroup("memory.current")
    if limit and used is not None:
        avail = min(avail, limit - used) if avail else limit - used
    if avail is None:
        total = memory_total()
        avail = total // 2 if total else None
    return avail


def _file_size_limit() -> int | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


@dataclass(frozen=True)
class Estimate:
    """What a run will take, estimated before it starts (upper bounds, uncompressed).

    ``forecast`` (published ``forecast.nc``), ``scratch`` (a per-trial file removed at the end,
    for ``keep="summary"`` beyond memory) and ``summary`` (``summary.json``) [bytes];
    ``memory`` [bytes] at the peak; ``in_memory``: ``keep="summary"`` holds the trials in
    memory; ``per_trial`` [bytes] of the per-trial file written, ``fixed`` [bytes] of the rest.
    """

    trials: int
    forecast: int
    scratch: int
    summary: int
    memory: int
    in_memory: bool
    per_trial: int
    fixed: int
    float32_forecast: int

    @property
    def disk(self) -> int:
        return self.forecast + self.scratch + self.summary


def _summary_bytes(layout) -> int:
    """An upper bound of ``summary.json``'s size [bytes]."""
    sizes = layout.sizes()
    P, G, R = sizes["period"], sizes["segment"], sizes.get("rep", 0)
    Q = len(layout.quota_periods)
    commission = bool(layout.scenario.commission)
    stats = (3 if commission else 2) * (P + 1) + 2 * G + R * (1 + commission)
    text = 4096 + 450 * stats + 200 * R * Q * commission + 120 * G * (len(layout.quantities) + 2)
    return text + 120 * len(layout.scenario.targets) + 2 * len(layout.scenario.description or "")


def _summary_memory(layout) -> int:
    """Peak memory of summarising [bytes]: groups of exact columns, and the funnel."""

    n, sizes = layout.trials, layout.sizes()
    columns = max(1, min(sizing.COLUMNS_BUDGET // (8 * n), sizes["period"] + sizes["segment"] + len(layout.quota_periods) + 2))
    inputs = n * sizes["segment"] * sizes["quantity"] * 8
    return 2 * 8 * n * columns + 6 * 8 * n + (inputs if inputs <= sizing.ROW_BLOCK_INPUTS else 0) + (32 << 20)


def estimate(layout, *, keep: str = "all", precision: str = "float64", compress: bool = False) -> Estimate:
    """Disk and memory a run of ``layout`` needs, before anything is allocated."""

    chunk = chunk_trials_for(layout)
    n = layout.trials
    summary = _summary_bytes(layout)
    summarise = _summary_memory(layout)
    f32 = layout.file_bytes("float32", chunk)
    if keep == "summary":
        held = 2 * n * layout.per_trial_bytes("float64")  # the kernels' arrays and the derived ones
        avail = memory_available()
        if held + summarise <= (avail // 2 if avail else 1 << 30):
            return Estimate(n, 0, 0, summary, held + summarise, True, 0, summary, f32)
        scratch = layout.file_bytes("float64", chunk)
        return Estimate(n, 0, scratch, summary, 4 * sizing.CHUNK_BYTES + summarise, False,
                        layout.per_trial_bytes("float64"), scratch - n * layout.per_trial_bytes("float64") + summary,
                        f32)
    forecast = layout.file_bytes(precision, chunk)
    if compress:  # incompressible data grows a little
        forecast += forecast // 500
    per = layout.per_trial_bytes(precision)
    return Estimate(n, forecast, 0, summary, 4 * sizing.CHUNK_BYTES + summarise, False, per,
                    forecast - n * per + summary, f32)


def _existing(path: Path) -> Path:
    return Path(nearest_existing(os.fspath(path)))


def check_room(out: str | Path, est: Estimate, *, keep: str = "all", precision: str = "float64",
               compress: bool = False, keep_summary_advice: bool = True) -> None:
    """Refuse a run whose outputs exceed the free space under ``out`` or the file-size limit,
    or whose summary exceeds the memory of the machine, saying what would fit
    (``keep_summary_advice``: whether ``--keep summary`` is among the ways; a batch, which
    writes a report from ``forecast.nc``, has no such option)."""
    out = Path(out)
    trials = f"{est.trials:,} trial{'s' if est.trials != 1 else ''}"

    def advice(room: int | None) -> str:
        ways = []
        if keep == "all":
            if keep_summary_advice:
                ways.append(f"--keep summary (summary.json only, about {format_bytes(est.summary)})")
            if precision == "float64":
                ways.append(f"--precision float32 (forecast.nc about {format_bytes(est.float32_forecast)})")
        if room is not None and est.per_trial:
            fit = max(0, (room - est.fixed) // est.per_trial)
            ways.append(f"fewer --trials (about {fit:,} fit)" if fit else "another --out")
        else:
            ways.append("fewer --trials")
        note = "; --compress usually shrinks forecast.nc further, but this check cannot count on it" \
            if keep == "all" and not compress else ""
        return "use " + ", ".join(ways[:-1]) + (" or " if len(ways) > 1 else "") + ways[-1] + note

    what = []
    if est.forecast:
        what.append(f"forecast.nc {format_bytes(est.forecast)}")
    if est.scratch:
        what.append(f"a temporary file of every trial {format_bytes(est.scratch)}")
    what.append(f"summary.json {format_bytes(est.summary)}")
    try:
        free = shutil.disk_usage(_existing(out)).free
    except OSError:
        free = None
    if free is not None and est.disk > free:
        raise OutputError(f"--out {out}: {trials} need about {format_bytes(est.disk)} ({', '.join(what)}) but its "
                          f"filesystem has {format_bytes(free)} free; {advice(free)}. Nothing was written.")
    limit = _file_size_limit()
    largest = max(est.forecast, est.scratch, est.summary)
    if limit is not None and largest > limit:
        name = "forecast.nc" if est.forecast else ("the temporary file of every trial" if est.scratch
                                                   else "summary.json")
        raise OutputError(f"--out {out}: {name} would be about {format_bytes(largest)} for {trials} but this process may "
                          f"not write files larger than {format_bytes(limit)} (the file-size limit, `ulimit -f`); "
                          f"{advice(limit + est.summary)}. Nothing was written.")
    total = memory_total()
    if total is not None and est.memory > total:
        per = max(1, est.memory // max(1, est.trials))
        raise OutputError(f"{trials} need about {format_bytes(est.memory)} of memory to summarise, more than this machine "
                          f"allows ({format_bytes(total)}); use fewer --trials (about {total // per:,} fit). "
                          "Nothing was written.")


def _failure(out: Path, exc: OSError, est: Estimate | None) -> str:
    """The message for a write that failed part-way."""
    reason = exc.strerror or _first_line(exc)
    text = f"--out {shorten(out)}: cannot write the results: {reason}"
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        try:
            free = f", {format_bytes(shutil.disk_usage(out).free)} free now"
        except OSError:
            free = ""
        text += f" (the run needs about {format_bytes(est.disk)}{free})" if est else ""
    elif exc.errno == errno.EFBIG:
        limit = _file_size_limit()
        text += f" (the file-size limit, `ulimit -f`, is {format_bytes(limit)})" if limit is not None else ""
    return text + "; nothing was written and the previous results are kept"


def _ticking(progress):
    """``progress`` that also raises a pending interrupt after every block of trials."""
    def tick(done: int) -> None:
        checkpoint()
        if progress is not None:
            progress(done)
    return tick


def _check_options(keep: str, precision: str) -> None:
    if keep not in KEEP:
        raise ValueError(f"keep must be one of {', '.join(KEEP)}; got {keep!r}")
    if precision not in PRECISION:
        raise ValueError(f"precision must be one of {', '.join(PRECISION)}; got {precision!r}")


# --- writing ---------------------------------------------------------------------------------

def write_outputs(out: str | Path, ds, summary: dict) -> dict[str, Path]:
    """Write an in-memory Dataset and its summary into the folder ``out`` atomically."""
    return _write_pair(out, ds, summary, FORECAST, SUMMARY)


def write_comparison(out: str | Path, ds, summary: dict, stem: str = "compare") -> dict[str, Path]:
    """Write ``<stem>.nc`` (per-trial values and differences) and ``<stem>.json`` atomically."""
    return _write_pair(out, ds, summary, f"{stem}.nc", f"{stem}.json")


def _write_pair(out, ds, summary: dict, nc_name: str, json_name: str) -> dict[str, Path]:
    check_out(Path(out))
    check_targets(Path(out), (nc_name, json_name))
    text = _dump(summary)
    need = int(ds.nbytes) + len(text.encode()) + (64 << 10)
    try:
        free = shutil.disk_usage(_existing(Path(out))).free
    except OSError:
        free = None
    if free is not None and need > free:
        raise OutputError(f"--out {out}: {nc_name} and {json_name} need about {format_bytes(need)} but its filesystem "
                          f"has {format_bytes(free)} free. Nothing was written.")
    out, created = create_out_folder(out)
    try:
        with handle_interrupts(), Staged(out) as staged:
            _to_netcdf(ds, staged.path(nc_name))
            _write_text(staged.path(json_name), text)
            checkpoint()
            return staged.publish()
    except BaseException as exc:
        remove_folders(created)  # the folders made for this write, now empty again
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(_failure(out, exc, None)) from None
        raise


def run_to_folder(sc: Scenario, out: str | Path, *, threads: int | None = None, progress=None,
                  runner=None, keep: str = "all", precision: str = "float64", compress: bool = False,
                  keep_summary_advice: bool = True) -> dict:
    """Simulate ``sc`` straight into ``out/forecast.nc``, summarise it, and publish both files.

    Only one chunk of trials is in memory at a time (see
    :func:`forecaster.results.layout.chunk_trials_for`); the summary reads the file back one
    column of trials at a time, so its quantiles are exact. ``runner`` (a
    :class:`forecaster.engine.cluster.DaskRunner`) runs the blocks on a cluster. Returns the summary.

    Parameters
    ----------
    keep : {"all", "summary"}
        ``"summary"`` writes ``summary.json`` only (with the same numbers) and removes an older
        ``forecast.nc`` from ``out``; the trials stay in memory when they fit comfortably,
        else in a temporary file removed at the end.
    precision : {"float64", "float32"}
        Storage of ``forecast.nc``'s real-valued variables; the summary is computed from the
        stored values.
    compress : bool
        Compress ``forecast.nc`` losslessly (zlib level 1 with byte shuffling).
    keep_summary_advice : bool
        Whether a refusal for want of room may advise ``--keep summary`` (not in a batch).

    Raises
    ------
    OutputError
        Before anything is written when the outputs would not fit (:func:`check_room`); when a
        write fails part-way (the temporary files are removed, the previous results kept).
    """

    _check_options(keep, precision)
    plan = build_plan(sc)
    layout = Layout.of(sc, plan)
    est = estimate(layout, keep=keep, precision=precision, compress=compress)
    check_out(Path(out))
    check_targets(Path(out), (FORECAST, SUMMARY) if keep == "all" else (SUMMARY,),
                  removed=(FORECAST,) if keep == "summary" else ())
    check_room(out, est, keep=keep, precision=precision, compress=compress, keep_summary_advice=keep_summary_advice)
    out, created = create_out_folder(out)
    chunk = chunk_trials_for(layout)
    meta = Meta.of_layout(layout)
    try:
        with handle_interrupts(), Staged(out) as staged:
            progress = _ticking(progress)
            if est.in_memory:
                memory = MemorySink(layout)
                run_trials(plan, sc, memory, chunk_trials=chunk, threads=threads, progress=progress, runner=runner)
                arrays = memory.arrays()
                summary = summarize_columns(Columns(arrays, layout.trials), meta)
                summary["funnel"] = funnel_expectation(plan, arrays["inputs"])
                if sc.outputs.stage_value:  # v2 F9
                    summary["stage_value"] = stage_value_summary(sc, plan.quantity_names, arrays["inputs"])
                _add_coverage(summary, sc, plan, arrays["inputs"])
                _add_cycles(summary, sc, memory)
                del memory, arrays
            else:
                path = staged.path(FORECAST) if keep == "all" else staged.scratch(FORECAST)
                netcdf = NetCDFSink(layout, path, chunk, precision=precision if keep == "all" else "float64",
                                    compress=compress and keep == "all")
                try:
                    run_trials(plan, sc, netcdf, chunk_trials=chunk, threads=threads, progress=progress, runner=runner)
                    summary = summarize_columns(netcdf.columns(), meta)
                    summary["funnel"] = funnel_expectation(plan, netcdf.inputs())
                    if sc.outputs.stage_value:  # v2 F9
                        summary["stage_value"] = stage_value_summary(sc, plan.quantity_names, netcdf.inputs())
                    _add_coverage(summary, sc, plan, netcdf.inputs())
                    _add_cycles(summary, sc, netcdf)
                except BaseException:
                    netcdf.abort()
                    raise
                netcdf.close()
            _write_text(staged.path(SUMMARY), _dump(summary))
            checkpoint()
            staged.publish(remove=(FORECAST,) if keep == "summary" else ())
            return summary
    except BaseException as exc:
        remove_folders(created)  # the folders made for this run, now empty again
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(_failure(out, exc, est)) from None
        raise


def _add_coverage(summary: dict, sc: Scenario, plan, inputs) -> None:
    """With ``outputs.coverage``, the summary's ``coverage`` (v2 F12) from the trials' draws."""
    if sc.outputs.coverage:
        from forecaster.results.coverage import coverage_summary

        summary["coverage"] = coverage_summary(sc, plan, inputs)


def _add_cycles(summary: dict, sc: Scenario, sink) -> None:
    """With ``outputs.cycle_days``, the summary's ``cycle_days`` (v2 F1) from the sink's pooled rows."""
    if sc.outputs.cycle_days:
        from forecaster.results.cycle_days import cycle_summary

        summary["cycle_days"] = cycle_summary(sink.cycles(), sc.segment_names)


def run(scenario_path: str | Path, out: str | Path, *, trials: int | None = None, seed: int | None = None,
        threads: int | None = None, keep: str = "all", precision: str = "float64", compress: bool = False) -> dict:
    """Load, simulate, summarise and write, as ``forecaster run`` does. Returns the summary."""

    return run_to_folder(load_scenario(scenario_path).with_run(trials, seed), out, threads=threads, keep=keep,
                         precision=precision, compress=compress)
