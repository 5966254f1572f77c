"""Files written whole or not at all, and the interrupts that must wait for them.

Every file forecaster writes goes under a temporary name in its folder
(``.{name}.{pid}.{hex}.tmp``), is flushed to disk (fsync) and renamed into place once
complete, so a reader never sees a half-written file and a failed, interrupted or
terminated command leaves the previous files:

* :class:`Staged` stages a set of files (a run's ``forecast.nc`` and ``summary.json``)
  and publishes them together; :func:`write_together` writes a set of texts (a calibrated
  scenario and its pipeline) all or none, putting back any file it had replaced.
* **Write errors never reach the NetCDF library.** HDF5 does not survive a failed write
  (a full disk, a file-size limit): it reports errors from object destructors, cannot close
  the file and crashes the interpreter at exit. The library therefore writes through a
  :class:`GuardedFile` that records the first error and lets the library finish; the run then
  stops with an :class:`~forecaster.errors.OutputError` and the temporary file is removed.
* **Interrupts wait for the library.** Ctrl-C (and SIGTERM under the command line, see
  :func:`handle_interrupts`) raise :class:`KeyboardInterrupt` (:class:`Terminated`) anywhere
  except inside the library's file callbacks, where an exception would corrupt its state;
  there they are deferred to the next safe point (:func:`checkpoint`). Inside LLVM's callbacks
  while numba compiles a kernel (llvmlite's object cache), in a destructor or a weakref
  callback, the exception would be dropped or crash the process: the signal is sent again to
  the main thread a moment later (:data:`RESEND_AFTER`), until it lands where it can be raised.
* **A folder holds one result, not a mix.** Each command declares in :data:`OUTPUTS` every
  file it may write into its ``--out`` (its :class:`Outputs`); publishing a command's marker
  file (``summary.json`` for ``run``) removes, in the same publication, the files of that set
  that were not written this time (an old ``report.md`` beside a new ``summary.json``), and
  nothing else: a user's own files in the folder stay.
* **Leftovers are swept.** A run killed outright (SIGKILL, a power cut) cannot clean up; the
  next run in the same folder removes temporaries of this naming pattern whose process is gone
  (:func:`sweep_stale_temporaries`), and nothing else.
"""
from __future__ import annotations

import contextlib
import dis
import errno
import fnmatch
import functools
import io
import os
import re
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from forecaster.errors import OutputError

STALE_AFTER = 24 * 3600
"""A temporary file untouched for this long [s] is stale even when a process of its pid runs."""

_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]{1,10})\.(?P<tag>[0-9a-f]{12})\.tmp")


# --- interrupts ------------------------------------------------------------------------------

class Terminated(KeyboardInterrupt):
    """The process received SIGTERM; handled as Ctrl-C is, so that temporary files are removed."""


RESEND_AFTER = 0.05
"""An interrupt that could not be raised where it arrived is sent again after this long [s]."""


class _Interrupts:
    depth = 0        # > 0 while the main thread must not be interrupted (our own critical sections)
    pending: BaseException | None = None   # the interrupt that arrived meanwhile, raised by checkpoint()
    resent: BaseException | None = None    # the pending interrupt whose signal _resend_later sent again
    raised = False   # an interrupt was raised since ``pending`` was set: nothing is sent again
    on_edge_since: float | None = None  # when ``pending`` first landed on a back edge outside its handler
    lock = threading.Lock()  # held while a signal is sent again, and while handle_interrupts puts handlers back


_LLVM_CALLBACKS = ("_raw_object_cache_notify", "_raw_object_cache_getbuffer")
"""llvmlite's ctypes callbacks (``ExecutionEngine``'s object cache), called from LLVM's C++
while numba compiles; the only ones llvmlite has (0.50)."""


def _llvm_callback_code() -> frozenset:
    """The code of :data:`_LLVM_CALLBACKS`, when llvmlite is loaded (empty otherwise)."""
    engine = getattr(sys.modules.get("llvmlite.binding.executionengine"), "ExecutionEngine", None)
    return frozenset(getattr(getattr(engine, name, None), "__code__", None) for name in _LLVM_CALLBACKS) - {None}


BACK_EDGE_PATIENCE = 2.0
"""How long an interrupt landing on a loop's back edge outside its handler (see
:func:`_back_edge_outside_its_handler`) is sent again before it is raised there all the same [s]:
a loop that checks for signals nowhere else (pure arithmetic, ``while not done: pass``) must
still stop. A loop that calls anything lands elsewhere within a few re-sends (measured by this
change's review under load on Python 3.13: 65% of re-sends landed on the edge again, 16 at
most in 200 trials, 1.06 s)."""

