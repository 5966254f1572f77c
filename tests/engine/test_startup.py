"""A warm run's start-up: what it imports and how the cached kernels load.

No timings here (the benchmarks time it: benchmarks/phases.py); these check the means: the
modules a run does not need stay unimported, the kernels load from numba's cache without
numba's full target-context refresh, and every way the light load can fail falls back to
numba's own load with the same results.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from forecaster.engine import _numba

ROOT = Path(__file__).resolve().parents[2]
EXTENSIONS = ROOT / "tests" / "golden" / "extensions.yaml"  # every kernel: shocks, pipeline, capacity
MINIMAL = ROOT / "scenarios" / "minimal.yaml"
REFRESH_ONLY = ("numba.np.polynomial.polynomial_functions", "numba.typed.typeddict", "numba.np.npdatetime",
                "numba.misc.cffiimpl")
"""Modules numba imports only to refresh its target context (not to load cached code)."""
JIT_OFF = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")

_RUN = """
import json, sys
from forecaster.cli import main
try:
    main(["run", sys.argv[1], "--trials", "300", "--seed", "5", "--out", sys.argv[2], "--quiet"],
         prog_name="forecaster")
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps(sorted(sys.modules)))
"""


def _run(out: Path, light: bool, scenario: Path = EXTENSIONS) -> tuple[set[str], bytes]:
    env = {**os.environ, "FORECASTER_NUMBA_LIGHT_LOAD": "1" if light else "0"}
    done = subprocess.run([sys.executable, "-c", _RUN, str(scenario), str(out)], env=env, check=True,
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    return set(json.loads(done.stdout.splitlines()[-1])), (out / "summary.json").read_bytes()


@pytest.mark.skipif(JIT_OFF, reason="nothing is cached without the JIT")
def test_a_warm_run_loads_the_kernels_without_numbas_registries_and_gets_the_same_numbers(tmp_path):
    _run(tmp_path / "warm-up", light=True)  # compiles when the cache is cold; the next runs load it
    light_modules, light = _run(tmp_path / "light", light=True)
    full_modules, full = _run(tmp_path / "full", light=False)
    assert light == full
    for name in REFRESH_ONLY:
        assert name in full_modules and name not in light_modules, name
    assert "xarray" not in light_modules  # a run writes forecast.nc with h5netcdf alone
    # without a pipeline (np.searchsorted's code lives in numba.np.arraymath), neither numpy's
    # linear algebra in numba nor the scipy.linalg it imports at import time is loaded
    modules, _ = _run(tmp_path / "minimal", light=True, scenario=MINIMAL)
    for name in ("numba.np.arraymath", "numba.np.linalg", "scipy.linalg", "xarray", *REFRESH_ONLY):
        assert name not in modules, name


def test_undefined_symbols_reads_an_elf_object_and_refuses_anything_else():
    import llvmlite.binding as ll

    assert _numba.undefined_symbols(b"") is None
    assert _numba.undefined_symbols(b"\xcf\xfa\xed\xfe" + bytes(200)) is None  # Mach-O
    assert _numba.undefined_symbols(b"\x7fELF\x01\x01" + bytes(200)) is None  # 32-bit
    ll.initialize_native_target()
    ll.initialize_native_asmprinter()
    module = ll.parse_assembly("""
        declare double @forecaster_test_elsewhere(double)
        define double @forecaster_test_here(double %x) {
          %y = call double @forecaster_test_elsewhere(double %x)
          ret double %y
        }
    """)
    target = ll.Target.from_default_triple()
    if not target.triple.split("-")[2:3] == ["linux"] and "linux" not in target.triple:
        pytest.skip("the native object format is not ELF here")
    obj = target.create_target_machine().emit_object(module)
    assert _numba.undefined_symbols(obj) == ["forecaster_test_elsewhere"]
    assert not _numba._linkable(("lib", "object", (obj, b"")))  # unknown to the linker: numba's own load
    ll.add_symbol("forecaster_test_elsewhere", ll.address_of_symbol("memset") or 1)
    assert _numba._linkable(("lib", "object", (obj, b"")))
    assert not _numba._linkable(("lib", "bitcode", b""))


class _Cache:
    """A stand-in for numba's function cache, recording which load ran."""

    def __init__(self, payload=None, fail=False):
        self._enabled = True
        self._impl = self
        self._cache_file = self
        self.payload, self.fail, self.calls = payload, fail, []

    def _index_key(self, sig, codegen):
        return sig

    def load(self, key):
        if self.fail:
            raise RuntimeError("a cache of another numba")
        return self.payload

    def rebuild(self, target_context, data):
        self.calls.append("light")
        return "rebuilt"

    def load_overload(self, sig, target_context):
        self.calls.append("full")
        return "loaded in full"


