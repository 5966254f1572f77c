"""The one place numba policy is set, and where the kernels' machine code is cached.

Policy
------
Every kernel is compiled ``nopython``, with the on-disk cache (a second run loads the
machine code instead of compiling it) and without the GIL, so blocks of trials run on
threads in parallel. ``fastmath`` stays off: results must not depend on reassociation.

Cache folder
------------
numba keys a cached function on its own source file only, while the kernels compile in
code and constants from other modules (``_streams.reseed``, ``interface``'s codes and
layout): editing one of those alone would leave stale machine code in numba's cache. So
the kernels are cached in a folder of their own, named by a hash of the source of every
module in :data:`KERNEL_MODULES` (and of numba's, numpy's and Python's versions): any edit
to any of them starts a fresh folder, which compiles once. The folder is
``$NUMBA_CACHE_DIR/forecaster-<hash>`` when ``NUMBA_CACHE_DIR`` is set, else
``forecaster/numba-<hash>`` in the user's cache folder (``$XDG_CACHE_HOME``, or
``~/.cache``), else, when that cannot be written, in the temporary folder. Only forecaster's
kernels go there (``numba.config.CACHE_DIR`` is set while they are decorated, then put
back). A new folder in the user's cache removes those of other sources in which nothing
was written for :data:`STALE_DAYS` days.

Loading cached kernels
----------------------
numba refreshes its whole target context before it loads a function from its cache: it
imports and installs every lowering registry (numpy's linear algebra and so scipy.linalg,
typed containers, jitclass, ...) and then the typing context, about 0.25 s of a warm
run's 1.2 s, none of which cached machine code uses. Cached code needs numba's runtime
(NRT) and the symbols it links against, nothing else. So each kernel's cache loads lighter
(:func:`light_loader`): it initialises the runtime, reads the cache entry, checks that every
symbol the machine code leaves undefined is known to the linker, and only then rebuilds the
function; whatever it cannot vouch for (an object file that is not ELF, an unknown symbol,
a cache entry of another shape, any error) goes through numba's own load, with its full
refresh, as before. A compile always refreshes in full (numba's compiler does). Setting
``FORECASTER_NUMBA_LIGHT_LOAD=0`` turns the light load off.

First compile
-------------
When a kernel must be compiled (not in the cache), a message says so on stderr, once per
process, before numba starts: the first run after installing or upgrading takes seconds
more, and the next ones load the machine code. :func:`quiet_compiles` (the command line's
``--quiet``) or ``FORECASTER_QUIET_COMPILE=1`` in the environment silences it.

One compile for many processes
------------------------------
Processes started together on a cold cache (a local cluster's workers, a script running
several commands at once, the test suite's workers) would each compile the same kernel and
write the same cache files. A compile called from Python takes a lock file of its own
function in the cache folder (``<module>.<function>.lock``, :func:`compile_lock`) first: another process
needing that function waits, then loads what the first wrote. A process holds one such lock
at a time (the helpers a kernel compiles in take none) and never waits while holding one, so
processes cannot deadlock; a lock is let go if its holder dies, and one still held after
:data:`COMPILE_LOCK_WAIT` seconds is ignored (the waiting process compiles for itself, after a
line on stderr has said it waits). A function compiled inside another's compile (a helper) is
not locked: two processes may still compile it side by side, harmlessly (numba writes each
cache file whole, then renames it).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numba
import numpy as np
from numba.core import event
from numba.core.compiler_lock import global_compiler_lock

KERNEL_MODULES = ("_numba", "_streams", "interface", "kernels", "moves", "events")
"""Modules of ``forecaster.engine`` whose code or constants the compiled kernels hold; the
cache folder follows their source (a test checks that no other module is compiled in)."""

COMPILE_SECONDS = {"draws": 6, "new_leads_trials": 15, "apply_shocks": 4, "pipeline_trials": 10,
                   "apply_capacity": 3, "apply_capacity_deals": 3, "simulate_new_leads_moves": 25,
                   "simulate_pipeline_moves": 25, "simulate_lost_leads_moves": 10, "simulate_events": 18,
                   "simulate_customers": 12, "simulate_lost_leads": 9,
                   "simulate_installed": 5, "simulate_lost_stage_values": 4, "simulate_lost_stage_values_moves": 7}
"""Rough compile time of each kernel with the helpers it compiles first [s], for the
first-run message: measured on one core of a 2-core cloud machine (December 2026, numba
0.68) on a cold cache, the example scenarios and the compile test's shapes (the SaaS quarter:
draw_parameters 8.1, simulate_new_leads 31.3 with the helpers it compiled first,
simulate_pipeline 18.7; 58 s in all, where the message had said 10). The kernels those
three called, draws, new_leads_trials and pipeline_trials, are now called from Python: 3.3,
9.3 and 6.1 s where the compiled loops around them took 4.5, 16.1 and 10.1 (the same machine
in a faster hour), so their figures were scaled by those ratios."""

POLICY = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}


def source_hash(sources: dict[str, bytes]) -> str:
    """Hex digest naming a cache folder: the kernels' sources (module name -> bytes) and the
    versions of what compiles and runs them."""
    h = hashlib.sha256()
    for part in (sys.implementation.cache_tag or sys.version, numba.__version__, np.__version__):
        h.update(str(part).encode() + b"\0")
    for name in sorted(sources):
        h.update(name.encode() + b"\0" + hashlib.sha256(sources[name]).digest())
    return h.hexdigest()[:16]


def kernel_sources() -> dict[str, bytes]:
    """The source of every module of :data:`KERNEL_MODULES` (read next to this file)."""
    here = Path(__file__).resolve().parent
    out = {}
    for name in KERNEL_MODULES:
        try:
            out[name] = (here / f"{name}.py").read_bytes()
        except OSError:  # no sources (a frozen build): the installed version names the code
            from forecaster.version import __version__
            out[name] = f"forecaster {__version__}".encode()
    return out


STALE_DAYS = 14
"""A new cache folder in the user's cache removes the folders of other sources (older
versions, earlier edits) in which nothing was written for this many days."""


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def _last_written(folder: Path) -> float:
    """The latest modification time of ``folder`` and what it holds (two levels down)."""
    times = [folder.stat().st_mtime]
    for sub in folder.iterdir():
        times.append(sub.stat().st_mtime)
        if sub.is_dir():
            times += [f.stat().st_mtime for f in sub.iterdir()]
    return max(times)


def prune(folder: Path, now: float | None = None) -> list[Path]:
    """Remove the ``numba-<hash>`` folders beside ``folder`` in which nothing was written for
    :data:`STALE_DAYS` days (what is in use elsewhere is recompiled there, once). Returns them."""
    limit = (time.time() if now is None else now) - STALE_DAYS * 86400
    removed = []
    for other in folder.parent.glob("numba-*"):
        try:
            if other != folder and other.is_dir() and _last_written(other) < limit:
                shutil.rmtree(other)
                removed.append(other)
        except OSError:  # in use, or removed meanwhile: left alone
            pass
    return removed


def cache_folder(digest: str, environ: Mapping[str, str] | None = None) -> Path:
    """Where the kernels' machine code for sources of hash ``digest`` is cached (created):
    in ``NUMBA_CACHE_DIR`` when set, else in the user's cache, else in the temporary
    folder, the first that can be written."""
    env = os.environ if environ is None else environ
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    fallback = Path(tempfile.gettempdir()) / f"forecaster-{uid}" / f"numba-{digest}"
    if env.get("NUMBA_CACHE_DIR"):
        folder = Path(env["NUMBA_CACHE_DIR"]) / f"forecaster-{digest}"
        return folder if _writable(folder) else fallback
    user = env.get("XDG_CACHE_HOME") or env.get("LOCALAPPDATA") or str(Path.home() / ".cache")
    folder = Path(user) / "forecaster" / f"numba-{digest}"
    new = not folder.exists()
    if not _writable(folder):
        return fallback
    if new:
        prune(folder)
    return folder


@functools.cache
def kernel_cache_dir() -> Path:
    """This installation's cache folder (computed once per process)."""
    return cache_folder(source_hash(kernel_sources()))


