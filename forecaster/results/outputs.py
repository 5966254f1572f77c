"""Writing a run's results: ``forecast.nc`` and ``summary.json``, whole or not at all.

Each file is written under a temporary name in the output folder (``.{name}.{pid}.{hex}.tmp``),
flushed to disk (fsync) and renamed into place once complete, so a reader never sees a
half-written file and a failed, interrupted or terminated run leaves the previous results.
:func:`run_to_folder` streams trials into the NetCDF file in chunks (memory bounded whatever
the trial count) and summarises them from there.

What keeps a run from leaving a mess behind:

* **Room first.** Before anything is allocated or written, the size of the outputs is
  estimated from the trial count and the layout (:func:`estimate`) and the run is refused
  when it exceeds the free space of the output folder's filesystem, the process's file-size
  limit (``ulimit -f``) or the machine's memory (:func:`check_room`).
* **Write errors never reach the NetCDF library.** HDF5 does not survive a failed write
  (a full disk, a file-size limit): it reports errors from object destructors, cannot close
  the file and crashes the interpreter at exit. The library therefore writes through a
  :class:`GuardedFile` that records the first error and lets the library finish; the run then
  stops with an :class:`~forecaster.errors.OutputError` and the temporary file is removed.
* **Interrupts wait for the library.** Ctrl-C (and SIGTERM under the command line, see
  :func:`handle_interrupts`) raise :class:`KeyboardInterrupt` (:class:`Terminated`) anywhere
  except inside the library's file callbacks, where an exception would corrupt its state;
  there they are deferred to the next safe point (:func:`checkpoint`).
* **Leftovers are swept.** A run killed outright (SIGKILL, a power cut) cannot clean up; the
  next run in the same folder removes temporaries of this naming pattern whose process is gone
  (:func:`sweep_stale_temporaries`), and nothing else.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shutil
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from forecaster.errors import OutputError
from forecaster.scenario.model import Scenario

FORECAST = "forecast.nc"
SUMMARY = "summary.json"

KEEP = ("all", "summary")
"""What a run writes: every trial (``forecast.nc``) and ``summary.json``, or the summary only."""
PRECISION = ("float64", "float32")
"""How ``forecast.nc`` stores its real-valued variables."""

STALE_AFTER = 24 * 3600
"""A temporary file untouched for this long [s] is stale even when a process of its pid runs."""

_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]{1,10})\.(?P<tag>[0-9a-f]{12})\.tmp")


# --- interrupts ------------------------------------------------------------------------------

class Terminated(KeyboardInterrupt):
    """The process received SIGTERM; handled as Ctrl-C is, so that temporary files are removed."""


class _Interrupts:
    depth = 0        # > 0 while the main thread must not be interrupted (our own critical sections)
    pending = None   # the interrupt that arrived meanwhile, raised by checkpoint()


def _must_wait(frame) -> bool:
    """Whether an exception raised in ``frame`` would corrupt the NetCDF library (our file
    callbacks) or be printed and dropped by Python (destructors, weakref callbacks)."""
    while frame is not None:
        code = frame.f_code
        if code in _GUARDED_CODE or code.co_name == "__del__" or code.co_filename.endswith("weakref.py"):
            return True
        frame = frame.f_back
    return False


def _on_signal(signum, frame):
    exc = Terminated() if signum == getattr(signal, "SIGTERM", None) else KeyboardInterrupt()
    # kept also when raised: an exception raised in a weakref callback or a destructor is
    # printed and dropped by Python, and the next checkpoint() must still stop the run
    _Interrupts.pending = _Interrupts.pending or exc
    if _Interrupts.depth or _must_wait(frame):
        return
    raise exc


@contextlib.contextmanager
def _deferred():
    """Interrupts arriving inside are raised at the next :func:`checkpoint` instead."""
    main = threading.current_thread() is threading.main_thread()
    if main:
        _Interrupts.depth += 1
    try:
        yield
    finally:
        if main:
            _Interrupts.depth -= 1


def checkpoint() -> None:
    """Raise an interrupt that arrived while the NetCDF library or a publication was writing."""
    if _Interrupts.pending is not None and _Interrupts.depth == 0 \
            and threading.current_thread() is threading.main_thread():
        exc, _Interrupts.pending = _Interrupts.pending, None
        raise exc


@contextlib.contextmanager
def handle_interrupts(sigterm: bool = False):
    """Within: Ctrl-C raises :class:`KeyboardInterrupt` and, with ``sigterm``, SIGTERM raises
    :class:`Terminated`, both deferred while the NetCDF library is inside a file operation.

    Only on the main thread, and Ctrl-C only when its handler is Python's default (a
    notebook's or an application's own handler is left alone). Nested uses change nothing.
    """
    installed = {}
    if threading.current_thread() is threading.main_thread():
        wanted = [signal.SIGINT] + ([signal.SIGTERM] if sigterm and hasattr(signal, "SIGTERM") else [])
        for sig in wanted:
            current = signal.getsignal(sig)
            if current is _on_signal or current is signal.SIG_IGN \
                    or (sig == signal.SIGINT and current is not signal.default_int_handler):
                continue  # ours already, ignored on purpose (nohup), or someone else's Ctrl-C handler
            installed[sig] = signal.signal(sig, _on_signal)
    if installed:
        _Interrupts.pending = None
    try:
        yield
        if installed:
            checkpoint()
    finally:
        for sig, previous in installed.items():
            signal.signal(sig, previous)
        if installed:
            _Interrupts.pending = None


# --- a file the NetCDF library cannot fail on -------------------------------------------------

class GuardedFile(io.RawIOBase):
    """A file for the NetCDF library (h5py's ``fileobj`` driver) whose write errors stay here.

    The first failing write (``ENOSPC``, ``EFBIG`` under ``ulimit -f``, ``EDQUOT``, ``EIO``)
    is kept in :attr:`error` and every later write is discarded, so that HDF5 believes its
    writes succeed, closes the file normally and never reaches the failure paths that crash it;
    the caller checks :attr:`error` (:meth:`check`) after each operation and abandons the file.
    Reads past the end return zeros, as HDF5's own POSIX driver does. An interrupt arriving
    inside these methods waits for the library to return (see :func:`handle_interrupts`).
    """

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
        self._pos = 0
        self._end = 0            # end of the file as the library sees it [bytes]
        self.error: OSError | None = None

    def readable(self):
        return True

    def writable(self):
        return True

    def seekable(self):
        return True

    def _extent(self) -> int:
        return max(self._end, os.fstat(self._fd).st_size)

    def seek(self, pos, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._extent()}[whence]
        self._pos = base + pos
        return self._pos

    def tell(self):
        return self._pos

    def read(self, size=-1):
        if size is None or size < 0:
            size = max(0, self._extent() - self._pos)
        parts, got = [], 0
        os.lseek(self._fd, self._pos, os.SEEK_SET)
        while got < size:
            chunk = os.read(self._fd, size - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        if got < size:
            parts.append(bytes(size - got))
        self._pos += size
        return b"".join(parts)

    def readinto(self, buffer):
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer).cast("B")[:len(data)] = data
        return len(data)

    def write(self, data):
        view = memoryview(data).cast("B")
        n = len(view)
        if self.error is None:
            try:
                os.lseek(self._fd, self._pos, os.SEEK_SET)
                done = 0
                while done < n:
                    done += os.write(self._fd, view[done:])
            except OSError as exc:
                self.error = exc
        self._pos += n
        self._end = max(self._end, self._pos)
        return n

    def truncate(self, size=None):
        size = self._pos if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self._fd, size)
            except OSError as exc:
                self.error = exc
        self._end = size
        return size

    def flush(self):
        pass

    def fsync(self) -> None:
        """Flush the file's data to the disk; a failure (ENOSPC on delayed allocation) is kept."""
        if self.error is None and self._fd >= 0:
            try:
                _fsync(self._fd)
            except OSError as exc:
                self.error = exc

    def check(self) -> None:
        """Raise the first write error, if any."""
        if self.error is not None:
            raise self.error

    def close(self):
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                os.close(fd)
            except OSError as exc:  # NFS reports some write errors only here
                self.error = self.error or exc
        super().close()


_GUARDED_CODE = frozenset(getattr(GuardedFile, m).__code__ for m in
                          ("seek", "tell", "read", "readinto", "write", "truncate", "flush", "_extent"))


# --- stale temporaries -----------------------------------------------------------------------

def _temp_name(out: Path, name: str) -> Path:
    """A fresh hidden temporary name beside ``name`` (the file is not created)."""
    return out / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def _pid_started_after(pid: int, when: float) -> bool:
    """Whether process ``pid`` started after ``when`` [epoch s], i.e. the pid was reused (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        ticks = int(fields[19])  # field 22 of proc(5), counted from field 3 after the command
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        started = boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return False
    return started > when + 2


def sweep_stale_temporaries(folder: str | Path, *, now: float | None = None,
                            only=None) -> list[tuple[Path, int]]:
    """Remove temporary files that killed runs left in ``folder``; return (path, bytes) of each.

    Only names of this module's pattern (``.{name}.{pid}.{12 hex}.tmp``) are considered, and
    only when their process is gone (or its pid was reused since), or when they have not been
    touched for :data:`STALE_AFTER`; this process's own files are never touched. (A pid is
    only meaningful on this machine: two machines writing into one network folder at once
    can mistake each other's files for stale ones.) ``only``: a compiled pattern the names
    must also match (a batch sweeps its own files' temporaries).
    """
    folder = Path(folder)
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.fullmatch(entry.name)
        if not m or (only is not None and not only.match(entry.name)):
            continue
        pid = int(m["pid"])
        try:
            if pid <= 1 or pid == os.getpid() or not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
            stale = (not _pid_alive(pid) or _pid_started_after(pid, st.st_mtime)
                     or now - st.st_mtime > STALE_AFTER)
            if stale:
                os.unlink(entry.path)
                removed.append((Path(entry.path), st.st_size))
        except OSError:
            continue
    return removed


def shorten(path, most: int = 80) -> str:
    """``path`` for a message: whole when short, else its start and end around "..."."""
    text = str(path)
    if len(text) <= most:
        return text
    head = most // 2
    return f"{text[:head]}...{text[-(most - head - 3):]}"


_PATH_MAX_FALLBACK, _NAME_MAX_FALLBACK = 4096, 255
ROOM = 64
"""Bytes kept free beyond an output folder's path for the names written in it (temporaries)."""


def _limit(path: str, name: str, fallback: int) -> int:
    try:
        value = os.pathconf(path, name)
    except (OSError, ValueError, AttributeError):
        return fallback
    return value if value and value > 0 else fallback


def check_path(path, shown: str, *, room: int = 0, name_room: int = 0, label: str | None = None) -> None:
    """Refuse, before anything is created, a path the system cannot hold: a name in it longer
    than the filesystem allows (NAME_MAX, 255 bytes on most) or a whole path, made absolute and
    with ``room`` bytes for what is written in it, as long as the system's PATH_MAX (4096).

    ``shown``: how the user gave it (``--out``, ``-o``), first in the message. ``name_room``:
    bytes the last name needs beyond its own (a file written under a longer temporary name).
    ``label``: the start of the message instead of ``shown`` and the path (when it names both).

    Raises
    ------
    OutputError
        Naming the (shortened) path and what is too long; nothing was written.
    """
    text = os.fspath(path)
    where = label or f"{shown} {shorten(text)}"
    try:
        absolute = os.fsencode(os.path.abspath(text))
    except (OSError, ValueError) as exc:
        raise OutputError(f"{where}: cannot use this path: {getattr(exc, 'strerror', None) or exc}; "
                          "nothing was written") from None
    path_max = _limit(_existing_str(text), "PC_PATH_MAX", _PATH_MAX_FALLBACK)
    if len(absolute) + room >= path_max:
        inside = " with the files written in it" if room else ""
        raise OutputError(f"{where}: the path is too long ({len(absolute):,} bytes from the root, and the system "
                          f"allows {path_max - 1:,}{inside}); choose a shorter path. Nothing was written.")
    name_max = _limit(_existing_str(text), "PC_NAME_MAX", _NAME_MAX_FALLBACK)
    parts = Path(text).parts
    for i, part in enumerate(parts):
        n = len(os.fsencode(part))
        extra = name_room if i == len(parts) - 1 else 0
        if n + extra > name_max:
            how = f"{n:,} bytes" + (f", written under a temporary name {extra} bytes longer" if extra else "")
            raise OutputError(f"{where}: the name {shorten(part, 40)} is too long ({how}; the filesystem "
                              f"allows {name_max:,}); choose a shorter name. Nothing was written.")


def _existing_str(path: str) -> str:
    """The nearest ancestor of ``path`` that exists (never raises)."""
    p = os.path.abspath(path)
    while not os.path.exists(p) and p != os.path.dirname(p):
        p = os.path.dirname(p)
    return p


def stat_or_none(path, shown: str):
    """``os.stat`` of ``path`` (following links), None when nothing is there; any other error
    (a name too long, permission denied on a folder above) is an :class:`OutputError`
    naming ``shown`` and the shortened path."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise OutputError(f"{shown} {shorten(path)}: cannot use this path: {exc.strerror or exc}; "
                          "nothing was written") from None
    except ValueError as exc:  # an embedded NUL
        raise OutputError(f"{shown} {shorten(path)}: cannot use this path: {exc}; nothing was written") from None


def check_out(out) -> bool:
    """Refuse an ``--out`` that cannot be a folder (a file in its place, a path too long, one
    the system cannot look up); return whether it is an existing folder."""
    import stat as stat_

    check_path(out, "--out", room=ROOM)
    st = stat_or_none(out, "--out")
    if st is not None and not stat_.S_ISDIR(st.st_mode):
        raise OutputError(f"--out {shorten(out)}: exists and is not a folder")
    return st is not None


_not_a_file = check_out


def check_targets(out: Path, names, *, removed=()) -> None:
    """Refuse, before anything is written, an output of ``out`` that cannot be replaced by a
    file: a folder in its place (``names`` are written, ``removed`` deleted)."""
    import stat as stat_

    for name in (*names, *removed):
        try:
            st = os.lstat(Path(out) / name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise OutputError(f"--out {shorten(out)}: cannot use {name} there: {exc.strerror or exc}; "
                              "nothing was written") from None
        if stat_.S_ISDIR(st.st_mode):
            what = "which would be removed" if name in removed else "where a file must be written"
            raise OutputError(f"--out {shorten(out)}: {name} is a folder, {what}; move it away or choose "
                              "another --out. Nothing was written.")


def _missing_folders(out: Path) -> list[Path]:
    """The folders of ``out`` that do not exist yet, deepest first."""
    missing, d = [], Path(os.path.abspath(out))
    while not os.path.lexists(d) and d != d.parent:
        missing.append(d)
        d = d.parent
    return missing


def remove_folders(folders) -> None:
    """Remove ``folders`` (deepest first) while they are empty; stop at the first that is not."""
    for d in folders:
        try:
            os.rmdir(d)
        except FileNotFoundError:
            continue
        except OSError:
            break


def _prepare(out) -> tuple[Path, list[Path]]:
    """:func:`prepare_folder`, also returning the folders it created (deepest first)."""
    out = Path(out)
    _not_a_file(out)
    missing = _missing_folders(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        remove_folders(missing)
        raise OutputError(f"--out {shorten(out)}: cannot create the folder: {exc.strerror or exc}; "
                          "nothing was written") from None
    created = [d for d in missing if os.path.isdir(d)]
    sweep_stale_temporaries(out)
    return out, created


def prepare_folder(out: str | Path) -> Path:
    """Create the output folder if needed, refuse a file in its place, sweep stale temporaries."""
    return _prepare(out)[0]


# --- staging ---------------------------------------------------------------------------------

_NO_FSYNC = {getattr(errno, name) for name in ("EINVAL", "ENOTSUP", "EOPNOTSUPP") if hasattr(errno, name)}


def _fsync(fd: int) -> None:
    """fsync, where the filesystem supports it (a real failure, EIO or ENOSPC, raises)."""
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _NO_FSYNC:
            raise


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        _fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make renames in ``folder`` durable, where the system supports it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # not supported for folders here (Windows, some network filesystems)
        pass
    finally:
        os.close(fd)


def write_together(folder: Path, files: dict[str, str], shown: str) -> list[Path]:
    """Write ``files`` (name -> text) into ``folder`` all or none: each into a temporary file
    in the folder, flushed to disk (fsync), then renamed over its name; a failure at any
    point removes the temporary files, puts back the files already replaced (kept as hard
    links until the end) and removes the folders created for them. ``shown`` names the
    output in messages.

    Raises
    ------
    OutputError
        When the folder cannot be created or the files cannot be written.
    """
    created = []
    d = folder
    while not os.path.lexists(d) and d != d.parent:
        created.append(d)
        d = d.parent
    temps: dict[str, Path] = {}
    backups: dict[str, Path] = {}
    done: list[str] = []
    tag = f"{os.getpid()}.{uuid.uuid4().hex[:12]}"
    made: list[Path] = []
    try:
        for d in reversed(created):
            d.mkdir()
            made.append(d)
        for name, text in files.items():
            tmp = temps[name] = folder / f".{name}.{tag}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with open(fd, "w", encoding="utf-8", newline="") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        for name, tmp in temps.items():
            target = folder / name
            if os.path.lexists(target):
                backup = folder / f".{name}.{tag}.old"
                try:
                    os.link(target, backup, follow_symlinks=False)
                    backups[name] = backup
                except OSError:
                    pass  # no hard links here: the old file cannot be put back
            os.replace(tmp, target)
            done.append(name)
        _fsync_folder(folder)
        return [folder / name for name in files]
    except BaseException as exc:
        for name in reversed(done):
            try:
                if name in backups:
                    os.replace(backups.pop(name), folder / name)
                else:
                    os.unlink(folder / name)
            except OSError:
                pass
        done.clear()
        if isinstance(exc, OSError):
            raise OutputError(f"{shown}: cannot write {shorten(folder)}: {exc.strerror or exc}; nothing was "
                              "written") from None
        raise
    finally:
        for p in (*temps.values(), *backups.values()):
            try:
                os.unlink(p)
            except OSError:
                pass
        if not done:
            remove_folders(reversed(made))  # every folder made here, deepest first, while empty


class _Staged:
    """Temporary files in the output folder, renamed into place together by :meth:`publish`.

    :meth:`scratch` files are temporaries that are never published.
    """

    def __init__(self, out: Path):
        self.out = Path(out)
        self.files: dict[str, Path] = {}
        self.scratch_files: list[Path] = []

    def _touch(self, tmp: Path) -> Path:
        try:
            tmp.touch(mode=0o600, exist_ok=False)
        except OSError as exc:
            raise OutputError(f"--out {self.out}: cannot write there: {exc.strerror}") from None
        return tmp

    def path(self, name: str) -> Path:
        # registered before it exists: an interruption at any point leaves nothing behind
        tmp = self.files[name] = _temp_name(self.out, name)
        return self._touch(tmp)

    def scratch(self, name: str) -> Path:
        """A temporary file beside the outputs, removed at the end whatever happens."""
        tmp = _temp_name(self.out, name)
        self.scratch_files.append(tmp)
        return self._touch(tmp)

    def publish(self, remove: tuple = ()) -> dict[str, Path]:
        """fsync every file, remove the names in ``remove``, rename the files into place
        (``summary.json`` last: it marks a finished run) and fsync the folder.

        Interrupts wait until it is done: the folder never holds half of a run's files.
        """
        written = {}
        check_targets(self.out, self.files, removed=remove)  # the folder may have changed meanwhile
        with _deferred():
            for tmp in self.files.values():
                _fsync_path(tmp)
            for name in remove:
                (self.out / name).unlink(missing_ok=True)
            for name, tmp in self.files.items():
                os.chmod(tmp, 0o644)
                os.replace(tmp, self.out / name)
                written[name] = self.out / name
            self.files = {}
            _fsync_folder(self.out)
        return written

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        with _deferred():
            for tmp in [*self.files.values(), *self.scratch_files]:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
            self.files, self.scratch_files = {}, []


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
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:,.0f} {unit}" if unit in ("bytes", "KiB") else f"{n:,.1f} {unit}"
        n /= 1024


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
    from forecaster.results.layout import COLUMNS_BUDGET, ROW_BLOCK_INPUTS

    n, sizes = layout.trials, layout.sizes()
    columns = max(1, min(COLUMNS_BUDGET // (8 * n), sizes["period"] + sizes["segment"] + len(layout.quota_periods) + 2))
    inputs = n * sizes["segment"] * sizes["quantity"] * 8
    return 2 * 8 * n * columns + 6 * 8 * n + (inputs if inputs <= ROW_BLOCK_INPUTS else 0) + (32 << 20)


def estimate(layout, *, keep: str = "all", precision: str = "float64", compress: bool = False) -> Estimate:
    """Disk and memory a run of ``layout`` needs, before anything is allocated."""
    from forecaster.engine.simulation import CHUNK_BYTES, chunk_trials_for

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
        return Estimate(n, 0, scratch, summary, 4 * CHUNK_BYTES + summarise, False,
                        layout.per_trial_bytes("float64"), scratch - n * layout.per_trial_bytes("float64") + summary,
                        f32)
    forecast = layout.file_bytes(precision, chunk)
    if compress:  # incompressible data grows a little
        forecast += forecast // 500
    per = layout.per_trial_bytes(precision)
    return Estimate(n, forecast, 0, summary, 4 * CHUNK_BYTES + summarise, False, per,
                    forecast - n * per + summary, f32)


def _existing(path: Path) -> Path:
    return Path(_existing_str(os.fspath(path)))


def check_room(out: str | Path, est: Estimate, *, keep: str = "all", precision: str = "float64",
               compress: bool = False) -> None:
    """Refuse a run whose outputs exceed the free space under ``out`` or the file-size limit,
    or whose summary exceeds the memory of the machine, saying what would fit."""
    out = Path(out)
    trials = f"{est.trials:,} trial{'s' if est.trials != 1 else ''}"

    def advice(room: int | None) -> str:
        ways = []
        if keep == "all":
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
    _not_a_file(Path(out))
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
    out, created = _prepare(out)
    try:
        with handle_interrupts(), _Staged(out) as staged:
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
                  runner=None, keep: str = "all", precision: str = "float64", compress: bool = False) -> dict:
    """Simulate ``sc`` straight into ``out/forecast.nc``, summarise it, and publish both files.

    Only one chunk of trials is in memory at a time (see
    :func:`forecaster.engine.simulation.chunk_trials_for`); the summary reads the file back one
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

    Raises
    ------
    OutputError
        Before anything is written when the outputs would not fit (:func:`check_room`); when a
        write fails part-way (the temporary files are removed, the previous results kept).
    """
    from forecaster.engine.plan import build_plan
    from forecaster.engine.simulation import chunk_trials_for, run_trials
    from forecaster.results.layout import Columns, Layout, MemorySink, NetCDFSink
    from forecaster.results.summary import Meta, funnel_expectation, summarize_columns

    _check_options(keep, precision)
    plan = build_plan(sc)
    layout = Layout.of(sc, plan)
    est = estimate(layout, keep=keep, precision=precision, compress=compress)
    _not_a_file(Path(out))
    check_targets(Path(out), (FORECAST, SUMMARY) if keep == "all" else (SUMMARY,),
                  removed=(FORECAST,) if keep == "summary" else ())
    check_room(out, est, keep=keep, precision=precision, compress=compress)
    out, created = _prepare(out)
    chunk = chunk_trials_for(layout)
    meta = Meta.of_layout(layout)
    try:
        with handle_interrupts(), _Staged(out) as staged:
            progress = _ticking(progress)
            if est.in_memory:
                sink = MemorySink(layout)
                run_trials(plan, sc, sink, chunk_trials=chunk, threads=threads, progress=progress, runner=runner)
                arrays = sink.arrays()
                summary = summarize_columns(Columns(arrays, layout.trials), meta)
                summary["funnel"] = funnel_expectation(plan, arrays["inputs"])
                del sink, arrays
            else:
                path = staged.path(FORECAST) if keep == "all" else staged.scratch(FORECAST)
                sink = NetCDFSink(layout, path, chunk, precision=precision if keep == "all" else "float64",
                                  compress=compress and keep == "all")
                try:
                    run_trials(plan, sc, sink, chunk_trials=chunk, threads=threads, progress=progress, runner=runner)
                    summary = summarize_columns(sink.columns(), meta)
                    summary["funnel"] = funnel_expectation(plan, sink.inputs())
                except BaseException:
                    sink.abort()
                    raise
                sink.close()
            _write_text(staged.path(SUMMARY), _dump(summary))
            checkpoint()
            staged.publish(remove=(FORECAST,) if keep == "summary" else ())
            return summary
    except BaseException as exc:
        remove_folders(created)  # the folders made for this run, now empty again
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(_failure(out, exc, est)) from None
        raise


def run(scenario_path: str | Path, out: str | Path, *, trials: int | None = None, seed: int | None = None,
        threads: int | None = None, keep: str = "all", precision: str = "float64", compress: bool = False) -> dict:
    """Load, simulate, summarise and write, as ``forecaster run`` does. Returns the summary."""
    from forecaster.scenario.loading import load_scenario

    return run_to_folder(load_scenario(scenario_path).with_run(trials, seed), out, threads=threads, keep=keep,
                         precision=precision, compress=compress)
