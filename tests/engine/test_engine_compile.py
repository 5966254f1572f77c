"""The kernels compile once for every scenario, in a cache folder that follows their source,
and say so while they compile.

* one numba type signature per kernel, whatever the number of stages, segments and reps,
  the distribution families, and whether the pipeline and the extensions are there;
* the cache folder is named by a hash of every module the kernels compile in, so editing
  any of them (not only ``kernels.py``) cannot load stale machine code;
* a cold cache prints one line on stderr before compiling; a warm one prints nothing.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import KERNEL_FEATURE_FILES, KERNEL_FEATURES

import forecaster as fc
from forecaster.engine import _numba, events, interface, kernels, moves, seeding
from forecaster.engine.plan import build_plan

ENGINE = Path(kernels.__file__).resolve().parent
JIT_OFF = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")

DAYS = [{"dist": "exponential", "mean": 4}, {"dist": "gamma", "mean": 9, "cv": 0.6},
        {"dist": "lognormal", "median": 6, "sigma": 0.5}, {"dist": "weibull", "shape": 1.4, "scale": 8},
        {"dist": "uniform", "low": 1, "high": 9}, {"dist": "triangular", "low": 1, "mode": 3, "high": 12},
        {"dist": "pert", "low": 1, "mode": 4, "high": 10}, {"dist": "normal", "mean": 6, "sd": 2}, 3]
CONVERT = [0.6, {"dist": "beta", "mean": 0.7, "concentration": 50}, {"dist": "pert", "low": 0.5, "mode": 0.7,
                                                                      "high": 0.9}]
VALUES = [{"dist": "lognormal", "median": 5000, "sigma": 0.6}, 2500,
          {"dist": "empirical", "values": [1000, 2000, 4000, 8000]}]


def _scenario_data(tmp_path: Path, n_stages: int, n_segments: int, n_reps: int, *, pipeline=False, closing=False,
                   capacity=False, shocks=False, drift=False) -> dict:
    """The file's content as a dict (a pipeline file written into tmp_path)."""
    stages = [f"s{i}" for i in range(n_stages)]
    segments = {}
    for g in range(n_segments):
        leads = ({"per_week": 60 + 10 * g, "dispersion": 0.05 * g} if g % 2 == 0 else
                 {"budget_per_month": 20000, "cost_per_lead": {"dist": "lognormal", "median": 40, "sigma": 0.1},
                  "growth_per_month": 0.02})
        segments[f"g{g}"] = {
            "leads": leads,
            "funnel": {s: {"convert": CONVERT[(i + g) % len(CONVERT)], "days": DAYS[(i + 2 * g) % len(DAYS)]}
                       for i, s in enumerate(stages)},
            "deal_value": VALUES[g % len(VALUES)]}
    data = {"name": f"compile-{n_stages}", "start": date(2027, 1, 1), "end": date(2027, 3, 31), "trials": 20,
            "seed": 5, "stages": stages, "segments": segments}
    if n_reps:
        data["team"] = {"reps": [{"name": f"r{r}", "segments": [f"g{r % n_segments}"], "quota": 50000}
                                 for r in range(n_reps)]}
    if pipeline:
        rows = ["deal_id,segment,stage,entered_stage,amount,owner"]
        for i in range(6):
            owner = f"r{0}" if n_reps and i % 2 else ""
            rows.append(f"D{i},g0,{stages[i % n_stages]},2026-12-{10 + i},{'' if i % 3 else 9000},{owner}")
        (tmp_path / f"pipeline-{n_stages}.csv").write_text("\n".join(rows) + "\n")
        data["pipeline"] = {"file": f"pipeline-{n_stages}.csv"}
    if closing:
        data["closing"] = {"slip": {1: 0.2, 3: 0.3}, "window_days": 10}
    if capacity:
        data["capacity"] = {"won_per_month": 5, "cv": 0.1 if n_stages % 2 else 0}
    if shocks:
        data["shocks"] = {"leads": 0.1, "convert": {stages[-1]: 0.2}}
        if drift:
            data["shocks"]["drift"] = {"leads": 0.03, "convert": {stages[0]: 0.05}}
    return data


def _scenario(tmp_path: Path, *args, **ext):
    return fc.scenario_from_dict(_scenario_data(tmp_path, *args, **ext), base_dir=tmp_path)


