"""Ingest against a real Kafka-protocol broker (tansu): group consume, decode, dead-letter,
commit and resume; every test runs against both client backends (kafka-python and
confluent-kafka), which must behave the same."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from causalwatch.errors import BackendError
from causalwatch.models import RawRecord
from causalwatch.settings import KafkaSettings, TopicSettings
from causalwatch.tooling.embedded import EmbeddedBroker
from ingest import (
    DeadLetterSink,
    IngestLimits,
    decode_batch,
    ensure_topics,
    next_offsets,
)
from ingest.kafka_backend import make_sink, make_source

pytestmark = pytest.mark.integration

BACKENDS = ["kafka-python", "confluent"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


NOW = time.time()
TS_NS = int(NOW) * 1_000_000_000
TS_RFC = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(NOW)))


def kafka_settings(
    broker: EmbeddedBroker, uid: str, topics: list[TopicSettings], backend: str = "kafka-python"
) -> KafkaSettings:
    # Short group timings keep the join at a few seconds against tansu (see NOTES.md); with
    # an 8 s rebalance timeout kafka-python's rejoin sometimes waited past a minute.
    return KafkaSettings(
        backend=backend,  # type: ignore[arg-type]
        bootstrap_servers=broker.bootstrap,
        group_id=f"g-{uid}",
        client_id=f"c-{uid}",
        topics=topics,
        session_timeout_ms=3_000,
        heartbeat_interval_ms=1_000,
        max_poll_interval_ms=3_000,
        poll_timeout_ms=200,
    )


def consume(source: Any, n: int, timeout_s: float = 30.0) -> list[RawRecord]:
    out: list[RawRecord] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        out.extend(source.next_batch(1_000))
    return out


def read_topic(bootstrap: str, topic: str, n: int, timeout_s: float = 15.0) -> list[object]:
    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False)
    try:
        deadline = time.monotonic() + timeout_s
        parts = None
        while not parts and time.monotonic() < deadline:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                time.sleep(0.1)
        assert parts, f"topic {topic} not found"
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[object] = []
        while len(out) < n and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=200).values():
                out.extend(recs)
        return out
    finally:
        consumer.close()


GOOD = {
    "json": [
        json.dumps({"name": "lat", "labels": {"service": "api"}, "timestamp": NOW, "value": 1.5}),
        json.dumps(
            [
                {"name": "lat", "labels": {"service": "db"}, "timestamp": TS_RFC, "value": 2},
                {"name": "err_total", "timestamp": NOW, "value": 0},
            ]
        ),
    ],
    "prometheus": [
        json.dumps(
            {
                "timestamp": TS_RFC,
                "value": "9876.5",
                "name": "up",
                "labels": {"__name__": "up", "instance": "h:9100", "job": "node"},
            }
        ),
    ],
    "influx": [
        f"cpu,host=web-1 usage_idle=97.5,usage_user=1.25 {TS_NS}\n"
        f"mem,host=web-1 used_percent=41.2 {TS_NS}\n",
    ],
}
# (value, format, expected reason, expected sample index or None)
BAD = [
    ("{not json", "json", "not_json", None),
    ("", "json", "empty", None),
    (json.dumps({"name": "lat", "timestamp": NOW}), "json", "missing_field", 0),
    (
        f'[{{"name": "lat", "timestamp": {NOW}, "value": 1}},'
        f' {{"name": "lat", "timestamp": {NOW}, "value": NaN}}]',
        "json",
        "nan_value",
        1,
    ),
    (json.dumps({"name": "lat", "timestamp": NOW + 86_400, "value": 1}), "json", "ts_future", 0),
    (
        json.dumps({"timestamp": TS_RFC, "value": "+Inf", "name": "up"}),
        "prometheus",
        "inf_value",
        0,
    ),
    (
        json.dumps({"timestamp": "last tuesday", "value": "1", "name": "up"}),
        "prometheus",
        "bad_timestamp",
        0,
    ),
    ("not line protocol at all", "influx", "not_format", 0),
    (f'svc,host=a status="ok" {TS_NS}', "influx", "non_numeric_field", 0),
]


def test_formats_decode_and_bad_records_reach_the_dlq(
    broker: EmbeddedBroker, uid: str, backend: str
) -> None:
    names = {fmt: f"in-{fmt}-{uid}" for fmt in GOOD}
    settings = kafka_settings(
        broker,
        uid,
        [TopicSettings(name=names[f], format=f) for f in GOOD],  # type: ignore[arg-type]
        backend,
    )
    ensure_topics(settings, {name: 2 for name in names.values()})
    sink = make_sink(settings)
    n_records = 0
    for fmt, values in GOOD.items():
        sink.write_batch(names[fmt], [(b"k", v.encode(), []) for v in values])
        n_records += len(values)
    for i, (value, fmt, _, _) in enumerate(BAD):
        sink.write_batch(names[fmt], [(f"bad-{i}".encode(), value.encode(), [])])
        n_records += 1

    source = make_source(settings)
    try:
        records = consume(source, n_records)
        assert len(records) == n_records
        formats = {t.name: t.format for t in settings.topics}
        batch, errors = decode_batch(records, formats, IngestLimits(), time.time())
        assert sorted(set(batch.series_keys)) == [
            'cpu_usage_idle{host="web-1"}',
            'cpu_usage_user{host="web-1"}',
            "err_total",
            "lat",
            'lat{service="api"}',
            'lat{service="db"}',
            'mem_used_percent{host="web-1"}',
            'up{instance="h:9100",job="node"}',
        ]
        assert len(batch) == 8  # 3 json + 1 prometheus + 3 influx + the good half of the NaN pair
        dlq = DeadLetterSink(sink, suffix=".dlq")
        dlq.write_batch(errors)
        assert sum(dlq.counts.values()) == len(BAD) == dlq.total
        assert dlq.counts["not_json"] == 1 and dlq.counts["non_numeric_field"] == 1
        assert lag_settles_to_zero(source)
    finally:
        source.close()
        sink.close()

    by_source: dict[bytes, tuple[str, dict[str, bytes], bytes]] = {}
    for fmt in GOOD:
        expected = sum(1 for _, f, _, _ in BAD if f == fmt)
        got = read_topic(broker.bootstrap, names[fmt] + ".dlq", expected)
        assert len(got) == expected
        for r in got:
            headers = dict(r.headers)  # type: ignore[attr-defined]
            assert headers["x-causalwatch-source-topic"] == names[fmt].encode()
            by_source[r.key] = (fmt, headers, r.value)  # type: ignore[attr-defined]
    for i, (value, fmt, reason, index) in enumerate(BAD):
        got_fmt, headers, raw = by_source[f"bad-{i}".encode()]
        assert got_fmt == fmt
        assert raw == value.encode()
        assert headers["x-causalwatch-reason"] == reason.encode()
        assert headers["x-causalwatch-message"]
        assert int(headers["x-causalwatch-source-partition"]) in (0, 1)
        assert int(headers["x-causalwatch-source-offset"]) >= 0
        if index is None:
            assert "x-causalwatch-sample-index" not in headers
        else:
            assert headers["x-causalwatch-sample-index"] == str(index).encode()


def lag_settles_to_zero(source: Any) -> bool:
    lag = source.lag()
    return bool(lag) and all(v == 0 for v in lag.values())


def _produce_numbered(sink: Any, topic: str, start: int, n: int) -> None:
    sink.write_batch(
        topic,
        [
            (None, json.dumps({"name": "n", "timestamp": NOW, "value": i}).encode(), [])
            for i in range(start, start + n)
        ],
    )


def _values(records: list[RawRecord]) -> list[float]:
    return sorted(json.loads(r.value)["value"] for r in records)


def test_commit_then_new_consumer_in_group_resumes_after_commit(
    broker: EmbeddedBroker, uid: str, backend: str
) -> None:
    topic = f"resume-{uid}"
    settings = kafka_settings(broker, uid, [TopicSettings(name=topic, format="json")], backend)
    ensure_topics(settings, {topic: 2})
    sink = make_sink(settings)
    _produce_numbered(sink, topic, 0, 10)
    first = make_source(settings)
    try:
        got = consume(first, 10)
        assert _values(got) == list(range(10))
        # Process only the first 6 (in offset order per partition) and commit those.
        done = sorted(got, key=lambda r: (r.partition, r.offset))[:6]
        first.commit(next_offsets(done))
    finally:
        first.close()
    rest = {(r.partition, r.offset) for r in got} - {(r.partition, r.offset) for r in done}
    _produce_numbered(sink, topic, 10, 3)
    second = make_source(settings)
    try:
        again = consume(second, len(rest) + 3)
        assert {(r.partition, r.offset) for r in again} >= rest
        assert _values(again) == sorted(
            [json.loads(r.value)["value"] for r in got if (r.partition, r.offset) in rest]
            + [10, 11, 12]
        )
        # Both partitions are assigned; one the producer left empty is at position 0.
        assert second.positions() == {
            (topic, p): 1 + max((r.offset for r in got + again if r.partition == p), default=-1)
            for p in (0, 1)
        }
    finally:
        second.close()
        sink.close()


def test_resume_offsets_callback_overrides_committed_offsets(
    broker: EmbeddedBroker, uid: str, backend: str
) -> None:
    topic = f"ckpt-{uid}"
    settings = kafka_settings(broker, uid, [TopicSettings(name=topic, format="json")], backend)
    ensure_topics(settings, {topic: 1})
    sink = make_sink(settings)
    _produce_numbered(sink, topic, 0, 8)
    sink.close()
    asked: list[list[tuple[str, int]]] = []

    def checkpoint(tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        asked.append(tps)
        return {(topic, 0): 5}  # the checkpoint covers offsets 0..4

    source = make_source(settings, resume_offsets=checkpoint)
    try:
        got = consume(source, 3)
        assert [r.offset for r in got] == [5, 6, 7]
        assert asked == [[(topic, 0)]]
        source.commit({(topic, 0): 8})
        source.seek({(topic, 0): 2})
        assert [r.offset for r in consume(source, 6)] == [2, 3, 4, 5, 6, 7]
    finally:
        source.close()


def test_failing_checkpoint_store_raises_backend_error_and_reads_nothing(
    broker: EmbeddedBroker, uid: str, backend: str
) -> None:
    topic = f"ckfail-{uid}"
    settings = kafka_settings(broker, uid, [TopicSettings(name=topic, format="json")], backend)
    ensure_topics(settings, {topic: 1})
    sink = make_sink(settings)
    _produce_numbered(sink, topic, 0, 4)
    sink.close()
    calls = {"n": 0}

    def flaky(tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("redis down")
        return {(topic, 0): 1}

    source = make_source(settings, resume_offsets=flaky)
    try:
        deadline = time.monotonic() + 30
        raised = False
        while not raised and time.monotonic() < deadline:
            try:
                assert source.next_batch(100) == []
            except BackendError as exc:
                raised = "redis down" in str(exc)
        assert raised
        assert [r.offset for r in consume(source, 3)] == [1, 2, 3]
    finally:
        source.close()


def test_sink_failure_is_a_backend_error_and_dlq_counts_nothing(uid: str, backend: str) -> None:
    own = EmbeddedBroker().start()
    try:
        settings = kafka_settings(own, uid, [TopicSettings(name=f"x-{uid}")], backend)
        sink = make_sink(settings, flush_timeout_s=2.0)
        dlq = DeadLetterSink(sink)
        records = [RawRecord(f"x-{uid}", 0, 0, b"{nope")]
        _, errors = decode_batch(records, {}, IngestLimits(), time.time())
        dlq.write_batch(errors)
        assert dlq.counts == {"not_json": 1}
        own.stop()
        t0 = time.monotonic()
        with pytest.raises(BackendError) as info:
            dlq.write_batch(errors)
        assert info.value.backend == "kafka" and info.value.retryable
        assert time.monotonic() - t0 < 20
        assert dlq.counts == {"not_json": 1} and dlq.total == 1
        sink.close()  # never raises, even with records stuck for a dead broker
    finally:
        own.stop()


def test_rebalance_hands_partitions_over_through_on_revoke_and_resume_offsets(
    broker: EmbeddedBroker, uid: str, backend: str
) -> None:
    topic = f"handover-{uid}"
    settings = kafka_settings(broker, uid, [TopicSettings(name=topic, format="json")], backend)
    ensure_topics(settings, {topic: 2})
    sink = make_sink(settings)
    _produce_numbered(sink, topic, 0, 20)
    revoked: list[list[tuple[str, int]]] = []
    asked: list[list[tuple[str, int]]] = []
    handed: dict[tuple[str, int], int] = {}  # what A checkpointed when it gave partitions up
    a_seen: list[RawRecord] = []

    def a_revoke(tps: list[tuple[str, int]]) -> None:
        revoked.append(tps)
        for tp in tps:  # the next offset A would read: its "checkpoint" for the handover
            handed[tp] = 1 + max(
                (r.offset for r in a_seen if (r.topic, r.partition) == tp), default=-1
            )

    def b_resume(tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        asked.append(tps)
        return {tp: handed[tp] for tp in tps if tp in handed}

    a = make_source(settings, on_revoke=a_revoke)
    b = None
    try:
        a_seen.extend(consume(a, 20))
        assert _values(a_seen) == list(range(20)) and len(a.assignment()) == 2
        # A reads on without committing; B joins and takes one partition from it.
        b = make_source(settings, resume_offsets=b_resume)
        b_seen: list[RawRecord] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (b.assignment() and len(a.assignment()) == 1):
            a_seen.extend(a.next_batch(100))
            b_seen.extend(b.next_batch(100))
        assert revoked, "A was never asked to hand partitions over"
        moved = set(b.assignment())
        assert moved and moved.isdisjoint(a.assignment())
        assert moved <= {tp for tps in revoked for tp in tps}
        assert moved <= {tp for tps in asked for tp in tps}  # B asked where to resume
        assert b_seen == []  # B resumed where A stopped: nothing read twice
        _produce_numbered(sink, topic, 100, 20)
        deadline = time.monotonic() + 30
        new: list[RawRecord] = []
        while len(new) < 20 and time.monotonic() < deadline:
            new.extend(r for r in a.next_batch(100) if json.loads(r.value)["value"] >= 100)
            got_b = b.next_batch(100)
            assert {(r.topic, r.partition) for r in got_b} <= moved
            new.extend(got_b)
        assert _values(new) == list(range(100, 120))
    finally:
        a.close()
        if b is not None:
            b.close()
        sink.close()


def test_dead_letters_are_not_written_again_after_a_restart(
    broker: EmbeddedBroker, uid: str, backend: str
) -> None:
    """The DLQ tail read back through the sink's ``read_tail`` (both backends) keeps a batch
    dead-lettered again after a crash from landing twice."""
    settings = kafka_settings(broker, uid, [TopicSettings(name=f"t-{uid}")], backend)
    records = [RawRecord(f"t-{uid}", p, off, b"{nope") for p in (0, 1) for off in range(3)]
    _, errors = decode_batch(records, {}, IngestLimits(), time.time())
    dlq_topic = f"t-{uid}.dlq"
    ensure_topics(settings, {dlq_topic: 2})
    sink = make_sink(settings)
    try:
        assert sink.read_tail(f"none-{uid}") == []  # a topic that does not exist
        assert sink.read_tail(dlq_topic) == []  # an empty one
        DeadLetterSink(sink, read_back=sink.read_tail).write_batch(errors[:4])
    finally:
        sink.close()
    again = make_sink(settings)  # the restarted process: a new producer, the same batch again
    try:
        tail = again.read_tail(dlq_topic)
        assert len(tail) == 4
        assert {dict(h)["x-causalwatch-reason"] for h in tail} == {b"not_json"}
        dlq = DeadLetterSink(again, read_back=again.read_tail)
        dlq.write_batch(errors)
        assert dlq.duplicates_skipped == 4 and dlq.total == len(errors) == 6
        assert len(again.read_tail(dlq_topic)) == 6
    finally:
        again.close()
    got = read_topic(broker.bootstrap, dlq_topic, 6)
    positions = [
        (
            dict(r.headers)["x-causalwatch-source-partition"],
            dict(r.headers)["x-causalwatch-source-offset"],
        )  # type: ignore[attr-defined]
        for r in got
    ]
    assert len(positions) == 6 and len(set(positions)) == 6


@pytest.mark.parametrize("n_partitions", [4, 3])
def test_explicit_partitions_put_each_group_in_its_own_partition(
    broker: EmbeddedBroker, uid: str, backend: str, n_partitions: int
) -> None:
    """The internal topics' series groups go to partition ``group % count``, whatever the
    client's partitioner would make of their keys (these four keys are all the same)."""
    topic = f"internal-{uid}-{n_partitions}"
    settings = kafka_settings(broker, uid, [TopicSettings(name=topic, format="json")], backend)
    ensure_topics(broker.bootstrap, {topic: n_partitions})
    sink = make_sink(settings)
    try:
        items = [(b"one-key", f"group-{g}".encode(), []) for g in range(4)]
        sink.write_batch(topic, items, [0, 1, 2, 3])
        sink.write_batch(topic, [(b"one-key", b"keyed", [])])  # no partitions: the key's
    finally:
        sink.close()
    got = read_topic(broker.bootstrap, topic, 5)
    where = {bytes(r.value): r.partition for r in got}  # type: ignore[attr-defined]
    assert {k: where[k] for k in where if k != b"keyed"} == {
        f"group-{g}".encode(): g % n_partitions for g in range(4)
    }
    assert b"keyed" in where