_SKIPPED_BACK_EDGES = sys.version_info >= (3, 13) and hasattr(signal, "pthread_kill")
"""Whether :func:`_back_edge_outside_its_handler` applies: CPython 3.13 (not 3.11 or 3.12, where
such an exception is caught by the loop's own ``try``), and only where the signal can be
sent again (elsewhere the next checkpoint would raise it, perhaps much later)."""

_JUMP_BACKWARD = dis.opmap.get("JUMP_BACKWARD")


def _back_edge_outside_its_handler(frame) -> bool:
    """Whether ``frame`` stands on a loop's back edge that the exception table leaves out
    while the loop's body is in it: an exception raised there skips the frame's own
    ``except``, ``finally`` and ``with`` clean-up. CPython 3.13 compiles some loops so (a
    ``while`` loop's condition repeated at its end, a comprehension's filter;
    python/cpython#108214) and checks for signals on exactly that jump: a SIGTERM during a
    ``while`` loop inside a ``try`` escaped it (CI's Python 3.13, a pure loop: 8 of 8 times)."""
    if not _SKIPPED_BACK_EDGES or frame is None:
        return False
    code, offset = frame.f_code, frame.f_lasti
    try:
        if code.co_code[offset] != _JUMP_BACKWARD:  # the cheap test first: the handler must be quick
            return False
        return _uncovered_jump(code, offset)
    except Exception:  # an exception here would take the interrupt's place
        return False


@functools.lru_cache(maxsize=256)
def _uncovered_jump(code, offset: int) -> bool:
    """Whether the jump at ``offset`` of ``code`` is outside every exception table entry
    while its target is inside one."""
    entries = getattr(dis.Bytecode(code), "exception_entries", ())  # 3.11+; not in typeshed

    def covered(at):
        return any(e.start <= at < e.end for e in entries)
    for ins in dis.get_instructions(code):
        if ins.offset == offset:
            return not covered(offset) and covered(ins.argval)
    return False


def _must_wait(frame) -> bool:
    """Whether an exception raised in ``frame`` would corrupt the NetCDF library (our file
    callbacks), be printed and dropped by Python (destructors, weakref callbacks), or reach
    LLVM through a ctypes callback while numba compiles (llvmlite's object cache: the
    exception is dropped and the compile goes on without its object code, or the process
    dies of a segmentation fault; seen in CI on a cold cache). Only the callbacks: llvmlite's
    Python wrappers around a long LLVM call are safe places (deferring there held a SIGTERM
    3.5 s, until the compile had finished: review)."""
    llvm = _llvm_callback_code()
    while frame is not None:
        code = frame.f_code
        if code in _GUARDED_CODE or code.co_name == "__del__" or code.co_filename.endswith("weakref.py") \
                or code in llvm:
            return True
        frame = frame.f_back
    return False


def _resend_later(signum: int, exc: BaseException) -> None:
    """Send ``signum`` to the main thread again after :data:`RESEND_AFTER`, if ``exc`` is still
    pending then, no interrupt was raised meanwhile (a second signal's, or a checkpoint's: the
    command is already ending, and raising again would break its clean-up) and a Python
    handler still takes the signal (never the default action, which would kill the process).
    Where threads cannot be signalled (Windows), nothing is sent: the next :func:`checkpoint`
    raises it (raising the signal from the timer's thread instead raised it twice under
    Python 3.13 in CI: not kept)."""
    if not hasattr(signal, "pthread_kill"):
        return
    main = threading.main_thread().ident

    def again():
        with _Interrupts.lock:
            if _Interrupts.pending is exc and not _Interrupts.raised and main is not None \
                    and callable(signal.getsignal(signum)):
                _Interrupts.resent = exc
                signal.pthread_kill(main, signum)

    timer = threading.Timer(RESEND_AFTER, again)
    timer.daemon = True
    timer.start()


