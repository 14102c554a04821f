"""Real processes to break, for the fault-injection suite and ``bench/chaos.py``.

Everything is a real server on loopback, nothing is mocked:

- :class:`Broker`: a tansu broker reached only through a ``tansu proxy``; :meth:`Broker.cut`
  kills the proxy (clients lose the broker, topics survive), :meth:`Broker.restore` brings
  it back on the same port;
- :class:`Redis`: a redis-server that can be killed with SIGKILL and started again on the
  same port and directory, with persistence (append-only file, ``fsync`` on every write)
  or without (everything is gone after a restart);
- :class:`Receiver`: a webhook receiver (an HTTP server in a thread) that answers 200 and
  records each delivery id, and can be stopped and started again on the same port;
- :class:`ServiceProcess`: ``causalwatch run all --config FILE`` as a subprocess, killed
  with ``kill -9`` or stopped with SIGTERM, probed through ``/readyz`` and ``/metrics``;
- :class:`Workload`: the demo shop scenario produced in chunks (JSON, Influx and
  prometheus-kafka-adapter records, three bad records per chunk), with what the service
  must end with: samples per series, records per topic, bad records;
- :func:`check`: the invariants every fault is scored on (:class:`Outcome`).

The API is meant to stay small: start/stop for each server, :func:`settings_for` for the
service's settings file, :func:`wait_until` for conditions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import redis as redis_lib
import yaml

from causalwatch.app.demo import produce_scenario
from causalwatch.settings import load_settings
from causalwatch.store.checkpoint import Checkpoint, RedisCheckpointStore
from causalwatch.tooling.embedded import _die_with_parent, _terminate, _wait_port, free_port
from causalwatch.tooling.simulate import Scenario, microservice_demo_scenario
from ingest.kafka_sink import KafkaSink, ensure_topics
from tests.integration.kafka_servers import ProxiedBroker

__all__ = [
    "Broker",
    "Outcome",
    "Receiver",
    "Redis",
    "ServiceProcess",
    "Workload",
    "check",
    "read_to_end",
    "settings_for",
    "wait_until",
]

ROOT = Path(__file__).resolve().parents[2]


def wait_until(
    cond: Callable[[], bool], timeout_s: float, what: str, *, every_s: float = 0.1
) -> float:
    """Wait for ``cond()``; returns the seconds it took, raises ``TimeoutError`` naming
    ``what`` after ``timeout_s``."""
    t0 = time.monotonic()
    while True:
        try:
            if cond():
                return time.monotonic() - t0
        except Exception:  # a probe failing (a server away) is "not yet"
            pass
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(every_s)


# ------------------------------------------------------------------------------ servers
class Broker(ProxiedBroker):
    """tansu behind a tansu proxy: ``start``, ``cut``, ``restore``, ``stop``, ``bootstrap``."""


@dataclass
class Redis:
    """A redis-server that survives being killed: same port and directory on restart."""

    persistent: bool = True
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    _dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        from causalwatch.tooling.embedded import redis_binary

        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="causalwatch-faults-redis-")
        persist = (
            ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
            if self.persistent
            else ["--appendonly", "no", "--save", ""]
        )
        self.proc = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                self._dir.name,
                *persist,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        _wait_port(self.port, self.proc, "redis", 15)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown save; only what the append-only file holds survives."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def client(self) -> redis_lib.Redis:
        return redis_lib.Redis.from_url(self.url, socket_timeout=5)

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


class Receiver:
    """A webhook receiver: 200 to every POST, each ``X-Causalwatch-Delivery`` recorded."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.deliveries: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                with receiver._lock:
                    receiver.deliveries.append(self.headers.get("X-Causalwatch-Delivery", ""))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self.deliveries)