def jit(fn=None, **options):
    """``numba.njit`` with forecaster's policy (:data:`POLICY`), cached in :func:`kernel_cache_dir`.

    Use as ``@jit`` or ``@jit(inline="always")``.
    """
    if fn is None:
        return functools.partial(jit, **options)
    if numba.config.DISABLE_JIT:
        return numba.njit(fn, **{**POLICY, **options})
    saved = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = str(kernel_cache_dir())  # read when numba makes the function's cache
    try:
        dispatcher = numba.njit(fn, **{**POLICY, **options})
    finally:
        numba.config.CACHE_DIR = saved
    if os.environ.get("FORECASTER_NUMBA_LIGHT_LOAD", "1") != "0":
        install_light_loader(dispatcher)
    install_compile_lock(dispatcher)
    return dispatcher


def default_threads() -> int:
    """Threads to use: numba's setting (``NUMBA_NUM_THREADS``, default: the cores)."""
    return max(1, int(numba.config.NUMBA_NUM_THREADS))


# --- loading cached kernels without numba's full refresh ---------------------------------------

def undefined_symbols(obj: bytes) -> list[str] | None:
    """The names an ELF64 little-endian object file leaves undefined (to be resolved when it is
    linked), or None when ``obj`` is not such a file (or has no symbol table)."""
    if len(obj) < 64 or obj[:4] != b"\x7fELF" or obj[4] != 2 or obj[5] != 1:  # ELFCLASS64, ELFDATA2LSB
        return None
    (shoff,) = struct.unpack_from("<Q", obj, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", obj, 0x3A)
    if shentsize < 64 or shnum == 0 or shoff + shentsize * shnum > len(obj):
        return None
    # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info, sh_addralign, sh_entsize
    sections = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * shentsize) for i in range(shnum)]
    tables = [s for s in sections if s[1] == 2]  # SHT_SYMTAB
    if not tables:
        return None
    names = []
    for table in tables:
        strings = sections[table[6]][4]
        for at in range(table[4], table[4] + table[5], 24):  # Elf64_Sym: 24 bytes
            name, _info, _other, shndx = struct.unpack_from("<IBBH", obj, at)
            if shndx == 0 and name:  # SHN_UNDEF, named
                start = strings + name
                names.append(obj[start:obj.index(b"\0", start)].decode("ascii", "replace"))
    return names