SHAPES = [  # stages, segments, reps, extensions
    (3, 1, 0, {}),
    (6, 2, 3, {"pipeline": True, "closing": True}),
    (9, 3, 4, {"pipeline": True, "closing": True, "capacity": True, "shocks": True, "drift": True}),
    (3, 2, 2, {"capacity": True, "shocks": True}),
    (6, 1, 1, {"shocks": True, "drift": True, "pipeline": True}),
    (9, 4, 0, {}),
]
_COMPILE = """
import json, sys
from pathlib import Path
import forecaster as fc
from forecaster.engine import events, kernels, moves
for path in sys.argv[1:]:
    assert fc.simulate(fc.load_scenario(Path(path)))["revenue"].shape[0] == 20
out = {"jitted": {}}
for m in (kernels, moves, events):
    for name, d in vars(m).items():
        if hasattr(d, "signatures") and d.py_func.__module__ == m.__name__:
            out["jitted"][name] = {"signatures": len(d.signatures), "misses": sum(d.stats.cache_misses.values()),
                                   "hits": sum(d.stats.cache_hits.values())}
print(json.dumps(out))
"""


EVERY_KERNEL = {"draws", "apply_shocks", "new_leads_trials", "pipeline_trials", "drift_walks",
                "simulate_new_leads_moves", "simulate_pipeline_moves", "simulate_lost_leads_moves",
                "simulate_events", "apply_capacity", "apply_capacity_deals", "simulate_customers",
                "simulate_lost_stage_values", "simulate_lost_stage_values_moves", "simulate_lost_leads",
                "simulate_installed"}
"""The kernels blocks.kernels_of may call (kernels.capacity_pipeline_share is left out: by_source
with a capacity and no customers is refused by the format today, so no scenario calls it)."""


@pytest.fixture(scope="module")
def cold_then_warm(tmp_path_factory):
    """Every funnel shape and every feature's kernels run in a fresh process on a cold cache
    of its own (NUMBA_CACHE_DIR in a private folder: no other test, worker or earlier run
    can have compiled anything there), then again in another process on the cache it left:
    (cold, warm), each (stderr, what _COMPILE printed)."""
    folder = tmp_path_factory.mktemp("compile")
    paths = []
    for i, (n_stages, n_segments, n_reps, ext) in enumerate(SHAPES):
        path = folder / f"shape-{i}.yaml"
        path.write_text(yaml.safe_dump(_scenario_data(folder, n_stages, n_segments, n_reps, **ext)))
        paths.append(path)
    for name, text in {**KERNEL_FEATURE_FILES, **KERNEL_FEATURES}.items():  # the kernels the shapes do not call
        (folder / name).write_text(text)
    paths += [folder / name for name in KERNEL_FEATURES]
    env = {**os.environ, "NUMBA_CACHE_DIR": str(folder / "cache")}
    runs = []
    for _ in ("cold", "warm"):
        proc = subprocess.run([sys.executable, "-c", _COMPILE, *map(str, paths)], env=env, capture_output=True,
                              text=True, timeout=1800)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append((proc.stderr, json.loads(proc.stdout.strip().splitlines()[-1])))
    return runs


@pytest.mark.skipif(JIT_OFF, reason="numba signatures exist only with the JIT")
def test_each_kernel_compiles_once_for_every_funnel_shape_and_feature(cold_then_warm):
    """On a cold cache every kernel and every jitted helper compiles (at most) once, whatever
    the stages, segments, reps, distribution families and features: a helper called with a
    Python int from one kernel and an int64 from another would compile twice."""
    (_, cold), _ = cold_then_warm
    for name in sorted(EVERY_KERNEL):
        jitted = cold["jitted"][name]
        assert jitted["signatures"] == 1, (name, jitted)
        assert jitted["misses"] == 1 and jitted["hits"] == 0, (name, jitted)  # compiled here, from nothing
    helpers = {n: j for n, j in cold["jitted"].items() if n not in EVERY_KERNEL}
    assert any(j["signatures"] for j in helpers.values())  # compiled with the kernels: the check has teeth
    for name, jitted in helpers.items():
        assert jitted["signatures"] <= 1, (name, jitted)