def on_signal(signum, frame):
    """The signal handler :func:`handle_interrupts` installs: raise :class:`Terminated` for
    SIGTERM and :class:`KeyboardInterrupt` for any other signal (Ctrl-C): at once; at the
    next :func:`checkpoint` inside our own critical sections (the NetCDF library's file
    callbacks, a publication, a staged output's clean-up); and where raising would be dropped
    or crash (a destructor, a weakref callback, LLVM's callbacks during a compile), when the
    signal, sent again a moment later, lands elsewhere; so too, for at most
    :data:`BACK_EDGE_PATIENCE`, on a loop's back edge that its own ``try`` misses (Python
    3.13). The interrupt is kept for :func:`checkpoint` even when raised, in case Python
    drops the exception.

    Call it, with its ``signum`` and ``frame``, at the end of a handler of one's own that
    must also end the process as every command does (``forecaster batch``'s, which first
    marks the batch to stop); within :func:`handle_interrupts` it is installed already."""
    resent, _Interrupts.resent = _Interrupts.resent, None
    if resent is not None:  # the signal sent again by _resend_later
        if _Interrupts.pending is not resent:
            return  # raised meanwhile (by a checkpoint): nothing more to do
        exc = resent
    else:
        exc = Terminated() if signum == getattr(signal, "SIGTERM", None) else KeyboardInterrupt()
        # kept also when raised: an exception raised in a weakref callback or a destructor is
        # printed and dropped by Python, and the next checkpoint() must still stop the run
        if _Interrupts.pending is None:
            _Interrupts.pending, _Interrupts.raised, _Interrupts.on_edge_since = exc, False, None
    if _Interrupts.depth:
        return  # our own critical section (a file callback, a publication): raised at the next checkpoint()
    if _must_wait(frame):
        _resend_later(signum, _Interrupts.pending)
        return
    if _back_edge_outside_its_handler(frame):
        now = time.monotonic()
        since = _Interrupts.on_edge_since = _Interrupts.on_edge_since or now
        if now - since < BACK_EDGE_PATIENCE:
            _resend_later(signum, _Interrupts.pending)
            return
        # a loop that checks for signals nowhere else: it stops all the same (its own clean-up skipped)
    _Interrupts.raised = True
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
        exc, _Interrupts.pending, _Interrupts.raised = _Interrupts.pending, None, True
        raise exc


def interrupt_behind(exc: BaseException) -> BaseException | None:
    """The interrupt (Ctrl-C, SIGTERM) that ``exc`` came from, or None.

    A signal's exception raised while compiled code runs reaches Python as another error:
    numba's dispatcher reports ``SystemError: ... returned a result with an exception set``,
    its cause the interrupt. So an error whose chain holds an interrupt, or that arrived
    after one was received and not yet raised, is that interrupt."""
    seen: BaseException | None = exc
    for _ in range(100):  # a chain is short; a cycle is not followed for ever
        if seen is None:
            break
        if isinstance(seen, KeyboardInterrupt):
            return seen
        seen = seen.__cause__ or seen.__context__
    return _Interrupts.pending


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
            if current is on_signal or current is signal.SIG_IGN \
                    or (sig == signal.SIGINT and current is not signal.default_int_handler):
                continue  # ours already, ignored on purpose (nohup), or someone else's Ctrl-C handler
            installed[sig] = signal.signal(sig, on_signal)
    if installed:
        _Interrupts.pending, _Interrupts.raised = None, False
    try:
        yield
        if installed:
            checkpoint()
    finally:
        if installed:
            # first: a signal sent again while this waits for the lock finds nothing pending
            # (its handler runs during the wait and would raise inside this clean-up: review)
            _Interrupts.pending = None
        with _Interrupts.lock:  # no signal sent again once the handlers it was meant for are gone
            for sig, previous in installed.items():
                signal.signal(sig, previous)
            if installed:
                _Interrupts.pending, _Interrupts.raised = None, False


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
    removed: list[tuple[Path, int]] = []
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
    path_max = _limit(nearest_existing(text), "PC_PATH_MAX", _PATH_MAX_FALLBACK)
    if len(absolute) + room >= path_max:
        inside = " with the files written in it" if room else ""
        raise OutputError(f"{where}: the path is too long ({len(absolute):,} bytes from the root, and the system "
                          f"allows {path_max - 1:,}{inside}); choose a shorter path. Nothing was written.")
    name_max = _limit(nearest_existing(text), "PC_NAME_MAX", _NAME_MAX_FALLBACK)
    parts = Path(text).parts
    for i, part in enumerate(parts):
        n = len(os.fsencode(part))
        extra = name_room if i == len(parts) - 1 else 0
        if n + extra > name_max:
            how = f"{n:,} bytes" + (f", written under a temporary name {extra} bytes longer" if extra else "")
            raise OutputError(f"{where}: the name {shorten(part, 40)} is too long ({how}; the filesystem "
                              f"allows {name_max:,}); choose a shorter name. Nothing was written.")