def settings_for(
    broker: Broker,
    redis: Redis,
    uid: str,
    workload: Workload,
    receiver: Receiver | None,
    **overrides: Any,
) -> dict[str, Any]:
    """The service's settings (a dict written as YAML): short group timing, fast
    checkpoints, the workload's topics, the receiver as a generic webhook, every incident
    paged at its first alert (``page_agreement=1``: these tests check that each explanation
    reaches the receiver once across outages, so every explanation must be one that is
    sent; the agreement rule has its own tests)."""
    s: dict[str, Any] = {
        "log_level": "WARNING",
        "kafka": {
            "bootstrap_servers": broker.bootstrap,
            "group_id": f"g{uid}",
            "topics": [{"name": t, "format": f} for t, f in workload.formats.items()],
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 1000,
            "max_poll_interval_ms": 60000,
            "max_poll_records": 200,
        },
        "redis": {"url": redis.url, "prefix": f"cw{uid}:", "checkpoint_interval_s": 0.5},
        "publish": {"metrics_port": free_port()},
        "api": {"port": free_port()},
        "explainer": {"graph_file": str(workload.graph_file), "page_agreement": 1},
    }
    if receiver is not None:
        s["publish"].update(
            webhooks=[{"url": receiver.url, "kind": "generic"}],
            webhook_backoff_base_s=0.2,
            webhook_backoff_cap_s=2.0,
            webhook_poll_interval_s=0.2,
            webhook_timeout_s=2.0,
        )
    for section, values in overrides.items():
        if isinstance(values, dict):
            s.setdefault(section, {}).update(values)
        else:
            s[section] = values
    return s