def _linkable(libdata) -> bool:
    """Whether cached machine code (numba's serialised library: name, "object", (object code,
    bitcode)) leaves undefined only symbols the linker knows now."""
    import llvmlite.binding as ll

    _name, kind, data = libdata
    if kind != "object":
        return False
    obj = data[0]
    if not isinstance(obj, bytes):
        return False
    names = undefined_symbols(obj)
    return names is not None and all(ll.address_of_symbol(n) is not None for n in names)


def light_loader(cache, full):
    """A ``load_overload(sig, target_context)`` for numba's function cache ``cache`` that
    loads without refreshing the target context, falling back to ``full`` (numba's own)
    whenever it cannot vouch for the result. See "Loading cached kernels" above."""

    def load_overload(sig, target_context):
        try:
            from numba.core.runtime import rtsys

            if not cache._enabled:
                return None
            rtsys.initialize(target_context)  # the runtime cached code calls (safe to repeat)
            data = cache._cache_file.load(cache._index_key(sig, target_context.codegen()))
            if data is None:
                return None  # not cached: numba compiles, and its compiler refreshes in full
            if not _linkable(data[0]):
                return full(sig, target_context)
            return cache._impl.rebuild(target_context, data)
        except Exception:  # noqa: BLE001 - another numba, another cache layout: numba's own load decides
            return full(sig, target_context)

    return load_overload


def install_light_loader(dispatcher) -> bool:
    """Make ``dispatcher``'s cache load lighter (:func:`light_loader`). Leaves it as it is, and
    returns False, when its cache does not have the parts the light load uses."""
    cache = getattr(dispatcher, "_cache", None)
    parts = ("load_overload", "_enabled", "_cache_file", "_index_key", "_impl")
    if cache is None or not all(hasattr(cache, p) for p in parts):
        return False
    cache.load_overload = light_loader(cache, cache.load_overload)
    return True


# --- one compile for many processes --------------------------------------------------------------

COMPILE_LOCK_WAIT = 300.0
"""Seconds a process waits for another's compile of the same function before compiling it
itself (a holder stopped, not dead: a dead one's lock is let go at once). A cold compile of
the largest kernel takes about a minute on a slow, busy core; a local cluster gives up on a
silent worker after 600 s (``cluster.STALL_SECONDS``)."""

WAIT_MESSAGE_AFTER = 2.0
"""Seconds of waiting for another process's compile after which a line on stderr says so."""

_compiling = threading.local()  # .depth: compiles under way in this thread (helpers inside a kernel's)


