"""Compressed and undecodable batches against the real broker (tansu), on both backends.

Every codec is produced by one backend and consumed by the other, and the broker is
checked to store and return the batches compressed (a spy on kafka-python's batch reader
records each fetched batch's codec). Undecodable batches are real batches on the broker: a
gzip batch whose payload is not gzip, and a batch marked with codec 5, which no Kafka
version defines. They must be dead-lettered by topic, partition and offset while the other
partition and topic keep flowing.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import kafka.codec
import kafka.consumer.fetcher
import kafka.record.default_records as default_records
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.record import MemoryRecords
from kafka.structs import TopicPartition

from causalwatch.settings import KafkaSettings, TopicSettings
from causalwatch.tooling.embedded import EmbeddedBroker
from ingest import DeadLetterSink, IngestLimits, decode_batch, ensure_topics
from ingest.kafka_backend import make_sink, make_source

pytestmark = pytest.mark.integration

NOW = time.time()
CODEC_IDS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
OTHER = {"kafka-python": "confluent", "confluent": "kafka-python"}


def settings_for(broker: EmbeddedBroker, uid: str, topics: list[str], backend: str, **kw: Any):
    return KafkaSettings(
        backend=backend,  # type: ignore[arg-type]
        bootstrap_servers=broker.bootstrap,
        group_id=f"g-{uid}",
        client_id=f"c-{uid}",
        topics=[TopicSettings(name=t, format="json") for t in topics],
        session_timeout_ms=6_000,
        heartbeat_interval_ms=1_000,
        max_poll_interval_ms=8_000,
        **kw,
    )


def sample(i: int) -> bytes:
    return json.dumps({"name": "cw_codec", "timestamp": NOW, "value": i}).encode()


def consume_until(source: Any, pred: Any, timeout_s: float = 40.0) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while not pred(out) and time.monotonic() < deadline:
        out.extend(source.next_batch(1_000))
    return out


@contextlib.contextmanager
def batch_codec_spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The codec id of every batch kafka-python's fetcher reads from the broker."""
    seen: list[int] = []

    class Spy(MemoryRecords):  # type: ignore[misc]
        def next_batch(self, *args: Any, **kwargs: Any) -> Any:
            batch = super().next_batch(*args, **kwargs)
            if batch is not None:
                seen.append(batch.compression_type)
            return batch

    with monkeypatch.context() as m:
        m.setattr(kafka.consumer.fetcher, "MemoryRecords", Spy)
        yield seen


def stored_codecs(broker: EmbeddedBroker, topic: str, n: int, monkeypatch: Any) -> list[int]:
    with batch_codec_spy(monkeypatch) as seen:
        consumer = KafkaConsumer(bootstrap_servers=[broker.bootstrap], enable_auto_commit=False)
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            got = 0
            deadline = time.monotonic() + 15
            while got < n and time.monotonic() < deadline:
                got += sum(len(r) for r in consumer.poll(timeout_ms=200).values())
            assert got == n
        finally:
            consumer.close()
    return seen


@pytest.mark.needs_confluent  # one backend produces, the other consumes
@pytest.mark.parametrize("codec", sorted(CODEC_IDS))
@pytest.mark.parametrize("producer_backend", sorted(OTHER))
def test_every_codec_is_produced_stored_compressed_and_consumed(
    broker: EmbeddedBroker, uid: str, codec: str, producer_backend: str, monkeypatch: Any
) -> None:
    topic = f"codec-{codec}-{uid}"
    n = 500
    produce = settings_for(broker, uid, [topic], producer_backend, compression_type=codec)
    ensure_topics(produce, {topic: 1})
    sink = make_sink(produce)
    try:
        sink.write_batch(topic, [(None, sample(i), [("h", b"v")]) for i in range(n)])
    finally:
        sink.close()
    # The broker keeps the producer's batches: they come back in that codec.
    codecs = stored_codecs(broker, topic, n, monkeypatch)
    assert codecs and set(codecs) == {CODEC_IDS[codec]}, codecs

    consumer_backend = OTHER[producer_backend]
    source = make_source(settings_for(broker, uid, [topic], consumer_backend))
    try:
        got = consume_until(source, lambda out: len(out) >= n)
    finally:
        source.close()
    assert sorted(json.loads(r.value)["value"] for r in got) == list(range(n))
    assert all(r.error is None for r in got)


@contextlib.contextmanager
def producing_corrupt_gzip() -> Iterator[None]:
    """kafka-python's batch builder writes a real, CRC-valid gzip batch that is not gzip.

    (A batch marked with an undefined codec would be the other case, but tansu refuses it
    at produce time: UnknownError.)"""
    saved = default_records.gzip_encode

    def not_gzip(data: bytes, *args: Any, **kwargs: Any) -> bytes:
        return b"\x1f\x8b\x08\x00this is not a gzip stream"

    default_records.gzip_encode = not_gzip  # type: ignore[assignment]
    try:
        yield
    finally:
        default_records.gzip_encode = saved  # type: ignore[assignment]