def test_lag_from_the_fetched_ends_equals_the_brokers_answer(
    broker: EmbeddedBroker, uid: str, backend: str
) -> None:
    """``lag(fresh=False)`` (what the loop asks after each checkpoint) takes the ends the
    fetches brought instead of asking the broker, and gives the broker's answer."""
    topic = f"lagcache-{uid}"
    settings = kafka_settings(broker, uid, [TopicSettings(name=topic, format="json")], backend)
    ensure_topics(settings, {topic: 1})  # so the partition has surely been fetched
    sink = make_sink(settings)
    _produce_numbered(sink, topic, 0, 400)
    source = make_source(settings)
    try:
        got: list[RawRecord] = []
        deadline = time.monotonic() + 30
        while len(got) < 20 and time.monotonic() < deadline:
            got.extend(source.next_batch(20))  # part of the topic: a lag to measure
        fresh = source.lag()
        cached = source.lag(fresh=False)
        assert cached == fresh == {(topic, 0): 400 - len(got)}
        consume(source, 400 - len(got))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and sum(source.lag(fresh=False).values()):
            source.next_batch(1_000)  # a fetch brings the partitions' ends
        assert source.lag(fresh=False) == source.lag() == {(topic, 0): 0}
    finally:
        source.close()
        sink.close()
