"""Batch runs: every scenario of a folder, each with its outputs and report, never losing work.

For a folder of scenarios, :func:`run_batch` writes ``OUT/<name>/`` with ``forecast.nc``,
``summary.json``, ``report.html`` and ``report.md``, then ``OUT/manifest.json`` (status,
input hash, version, seed, trials, timings, error per scenario) and the tables over every
scenario, ``OUT/summaries.csv``, ``OUT/targets.csv`` and ``OUT/reps.csv`` (:data:`TABLE_FILES`).
One bad scenario fails alone, and so does a ``*.yaml`` entry that is not a regular file (a
FIFO, a device, a link that loops or leads nowhere: refused unopened, never skipped). Every
file is written under a temporary name and renamed, and the manifest is rewritten after
each scenario, so an interrupted batch leaves every finished scenario intact and no
half-written file; the next run skips the scenarios whose inputs and forecaster version did
not change (unless ``force``) and completes the rest. One batch at a time writes into an
``OUT`` (:data:`LOCK`); a scenario keeps its run folder's name from run to run, and one whose
file is gone is marked ``removed`` rather than left to look current.

Nothing is written or deleted outside ``OUT``: ``<name>`` is the scenario file's stem made
safe by :func:`run_folder_names` (never ``.``, ``..``, empty, hidden, with a separator or
a control character, nor the batch's own ``manifest.json`` or tables; unique
even on a case-insensitive file system), and a symbolic link inside ``OUT`` is never
followed: a link (or a file) where a run folder, a run file or the manifest goes is
refused, not written through.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import re
import stat
import threading
import time
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from forecaster.analysis.compare import STOCKS
from forecaster.errors import ForecasterError, OutputError
from forecaster.present import report
from forecaster.present.console import printable
from forecaster.present.export import Units, safe_cell
from forecaster.results.files import Staged, prepare_folder, sweep_stale_temporaries
from forecaster.results.outputs import run_to_folder
from forecaster.scenario.loading import read_document, scenario_of_document
from forecaster.scenario.variants import is_variant
from forecaster.version import __version__

STOP = threading.Event()
"""Set by a signal handler: the batch stops at the next scenario boundary even if the
KeyboardInterrupt the handler raised was swallowed (Python ignores exceptions raised
inside garbage-collection callbacks)."""

MANIFEST = "manifest.json"
CSV_FILE = "summaries.csv"
TARGETS_FILE = "targets.csv"
REPS_FILE = "reps.csv"
TABLE_FILES = (CSV_FILE, TARGETS_FILE, REPS_FILE)
"""The batch's tables over every scenario, written together (:func:`batch_tables`)."""
RUN_FILES = ("forecast.nc", "summary.json", "report.html", "report.md")
"""The files a batch writes into a run folder; a run's publication also removes the older
files of the run's declared set (:data:`forecaster.results.files.OUTPUTS`, e.g. exports of an
earlier ``run --export`` into the folder); nothing else in it is written or deleted."""
STATS = ("mean", "std", "p5", "p10", "p50", "p90", "p95", "mean_ci_low", "mean_ci_high")
RUN_DEFAULTS = {"precision": "float64", "compress": False}
"""``forecaster run``'s output options a batch passes on, as a manifest entry without them ran."""
_RESERVED = {n.casefold() for n in (MANIFEST, *TABLE_FILES)}
_WINDOWS_DEVICES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
_MAX_NAME_BYTES = 200


def _temp_of(names) -> re.Pattern:
    """Our temporary files beside ``names`` (see :func:`forecaster.results.files._temp_name`)."""
    return re.compile(r"^\.(?:" + "|".join(re.escape(n) for n in names) + r")\..*\.tmp$", re.DOTALL)


