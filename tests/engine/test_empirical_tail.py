"""The pipeline kernel without np.searchsorted: an empirical distribution's tail
(draw_above) finds the values above an age by a hand-written binary search, the same index
as ``np.searchsorted(side="right")`` (so the same draws) at values that tie with the age,
between them and at either end; and a run with a pipeline no longer imports
numba.np.arraymath."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from forecaster.engine import kernels

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("a", [-1.0, 0.0, 1.0, 3.0, 3.5, 7.0, 10.0, 11.0, 11.999])
def test_empirical_tail_draws_as_searchsorted_right_would(a):
    values = np.array([1.0, 3.0, 3.0, 3.0, 7.0, 10.0, 10.0, 12.0])
    pool = np.concatenate([np.array([99.0, -5.0]), values, np.array([0.5])])  # a run inside a larger pool
    par = np.array([2.0, float(values.size), 0.0, 0.0])
    sf = 0.1  # below 0.25: the family's own tail, not rejection
    n = values.size
    first = int(np.searchsorted(values, a, side="right"))
    assert first < n  # sf > 0: some value lies above a
    out = np.empty(500)
    kernels.draw_above_many(np.random.default_rng(7), kernels.EMPIRICAL, par, pool, a, sf, out)
    u = np.random.default_rng(7).random(out.size)
    want = values[np.minimum(first + (u * (n - first)).astype(np.int64), n - 1)]
    assert np.array_equal(out, want)
    assert np.all(out > a)


_RUN = """
import json, sys
from forecaster.cli import main
try:
    main(["run", sys.argv[1], "--trials", "50", "--out", sys.argv[2], "--quiet"], prog_name="forecaster")
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"), reason="nothing is cached")
def test_a_run_with_a_pipeline_does_not_load_numbas_array_functions(tmp_path):
    """simulate_pipeline's cached code no longer refers to numba.np.arraymath (np.searchsorted
    lived there), whose import also loads numba's linear algebra."""
    scenario = ROOT / "scenarios" / "saas-quarter.yaml"
    for out in ("warm-up", "run"):  # the first run may compile; the second loads the cache
        done = subprocess.run([sys.executable, "-c", _RUN, str(scenario), str(tmp_path / out)], check=True,
                              capture_output=True, text=True, timeout=900, cwd=ROOT)
    modules = set(json.loads(done.stdout.splitlines()[-1]))
    assert "forecaster.engine.kernels" in modules
    assert "numba.np.arraymath" not in modules
    assert "numba.np.linalg" not in modules