def _context():
    from numba.core.registry import cpu_target
    return cpu_target.target_context


@pytest.mark.parametrize("cache, expected, calls", [
    (_Cache(payload=None), None, []),  # not cached: numba compiles (and refreshes in full)
    (_Cache(fail=True), "loaded in full", ["full"]),  # any error: numba's own load
    (_Cache(payload=(("lib", "bitcode", b""),)), "loaded in full", ["full"]),  # not an object file
    (_Cache(payload=(("lib", "object", (b"not an ELF file", b"")),)), "loaded in full", ["full"]),
    (_Cache(payload=("a payload of another shape",)), "loaded in full", ["full"]),
])
def test_the_light_load_falls_back_to_numbas_own(cache, expected, calls):
    load = _numba.light_loader(cache, cache.load_overload)
    assert load(("sig",), _context()) == expected
    assert cache.calls == calls


def test_the_light_load_rebuilds_what_links(monkeypatch):
    cache = _Cache(payload=(("lib", "object", (b"object code", b"")),))
    monkeypatch.setattr(_numba, "_linkable", lambda libdata: True)
    assert _numba.light_loader(cache, cache.load_overload)(("sig",), _context()) == "rebuilt"
    assert cache.calls == ["light"]
    cache._enabled = False  # caching off: nothing loads
    assert _numba.light_loader(cache, cache.load_overload)(("sig",), _context()) is None


def test_a_cache_without_the_parts_the_light_load_uses_is_left_alone():
    class Dispatcher:
        _cache = object()

    assert _numba.install_light_loader(Dispatcher()) is False
    assert _numba.install_light_loader(object()) is False
    dispatcher = Dispatcher()
    dispatcher._cache = _Cache()
    assert _numba.install_light_loader(dispatcher) is True
    assert dispatcher._cache.load_overload.__name__ == "load_overload"
    assert dispatcher._cache.load_overload(("sig",), _context()) is None


@pytest.mark.skipif(JIT_OFF, reason="no dispatchers without the JIT")
def test_the_kernels_load_lighter():
    from forecaster.engine import kernels

    for name in ("draws", "new_leads_trials", "apply_shocks", "pipeline_trials", "apply_capacity"):
        load = getattr(kernels, name)._cache.load_overload
        assert getattr(load, "__module__", "") == "forecaster.engine._numba", name


_PREPARE = """
import json, sys
from pathlib import Path
import forecaster as fc
from forecaster.engine import blocks, seeding
from forecaster.engine.plan import build_plan
plan = build_plan(fc.load_scenario(Path(sys.argv[1])))
blocks.prepare(plan, seeding.stream_keys(plan, 1))
print(json.dumps({k.py_func.__name__: len(k.signatures) for k in blocks.kernels_of(plan)}))
"""


@pytest.mark.skipif(JIT_OFF, reason="no dispatchers without the JIT")
def test_prepare_loads_every_kernel_a_block_calls():
    """blocks.prepare runs a block of 0 trials so that the kernels are loaded (or compiled)
    before the trials' threads start: a kernel called only when a block has trials (a loop
    around it that a block of none never enters) would load inside the first block, with
    the other threads waiting for numba's compiler lock. A fresh process (the kernels
    loaded by nothing else), on the scenario with a pipeline, shocks and capacity."""
    done = subprocess.run([sys.executable, "-c", _PREPARE, str(EXTENSIONS)], check=True, capture_output=True,
                          text=True, timeout=900, cwd=ROOT)
    loaded = json.loads(done.stdout.splitlines()[-1])
    assert {"draws", "new_leads_trials", "pipeline_trials", "apply_capacity"} <= set(loaded), loaded
    assert all(n == 1 for n in loaded.values()), loaded