def _open_lock(path: Path):
    """``path`` opened for locking (created if it can be), or None."""
    for mode in ("a", "r"):  # "r": a lock file another user made, or a read-only folder
        try:
            return open(path, mode)  # noqa: SIM115 - the caller closes it, which releases the lock
        except OSError:
            continue
    return None


@contextlib.contextmanager
def compile_lock(path: Path, wait: float | None = None, on_wait=None):
    """Hold an exclusive lock on the file ``path`` against other processes, waiting up to
    ``wait`` seconds (default :data:`COMPILE_LOCK_WAIT`); yields whether it is held: not when
    the file cannot be opened or locked (no ``fcntl``, a file system without locks) or the wait
    runs out. ``on_wait()`` is called once if the wait passes :data:`WAIT_MESSAGE_AFTER`."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        held = None
    else:
        held = _open_lock(path)
    if held is None:
        yield False
        return
    try:
        start = time.monotonic()
        deadline = start + (COMPILE_LOCK_WAIT if wait is None else wait)
        locked, told = False, False
        while True:
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
                break
            except BlockingIOError:
                now = time.monotonic()
                if now >= deadline:
                    break
                if on_wait is not None and not told and now - start >= WAIT_MESSAGE_AFTER:
                    told = True
                    on_wait()
                time.sleep(0.05)
            except OSError:  # a file system without locks
                break
        yield locked
    finally:
        held.close()


def install_compile_lock(dispatcher) -> bool:
    """Make ``dispatcher``'s compiles called from Python take :func:`compile_lock` on
    ``<module>.<name>.lock`` in its cache folder (see "One compile for many processes" above).
    Leaves it as it is, and returns False, when it is not cached on disk."""
    cache = getattr(dispatcher, "_cache", None)
    if not getattr(cache, "_enabled", False) or not hasattr(dispatcher, "compile"):
        return False
    compile_ = dispatcher.compile
    fn = dispatcher.py_func
    path = kernel_cache_dir() / f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__qualname__}.lock"

    def locked_compile(sig):
        if getattr(_compiling, "depth", 0):  # a helper compiled inside a kernel's compile: no second lock
            return compile_(sig)
        # numba's compiler lock first, as numba takes it: the threads of this process then
        # take the two locks in one order
        with global_compiler_lock, compile_lock(path, on_wait=_say_waiting):
            _compiling.depth = 1
            try:
                return compile_(sig)
            finally:
                _compiling.depth = 0

    dispatcher.compile = locked_compile
    return True


def _say_waiting() -> None:
    if not _first_compile.silent:
        sys.stderr.write("waiting for another process compiling the simulation kernels…\n")
        sys.stderr.flush()


# --- the first-compile message ------------------------------------------------------------------

class _FirstCompile(event.Listener):
    """Says, once per process, that the kernels are being compiled, before numba starts."""

    def __init__(self):
        self.lock = threading.Lock()
        self.said = False
        self.silent = os.environ.get(QUIET_COMPILE) == "1"
        self.expected: tuple = ()

    def on_start(self, ev):
        dispatcher = ev.data.get("dispatcher")
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", "")
        if self.said or self.silent or not module.startswith("forecaster.engine."):
            return
        with self.lock:
            if self.said:
                return
            self.said = True
            waiting = [k for k in self.expected if not k.signatures] or [dispatcher]
            seconds = sum(COMPILE_SECONDS.get(k.py_func.__name__, 1) for k in waiting)
            sys.stderr.write(f"compiling the simulation kernels (first run only, about {seconds} s)…\n")
            sys.stderr.flush()

    def on_end(self, ev):
        pass


QUIET_COMPILE = "FORECASTER_QUIET_COMPILE"
"""The environment variable that, set to ``1``, silences the first-compile message (a local
cluster's worker processes get it from a quiet command)."""

_first_compile = _FirstCompile()
event.register("numba:compile", _first_compile)


def quiet_compiles(quiet: bool = True) -> None:
    """Silence (or, with ``quiet=False``, restore) the first-compile message in this process:
    a command's ``--quiet`` prints nothing but errors."""
    _first_compile.silent = quiet


def compiles_quiet() -> bool:
    """Whether the first-compile message is silenced in this process."""
    return _first_compile.silent


def expect_kernels(kernels) -> None:
    """Name the kernels a run is about to call, so that a first compile's message estimates
    the time of those still to load or compile."""
    _first_compile.expected = tuple(kernels)