def produce_raw(broker: EmbeddedBroker, topic: str, partition: int, values: list[bytes], **kw: Any):
    producer = KafkaProducer(bootstrap_servers=[broker.bootstrap], linger_ms=50, **kw)
    try:
        futures = [producer.send(topic, value=v, partition=partition) for v in values]
        producer.flush(15)
        return [f.get(timeout=10).offset for f in futures]
    finally:
        producer.close(5)


@pytest.mark.parametrize(
    ("kind", "backend"),
    [
        ("corrupt_gzip", "kafka-python"),
        ("corrupt_gzip", "confluent"),
        # kafka-python on a machine without the zstandard package (issue 11's crash loop);
        # librdkafka has every codec built in, so this case exists for kafka-python only.
        ("codec_library_missing", "kafka-python"),
    ],
)
def test_an_undecodable_batch_is_dead_lettered_and_stops_nothing_else(
    broker: EmbeddedBroker, uid: str, kind: str, backend: str, monkeypatch: Any
) -> None:
    topic, other_topic = f"bad-{kind}-{uid}", f"fine-{kind}-{uid}"
    ensure_topics(broker.bootstrap, {topic: 2, other_topic: 1})
    before = produce_raw(broker, topic, 0, [sample(i) for i in range(0, 5)])
    bad_values = [sample(i) for i in range(100, 108)]
    if kind == "corrupt_gzip":
        with producing_corrupt_gzip():
            bad = produce_raw(broker, topic, 0, bad_values, compression_type="gzip")
    else:
        bad = produce_raw(broker, topic, 0, bad_values, compression_type="zstd")
    after = produce_raw(broker, topic, 0, [sample(i) for i in range(5, 10)])
    produce_raw(broker, topic, 1, [sample(i) for i in range(10, 20)])
    produce_raw(broker, other_topic, 0, [sample(i) for i in range(20, 30)])
    assert bad == list(range(5, 13)) and before == list(range(5)) and after[0] == 13

    settings = settings_for(broker, uid, [topic, other_topic], backend)
    if kind == "codec_library_missing":
        monkeypatch.setattr(kafka.codec, "zstd", None)
    source = make_source(settings)
    try:
        got = consume_until(
            source,
            lambda out: (
                sum(r.error is None for r in out) >= 30
                and any(r.error is not None for r in out)
                and max((r.offset for r in out if r.partition == 0 and r.topic == topic), default=0)
                >= 17
            ),
        )
        lag = source.lag()
    finally:
        source.close()
        monkeypatch.undo()
    good = sorted(json.loads(r.value)["value"] for r in got if r.error is None)
    assert good == list(range(30))  # both partitions and the other topic, all of it
    errors = [r for r in got if r.error is not None]
    assert errors and all((r.topic, r.partition) == (topic, 0) for r in errors)
    assert {r.offset for r in errors} <= set(bad)
    assert sorted(r.offset for r in errors) == bad  # one dead letter per skipped offset
    assert lag[(topic, 0)] == 0 and lag[(topic, 1)] == 0

    # The decoder turns them into dead letters that name where they came from.
    batch, dead = decode_batch(got, {}, IngestLimits(), time.time())
    assert len(batch) == 30 and [e.reason for e in dead] == ["undecodable_batch"] * len(errors)
    sink = make_sink(settings)
    try:
        dlq = DeadLetterSink(sink)
        dlq.write_batch(dead)
        assert dlq.counts == {"undecodable_batch": len(errors)}
    finally:
        sink.close()
    letters = read_all(broker, topic + ".dlq", len(errors))
    headers = [dict(r.headers) for r in letters]
    assert {h["x-causalwatch-source-offset"] for h in headers} == {
        str(r.offset).encode() for r in errors
    }
    for h in headers:
        assert h["x-causalwatch-reason"] == b"undecodable_batch"
        assert h["x-causalwatch-source-topic"] == topic.encode()
        assert h["x-causalwatch-source-partition"] == b"0"
        assert b"unreadable" in h["x-causalwatch-message"]


def read_all(broker: EmbeddedBroker, topic: str, n: int) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=[broker.bootstrap], enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        deadline = time.monotonic() + 15
        while not consumer.partitions_for_topic(topic) and time.monotonic() < deadline:
            time.sleep(0.1)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        out: list[Any] = []
        while len(out) < n and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=200).values():
                out.extend(recs)
        assert len(out) == n
        return out
    finally:
        consumer.close()
