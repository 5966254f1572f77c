"""Runs on a real Dask distributed cluster (two worker processes on loopback) give the same
numbers, bit for bit, as a run on one machine."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SCENARIOS
from distributed import Client, LocalCluster

import forecaster as fc
from forecaster.cli import main
from forecaster.engine.cluster import DaskRunner
from forecaster.engine.plan import build_plan
from forecaster.engine.simulation import run_trials
from forecaster.results.layout import Layout, MemorySink


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


def test_cluster_results_are_bit_identical(client):
    assert len(client.scheduler_info()["workers"]) == 2
    sc = fc.load_scenario(SCENARIOS / "saas-quarter.yaml").with_run(trials=2600, seed=12)
    local = fc.simulate(sc, threads=2)
    plan = build_plan(sc)
    sink = MemorySink(Layout.of(sc, plan))
    seen = []
    run_trials(plan, sc, sink, chunk_trials=2000, runner=DaskRunner(client, blocks_per_task=1), progress=seen.append)
    remote = sink.to_dataset()
    assert sum(seen) == 2600 and len(seen) == 3  # three one-block tasks (1000, 1000, 600), in two chunks
    for name in local.data_vars:
        assert np.array_equal(local[name].values, remote[name].values), name
    via_api = fc.simulate(sc, client=client)
    assert np.array_equal(via_api["commission"].values, local["commission"].values)


def test_cli_on_a_scheduler_matches_a_local_run(client, tmp_path):
    args = ["run", str(SCENARIOS / "minimal.yaml"), "--trials", "3000", "--seed", "4", "--quiet"]
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "dask"), "--scheduler", client.scheduler.address])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "local")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "dask" / "summary.json").read_text()) == \
        json.loads((tmp_path / "local" / "summary.json").read_text())


def test_scheduler_and_workers_together_is_a_usage_error(tmp_path):
    res = CliRunner().invoke(main, ["run", str(SCENARIOS / "minimal.yaml"), "--out", str(tmp_path / "o"),
                                    "--scheduler", "tcp://127.0.0.1:1", "--workers", "2"])
    assert res.exit_code == 2 and "not both" in res.output


def test_unreachable_scheduler_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(main, ["run", str(SCENARIOS / "minimal.yaml"), "--out", str(tmp_path / "o"),
                                    "--scheduler", "tcp://127.0.0.1:9"])
    assert res.exit_code == 2 and "--scheduler tcp://127.0.0.1:9: cannot connect" in res.output
    assert not (tmp_path / "o" / "summary.json").exists()


def test_consecutive_runs_of_the_same_plan_on_one_client(client):
    """Each run scatters its plan under a key of its own: releasing one run's plan must not
    cancel the next run's tasks."""
    sc = fc.load_scenario(SCENARIOS / "minimal.yaml").with_run(trials=3000, seed=2)
    first = fc.simulate(sc, client=client)
    for _ in range(3):
        again = fc.simulate(sc, client=client)
        assert np.array_equal(again["revenue"].values, first["revenue"].values)


@pytest.mark.parametrize("address", ["garbage://", "tcp://", "not an address", "tcp://host:port", "tcp://h:99999x"])
def test_a_malformed_scheduler_address_is_a_clear_error(tmp_path, address):
    res = CliRunner().invoke(main, ["run", str(SCENARIOS / "minimal.yaml"), "--out", str(tmp_path / "o"),
                                    "--scheduler", address])
    assert res.exit_code == 2, res.output
    assert "--scheduler" in res.output and "Traceback" not in res.output and "Internal error" not in res.output
    assert not (tmp_path / "o" / "summary.json").exists()


def _sleep_forever(*args):
    """A task that does not return within the run's stall timeout (2 s), but does end: a worker
    asleep for an hour could hold up the shared cluster's shutdown at the end of the module
    (CI once hung there for 12 minutes)."""
    import time
    time.sleep(30)


def test_a_frozen_worker_ends_the_run_with_a_clear_error(client, monkeypatch):
    import forecaster.engine.cluster as cluster
    from forecaster.engine.cluster import ClusterError

    sc = fc.load_scenario(SCENARIOS / "minimal.yaml").with_run(trials=1000, seed=2)
    plan = build_plan(sc)
    sink = MemorySink(Layout.of(sc, plan))
    monkeypatch.setattr(cluster, "compute_blocks", _sleep_forever)  # the task never returns
    runner = DaskRunner(client, stall_seconds=2.0)
    with pytest.raises(ClusterError, match="no task on the cluster finished in 2 s"):
        run_trials(plan, sc, sink, chunk_trials=1000, runner=runner)


def test_the_stall_timeout_comes_from_the_environment(monkeypatch, client):
    from forecaster.engine.cluster import ClusterError
    monkeypatch.setenv("FORECASTER_TASK_TIMEOUT", "12.5")
    assert DaskRunner(client).stall_seconds == 12.5
    monkeypatch.setenv("FORECASTER_TASK_TIMEOUT", "soon")
    with pytest.raises(ClusterError, match="FORECASTER_TASK_TIMEOUT"):
        DaskRunner(client)
