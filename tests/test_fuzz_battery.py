"""A handful of cases of the fuzz battery (benchmarks/fuzz.py) under pytest, and its oracle
checked against planted failures, so that the battery itself cannot rot.

The whole battery (a few thousand cases, a few minutes) runs from CI as
``python benchmarks/fuzz.py``; these run in process, in a few seconds.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load():
    spec = importlib.util.spec_from_file_location("forecaster_fuzz_battery", ROOT / "benchmarks" / "fuzz.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fuzz = _load()

# cases that hold today, one per class of hostile input
CASES = [
    "yaml/alias-billion-laughs", "yaml/char-nul-plain", "yaml/tag-python-apply", "yaml/crlf",
    "schema/segments.direct.funnel.lead.convert=1.0000001#5", "pipeline/binary", "pipeline/file-secret",
    "names/segment-esc/run", "names/stage-bidi/run", "exact/weibull-0.005", "exact/beta-coin",
    "batch/recursive-alias-among-good", "history/o-is-history", "out/run-keeps-other-files",
    "report/summary-nan", "options/sensitivity-step-nan",
]


@pytest.fixture(scope="module")
def battery():
    by_id = {c.id: c for c in fuzz.build_cases()}
    return by_id


@pytest.fixture
def runner(tmp_path):
    return fuzz.Runner(tmp_path)


@pytest.mark.parametrize("case_id", CASES)
def test_case_holds(battery, runner, case_id):
    res = runner.execute(battery[case_id])
    assert not res["problems"], (res["problems"], res["stderr"][-800:], res["stdout"][-400:])


def test_the_battery_is_large_deterministic_and_unique(battery, monkeypatch):
    # built again with PyYAML's Python emitter: libyaml's, which the battery uses where it is
    # installed, must write every case's files byte for byte as Python's does (fuzz.dump)
    monkeypatch.setattr(fuzz, "_C_DUMPER", None)
    again = fuzz.build_cases()
    assert [c.id for c in again] == list(battery)
    differ = [c.id for c in again if (c.files, c.argv) != (battery[c.id].files, battery[c.id].argv)]
    assert not differ, differ[:5]
    assert len(battery) >= 250
    assert {c.family for c in battery.values()} == set(fuzz.FAMILIES)


def test_every_leaf_of_the_schema_has_cases(battery):
    uncovered = [c.desc for c in battery.values() if c.id.startswith("schema/uncovered-")]
    assert not uncovered, uncovered
    patterns = set(fuzz.schema_patterns(fuzz.json_schema()))
    tested = {c.id.split("=")[0].split("~")[0] for c in battery.values()
              if c.family == "schema" and not c.id.startswith("schema/map-")}
    assert len(tested) >= len(patterns) > 30


@pytest.mark.parametrize("plant, expected", [
    (dict(writes=()), "changed"),                                # wrote where it may not
    (dict(expect=frozenset({2})), "exit status 0"),              # accepted what must be refused
])
def test_the_oracle_catches_planted_failures(runner, plant, expected):
    case = fuzz.Case("planted/ok-run", fuzz.RUN("s.yaml"), {"s.yaml": fuzz.MINIMAL}, names=("s.yaml",),
                     writes=("out",))
    for k, v in plant.items():
        setattr(case, k, v)
    res = runner.execute(case)
    assert any(expected in p for p in res["problems"]), res["problems"]


def test_the_oracle_wants_the_file_named(runner):
    case = fuzz.Case("planted/unnamed", fuzz.RUN("s.yaml"), {"s.yaml": "name: [\n"}, names=("elsewhere.yaml",))
    res = runner.execute(case)
    assert res["code"] == 2 and any("names none of" in p for p in res["problems"]), res


def test_the_json_check_refuses_nan_null_and_negative_revenue(tmp_path):
    bad = tmp_path / "summary.json"
    bad.write_text('{"metrics": {"revenue": {"total": {"mean": -1, "std": null, "p5": 1, "p10": 0, "p50": NaN}}}}')
    problems = fuzz.check_json_file(bad, "summary.json")
    assert problems and "NaN" in problems[0]
    bad.write_text('{"metrics": {"revenue": {"total": {"mean": -1, "std": null, "p5": 1, "p10": 0, "p50": 2}}}}')
    text = " ".join(fuzz.check_json_file(bad, "summary.json"))
    assert "negative" in text and "not a number" in text and "out of order" in text
