"""Kill -9 a live ``causalwatch run`` mid-stream, start it again, and check at-least-once
delivery with exactly-once state: every sample is in the detector state once, and the
explanation stream holds no duplicate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis

from causalwatch.app.demo import produce_scenario
from causalwatch.settings import load_settings
from causalwatch.store.checkpoint import RedisCheckpointStore
from causalwatch.tooling.embedded import free_port
from causalwatch.tooling.simulate import microservice_demo_scenario
from ingest.kafka_sink import KafkaSink, ensure_topics

N_POINTS = 500


def _env(broker: Any, redis_server: Any, uid: str, graph: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAUSALWATCH_")}
    env.update(
        {
            "CAUSALWATCH_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
            "CAUSALWATCH_KAFKA__GROUP_ID": f"g{uid}",
            "CAUSALWATCH_KAFKA__TOPICS": f"m{uid}:json,t{uid}:influx,p{uid}:prometheus",
            "CAUSALWATCH_KAFKA__SESSION_TIMEOUT_MS": "6000",
            "CAUSALWATCH_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
            "CAUSALWATCH_KAFKA__MAX_POLL_RECORDS": "40",
            "CAUSALWATCH_REDIS__URL": redis_server.url,
            "CAUSALWATCH_REDIS__PREFIX": f"cw{uid}:",
            "CAUSALWATCH_REDIS__CHECKPOINT_INTERVAL_S": "0.2",
            "CAUSALWATCH_PUBLISH__METRICS_PORT": str(free_port()),
            "CAUSALWATCH_API__PORT": str(free_port()),
            "CAUSALWATCH_EXPLAINER__GRAPH_FILE": str(graph),
            "CAUSALWATCH_LOG_LEVEL": "WARNING",
        }
    )
    return env


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "causalwatch.app.cli", "run", "all"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def test_kill_9_mid_stream_then_resume(
    broker: Any, redis_server: Any, uid: str, tmp_path: Path
) -> None:
    now = time.time()
    sc = microservice_demo_scenario(
        seed=5,
        n_points=N_POINTS,
        step_s=60.0,
        start_ts=float(int(now // 60) * 60 - N_POINTS * 60),
        fault_start=440,
        fault_len=40,
    )
    graph = tmp_path / "graph.csv"
    graph.write_text(sc.graph.to_csv())
    env = _env(broker, redis_server, uid, graph)
    settings = load_settings(
        kafka={"bootstrap_servers": broker.bootstrap},
    )
    topics = (f"m{uid}", f"t{uid}", f"p{uid}")
    ensure_topics(broker.bootstrap, {t: 1 for t in topics})
    sink = KafkaSink(settings.kafka)
    # the first half now, the second after the kill: however far the first run got before
    # its first checkpoint (backlog pacing can release the whole first half at once), the
    # kill falls mid-stream
    produce_scenario(sink, sc, 0, N_POINTS // 2, topics=topics, bad_records=False)
    end_offsets = {(topics[0], 0): N_POINTS, (topics[1], 0): N_POINTS, (topics[2], 0): 3 * N_POINTS}

    client = redis.Redis.from_url(redis_server.url)
    store = RedisCheckpointStore(client, f"cw{uid}:checkpoint:g{uid}:all")
    log = tmp_path / "run.log"

    proc = _start(env, log)
    try:
        deadline = time.monotonic() + 60
        killed_at: dict[tuple[str, int], int] | None = None
        while time.monotonic() < deadline:
            cp = store.load()
            if cp is not None and sum(cp.offsets.values()) > 0:
                killed_at = dict(cp.offsets)
                break
            time.sleep(0.05)
        assert killed_at is not None, log.read_text()[-2000:]
        proc.send_signal(signal.SIGKILL)  # no final checkpoint, no commit
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert sum(killed_at.values()) < sum(end_offsets.values())
    produce_scenario(sink, sc, N_POINTS // 2, N_POINTS, topics=topics, bad_records=False)
    sink.close()

    proc = _start(env, log)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            cp = store.load()
            if cp is not None and cp.offsets == end_offsets:
                break
            time.sleep(0.2)
        assert cp is not None and cp.offsets == end_offsets, log.read_text()[-2000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()

    cp = store.load()
    assert cp is not None
    keys = [k for k in cp.meta["index"]["keys"] if k is not None]
    assert len(keys) == len(sc.series_keys)
    n = cp.arrays["detector"]["n"][: len(cp.meta["index"]["keys"])]
    # Every series holds each of its N_POINTS samples exactly once despite the kill.
    assert np.all(n == N_POINTS), n
    ids = [fields[b"id"] for _id, fields in client.xrange(f"cw{uid}:explanations")]
    assert len(ids) == len(set(ids))
    # Kafka's committed offsets caught up after the checkpoint (for lag dashboards).
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=f"g{uid}.all")
    committed = {tp: consumer.committed(TopicPartition(*tp)) for tp in end_offsets}
    consumer.close()
    assert committed == end_offsets
