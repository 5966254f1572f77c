"""The local cluster that ``--workers N`` starts listens on loopback only.

In a file of its own: test_cluster.py keeps a two-worker cluster alive for its whole module,
and starting a second LocalCluster in that process beside it failed once in CI on a loaded
2-core machine (Dask's second IO-loop thread did not report started within its fixed 10 s;
``distributed/utils.py`` LoopRunner). A command starts one cluster per process, as here."""
from __future__ import annotations


def test_a_local_cluster_serves_nothing_on_the_dashboard_port():
    import socket

    from forecaster.engine.cluster import dask_client

    def listening(port):
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    before = listening(8787)
    with dask_client(workers=1) as c:
        info = c.scheduler_info()
        assert info["address"].startswith("tcp://127.0.0.1:")
        assert listening(8787) == before  # nothing new on 8787 (the default dashboard port)
        for port in info.get("services", {}).values():  # whatever HTTP it serves is on loopback only
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) == 0
