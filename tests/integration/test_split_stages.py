"""``run ingest``, ``run detector`` and ``run explainer`` as separate services joined by the
internal samples and scores topics: the same explanations come out as with ``run all``."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from causalwatch.app.demo import produce_scenario
from causalwatch.app.service import Service, serve
from causalwatch.settings import load_settings
from causalwatch.store.snapshots import SnapshotStore
from ingest.kafka_sink import KafkaSink, ensure_topics
from tests.integration.helpers import shop, stage_settings, stop_all

pytestmark = pytest.mark.integration

N_POINTS = 600


def test_three_processes_produce_explanations(
    broker: Any, redis_server: Any, uid: str, tmp_path: Path
) -> None:
    sc = shop(2, N_POINTS, 520, 45, tmp_path)
    graph = tmp_path / "graph.csv"
    topics = (f"m{uid}", f"t{uid}", f"p{uid}")
    ensure_topics(broker.bootstrap, {t: 1 for t in topics})
    stops: list[threading.Event] = []
    services: dict[str, Service] = {}
    try:
        for stage in ("ingest", "detector", "explainer"):
            stop = threading.Event()
            stops.append(stop)
            # each process has its own ports, as separate containers would
            # small polls: many batches per series, spread over the internal partitions
            settings = stage_settings(
                broker,
                redis_server,
                uid,
                graph,
                kafka={"internal_partitions": 3, "max_poll_records": 40},
            )
            services[stage] = serve(settings, stage, stop=stop, block=False)
        sink = KafkaSink(services["ingest"].settings.kafka)
        sent = produce_scenario(sink, sc, 0, N_POINTS, topics=topics)
        sink.close()

        root = sc.roots[0]
        deadline = time.monotonic() + 120
        found: list[Any] = []
        while time.monotonic() < deadline:
            for name, svc in services.items():
                assert svc.error is None, f"{name} failed: {svc.error!r}"
            found = [
                e
                for e in services["explainer"].results.recent(300)
                if e.detected_at >= sc.fault_start_ts and e.target.node != root
            ]
            if any(e.root_causes and e.root_causes[0].node == root for e in found):
                break
            time.sleep(0.3)
        assert any(e.root_causes and e.root_causes[0].node == root for e in found), [
            (e.target.series, [rc.node for rc in e.root_causes[:3]]) for e in found
        ]
        # Every valid sample went through ingest -> samples topic -> detector -> scores.
        # ... and the ingest process has counted its dead letters: it counts a batch's after
        # writing them to the DLQ topic, which can finish after the detector has caught up
        # (the compiled detector catches up within a second)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
            services["detector"].stats.samples < sent
            or sum(services["ingest"].stats.deadletter_by_reason.values()) < 3
        ):
            time.sleep(0.2)
        assert services["ingest"].stats.samples == sent
        assert services["detector"].stats.samples == sent
        assert sum(services["ingest"].stats.deadletter_by_reason.values()) == 3
        # A series always goes to the same internal partition, so it arrives in order.
        assert dict(services["detector"].stats.deadletter_by_reason) == {}
        text = urllib.request.urlopen(services["detector"].metrics_url, timeout=5).read().decode()
        assert 'causalwatch_detector_anomaly_score{node="frontend"' in text
        assert services["explainer"].cores.detector is None  # the explainer holds no detector
        # the incident page's snapshot, from the scores topic's expected value and band
        best = next(e for e in found if e.root_causes and e.root_causes[0].node == root)
        ex_settings = services["explainer"].settings
        client = redis.Redis.from_url(ex_settings.redis.url)
        snap = SnapshotStore(client, prefix=ex_settings.redis.prefix).get(best.id)
        assert snap is not None and snap["series"][0]["series"] == best.target.series
        target = snap["series"][0]
        assert len(target["ts"]) > 20
        assert all(lo <= up for lo, up in zip(target["lower"], target["upper"], strict=True))
    finally:
        stop_all(stops, services.values())


def test_demo_produce_only_streams_into_an_existing_broker(broker: Any, uid: str) -> None:
    """What docker-compose's demo-producer runs: history at once, then paced live steps."""
    from kafka import KafkaConsumer, TopicPartition

    from causalwatch.app.demo import INFLUX_TOPIC, JSON_TOPIC, PROM_TOPIC, produce_only

    settings = load_settings(kafka={"bootstrap_servers": broker.bootstrap})
    fake_now = [time.time()]

    def clock() -> float:  # live steps are due every 60 s: advance a fake clock instead
        fake_now[0] += 30.0
        return fake_now[0]

    lines: list[str] = []
    sent = produce_only(settings, live_steps=2, echo=lines.append, clock=clock)
    per_step = 30  # 10 services x 3 metrics
    assert sent == per_step * (2 * 1440 + 2)
    assert "fault" in lines[0]
    counts = {}
    for topic in (JSON_TOPIC, INFLUX_TOPIC, PROM_TOPIC):
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, consumer_timeout_ms=2000)
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        counts[topic] = sum(1 for _ in consumer)
        consumer.close()
    steps = 2 * 1440 + 2
    # one JSON message per step plus 3 bad records with the history, one Influx message per
    # step, one prometheus-adapter record per auth sample (3 metrics)
    assert counts == {JSON_TOPIC: steps + 3, INFLUX_TOPIC: steps, PROM_TOPIC: 3 * steps}
    _ = uid