def nearest_existing(path: str) -> str:
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


def create_out_folder(out) -> tuple[Path, list[Path]]:
    """:func:`prepare_folder`, also returning the folders it created (deepest first)."""
    out = Path(out)
    check_out(out)
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
    return create_out_folder(out)[0]


# --- what each command owns in its folder ------------------------------------------------------

@dataclass(frozen=True)
class Outputs:
    """Every file one command may write into its output folder: the one place that says so.

    ``marker``: the file that marks a finished result of the command (written last). When a
    publication (:meth:`Staged.publish`) includes the marker, every other file of the set
    that is in the folder and was not written by that publication is removed with it, so
    that the folder never holds this result beside an older result's report or exports.
    Files written afterwards by the same command (``run --report`` writes its report once the
    run is published) are added by publications without the marker, which remove nothing.

    ``names``: paths relative to the folder, with ``/`` between parts; the last part may be
    a glob (``tables/*.csv`` would own every ``.csv`` file directly in ``tables/``, a user's
    own too: the exports therefore declare their exact names, :data:`TABLES`). Only files and symbolic links are ever removed (a link itself,
    not what it points to), never a folder; a subfolder emptied of its owned files is removed.
    """

    command: str
    marker: str
    names: tuple[str, ...]

    def __post_init__(self):
        if self.marker not in self.names:
            raise ValueError(f"{self.command}: the marker {self.marker} must be one of its names")

    def files(self) -> tuple[str, ...]:
        """The names without a glob (those a folder in place of which is refused)."""
        return tuple(n for n in self.names if not _is_glob(n))

    def owns(self, name: str) -> bool:
        """Whether ``name`` (relative, ``/``-separated) is one of this command's outputs."""
        return any(name == n or (_is_glob(n) and _same_folder(name, n) and fnmatch.fnmatchcase(name, n))
                   for n in self.names)

    def present(self, folder: str | Path) -> list[str]:
        """The files of this set that ``folder`` holds now (never a folder, links not followed)."""
        folder = Path(folder)
        found: list[str] = []
        for pattern in self.names:
            parent, _, last = pattern.rpartition("/")
            where = folder / parent if parent else folder
            if not _is_glob(last):
                if _is_file_or_link(where / last):
                    found.append(pattern)
                continue
            try:
                entries = sorted(os.scandir(where), key=lambda e: e.name)
            except OSError:  # no such subfolder (or a file in its place): nothing of ours in it
                continue
            for entry in entries:
                if fnmatch.fnmatchcase(entry.name, last) and not _TEMP.fullmatch(entry.name) \
                        and _is_file_or_link(Path(entry.path)):
                    found.append(f"{parent}/{entry.name}" if parent else entry.name)
        return found

    def stale(self, folder: str | Path, written) -> list[str]:
        """The files of this set in ``folder`` that are not among ``written`` (names)."""
        written = set(written)
        return [n for n in self.present(folder) if n not in written]


def _is_glob(name: str) -> bool:
    return any(c in name for c in "*?[")


def _same_folder(name: str, pattern: str) -> bool:
    return name.rpartition("/")[0] == pattern.rpartition("/")[0]


def _is_file_or_link(path: Path) -> bool:
    import stat as stat_

    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return stat_.S_ISREG(mode) or stat_.S_ISLNK(mode)


TABLES: dict[str, tuple[str, ...]] = {
    "run": ("periods", "after_sale", "stages", "spend", "ratios", "targets", "reps", "segments", "clv", "funnel",
            "commission_extras", "other"),
    "compare": ("scenarios", "scenarios_after_sale", "scenarios_other", "differences", "differences_after_sale",
                "differences_other", "targets", "other"),
    "sensitivity": ("base", "levers", "three_moves", "variance_shares", "skipped", "notes", "other"),
    "backtest": ("scores", "averages", "cutoffs", "skipped", "warnings", "other"),
}
"""Every summary table ``--export`` may write, per command: ``<folder>/<name>.csv`` (and a sheet
of the workbook). Exact names, never a glob, so that a user's own CSV file beside them
(``tables/my-pivot.csv``) is never removed; :mod:`forecaster.present.export` writes no other."""


def table_files(command: str) -> tuple[str, ...]:
    """The CSV files ``--export csv`` may write for ``command`` (relative to ``--out``)."""
    folder = "tables" if command == "run" else f"{command}-tables"
    return tuple(f"{folder}/{name}.csv" for name in TABLES[command])


