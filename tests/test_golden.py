"""Golden files: every example scenario's summary.json and a digest of every trial's numbers,
bit for bit, so that moving code (issue 12's redesign, or any refactor) cannot change a
number unnoticed.

Each case runs ``forecaster.simulate`` at a fixed trial count and seed and compares against
``tests/golden/<case>.json``: the summary (exact float equality, as JSON) and a SHA-256 of
each data variable's bytes. When a change is *meant* to move the numbers, rewrite the
files with ``FORECASTER_WRITE_GOLDEN=1 pytest tests/test_golden.py`` (the run then fails,
so a rewrite is never silent) and say why in the commit. One exception: what scipy computes
(customer lifetime value, :data:`SCIPY_COMPUTED`) is held to 1e-12 relative where its bits
differ, since scipy releases move its last bits.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

import forecaster as fc

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = {  # case -> (scenario, trials, seed)
    **{p.stem: (p, 3000, 11) for p in sorted((ROOT / "scenarios").glob("*.yaml"))},
    **{f"variants-{p.stem}": (p, 2000, 12) for p in sorted((ROOT / "scenarios" / "variants").glob("*.yaml"))},
    "extensions": (GOLDEN / "extensions.yaml", 3000, 13),
    "extensions-seed-of-file": (GOLDEN / "extensions.yaml", 1500, None),
}
VARIANT_BASES = {"channels-search-up-60": "channel-budgets.yaml"}
"""The example each variant changes, where it is not saas-quarter."""
R1 = ROOT.parent / "shared" / "bench" / "r1.yaml"  # the speed scenario, where the shared contract is checked out
if R1.exists():
    CASES["bench-r1"] = (R1, 2000, 3)


SCIPY_COMPUTED = ("clv",)
"""Data variables (and summary sections) computed through scipy's special functions and FFT
(customer lifetime value, :mod:`forecaster.results.clv`), whose last bits move between scipy
releases (1.17.1 moved shop-repeat's CLV quantiles in their 16th digit, December 2026): their
SHA-256 is compared first and, where it differs, a fingerprint of the values (:func:`_fingerprint`:
mean, sd, a position-weighted sum and quantiles) within 1e-12 relative; anything our code changes moves them far more."""
TOLERANCE = 1e-12


def _fingerprint(values: np.ndarray) -> list[float]:
    """Mean, sd and quantiles of the values, and a weighted sum that moves when values change
    places (trials or segments swapped)."""
    v = np.asarray(values, dtype=float).ravel()
    weights = np.linspace(1.0, 2.0, v.size)
    return [float(v.mean()), float(v.std()), float(v @ weights),
            *(float(q) for q in np.quantile(v, [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1]))]


def _close(a, b) -> bool:
    """Nested JSON values equal, numbers within :data:`TOLERANCE` relative."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=TOLERANCE)
    return a == b


def _digest(case: str) -> dict:
    path, trials, seed = CASES[case]
    if case.startswith("variants-"):  # a variant: changes over its base, saas-quarter unless said (what `compare` runs)
        from forecaster.scenario.variants import load_variant
        scenario = load_variant(path, ROOT / "scenarios" / VARIANT_BASES.get(path.stem, "saas-quarter.yaml"))
    else:
        scenario = fc.load_scenario(path)
    ds = fc.simulate(scenario, trials=trials, seed=seed)
    arrays = {name: hashlib.sha256(np.ascontiguousarray(ds[name].values).tobytes()).hexdigest()
              + f" {ds[name].dtype} {list(ds[name].shape)}" for name in sorted(ds.data_vars)}
    fingerprints = {name: _fingerprint(ds[name].values) for name in sorted(ds.data_vars) if name in SCIPY_COMPUTED}
    # through JSON, as summary.json is written: the comparison is the file's
    return {"arrays": arrays, "summary": json.loads(json.dumps(fc.summarize(ds, scenario), sort_keys=True)),
            **({"fingerprints": fingerprints} if fingerprints else {})}


def test_every_example_scenario_has_a_case():
    assert {p.stem for p in (ROOT / "scenarios").glob("*.yaml")} <= set(CASES)
    assert len(CASES) >= 10


@pytest.mark.parametrize("case", sorted(CASES))
def test_numbers_are_bit_identical_to_the_golden_file(case):
    got = _digest(case)
    golden = GOLDEN / f"{case}.json"
    if os.environ.get("FORECASTER_WRITE_GOLDEN") == "1":
        golden.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pytest.fail(f"rewrote {golden.name}: rerun without FORECASTER_WRITE_GOLDEN")
    assert golden.exists(), f"no golden file {golden.name}: write it with FORECASTER_WRITE_GOLDEN=1"
    want = json.loads(golden.read_text())
    exact = [name for name in want["arrays"] if name not in SCIPY_COMPUTED]
    assert {k: got["arrays"].get(k) for k in exact} == {k: want["arrays"][k] for k in exact}
    assert got["arrays"].keys() == want["arrays"].keys()
    for name in SCIPY_COMPUTED:
        if name in want["arrays"] and got["arrays"][name] != want["arrays"][name]:
            assert "fingerprints" in want, f"{golden.name}: {name} differs and the file has no fingerprints to compare"
            assert got["arrays"][name].split(" ", 1)[1] == want["arrays"][name].split(" ", 1)[1]  # dtype, shape
            assert _close(got["fingerprints"][name], want["fingerprints"][name]), name
    assert {k: v for k, v in got["summary"].items() if k not in SCIPY_COMPUTED} == \
        {k: v for k, v in want["summary"].items() if k not in SCIPY_COMPUTED}
    for key in SCIPY_COMPUTED:
        assert (key in got["summary"]) == (key in want["summary"])
        if key in want["summary"]:
            assert _close(got["summary"][key], want["summary"][key]), key


def test_the_command_line_writes_the_golden_summary(tmp_path):
    """`forecaster run` (chunked, streamed to forecast.nc) writes the same summary.json as the
    in-memory API, to the bit."""
    import subprocess
    import sys

    path, trials, seed = CASES["saas-quarter"]
    subprocess.run([sys.executable, "-m", "forecaster", "run", str(path), "-o", str(tmp_path), "--trials", str(trials),
                    "--seed", str(seed)], check=True, capture_output=True)
    want = json.loads((GOLDEN / "saas-quarter.json").read_text())["summary"]
    assert json.loads((tmp_path / "summary.json").read_text()) == want