_RUN_TEMP = _temp_of(RUN_FILES)
_OUT_TEMP = _temp_of((MANIFEST, *TABLE_FILES))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _kind(path: Path) -> str | None:
    """What is at ``path`` without following a link: None, "file", "folder", "link" or "other"."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputError(f"{path}: cannot be examined: {exc.strerror}") from None
    if stat.S_ISLNK(mode):
        return "link"
    return "file" if stat.S_ISREG(mode) else "folder" if stat.S_ISDIR(mode) else "other"


_WHAT = {"link": "a symbolic link", "folder": "a folder", "file": "a file", "other": "a special file"}


def _write_atomic(folder: Path, texts: dict[str, str], what: str | None = None) -> None:
    """Write ``texts`` (file name -> text) into ``folder``, published together: a reader
    never sees one file of this write beside another of an older one. A failure is an
    :class:`OutputError` that begins with ``what`` (default: the one file's path and a colon)."""
    try:
        with Staged(folder) as staged:
            for name, text in texts.items():
                staged.path(name).write_text(text, encoding="utf-8")
            staged.publish()
    except OSError as exc:
        if isinstance(exc, ForecasterError):
            raise
        what = what or f"{folder / next(iter(texts))}:"
        raise OutputError(f"{what} cannot be written: {exc.strerror or exc}") from None


def _write_tables(folder: Path, summaries: dict) -> None:
    """:data:`TABLE_FILES` from ``summaries`` (run folder name -> summary), published together:
    a reader never sees ``summaries.csv`` of one run beside ``targets.csv`` of another."""
    _write_atomic(folder, batch_tables(summaries), f"{folder}: the batch's tables ({', '.join(TABLE_FILES)})")


def batch_tables(summaries: dict) -> dict[str, str]:
    """The text of each of :data:`TABLE_FILES` (:func:`summaries_csv`, :func:`targets_csv`,
    :func:`reps_csv`); each has its header even when no scenario fills it."""
    return {CSV_FILE: summaries_csv(summaries), TARGETS_FILE: targets_csv(summaries), REPS_FILE: reps_csv(summaries)}


_FOREIGN = (KeyError, TypeError, ValueError, AttributeError, ArithmeticError)
"""What reading a summary of another shape than ``forecaster run`` writes raises (a number
too large for a float: OverflowError)."""


def _csv(header: list[str], rows_of, summaries: dict) -> str:
    """A CSV text: ``header``, then ``rows_of(name, summary)`` for each of ``summaries``; a
    summary without the shape ``forecaster run`` writes (edited by hand, say) contributes no
    rows rather than stopping the batch."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for name, s in summaries.items():
        try:
            rows = rows_of(name, s)
        except _FOREIGN:
            continue
        w.writerows(rows)
    return buf.getvalue()


def _section(build) -> list:
    """``build()``'s rows, or none when its part of the summary has another shape: the
    scenario's other rows are still written."""
    try:
        return build()
    except _FOREIGN:
        return []


def _text(value) -> str:
    return safe_cell(printable(value))


def _number(value) -> str:
    return "" if value is None else repr(float(value))


def targets_csv(summaries: dict) -> str:
    """``targets.csv``: one row per scenario and target: ``scenario``, ``metric``,
    ``threshold``, ``probability`` (the share of trials whose total over the horizon, a
    stock's level at its end, reaches the threshold, 0 to 1), ``unit`` (the threshold's) and
    ``kind`` (``flow`` or ``stock``)."""
    def rows(name, s):
        units = Units(s["horizon"].get("currency"))
        return [[_text(name), _text(metric), _number(t["threshold"]), _number(t["probability"]),
                 _text(units.metric(metric)[0]), "stock" if metric in STOCKS else "flow"]
                for metric, t in (s.get("targets") or {}).items()]
    return _csv(["scenario", "metric", "threshold", "probability", "unit", "kind"], rows, summaries)


def reps_csv(summaries: dict) -> str:
    """``reps.csv``: one row per scenario, rep and commission period: ``quota`` (per
    commission period, in ``unit``, the scenario's currency), ``probability_reach_quota``
    (the share of trials whose bookings in the period reach the quota) and ``attainment_p50``
    (the median of bookings / quota), with ``period_end``, the period's last day within the
    horizon. The reps' totals over the horizon (bookings, commission, ...) are rows of
    ``summaries.csv`` (``rep.<rep>.<metric>``)."""
    def rows(name, s):
        h = s["horizon"]
        cur = Units(h.get("currency")).currency
        by = h.get("commission_period") or h["report_by"]
        return [[_text(name), _text(rep), _text(q["period"]),
                 _text(report.period_end_name(q["period"], by, h["end"], h.get("fiscal_year_start"))),
                 _number(r.get("quota")), _number(q.get("probability")), _number(q.get("attainment_p50")), _text(cur)]
                for rep, r in (s.get("reps") or {}).items() for q in r.get("quota_attainment", [])]
    return _csv(["scenario", "rep", "period", "period_end", "quota", "probability_reach_quota", "attainment_p50",
                 "unit"], rows, summaries)


def summaries_csv(summaries: dict) -> str:
    """One row per scenario, metric and period (``total`` for the whole horizon).

    Every metric of ``summary.json`` has its rows, with the same statistics: with customers,
    the after-sale flows and stocks too (v2 A.3), where a flow's ``total`` is its sum over the
    horizon and a stock's (``active_customers``, ``mrr``) its level at the end, as in
    ``summary.json``; and each segment's customer lifetime value as the metric ``clv.<segment>``
    (a per-trial quantity: its ``total`` row only). After the statistics, for a table a BI
    tool reads without ``summary.json``: ``unit``, what the row counts (the scenario's
    currency for money, ``currency`` when it names none, or ``deals``, ``leads``,
    ``customers``, as the export's tables name them); ``period_end``, the period's last day
    within the horizon (a partial first or last period shows as one; ``total``: the
    horizon's end); ``kind``, ``flow`` (the total sums the periods), ``stock`` (the total is
    the level at the end) or ``lifetime`` (``clv.<segment>``).

    Each segment's totals over the horizon are the metrics ``segment.<segment>.<metric>``,
    each rep's (bookings, commission and, with the plan's extras, spif, clawback,
    net_commission, payout, draw_balance, clawback_after_end) ``rep.<rep>.<metric>``: their
    ``total`` rows only, as ``summary.json`` has them (a name may hold a dot: the metric is
    the text after the last one).

    Control characters are shown as escapes (:func:`~forecaster.present.console.printable`).
    A summary that does not have the shape ``forecaster run`` writes (edited by hand, say)
    contributes no rows rather than stopping the batch.
    """
    def row(name, metric, period, stats, unit, end, kind):
        return [_text(name), _text(metric), _text(period), *(_number(stats.get(k)) for k in STATS),
                _text(unit), _text(end), kind]

    def rows(name, s):
        h = s["horizon"]
        units = Units(h.get("currency"))
        out = [row(name, metric, period, stats, units.metric(metric)[0], _period_end(h, period),
                   "stock" if metric in STOCKS else "flow")
               for metric, m in s["metrics"].items()
               for period, stats in [("total", m["total"]), *((p["period"], p) for p in m["by_period"])]]
        out += _section(lambda: [row(name, f"clv.{seg}", "total", stats, units.currency, h["end"], "lifetime")
                                 for seg, stats in (s.get("clv") or {}).items()])
        for prefix, key in (("segment", "segments"), ("rep", "reps")):
            for who, block in _section(lambda key=key: list((s.get(key) or {}).items())):
                out += _section(lambda prefix=prefix, who=who, block=block: [
                    row(name, f"{prefix}.{who}.{metric}", "total", m["total"],
                        units.currency if metric == "bookings" else units.metric(metric)[0], h["end"],
                        "stock" if metric in STOCKS or metric == "draw_balance" else "flow")
                    for metric, m in block.items() if isinstance(m, dict) and isinstance(m.get("total"), dict)])
        return out
    return _csv(["scenario", "metric", "period", *STATS, "unit", "period_end", "kind"], rows, summaries)


def _period_end(horizon: dict, period: str) -> str:
    """The last day within the horizon of the period named ``period`` (``total``: the horizon's end)."""
    return horizon["end"] if period == "total" else report.period_end_name(
        period, horizon["report_by"], horizon["end"], horizon.get("fiscal_year_start"))


SUFFIXES = (".yaml", ".yml")


def scenario_files(folder: Path) -> list[Path]:
    """The scenarios of ``folder``: every entry whose name ends in ``.yaml`` or ``.yml``
    (``.yaml`` itself included), sorted, except folders (and links to folders).

    Nothing is opened here. An entry that is not a regular file (a FIFO, a device, a socket,
    a link that loops or leads nowhere) is listed too, so that :func:`run_batch` records it
    as failed with the reason (:func:`scenario_problem`) instead of leaving it out silently.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise OutputError(f"{folder}: does not exist; expected a folder of scenarios (*.yaml)" if not folder.exists()
                          else f"{folder}: is not a folder; expected a folder of scenarios (*.yaml)")
    try:
        entries = [p for p in folder.iterdir() if p.name.endswith(SUFFIXES)]
    except OSError as exc:
        raise ForecasterError(f"{folder}: cannot list the scenarios: {exc.strerror or exc}") from None
    found = sorted(p for p in entries if not _is_folder(p))
    if not found:  # a share that failed to mount, a wrong path: not a batch that succeeded
        raise OutputError(f"{folder}: holds no scenario (*.yaml, *.yml; subfolders are not searched); nothing was run "
                          "or written")
    return found


def _is_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


_SPECIAL = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def scenario_problem(path: Path) -> str | None:
    """Why the scenario entry ``path`` cannot be read, without opening it (a FIFO would
    block, a device never ends), or None for a regular file (or a link to one)."""
    try:
        link = os.readlink(path) if os.path.islink(path) else None
    except OSError:
        link = None
    via = f" (a symbolic link to {link})" if link is not None else ""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if link is not None:
            return f"{path}: is a symbolic link to {link}, which does not exist; expected a YAML file"
        return f"{path}: no longer exists; expected a YAML file"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return (f"{path}: is a symbolic link that loops (it leads back to itself, via {link}); expected a YAML "
                    "file")
        return f"{path}: cannot be examined: {exc.strerror or exc}; expected a YAML file"
    except ValueError:
        return f"{path}: is not a usable file name; expected a YAML file"
    if stat.S_ISREG(mode):
        return None
    kind = next((what for test, what in _SPECIAL if test(mode)), "not a regular file")
    return f"{path}: is {kind}{via}, not a regular file; expected a YAML file (it was not opened)"


def safe_name(stem: str) -> str:
    """A file or folder name made from ``stem`` that stays where it is put.

    Separators (``/``, ``\\``), control and format characters (ESC, bidi overrides...),
    lone surrogates and ``:`` become ``_``; a leading dot becomes ``_`` (no ``.``, ``..``
    or hidden name that could pass for a temporary file); an empty name is ``_``; a
    Windows device name (``con``, ``nul``...) gets a ``_`` in front; at most 200 bytes.
    """
    name = "".join("_" if ch in "/\\:" or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") else ch
                   for ch in stem)
    name = re.sub(r"^\.", "_", name) or "_"
    if name.split(".")[0].strip().casefold() in _WINDOWS_DEVICES:
        name = "_" + name
    while len(name.encode("utf-8")) > _MAX_NAME_BYTES:
        name = name[:-1]
    return name


def _suffixed(base: str, n: int) -> str:
    """``base-n``, ``base`` shortened as needed to keep the whole within the name limit."""
    suffix = f"-{n}"
    while len((base + suffix).encode("utf-8")) > _MAX_NAME_BYTES:
        base = base[:-1]
    return base + suffix


def run_folder_names(files: list[Path], previous: dict[str, dict] | None = None, finished=None) -> dict[Path, str]:
    """Each scenario file's run folder name: :func:`safe_name` of its stem, unique among them
    (compared case-insensitively) and never one of the batch's own files; a clash gets
    ``-2``, ``-3``... in the order of the sorted file names.

    ``previous`` (the last manifest's entries, by run folder name) keeps names stable: a file
    keeps the name an entry gave it, when that name is still one its stem gives (the stem's,
    or it with ``-n``), so removing ``A.yaml`` does not move ``a.yaml``'s results from ``a-2``
    to ``a`` (and a dashboard's link with them). Where two entries name one file (a manifest
    edited by hand), the one not removed whose folder holds a finished run (``finished(name)``)
    wins. Every other entry's name stays reserved, removed ones included: a new file never
    writes into the folder a removed scenario's results were left in, whatever the case of its name."""
    previous = {n: e for n, e in (previous or {}).items() if isinstance(e, dict)}
    present = {p.name: p for p in files}
    claims: dict[Path, list[str]] = {}
    for name, entry in previous.items():
        file = entry.get("file")
        path = present.get(file) if isinstance(file, str) else None
        if path is None:
            continue
        base = safe_name(path.stem)
        if name == base or _is_suffix_of(name, base):
            claims.setdefault(path, []).append(name)
    taken, out = set(_RESERVED), {}

    def rank(name: str) -> tuple:
        entry = previous[name]
        return (entry.get("status") == "removed", not (finished(name) if finished else False))

    for path in sorted(claims):
        name = min(claims[path], key=rank)  # min is stable: the first in the manifest among equals
        if name.casefold() not in taken:
            taken.add(name.casefold())
            out[path] = name
    taken |= {name.casefold() for name in previous}  # the others' names stay theirs
    for path in sorted(p for p in files if p not in out):
        base = safe_name(path.stem)
        name, n = base, 1
        while name.casefold() in taken:
            n += 1
            name = _suffixed(base, n)
        taken.add(name.casefold())
        out[path] = name
    return out


def _is_suffix_of(name: str, base: str) -> bool:
    """Whether ``name`` is ``base-n`` as :func:`_suffixed` makes it (``base`` perhaps shortened)."""
    _, dash, n = name.rpartition("-")
    return bool(dash) and n.isascii() and n.isdigit() and _suffixed(base, int(n)) == name


def _is_safe_key(name) -> bool:
    return isinstance(name, str) and name == safe_name(name) and name.casefold() not in _RESERVED


def _read_manifest(path: Path) -> dict:
    """The previous run's manifest, or {} when there is none or it is not one of ours
    (unreadable, not JSON, wrong shape). Entries whose names are not safe run folder names
    (a hand-edited ``../elsewhere``) are dropped: nothing is read or written through them;
    so are entries that name no scenario file (not one of ours: they neither keep a name nor
    read as removed). ``NaN`` and ``Infinity``, which strict JSON does not have, read as
    null, so that the manifest written back is strict JSON."""
    if _kind(path) != "file":
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda _: None)
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(manifest, dict):
        return {}
    entries = manifest.get("scenarios")
    manifest["scenarios"] = ({k: v for k, v in entries.items() if _is_safe_key(k) and isinstance(v, dict)
                              and isinstance(v.get("file"), str) and v["file"]}
                             if isinstance(entries, dict) else {})
    return manifest


def _run_folder_problem(target: Path, folder: Path) -> str | None:
    """Why ``target`` cannot be a run folder (a link, a file, a link or folder where a run
    file goes, the scenario folder itself), or None."""
    kind = _kind(target)
    if kind is None:
        return None
    if kind != "folder":
        return (f"{target} is {_WHAT[kind]}; the batch writes only into folders of its own and never through a "
                "link: move it away or choose another --out")
    try:
        if os.path.samefile(target, folder):
            return f"{target} is the scenario folder itself; choose another --out"
    except OSError:
        pass
    for name in RUN_FILES:
        inner = _kind(target / name)
        if inner not in (None, "file"):
            return (f"{target / name} is {_WHAT[inner]}; the batch replaces only the files it wrote and never writes "
                    "through a link: move it away")
    return None


def _remove_stale_temporaries(folder: Path, pattern: re.Pattern) -> None:
    """Delete the temporary files a killed run left in ``folder``: only regular files named
    like ours (``pattern``), and only when the run that wrote them is gone
    (:func:`forecaster.results.files.sweep_stale_temporaries`): a concurrent live run's stay."""

    sweep_stale_temporaries(folder, only=pattern)


def _finished(target: Path) -> bool:
    return _kind(target) == "folder" and all(_kind(target / f) == "file" for f in ("summary.json", "forecast.nc",
                                                                                  "report.html"))


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
"""The first bytes of every ``forecast.nc`` a run writes (netCDF-4 is HDF5)."""


def _result(target: Path, sha256) -> dict | None:
    """The summary of a finished run folder whose ``summary.json`` reads and is of the inputs
    ``sha256``, else None."""
    if not _finished(target):
        return None
    summary = _read_summary(target)
    return summary if summary is not None and summary.get("scenario_sha256") == sha256 else None


def _intact(target: Path, sha256: str) -> bool:
    """Whether a run folder still holds what its run wrote: finished, a ``summary.json`` that
    reads, of the inputs ``sha256``, and a ``forecast.nc`` that starts as one (a file
    overwritten or truncated by hand, or by a disk that filled, is run again, not kept as
    unchanged)."""
    if _result(target, sha256) is None:
        return False
    try:
        with open(target / "forecast.nc", "rb") as f:
            return f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        return False


def _read_summary(target: Path) -> dict | None:
    if _kind(target) != "folder" or _kind(target / "summary.json") != "file":
        return None
    try:
        summary = json.loads((target / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return summary if isinstance(summary, dict) else None


LOCK = ".batch.lock"
"""The file in ``OUT`` a batch holds an exclusive lock on while it runs, removed when it
ends: a second batch into the same ``OUT`` is refused instead of mixing its results with the
first's under one manifest."""


_HELD = {errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES}
"""What ``flock`` says when another process holds the lock; any other error means the file
system cannot lock (then the batch runs unlocked, as before locks)."""


@contextlib.contextmanager
def _exclusive(out: Path):
    """Hold ``OUT``'s batch lock (:data:`LOCK`) for the block, or refuse at once, naming the
    holder. The lock file is removed while still locked; a process that opened it before
    and locks it after finds it no longer at its path and tries again on the new one. Where
    the file system cannot lock (``fcntl`` missing, as on Windows, or ``flock`` failing for
    another reason than a holder) the block runs unlocked. The lock file is never opened
    through a link, symbolic or hard: nothing is written outside OUT."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - POSIX has it
        yield
        return
    path = out / LOCK
    fd = -1
    for _ in range(100):
        kind = _kind(path)
        if kind not in (None, "file"):
            raise OutputError(f"{path} is {_WHAT[kind]}; the batch keeps its lock file there and never opens a link: "
                              "move it away or choose another --out")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except FileNotFoundError:
            continue  # removed by the batch that held it, between the look and the open
        except OSError as exc:
            raise OutputError(f"{path}: cannot be opened or created: {exc.strerror or exc}; move it away or "
                              "choose another --out") from None
        if os.fstat(fd).st_nlink != 1:  # a hard link: its other name is a file the batch must not touch
            os.close(fd)
            raise OutputError(f"{path} is a hard link to another file; the batch keeps its lock file there and "
                              "never writes through a link: move it away or choose another --out")
        held: bool | None = None  # None: locked; True: another holds it; False: this file system cannot lock
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            held = exc.errno in _HELD
        if held is False:  # no locks on this file system: run unlocked, leaving nothing behind
            with contextlib.suppress(OSError):
                if os.path.samestat(os.fstat(fd), os.lstat(path)) and os.fstat(fd).st_size == 0:
                    os.unlink(path)
            os.close(fd)
            fd = -1
            break
        if held:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise OutputError(f"--out {out}: another `forecaster batch` is writing there"
                              + (f" ({holder})" if holder else "") + "; wait for it to finish or choose another "
                              "--out. Nothing was written.")
        try:
            same = os.path.samestat(os.fstat(fd), os.lstat(path))
        except OSError:
            same = False
        if same:
            break
        os.close(fd)  # locked a file its holder had already removed: lock the one at the path now
    else:  # pragma: no cover - a hundred batches ending one after the other meanwhile
        raise OutputError(f"--out {out}: its lock file {LOCK} keeps being replaced; try again")
    if fd < 0:
        yield
        return
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()}, started {_now()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(fd), os.lstat(path)):  # ours still: never another's
                os.unlink(path)
        os.close(fd)


def run_batch(folder: str | Path, out: str | Path, *, force: bool = False, trials: int | None = None,
              threads: int | None = None, precision: str = "float64", compress: bool = False,
              on_start=None, progress=None, on_done=None) -> dict:
    """Run every scenario in ``folder`` into ``out``; returns the manifest.

    ``on_start(index, total, name)`` is called before each scenario, ``progress(n)`` with
    trials done, for a display, and ``on_done(name, action, entry)`` as each scenario ends (ran,
    unchanged, failed, skipped) and for each scenario whose file is gone (removed). A
    scenario that fails (bad input, a link where its folder goes, or an unexpected error,
    marked ``"internal_error": true``) is recorded as failed with its message and the
    others go on. ``precision`` and ``compress`` are ``forecaster run``'s; a scenario whose
    results were written with others runs again.

    The manifest's ``last_run`` is what this run did, scenario by scenario as it goes, and
    ``last_run_finished`` is null until it has finished: a batch that was killed says so.
    A scenario whose file is gone is marked ``removed`` (its run folder is kept, and left out
    of ``summaries.csv``); one that fails after an earlier success keeps that success's
    files, which ``outputs_from`` dates. Only one batch at a time writes into ``out``
    (:data:`LOCK`).
    """

    folder = Path(folder)
    files = scenario_files(folder)  # a missing, unreadable or empty folder is refused before --out is created
    out = prepare_folder(out)
    for own in (MANIFEST, *TABLE_FILES):
        kind = _kind(out / own)
        if kind not in (None, "file"):
            raise OutputError(f"{out / own} is {_WHAT[kind]}; the batch writes its {own} there and never through a "
                              "link: move it away or choose another --out")
    with _exclusive(out):
        return _run_locked(folder, files, out, force=force, trials=trials, threads=threads, precision=precision,
                           compress=compress, on_start=on_start, progress=progress, on_done=on_done)


def _run_locked(folder: Path, files: list[Path], out: Path, *, force, trials, threads, precision, compress, on_start,
                progress, on_done) -> dict:
    """:func:`run_batch` once ``out`` is locked."""
    _remove_stale_temporaries(out, _OUT_TEMP)
    manifest = _read_manifest(out / MANIFEST)
    entries = manifest.get("scenarios", {})
    names = run_folder_names(files, entries, lambda name: _finished(out / name))
    actions: dict[str, str] = {}  # what this run did with each scenario: ran, unchanged, failed, skipped, removed
    manifest.update({"last_run": actions, "last_run_started": _now(), "last_run_finished": None})
    options = {"precision": precision, "compress": compress}

    def save():
        manifest.update({"forecaster_version": __version__, "updated": _now(), "folder": str(folder),
                         "scenarios": entries})
        _write_atomic(out, {MANIFEST: json.dumps(manifest, indent=2) + "\n"})

    def done(name, action):
        actions[name] = action
        save()
        if on_done:
            on_done(name, action, entries.get(name, {}))

    def fail(name, entry, message, internal=False, **extra):
        entries[name] = {**entry, "status": "failed", "error": message, **extra, "finished": _now(),
                         **_dated(entries.get(name, {}), out / name)}
        if internal:
            entries[name]["internal_error"] = True
        done(name, "failed")

    gone = [n for n, e in entries.items() if n not in names.values() and e.get("status") != "removed"]
    by_file = {path.name: name for path, name in names.items()}
    for name in gone:
        file = entries[name].get("file")
        why = (f"{file} runs into {by_file[file]}/ (two entries of the manifest named it)"
               if isinstance(file, str) and file in by_file else f"{file}: no longer in {folder}")
        entries[name] = {**entries[name], "status": "removed", "removed": _now(),
                         "error": f"{why}; the last results of this entry stay in {name}/ and are left out of "
                                  f"{', '.join(TABLE_FILES)}", **_dated(entries[name], out / name)}
    STOP.clear()
    save()  # from now on the manifest says this run has not finished
    try:
        for name in gone:
            done(name, "removed")
        for i, path in enumerate(files):
            if STOP.is_set():
                raise KeyboardInterrupt
            name = names[path]
            if on_start:
                on_start(i, len(files), name)
            _run_one(path, name, out, folder, entries, fail, done, force=force, trials=trials, threads=threads,
                     options=options, progress=progress)
        if STOP.is_set():
            raise KeyboardInterrupt
    except BaseException:
        # interrupted (Ctrl-C, SIGTERM) or a failure of the batch itself: summaries.csv still
        # follows what finished, as the manifest does (a SIGKILL leaves the previous one)
        with contextlib.suppress(Exception):
            _write_tables(out, _summaries(out, entries))
        raise
    _write_tables(out, _summaries(out, entries))
    manifest["last_run_finished"] = _now()
    save()
    return manifest


def _dated(prior: dict, target: Path) -> dict:
    """``{"outputs_from": ...}`` for an entry that no longer says ``ok`` (failed, removed,
    skipped) whose folder still holds the finished results of its last success: when they
    were made, from which inputs (``prior``: the entry before, which may itself carry it);
    else {}."""
    made = prior.get("outputs_from") if prior.get("status") != "ok" else \
        {k: prior[k] for k in ("finished", "input_sha256", "seed", "trials") if k in prior}
    return {"outputs_from": made} if made and _finished(target) else {}


def _summaries(out: Path, entries: dict) -> dict:
    """The summaries of the scenarios whose last run succeeded, by run folder name: only a
    finished folder (its report written) whose summary is of the inputs the manifest names
    (a run interrupted between its summary and its report has neither the old nor the new
    row)."""
    summaries = {}
    for name, e in entries.items():
        summary = _result(out / name, e.get("input_sha256")) if e.get("status") == "ok" else None
        if summary is not None:
            summaries[name] = summary
    return summaries


def _run_one(path: Path, name: str, out: Path, folder: Path, entries: dict, fail, done, *, force, trials, threads,
             options, progress) -> None:
    """One scenario of a batch: read it, skip it when nothing changed, run it into ``out/name``."""
    target = out / name
    entry: dict[str, Any] = {"file": path.name, "forecaster_version": __version__}
    problem = scenario_problem(path)
    if problem:  # a FIFO, device, socket or broken link: listed as failed, never opened
        fail(name, entry, problem)
        return
    try:
        data, lines, raw = read_document(path)
        if is_variant(data):
            entries[name] = {**entry, "status": "skipped", "error": "a variant file (changes to a base "
                             "scenario), not a whole scenario; run it with `forecaster compare`",
                             **_dated(entries.get(name, {}), target)}
            done(name, "skipped")
            return
        sc = scenario_of_document(path, data, lines, raw).with_run(trials=trials)
    except ForecasterError as exc:
        fail(name, entry, str(exc))
        return
    except RecursionError:
        fail(name, entry, f"{path}: nested too deeply to read (a recursive YAML alias?)")
        return
    except Exception as exc:  # a bug: this scenario fails, the others still run
        fail(name, entry, _internal(exc), internal=True)
        return
    entry.update({"input_sha256": sc.sha256, "seed": sc.seed, "trials": sc.trials, **options})
    previous = entries.get(name, {})
    unchanged = (previous.get("status") == "ok" and previous.get("file") == path.name
                 and previous.get("input_sha256") == sc.sha256 and previous.get("forecaster_version") == __version__
                 and previous.get("trials") == sc.trials
                 and all(previous.get(k, RUN_DEFAULTS[k]) == v for k, v in options.items())
                 and _intact(target, sc.sha256))
    if unchanged and not force:
        if progress:
            progress(sc.trials)
        done(name, "unchanged")
        return
    problem = _run_folder_problem(target, folder)
    if problem:
        fail(name, entry, problem)
        return
    if _kind(target) == "folder":
        _remove_stale_temporaries(target, _RUN_TEMP)  # left by a run that was killed
    started, t0 = _now(), time.perf_counter()
    made = published = False
    try:
        try:
            os.mkdir(target)  # never through a link: a link created meanwhile makes this fail
            made = True
        except FileExistsError:
            if _kind(target) != "folder":
                raise OutputError(_run_folder_problem(target, folder)) from None
        run_to_folder(sc, target, threads=threads, progress=progress, keep_summary_advice=False, **options)
        published = True
        report.write_report(target)
    except BaseException as exc:
        if made:  # a folder this run created and left empty: not a result
            with contextlib.suppress(OSError):
                os.rmdir(target)
        # the forecast is published before its report is written: a report that failed leaves them without one
        left = f"; {target} holds this run's forecast.nc and summary.json, without a report" if published else ""
        if isinstance(exc, ForecasterError):
            fail(name, entry, str(exc) + left, started=started)
        elif isinstance(exc, OSError):
            fail(name, entry, f"{target}: cannot be written: {exc.strerror or exc}{left}", started=started)
        elif isinstance(exc, Exception):  # a bug: this scenario fails, the others still run
            fail(name, entry, _internal(exc) + left, internal=True, started=started)
        else:
            raise
        return
    entries[name] = {**entry, "status": "ok", "started": started, "finished": _now(),
                     "seconds": round(time.perf_counter() - t0, 3)}
    done(name, "ran")


def _internal(exc: Exception) -> str:
    return (f"internal error: {type(exc).__name__}: {exc}. This is a bug in forecaster; run the scenario alone with "
            "FORECASTER_DEBUG=1 to see the traceback, and please report it")