EXPORTS = ("forecast.xlsx", "trials.parquet", "reps.parquet", *table_files("run"))
"""What ``run --export`` may write (summary workbook, per-trial Parquet, one CSV per table)."""


def _exports(stem: str, trials: bool = True) -> tuple[str, ...]:
    """What ``--export`` may write for compare, sensitivity (``trials``) or backtest
    (:func:`forecaster.present.export.declared_names`; tests check that the two agree)."""
    return (f"{stem}.xlsx", *table_files(stem), *((f"{stem}-trials.parquet", f"{stem}-reps.parquet")
                                                 if trials else ()))


OUTPUTS: dict[str, Outputs] = {o.command: o for o in (
    Outputs("run", "summary.json", ("forecast.nc", "summary.json", "report.html", "report.md", *EXPORTS)),
    Outputs("compare", "compare.json", ("compare.nc", "compare.json", "compare.html", *_exports("compare"))),
    Outputs("sensitivity", "sensitivity.json", ("sensitivity.nc", "sensitivity.json", "sensitivity.html",
                                                *_exports("sensitivity"))),
    Outputs("backtest", "backtest.json", ("backtest.json", "backtest.html", *_exports("backtest", trials=False))),
)}
"""Each command's outputs (a batch writes a ``run`` folder per scenario). A name in two sets
would let one command remove the other's file from a shared folder: names are unique."""


def replaced_by(written) -> list[Outputs]:
    """The sets whose marker is among ``written`` (names): a publication of these replaces them."""
    written = set(written)
    return [o for o in OUTPUTS.values() if o.marker in written]


def check_outputs(out, command: str, written=None) -> None:
    """:func:`check_targets` for everything ``command`` writes into ``out`` (``written``, by
    default every file of its set without a glob) or would remove: call it before the work,
    so that a folder where a file must go is refused before anything is computed."""
    outputs = OUTPUTS[command]
    written = outputs.files() if written is None else tuple(written)
    check_targets(Path(out), written, removed=tuple(outputs.stale(out, written)))


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
    """Write ``files`` (name -> text) into ``folder`` all or none (:class:`Staged`, creating
    the folder and its missing parents, removed again if nothing could be written).
    ``shown`` names the output in messages.

    Raises
    ------
    OutputError
        When the folder cannot be created or the files cannot be written; nothing is then
        left behind and the files that were there before are as they were.
    """
    try:
        with Staged(folder, create=True, shown=shown) as staged:
            for name, text in files.items():
                with open(staged.path(name), "w", encoding="utf-8", newline="") as f:
                    f.write(text)
            return list(staged.publish().values())
    except OSError as exc:
        raise OutputError(f"{shown}: cannot write {shorten(folder)}: {exc.strerror or exc}; nothing was "
                          "written") from None


