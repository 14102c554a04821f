"""The whole path against a real Kafka-protocol broker and a real Redis.

Records produced to Kafka in each of the three formats come out as explanations in Redis
and scores on the metrics endpoint; bad records land on the dead-letter topic with their
reason; a restarted process resumes from its checkpoint without losing or double-counting
samples.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from causalwatch.app.demo import produce_scenario
from causalwatch.app.service import Service, serve
from causalwatch.settings import Settings, load_settings
from causalwatch.store.checkpoint import RedisCheckpointStore
from causalwatch.tooling.embedded import free_port
from causalwatch.tooling.simulate import Scenario, microservice_demo_scenario
from ingest.kafka_sink import KafkaSink, ensure_topics

pytestmark = pytest.mark.integration

N_POINTS = 720
FAULT_START = 640


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    now = time.time()
    return microservice_demo_scenario(
        seed=11,
        n_points=N_POINTS,
        step_s=60.0,
        start_ts=float(int(now // 60) * 60 - N_POINTS * 60),
        fault_start=FAULT_START,
        fault_len=45,
    )


def _settings(broker: Any, redis_server: Any, uid: str, graph: Path, **extra: Any) -> Settings:
    topics = (f"m{uid}", f"t{uid}", f"p{uid}")
    kafka = {
        "bootstrap_servers": broker.bootstrap,
        "group_id": f"g{uid}",
        "topics": [
            {"name": topics[0], "format": "json"},
            {"name": topics[1], "format": "influx"},
            {"name": topics[2], "format": "auto"},
        ],
        "session_timeout_ms": 6_000,
        "heartbeat_interval_ms": 1_000,
        "max_poll_interval_ms": 30_000,
        "samples_topic": f"s{uid}",
        "scores_topic": f"sc{uid}",
        "internal_partitions": 2,
    }
    kafka.update(extra.pop("kafka", {}))
    return load_settings(
        kafka=kafka,
        redis={"url": redis_server.url, "prefix": f"cw{uid}:", "checkpoint_interval_s": 0.5},
        publish={"metrics_port": free_port()},
        api={"port": free_port()},
        explainer={"graph_file": graph},
        **extra,
    )


def _topics(s: Settings) -> tuple[str, str, str]:
    names = [t.name for t in s.kafka.topics]
    return names[0], names[1], names[2]


def _wait(pred: Callable[[], Any], timeout_s: float, what: str, svc: Service | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if svc is not None and svc.error is not None:
            raise AssertionError(f"the service failed: {svc.error!r}") from svc.error
        got = pred()
        if got:
            return got
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def _scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


@pytest.fixture
def run_service() -> Iterator[Callable[[Settings, str], Service]]:
    running: list[tuple[threading.Event, Service]] = []

    def start(settings: Settings, stage: str = "all") -> Service:
        stop = threading.Event()
        svc = serve(settings, stage, stop=stop, block=False)
        running.append((stop, svc))
        return svc

    yield start
    for stop, svc in running:
        stop.set()
        for close in svc.closers:
            close()


def _graph(tmp_path: Path, scenario: Scenario) -> Path:
    path = tmp_path / "graph.csv"
    path.write_text(scenario.graph.to_csv())
    return path


def _dlq(bootstrap: str, topic: str, expect: int) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=1000)
    tps = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or {0})]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    got: list[Any] = []
    deadline = time.monotonic() + 20
    while len(got) < expect and time.monotonic() < deadline:
        for recs in consumer.poll(1000).values():
            got.extend(recs)
    consumer.close()
    return got


def test_three_formats_to_explanations_scores_and_dead_letters(
    broker: Any, redis_server: Any, uid: str, tmp_path: Path, scenario: Scenario, run_service: Any
) -> None:
    settings = _settings(broker, redis_server, uid, _graph(tmp_path, scenario))
    topics = _topics(settings)
    ensure_topics(broker.bootstrap, {t: 1 for t in topics})
    sink = KafkaSink(settings.kafka)
    sent = produce_scenario(sink, scenario, 0, N_POINTS, topics=topics)
    sink.close()
    svc = run_service(settings)

    root = scenario.roots[0]

    def downstream_explanation() -> Any:
        """Explanations of the fault's onset on downstream nodes (when the fault ends, the
        recovery is a change too and gets explained on its own; it is not what this checks)."""
        found = [e for e in svc.results.recent(500) if e.target.node != root and e.root_causes]
        onset = (scenario.fault_start_ts - 60, scenario.fault_start_ts + 900)
        return [e for e in found if onset[0] <= e.detected_at <= onset[1]]

    explanations = _wait(downstream_explanation, 90, "an explanation of the injected fault", svc)
    # Every sample of the three formats was consumed (3 bad JSON records aside).
    _wait(lambda: svc.stats.samples >= sent, 30, "all samples consumed", svc)
    assert svc.stats.samples == sent
    explanations = downstream_explanation()  # all of them, now that everything is consumed

    # The explanation in Redis has the documented shape and names the injected root cause.
    client = redis.Redis.from_url(redis_server.url)
    p = settings.redis.prefix
    entries = client.xrange(f"{p}explanations")
    assert entries, "the explanations stream is empty"
    body = json.loads(entries[-1][1][b"json"])
    assert set(body) >= {
        "id",
        "incident_id",
        "target",
        "detected_at",
        "window",
        "severity",
        "root_causes",
        "graph_version",
    }
    assert set(body["root_causes"][0]) >= {"node", "series", "score", "share", "evidence"}
    scores = [rc["score"] for rc in body["root_causes"]]
    assert scores == sorted(scores, reverse=True)
    best = max(explanations, key=lambda e: e.severity)
    top3 = [rc.node for rc in best.root_causes[:3]]
    assert root in top3, (best.target.series, top3)
    latest = client.get(f"{p}latest:{best.target.node}")
    assert latest is not None and client.ttl(f"{p}latest:{best.target.node}") > 0

    # Scores of series from each format are on the metrics endpoint.
    got = _scrape(svc.metrics_url)
    series = {labels["series"] for labels, _ in got["causalwatch_detector_anomaly_score"]}
    assert 'latency_ms{service="frontend"}' in series  # native JSON
    assert 'latency_ms{service="payment"}' in series  # Influx line protocol
    assert any('service="auth"' in s and "job=" in s for s in series)  # prometheus adapter
    values = [v for _, v in got["causalwatch_detector_anomaly_score"]]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert got["causalwatch_ingest_samples_total"][0][1] == sent
    reasons = {labels["reason"]: v for labels, v in got["causalwatch_ingest_deadletter_total"]}
    assert sum(reasons.values()) == 3

    # The three bad records are on the dead-letter topic with their reason and source.
    dead = _dlq(broker.bootstrap, topics[0] + settings.kafka.dlq_suffix, 3)
    assert len(dead) == 3
    for rec in dead:
        headers = {k: v.decode() for k, v in rec.headers}
        assert headers["x-causalwatch-reason"] in reasons
        assert headers["x-causalwatch-source-topic"] == topics[0]
        assert int(headers["x-causalwatch-source-offset"]) >= 0
    assert {dict(rec.headers)["x-causalwatch-reason"].decode() for rec in dead} == {
        "not_json",
        "missing_field",
        "nan_value",
    }


def test_restart_resumes_from_checkpoint_without_double_counting(
    broker: Any, redis_server: Any, uid: str, tmp_path: Path, scenario: Scenario, run_service: Any
) -> None:
    settings = _settings(broker, redis_server, uid, _graph(tmp_path, scenario))
    topics = _topics(settings)
    ensure_topics(broker.bootstrap, {t: 1 for t in topics})
    sink = KafkaSink(settings.kafka)
    first = produce_scenario(sink, scenario, 0, 300, topics=topics, bad_records=False)

    stop = threading.Event()
    svc = serve(settings, "all", stop=stop, block=False)
    _wait(lambda: svc.stats.samples >= first, 60, "first half consumed", svc)
    stop.set()
    for close in svc.closers:
        close()

    client = redis.Redis.from_url(redis_server.url)
    store = RedisCheckpointStore(
        client, f"{settings.redis.prefix}checkpoint:{settings.kafka.group_id}:all"
    )
    cp = store.load()
    assert cp is not None
    # Next offsets: one JSON and one Influx message per step, one record per auth sample.
    assert cp.offsets == {(topics[0], 0): 300, (topics[1], 0): 300, (topics[2], 0): 900}
    n_series = len(scenario.series_keys)
    assert len(cp.meta["index"]["keys"]) == n_series

    second = produce_scenario(sink, scenario, 300, 400, topics=topics, bad_records=False)
    sink.close()
    svc2 = run_service(settings)
    _wait(lambda: svc2.stats.samples >= second, 60, "second half consumed", svc2)
    time.sleep(1.0)  # anything replayed twice would show up now
    assert svc2.stats.samples == second  # resumed at the checkpoint, nothing re-read
    det = svc2.cores.detector
    assert det is not None
    rows = np.asarray([r for _, r in svc2.cores.index.items()])
    # Each series saw exactly 400 points across both runs: no loss, no double count.
    assert np.all(det.last_ts[rows] == float(scenario.ts[399]))
    assert int(det.snapshot()["n"][rows].min()) == 400
