"""Where a ``forecaster run`` process spends its time, phase by phase (used by run.py).

Run it in a fresh NUMBA_CACHE_DIR to see a cold start, or as is for a warm one.
"""
import sys
import tempfile
import time

t0 = time.perf_counter()
import numpy  # noqa: E402,F401

t1 = time.perf_counter()
import numba  # noqa: E402,F401

t2 = time.perf_counter()
from forecaster.cli import run  # noqa: E402,F401
from forecaster.engine import kernels  # noqa: E402,F401 (timed: the import compiles nothing but loads numba)
from forecaster.results.outputs import run_to_folder  # noqa: E402
from forecaster.scenario.loading import load_scenario  # noqa: E402

t3 = time.perf_counter()
sc = load_scenario(sys.argv[1])
small = sc.with_run(trials=10)
with tempfile.TemporaryDirectory() as out:
    t4 = time.perf_counter()
    run_to_folder(small, out, threads=1)  # loads or compiles the kernels
    t5 = time.perf_counter()
    run_to_folder(sc, out)
    t6 = time.perf_counter()
print(f"import numpy {t1 - t0:.2f} s\nimport numba {t2 - t1:.2f} s\nimport forecaster {t3 - t2:.2f} s\n"
      f"load scenario {t4 - t3:.2f} s\nkernels (cache load or compile) {t5 - t4:.2f} s\n"
      f"{sc.trials:,} trials, NetCDF and summary {t6 - t5:.2f} s")
