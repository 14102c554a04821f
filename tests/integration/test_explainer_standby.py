"""``--scale explainer=2``: one replica holds the lease and explains, the other stands by
and takes over, from the checkpoint, when the first one stops."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from causalwatch.demo import produce_scenario
from causalwatch.embedded import free_port
from causalwatch.service import Service, serve
from causalwatch.settings import Settings, load_settings
from causalwatch.simulate import microservice_demo_scenario
from ingest.kafka_sink import KafkaSink, ensure_topics

pytestmark = pytest.mark.integration

N_POINTS = 500


def _settings(broker: Any, redis_server: Any, uid: str, graph: Path) -> Settings:
    return load_settings(
        kafka={
            "bootstrap_servers": broker.bootstrap,
            "group_id": f"g{uid}",
            "topics": [
                {"name": f"m{uid}", "format": "json"},
                {"name": f"t{uid}", "format": "influx"},
                {"name": f"p{uid}", "format": "prometheus"},
            ],
            "samples_topic": f"samples{uid}",
            "scores_topic": f"scores{uid}",
            "internal_partitions": 2,
            "session_timeout_ms": 6_000,
            "heartbeat_interval_ms": 1_000,
        },
        redis={"url": redis_server.url, "prefix": f"cw{uid}:", "checkpoint_interval_s": 0.5},
        publish={"metrics_port": free_port()},
        api={"port": free_port()},
        explainer={"graph_file": graph, "lease_ttl_s": 2.0},
    )


def _wait(pred: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_standby_explainer_takes_over(
    broker: Any, redis_server: Any, uid: str, tmp_path: Path
) -> None:
    now = time.time()
    sc = microservice_demo_scenario(
        seed=6,
        n_points=N_POINTS,
        step_s=60.0,
        start_ts=float(int(now // 60) * 60 - N_POINTS * 60),
        fault_start=N_POINTS - 60,
        fault_len=45,
    )
    graph = tmp_path / "graph.csv"
    graph.write_text(sc.graph.to_csv())
    topics = (f"m{uid}", f"t{uid}", f"p{uid}")
    ensure_topics(broker.bootstrap, {t: 1 for t in topics})
    stops: dict[str, threading.Event] = {}
    svcs: dict[str, Service] = {}

    def start(name: str, stage: str) -> Service:
        stops[name] = threading.Event()
        svcs[name] = serve(
            _settings(broker, redis_server, uid, graph), stage, stop=stops[name], block=False
        )
        return svcs[name]

    try:
        start("ingest", "ingest")
        start("detector", "detector")
        a = start("exp_a", "explainer")
        _wait(lambda: not a.standby and a.stage.cores.explainer is not None, 10, "A active")
        b = start("exp_b", "explainer")
        time.sleep(1.0)
        assert b.standby, "the second explainer should stand by"
        sink = KafkaSink(svcs["ingest"].settings.kafka)
        first = produce_scenario(sink, sc, 0, 300, topics=topics, bad_records=False)
        _wait(lambda: a.stats.samples == first, 90, "A explaining the first part")
        assert b.stats.samples == 0

        stops["exp_a"].set()  # A stops (checkpoint, lease released)
        for close in svcs.pop("exp_a").closers:
            close()
        _wait(lambda: not b.standby, 15, "B to take the lease")
        second = produce_scenario(sink, sc, 300, N_POINTS, topics=topics, bad_records=False)
        sink.close()
        _wait(lambda: b.stats.samples == second, 90, "B explaining the rest")
        time.sleep(1.0)
        assert b.stats.samples == second  # resumed at A's checkpoint, nothing re-read
        # B resumed from A's checkpoint: it read only the second part, and its explainer
        # holds the history A had built (so the fault at the end is explained).
        root = sc.roots[0]
        _wait(
            lambda: any(
                e.root_causes and e.root_causes[0].node == root and e.target.node != root
                for e in b.results.recent(300)
                if e.detected_at >= sc.fault_start_ts
            ),
            60,
            "B's explanation of the fault",
        )
        for name, svc in svcs.items():
            assert svc.error is None, (name, svc.error)
    finally:
        for stop in stops.values():
            stop.set()
        for svc in svcs.values():
            for close in svc.closers:
                close()