class Staged:
    """The one atomic writer: temporary files in a folder, renamed into place together.

    :meth:`path` registers a file to be published and returns its temporary path (created
    empty, private); :meth:`scratch` a temporary that is never published. :meth:`publish`
    flushes every file to disk (fsync), renames them over their names and makes the renames
    durable; if a rename fails, the files already replaced are put back (kept as hard links
    until the end, where the filesystem has them) and the error is raised. Leaving the
    ``with`` block removes every temporary whatever happened, and, with ``create=True``,
    the folders created for the files when nothing was published. Interrupts (Ctrl-C,
    SIGTERM) wait while files are published or cleaned up.

    ``create``: create ``out`` and its missing parents (else it must exist); ``shown``:
    the output as the user named it, for messages.
    """

    def __init__(self, out: Path, *, create: bool = False, shown: str | None = None):
        self.out = Path(out)
        self.shown = shown or f"--out {self.out}"
        self.files: dict[str, Path] = {}
        self.scratch_files: list[Path] = []
        self.created: list[Path] = []  # folders made here, outermost first
        self.subfolders: list[Path] = []  # subfolders of ``out`` made for registered files, outermost first
        self.published = False
        if create:
            d = self.out
            missing = []
            while not os.path.lexists(d) and d != d.parent:
                missing.append(d)
                d = d.parent
            try:
                for d in reversed(missing):
                    d.mkdir()
                    self.created.append(d)
            except OSError:
                remove_folders(reversed(self.created))
                self.created = []
                raise

    def _touch(self, tmp: Path) -> Path:
        try:
            tmp.touch(mode=0o600, exist_ok=False)
        except OSError as exc:
            raise OutputError(f"{self.shown}: cannot write there: {exc.strerror}") from None
        return tmp

    def path(self, name: str) -> Path:
        """Register ``name`` (relative to the folder; ``tables/revenue.csv`` puts it in a
        subfolder, created if needed) and return its temporary path, created empty."""
        parent, _, last = name.rpartition("/")
        where = self.out
        if parent:
            where = self.out / parent
            missing = [d for d in (where, *where.parents) if d != self.out and self.out in d.parents
                       and not os.path.lexists(d)]
            for d in reversed(missing):
                try:
                    d.mkdir()
                except OSError as exc:
                    raise OutputError(f"{self.shown}: cannot create {parent} there: {exc.strerror}") from None
                self.subfolders.append(d)
        # registered before it exists: an interruption at any point leaves nothing behind
        tmp = self.files[name] = _temp_name(where, last)
        return self._touch(tmp)

    def scratch(self, name: str) -> Path:
        """A temporary file beside the outputs, removed at the end whatever happens."""
        tmp = _temp_name(self.out, name)
        self.scratch_files.append(tmp)
        return self._touch(tmp)

    def stale(self, remove=()) -> list[str]:
        """What :meth:`publish` would remove now: ``remove`` and, for each command whose marker
        file is registered, the files of its :class:`Outputs` that are not (see :data:`OUTPUTS`)."""
        names = list(dict.fromkeys(remove))
        for outputs in replaced_by(self.files):
            names += [n for n in outputs.stale(self.out, self.files) if n not in names]
        return names

    def publish(self, remove: tuple = ()) -> dict[str, Path]:
        """Replace the folder's result by the registered files, as one step as far as the
        filesystem allows: fsync every file; set aside (rename to a temporary name) the files
        of :meth:`stale` (the names in ``remove``, and what a command's marker file makes
        stale); rename the files into place in the order they were registered (a run
        registers ``summary.json`` last: it marks a finished run); fsync the folder; then
        delete what was set aside. If a step fails, the files already replaced and those set
        aside are put back (replaced ones kept as hard links until the end, where the
        filesystem has them) and the error is raised.

        Interrupts wait until it is done: the folder never holds half of the files.
        """
        written: dict[str, Path] = {}
        backups: dict[str, Path] = {}
        aside: dict[str, Path] = {}
        remove = tuple(self.stale(remove))
        check_targets(self.out, self.files, removed=remove)  # the folder may have changed meanwhile
        with _deferred():
            try:
                for tmp in self.files.values():
                    _fsync_path(tmp)
                for name in remove:
                    target = self.out / name
                    if not os.path.lexists(target):
                        continue
                    tmp = _temp_name(target.parent, target.name)
                    os.rename(target, tmp)  # within its folder: never across filesystems
                    aside[name] = tmp
                for name, tmp in self.files.items():
                    target = self.out / name
                    if os.path.lexists(target):
                        backup = tmp.with_name(tmp.name[:-len(".tmp")] + ".old")
                        try:
                            os.link(target, backup, follow_symlinks=False)
                            backups[name] = backup
                        except OSError:
                            pass  # no hard links here: the old file cannot be put back
                    os.chmod(tmp, 0o644)
                    os.replace(tmp, target)
                    written[name] = target
                for folder in {(self.out / n).parent for n in (*written, *aside)}:
                    _fsync_folder(folder)
            except BaseException:
                for name in reversed(list(written)):
                    with contextlib.suppress(OSError):
                        if name in backups:
                            os.replace(backups.pop(name), self.out / name)
                        else:
                            os.unlink(self.out / name)
                for name, tmp in aside.items():
                    with contextlib.suppress(OSError):
                        os.rename(tmp, self.out / name)
                raise
            finally:
                for b in backups.values():
                    with contextlib.suppress(OSError):
                        os.unlink(b)
            for tmp in aside.values():
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            # a subfolder of ours emptied of its files (exports not written this time) goes too
            for folder in sorted({(self.out / n).parent for n in aside} - {self.out}, key=lambda d: -len(d.parts)):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
            self.files = {}
            self.subfolders = []
            self.published = True
        return written

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        with _deferred():
            for tmp in [*self.files.values(), *self.scratch_files]:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
            self.files, self.scratch_files = {}, []
            remove_folders(reversed(self.subfolders))  # made for files never published: empty again
            self.subfolders = []
            if not self.published:
                remove_folders(reversed(self.created))  # deepest first, while empty