class ServiceProcess:
    """``causalwatch run all --config FILE`` as a subprocess."""

    def __init__(self, settings: dict[str, Any], folder: Path) -> None:
        self.settings = settings
        self.folder = folder
        self.config = folder / "settings.yaml"
        self.config.write_text(yaml.safe_dump(settings))
        self.log = folder / "service.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exits: list[int] = []  # return codes of exits not caused by kill_9/stop

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.settings['api']['port']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.settings['publish']['metrics_port']}/metrics"

    def start(self) -> ServiceProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAUSALWATCH_")}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "causalwatch.app.cli",
                "--config",
                str(self.config),
                "run",
                "all",
            ],
            env=env,
            cwd=ROOT,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        self.starts += 1
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill_9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM; the exit code (0 expected)."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(5)
        self.proc = None
        return rc

    def readyz(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(self.api_url + "/readyz", timeout=2) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def metric(self, name: str, labels: str = "") -> float | None:
        """One sample of ``/metrics`` (``labels`` like ``backend="redis"``), None if absent."""
        with urllib.request.urlopen(self.metrics_url, timeout=2) as resp:
            text = resp.read().decode()
        want = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


# ------------------------------------------------------------------------------ workload
@dataclass
class Workload:
    """The demo shop, ``n_points`` one-minute steps ending now, produced in chunks."""

    bootstrap: str
    uid: str
    folder: Path
    n_points: int = 500
    chunk: int = 50
    scenario: Scenario = field(init=False)
    produced_to: int = 0
    bad: int = 0

    def __post_init__(self) -> None:
        now = time.time()
        self.scenario = microservice_demo_scenario(
            seed=5,
            n_points=self.n_points,
            step_s=60.0,
            start_ts=float(int(now // 60) * 60 - self.n_points * 60),
            fault_start=int(self.n_points * 0.88),
            fault_len=40,
        )
        self.graph_file = self.folder / "graph.csv"
        self.graph_file.write_text(self.scenario.graph.to_csv())
        u = self.uid
        self.topics = (f"m{u}", f"t{u}", f"p{u}")
        self.formats = dict(zip(self.topics, ("json", "influx", "prometheus"), strict=True))
        ensure_topics(self.bootstrap, {t: 1 for t in self.topics})
        self._sink = KafkaSink(load_settings(kafka={"bootstrap_servers": self.bootstrap}).kafka)

    @property
    def done(self) -> bool:
        return self.produced_to >= self.n_points

    def produce(self, steps: int | None = None) -> None:
        """The next ``steps`` steps (default one chunk), with three bad records."""
        a = self.produced_to
        b = min(self.n_points, a + (steps or self.chunk))
        if a >= b:
            return
        produce_scenario(self._sink, self.scenario, a, b, topics=self.topics, bad_records=True)
        self.bad += 3
        self.produced_to = b

    def expected_ends(self) -> dict[tuple[str, int], int]:
        """Records per topic (one partition each): JSON one per step plus the bad ones,
        Influx one per step, prometheus one per series and step."""
        n = self.produced_to
        prom = sum(1 for node in self.scenario.series_nodes if node in _prom_services())
        return {
            (self.topics[0], 0): n + self.bad,
            (self.topics[1], 0): n,
            (self.topics[2], 0): prom * n,
        }

    def close(self) -> None:
        self._sink.close()


def _prom_services() -> frozenset[str]:
    from causalwatch.app.demo import PROM_SERVICES

    return frozenset(PROM_SERVICES)


def read_to_end(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[Any]:
    """Every record of ``topic`` (all partitions), read until a poll brings nothing past
    the reported end (tansu's ListOffsets can report less than the true end)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = consumer.poll(timeout_ms=500, max_records=10_000)
            for recs in got.values():
                out.extend(recs)
            if not got and all(consumer.position(tp) >= end[tp] for tp in tps):
                return out
        raise TimeoutError(f"reading {topic} to its end")
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, tps: list[tuple[str, int]]) -> dict[tuple[str, int], Any]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return {tp: consumer.committed(TopicPartition(*tp)) for tp in tps}
    finally:
        consumer.close()


# ------------------------------------------------------------------------------ scoring
@dataclass
class Outcome:
    """What a fault left behind (all figures; :func:`check` asserts on them)."""

    samples_expected: int
    samples_in_state: int
    series_wrong: int
    explanations: int
    explanation_ids_repeated: int
    deliveries: int
    deliveries_repeated: int
    outbox_left: int
    dead: int
    dlq: int
    dlq_expected: int
    dlq_repeated: int
    ends: dict[str, int]
    committed: dict[str, int]
    checkpoint: dict[str, int]
    restarts_by_hand: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def checkpoint_of(redis: Redis, settings: dict[str, Any]) -> Checkpoint | None:
    group, prefix = settings["kafka"]["group_id"], settings["redis"]["prefix"]
    return RedisCheckpointStore(redis.client(), f"{prefix}checkpoint:{group}:all").load()


def true_ends(workload: Workload) -> dict[tuple[str, int], int]:
    """End offsets by reading each topic to its end."""
    out = {}
    for t in workload.topics:
        recs = read_to_end(workload.bootstrap, t)
        out[(t, 0)] = max((r.offset for r in recs), default=-1) + 1
    return out


def wait_caught_up(
    svc: ServiceProcess,
    redis: Redis,
    workload: Workload,
    receiver: Receiver | None,
    timeout_s: float = 120,
) -> None:
    """Until the checkpoint covers every record and the outbox is empty."""
    ends = true_ends(workload)
    prefix = svc.settings["redis"]["prefix"]

    def done() -> bool:
        cp = checkpoint_of(redis, svc.settings)
        if cp is None or cp.offsets != ends:
            return False
        if receiver is None:
            return True
        return int(redis.client().hlen(f"{prefix}webhooks:outbox")) == 0

    try:
        wait_until(done, timeout_s, "service caught up")
    except TimeoutError as exc:
        cp = checkpoint_of(redis, svc.settings)
        raise AssertionError(
            f"{exc}; checkpoint {None if cp is None else cp.offsets} vs ends {ends}\n" + svc.tail()
        ) from None


def outcome(
    svc: ServiceProcess,
    redis: Redis,
    workload: Workload,
    receiver: Receiver | None,
    *,
    restarts_by_hand: int = 0,
) -> Outcome:
    """Score the end state (after :func:`wait_caught_up`)."""
    s = svc.settings
    prefix, group = s["redis"]["prefix"], s["kafka"]["group_id"]
    client = redis.client()
    cp = checkpoint_of(redis, s)
    assert cp is not None
    n_keys = len(cp.meta["index"]["keys"])
    counts = np.asarray(cp.arrays["detector"]["n"][:n_keys])
    live = [k is not None for k in cp.meta["index"]["keys"]]
    per_series = counts[np.asarray(live, dtype=bool)]
    n_series = len(workload.scenario.series_keys)
    expected = workload.produced_to
    ids = [f[b"id"] for _i, f in client.xrange(f"{prefix}explanations")]
    got = receiver.counts() if receiver is not None else Counter()
    dlq_topic = f"{workload.topics[0]}.dlq"
    dlq = read_to_end(workload.bootstrap, dlq_topic)
    positions = Counter(
        tuple(
            dict(r.headers).get(h)
            for h in (
                "x-causalwatch-source-topic",
                "x-causalwatch-source-partition",
                "x-causalwatch-source-offset",
                "x-causalwatch-sample-index",
            )
        )
        for r in dlq
    )
    ends = true_ends(workload)
    comm = committed(workload.bootstrap, f"{group}.all", sorted(ends))
    return Outcome(
        samples_expected=n_series * expected,
        samples_in_state=int(per_series.sum()),
        series_wrong=int((per_series != expected).sum()) + abs(len(per_series) - n_series),
        explanations=len(ids),
        explanation_ids_repeated=len(ids) - len(set(ids)),
        deliveries=len(got),
        deliveries_repeated=sum(got.values()) - len(got),
        outbox_left=int(client.hlen(f"{prefix}webhooks:outbox")),
        dead=int(client.hlen(f"{prefix}webhooks:dead")),
        dlq=len(dlq),
        dlq_expected=workload.bad,
        dlq_repeated=sum(positions.values()) - len(positions),
        ends={f"{t}:{p}": o for (t, p), o in ends.items()},
        committed={f"{t}:{p}": o for (t, p), o in comm.items()},
        checkpoint={f"{t}:{p}": o for (t, p), o in cp.offsets.items()},
        restarts_by_hand=restarts_by_hand,
    )


def records_in(svc: ServiceProcess) -> float:
    """Records the service has consumed (``causalwatch_ingest_records_total``, all topics)."""
    with urllib.request.urlopen(svc.metrics_url, timeout=2) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("causalwatch_ingest_records_total{")
    )


def broker_cut(svc: ServiceProcess, broker: Broker, outage_s: float) -> float:
    """Cut the broker for ``outage_s``: /readyz and the gauges must say so, the process
    must live through it and be ready again within seconds of the broker's return.
    Returns the seconds from the return to ``/readyz`` 200."""
    broker.cut()
    t0 = time.monotonic()
    wait_until(lambda: svc.readyz()[0] == 503, 30, "/readyz 503 while the broker is away")
    _code, body = svc.readyz()
    assert any("kafka" in r for r in body.get("reasons", [])), body
    assert svc.metric("causalwatch_backend_up", 'backend="kafka"') == 0.0
    time.sleep(max(0.0, outage_s - (time.monotonic() - t0)))  # the fault goes on
    assert svc.alive, svc.tail()
    assert (svc.metric("causalwatch_backend_down_seconds", 'backend="kafka"') or 0) > 0
    broker.restore()
    took = wait_until(lambda: svc.readyz()[0] == 200, 60, "/readyz 200 after the broker's return")
    assert took < 15, f"ready {took:.1f} s after the broker's return"
    return took


def redis_outage(
    svc: ServiceProcess, redis: Redis, outage_s: float, during: Callable[[], None]
) -> float:
    """Kill Redis for ``outage_s`` (``during()`` runs right after the kill); /readyz and the
    gauges must say so and the process live through it. Returns the seconds from Redis's
    return to ``/readyz`` 200."""
    redis.kill()
    t0 = time.monotonic()
    during()
    wait_until(lambda: svc.readyz()[0] == 503, 30, "/readyz 503 while Redis is away")
    assert any("redis" in r for r in svc.readyz()[1].get("reasons", []))
    assert svc.metric("causalwatch_backend_up", 'backend="redis"') == 0.0
    time.sleep(max(0.0, outage_s - (time.monotonic() - t0)))
    assert svc.alive, svc.tail()
    redis.start()
    return wait_until(lambda: svc.readyz()[0] == 200, 60, "/readyz 200 after Redis's return")


def check(o: Outcome, *, webhooks: bool = True) -> None:
    """The invariants: no sample lost or counted twice, no explanation, delivery or dead
    letter twice, every record committed, nobody restarted the service by hand."""
    assert o.samples_in_state == o.samples_expected and o.series_wrong == 0, o
    assert o.explanation_ids_repeated == 0, o
    assert o.explanations > 0, o
    if webhooks:
        assert o.deliveries_repeated == 0, o
        assert o.deliveries == o.explanations, o
        assert o.outbox_left == 0 and o.dead == 0, o
    assert o.dlq_repeated == 0 and o.dlq == o.dlq_expected, o
    assert o.committed == o.ends == o.checkpoint, o
    assert o.restarts_by_hand == 0, o