@pytest.mark.skipif(JIT_OFF, reason="nothing compiles without the JIT")
def test_a_cold_cache_says_it_compiles_and_a_warm_one_is_silent(cold_then_warm):
    (cold_err, _), (warm_err, warm) = cold_then_warm
    lines = [line for line in cold_err.splitlines() if "compiling the simulation kernels" in line]
    assert len(lines) == 1, cold_err
    assert lines[0].startswith("compiling the simulation kernels (first run only, about ")
    assert "compiling" not in warm_err, warm_err
    for name in EVERY_KERNEL:  # every kernel loaded from the cache, none compiled again
        assert warm["jitted"][name]["misses"] == 0 and warm["jitted"][name]["signatures"] == 1, (name, warm)


def test_the_records_have_the_same_types_for_every_scenario(tmp_path):
    """What numba would see: the type of every field of every record a kernel takes."""
    from numba import typeof

    seen: dict = {}
    for n_stages, n_segments, n_reps, ext in [(3, 1, 0, {}), (9, 3, 4, dict(pipeline=True, closing=True,
                                                                                capacity=True, shocks=True))]:
        plan = build_plan(_scenario(tmp_path, n_stages, n_segments, n_reps, **ext))
        keys = seeding.stream_keys(plan, 1)
        records = {"funnel": plan.funnel, "pipeline": plan.pipeline, "closing": plan.closing,
                   "shocks": plan.shocks, "capacity": plan.capacity,
                   "outputs": plan.outputs(*plan.kernel_buffers(4)[:3]),
                   "streams": keys.new_leads[0].streams(*seeding.thread_generators())}
        for name, record in records.items():
            types = {f: str(typeof(v)) for f, v in record._asdict().items()}
            assert seen.setdefault(name, types) == types, name


def test_a_kernel_refuses_streams_it_does_not_draw_from(tmp_path):
    """A mismatch between the streams given and those a kernel draws raises (JIT on or off)."""
    plan = build_plan(_scenario(tmp_path, 3, 1, 0))
    keys = seeding.stream_keys(plan, 1)
    gens = seeding.thread_generators()
    theta = np.zeros((2, 1, interface.theta_size(3)))
    with pytest.raises(ValueError, match="random streams"):  # the new leads' streams, not the parameters'
        kernels.draw_parameters(keys.new_leads[0].streams(*gens), 0, plan.funnel, 0, theta)
    short = seeding.key_set(1, interface.STREAMS["simulate_new_leads"],
                            {"segment": "g0", "lead_stage": ["s0", "s1"]})  # a stage short
    with pytest.raises(ValueError, match="random streams"):
        kernels.simulate_new_leads(short.streams(*gens), 0, plan.funnel, 0, plan.closing, theta,
                                   plan.month_factors(2), plan.outputs(*plan.kernel_buffers(2)[:3]), False,
                                   plan.stage_values, np.zeros((2, len(plan.periods), 1)),
                                   keys.won_stage_times[0].streams(*gens), plan.counts_of(None))


def test_the_stream_table_names_the_streams_of_before():
    """The table's names are the streams' identities: the keys of a run are those it always had."""
    sc = fc.load_scenario(Path(__file__).resolve().parents[2] / "scenarios" / "saas-quarter.yaml")
    plan = build_plan(sc)
    keys = seeding.stream_keys(plan, 3)
    g = plan.segment_names[0]
    assert keys.new_leads[0].names[:6] == tuple(f"segment/{g}/{s}" for s in (
        "arrival-count", "arrival-mixing", "arrival-day", "deal-value", "rep", "closing"))
    assert keys.parameters[0].names == tuple(f"segment/{g}/{q}" for q in plan.quantity_names)
    assert keys.pipeline.names == ("pipeline/convert", "pipeline/days", "pipeline/deal-value", "pipeline/rep",
                                   "pipeline/closing", "pipeline/stage-value")  # the last: v2 F11, drawn only with values
    assert keys.capacity.names == ("capacity",)
    assert set(interface.STREAMS) == {"draw_parameters", "apply_shocks", "simulate_new_leads", "simulate_pipeline",
                                      "apply_capacity", "simulate_customers", "simulate_lost_stage_values",
                                      "simulate_lost_leads", "entries_of_won", "pipeline_loss",
                                      "simulate_new_leads_moves", "simulate_pipeline_moves", "simulate_lost_leads_moves",
                                      "simulate_unwon_leads",  # v2 E.3
                                      "simulate_events",  # v2 F2
                                      "drift_walks", "simulate_lost_stage_values_moves"}  # v2 B.4, F11
    # after the sale (v2 A.4): a set of streams per source of customers
    assert keys.customers_new_leads[0].names == tuple(f"segment/{g}/{s}" for s in (
        "customer", "renewal", "repeat", "repeat-value", "cancel",
        "clawback-renewal"))  # v2 D.2: renewal decisions after end, drawn only with a clawback
    assert keys.customers_pipeline.names[0] == "pipeline/customer" and keys.installed.names[0] == "installed/customer"
    assert all(hasattr(kernels, name) or hasattr(moves, name) or hasattr(events, name) for name in interface.STREAMS)
    with pytest.raises(ValueError, match="two rows"):
        seeding.key_set(1, (("a", interface.DAYS), ("b", interface.VALUE), ("c", interface.DAYS)), {})


