"""A running service follows the graph and the feedback kept in Redis without a restart."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from causalwatch.app.service import serve
from causalwatch.series import series_key
from causalwatch.settings import load_settings
from causalwatch.store.feedback import FeedbackStore
from causalwatch.store.graph import RedisDagCache
from causalwatch.tooling.embedded import free_port
from explainer.dag import DependencyGraph, Edge
from ingest.kafka_sink import KafkaSink, ensure_topics

pytestmark = pytest.mark.integration


def _wait(pred: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_graph_reload_mutes_and_false_positives_apply_live(
    broker: Any, redis_server: Any, uid: str, tmp_path: Path
) -> None:
    graph = tmp_path / "graph.csv"
    graph.write_text("cause,effect\ndb,api\n")
    topic = f"m{uid}"
    settings = load_settings(
        kafka={
            "bootstrap_servers": broker.bootstrap,
            "group_id": f"g{uid}",
            "topics": [{"name": topic, "format": "json"}],
            "session_timeout_ms": 6_000,
            "heartbeat_interval_ms": 1_000,
        },
        redis={"url": redis_server.url, "prefix": f"cw{uid}:"},
        publish={"metrics_port": free_port()},
        api={"port": free_port()},
        explainer={"graph_file": graph},
    )
    ensure_topics(broker.bootstrap, {topic: 1})
    sink = KafkaSink(settings.kafka)
    now = time.time()

    items = []
    for i in range(20):
        body = [
            {
                "name": "lat",
                "labels": {"service": s},
                "timestamp": now - 60 * (20 - i),
                "value": 1.0,
            }
            for s in ("db", "api")
        ]
        items.append((None, json.dumps(body).encode(), []))
    sink.write_batch(topic, items)
    sink.close()

    stop = threading.Event()
    svc = serve(settings, "all", stop=stop, block=False)
    try:
        _wait(lambda: svc.stats.samples == 40, 30, "samples consumed")
        exp = svc.cores.explainer
        assert exp is not None
        assert exp.graph.edge("db", "api") is not None

        client = redis.Redis.from_url(redis_server.url)
        cache = RedisDagCache(client, prefix=settings.redis.prefix)
        before = cache.version()
        cache.put(DependencyGraph([Edge("db", "api"), Edge("cache", "api")]))
        assert cache.version() > before
        _wait(lambda: exp.graph.edge("cache", "api") is not None, 10, "the new graph")

        feedback = FeedbackStore(client, prefix=settings.redis.prefix)
        until = time.time() + 3600
        feedback.mute({"service": "api"}, until, now=time.time(), reason="test")
        api_row = svc.cores.index.get(series_key("lat", {"service": "api"}))
        db_row = svc.cores.index.get(series_key("lat", {"service": "db"}))
        assert api_row is not None and db_row is not None
        det = svc.cores.detector
        assert det is not None

        def muted() -> bool:
            snap = det.snapshot()
            return bool(snap["mute_until"][api_row] >= until - 1e-3)

        _wait(muted, 10, "the mute to reach the detector")
        assert det.snapshot()["mute_until"][db_row] < until  # other series untouched

        feedback.mark_false_positive(
            "inc-x",
            marked_at=time.time(),
            nodes=["db"],
            series=[series_key("lat", {"service": "db"})],
        )
        _wait(lambda: det.snapshot()["sensitivity"][db_row] == 0.5, 10, "lower sensitivity")
        assert np.isclose(det.snapshot()["sensitivity"][api_row], 1.0)
    finally:
        stop.set()
        for close in svc.closers:
            close()
