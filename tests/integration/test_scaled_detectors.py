"""Two detector replicas in one consumer group: when one stops, the other takes over its
partitions together with their series state, so every series keeps counting exactly."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from causalwatch.demo import produce_scenario
from causalwatch.embedded import free_port
from causalwatch.service import Service, serve
from causalwatch.settings import Settings, load_settings
from causalwatch.simulate import microservice_demo_scenario
from ingest.kafka_sink import KafkaSink, ensure_topics

pytestmark = pytest.mark.integration

N_POINTS = 400
HALF = 200


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
            "internal_partitions": 4,
            "max_poll_records": 50,
            "session_timeout_ms": 6_000,
            "heartbeat_interval_ms": 1_000,
        },
        redis={"url": redis_server.url, "prefix": f"cw{uid}:", "checkpoint_interval_s": 0.5},
        publish={"metrics_port": free_port()},
        api={"port": free_port()},
        explainer={"graph_file": graph},
    )


def _wait(pred: Any, timeout_s: float, what: str, services: list[Service]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for svc in services:
            assert svc.error is None, repr(svc.error)
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_stopped_replica_hands_its_series_over(
    broker: Any, redis_server: Any, uid: str, tmp_path: Path
) -> None:
    now = time.time()
    sc = microservice_demo_scenario(
        seed=4,
        n_points=N_POINTS,
        step_s=60.0,
        start_ts=float(int(now // 60) * 60 - N_POINTS * 60),
        fault_start=N_POINTS - 20,
        fault_len=10,
    )
    graph = tmp_path / "graph.csv"
    graph.write_text(sc.graph.to_csv())
    topics = (f"m{uid}", f"t{uid}", f"p{uid}")
    ensure_topics(broker.bootstrap, {t: 1 for t in topics})
    ensure_topics(broker.bootstrap, {f"samples{uid}": 4, f"scores{uid}": 4})
    stops = {name: threading.Event() for name in ("ingest", "det_a", "det_b")}
    svcs: dict[str, Service] = {}
    try:
        svcs["ingest"] = serve(
            _settings(broker, redis_server, uid, graph),
            "ingest",
            stop=stops["ingest"],
            block=False,
        )
        for name in ("det_a", "det_b"):
            svcs[name] = serve(
                _settings(broker, redis_server, uid, graph),
                "detector",
                stop=stops[name],
                block=False,
            )
        a, b = svcs["det_a"], svcs["det_b"]
        sink = KafkaSink(svcs["ingest"].settings.kafka)
        first = produce_scenario(sink, sc, 0, HALF, topics=topics, bad_records=False)
        _wait(
            lambda: a.stats.samples + b.stats.samples == first,
            90,
            "the first half",
            list(svcs.values()),
        )
        assert a.stats.samples > 0 and b.stats.samples > 0, "both replicas should own series"
        b_series = len(b.cores.index)
        assert 0 < b_series < len(sc.series_keys)

        # Stop replica B: it checkpoints its partitions and leaves the group.
        stops["det_b"].set()
        for close in b.closers:
            close()
        del svcs["det_b"]
        before = a.stats.samples
        second = produce_scenario(sink, sc, HALF, N_POINTS, topics=topics, bad_records=False)
        sink.close()
        _wait(
            lambda: a.stats.samples - before == second,
            120,
            "the second half on replica A",
            list(svcs.values()),
        )
        time.sleep(1.0)
        assert a.stats.samples - before == second  # nothing re-read twice

        det = a.cores.detector
        assert det is not None
        assert len(a.cores.index) == len(sc.series_keys)
        rows = np.asarray([r for _, r in a.cores.index.items()])
        counts = det.snapshot()["n"][rows]
        # Every series, including the ones B had, holds each of its samples exactly once.
        assert np.all(counts == N_POINTS), counts
        assert np.all(det.last_ts[rows] == float(sc.ts[N_POINTS - 1]))
        assert sum(a.stats.deadletter_by_reason.values()) == 0
    finally:
        for stop in stops.values():
            stop.set()
        for svc in svcs.values():
            for close in svc.closers:
                close()