def test_the_kernels_compile_in_only_the_modules_the_cache_follows():
    """Every module of the engine with jitted code, and every forecaster module those import
    from (whose functions or constants numba compiles in), is in KERNEL_MODULES, whose
    source names the cache folder."""
    followed = set(_numba.KERNEL_MODULES)
    jitted = [p.stem for p in ENGINE.glob("*.py") if "@jit" in p.read_text()]
    assert "kernels" in jitted
    todo, seen = list(jitted), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        assert name in followed, name
        if name == "_numba":  # the decorator itself: its own imports are not compiled in
            continue
        for node in ast.walk(ast.parse((ENGINE / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("forecaster"):
                assert node.module.startswith("forecaster.engine."), (name, node.module)
                todo.append(node.module.rsplit(".", 1)[1])
    assert {"_streams", "interface", "kernels", "_numba"} <= seen


_FOLDER = """
import sys
from forecaster.engine import _numba
sources = _numba.kernel_sources()
sources[sys.argv[1]] = sources[sys.argv[1]] + sys.argv[2].encode()
print(_numba.cache_folder(_numba.source_hash(sources)))
"""


def _folder(module: str, extra: str, env: dict) -> str:
    return subprocess.run([sys.executable, "-c", _FOLDER, module, extra], env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_the_cache_folder_follows_every_module_the_kernels_compile_in(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    same = _folder("kernels", "", env)
    assert same == _folder("kernels", "", env)  # the same sources, the same folder
    assert Path(same).parent == tmp_path / "xdg" / "forecaster"
    for module in _numba.KERNEL_MODULES:  # an edit anywhere the kernels read: another folder
        assert _folder(module, "\n# edited\n", env) != same, module
    # NUMBA_CACHE_DIR is respected: the folder goes inside it
    assert Path(_folder("kernels", "", {**env, "NUMBA_CACHE_DIR": str(tmp_path / "nb")})).parent == tmp_path / "nb"
    # an unwritable user cache falls back to the temporary folder
    (tmp_path / "ro").write_text("a file, not a folder")
    fallback = _folder("kernels", "", {**env, "XDG_CACHE_HOME": str(tmp_path / "ro")})
    assert not fallback.startswith(str(tmp_path / "ro")) and Path(fallback).name.startswith("numba-")


def test_a_new_cache_folder_removes_those_left_unwritten_for_weeks(tmp_path):
    root = tmp_path / "forecaster"
    current, recent, old = root / "numba-aaaa", root / "numba-bbbb", root / "numba-cccc"
    for folder in (current, recent, old):
        (folder / "engine_x").mkdir(parents=True)
        (folder / "engine_x" / "kernels.nbi").write_bytes(b"index")
    (root / "other").mkdir()
    weeks_ago = 1_000_000_000.0
    for path in (old, old / "engine_x", old / "engine_x" / "kernels.nbi", root / "other"):
        os.utime(path, (weeks_ago, weeks_ago))
    removed = _numba.prune(current, now=weeks_ago + (_numba.STALE_DAYS + 1) * 86400)
    assert removed == [old]
    assert current.exists() and recent.exists() and (root / "other").exists() and not old.exists()
