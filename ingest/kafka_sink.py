"""Kafka producer adapter (kafka-python) and topic set-up, for internal and dead-letter topics.

:class:`KafkaSink` sends a batch and waits for every acknowledgement (``acks=all``) before
returning, so a caller that commits offsets afterwards never commits past a lost write.
When a write fails (the broker is away) the producer is dropped with whatever it had not
sent, and a new one is made on the next write: a retried batch is then the only copy on its
way, and :meth:`KafkaSink.read_tail` lets the dead-letter sink see what had already landed.
Batches are compressed with ``kafka.compression_type``. :func:`ensure_topics` creates
missing topics with an explicit partition count (brokers that auto-create pick their own
count, or refuse). Connection and security options come from
:func:`ingest.kafka_config.kafka_python_config`, errors go through
:func:`ingest.kafka_errors.map_kafka_errors`: no ``kafka.errors`` exception escapes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError
from kafka.structs import TopicPartition

from causalwatch.errors import BackendError
from causalwatch.settings import KafkaSettings
from ingest.kafka_config import kafka_python_config, secrets_of, spread_partitions
from ingest.kafka_errors import map_kafka_errors

__all__ = ["KafkaSink", "ensure_topics"]

log = logging.getLogger(__name__)

Header = tuple[str, bytes]


class KafkaSink:
    """A producer for internal and dead-letter topics; one flush per batch.

    ``flush_timeout_s`` bounds both the wait for metadata of a new topic and the flush;
    past it :meth:`write_batch` raises a retryable ``BackendError``.
    """

    def __init__(self, settings: KafkaSettings, *, flush_timeout_s: float = 30.0) -> None:
        self.settings = settings
        self.flush_timeout_s = flush_timeout_s
        self._secrets = secrets_of(settings)
        self._producer: Any = None
        self._producer = self._make_producer()
        self._n_partitions: dict[str, int] = {}

    def _make_producer(self) -> Any:
        settings, flush_timeout_s = self.settings, self.flush_timeout_s
        codec = settings.compression_type
        with map_kafka_errors("producer start", self._secrets):
            return KafkaProducer(
                **kafka_python_config(settings),
                acks="all",
                compression_type=None if codec == "none" else codec,
                linger_ms=5,
                batch_size=262_144,  # DLQ values can be large; default 16 KiB sends one by one
                max_request_size=4 * 1_048_576,
                max_block_ms=int(flush_timeout_s * 1000),
                bootstrap_timeout_ms=settings.bootstrap_timeout_ms,
            )

    def write_batch(
        self,
        topic: str,
        items: Sequence[tuple[bytes | None, bytes, list[Header]]],
        partitions: Sequence[int] | None = None,
    ) -> None:
        """Send ``(key, value, headers)`` items and wait until all are acknowledged.

        ``partitions`` (one per item) sends each item to that partition, modulo the topic's
        partition count, instead of where the client's partitioner hashes its key
        (:func:`ingest.kafka_config.spread_partitions`).

        On failure the producer and its unsent records are dropped (see the module
        docstring) and a retryable ``BackendError`` is raised for a broker that is away.
        """
        if self._producer is None:
            self._producer = self._make_producer()
        try:
            with map_kafka_errors(f"produce to {topic!r}", self._secrets):
                parts = spread_partitions(partitions, len(items), topic, self._count_partitions)
                futures = [
                    self._producer.send(
                        topic, value=value, key=key, headers=headers, partition=part
                    )
                    for (key, value, headers), part in zip(items, parts, strict=True)
                ]
                self._producer.flush(timeout=self.flush_timeout_s)
                for fut in futures:
                    fut.get(timeout=0)
        except BackendError:
            self._abandon()
            raise

    def _count_partitions(self, topic: str) -> int:
        if topic not in self._n_partitions:
            self._n_partitions[topic] = len(self._producer.partitions_for(topic) or ())
        return self._n_partitions[topic]

    def _abandon(self) -> None:
        self._n_partitions.clear()
        producer, self._producer = self._producer, None
        if producer is None:
            return
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
        try:
            producer.close(timeout=0)
        except Exception:  # dropping it on purpose; nothing to report
            log.debug("abandoned producer did not close cleanly", exc_info=True)
        producer._closed = True

    def read_tail(self, topic: str, max_records: int = 50_000) -> list[list[Header]]:
        """Headers of the last ``max_records`` records of each partition of ``topic`` (an
        empty list for a topic that does not exist). Reads to the true end: past the end
        offsets the broker reports (tansu's can be short) until a poll brings nothing."""
        with map_kafka_errors(f"read back {topic!r}", self._secrets):
            consumer = KafkaConsumer(
                **kafka_python_config(self.settings),
                group_id=None,
                enable_auto_commit=False,
                bootstrap_timeout_ms=self.settings.bootstrap_timeout_ms,
            )
            try:
                return _read_tail(consumer, topic, max_records, self.flush_timeout_s)
            finally:
                consumer.close()

    def ensure_topics(self, partitions: Mapping[str, int]) -> None:
        ensure_topics(self.settings, partitions)

    def close(self) -> None:
        """Flush and close; never raises.

        Records still unsent after ``flush_timeout_s`` (broker gone) are dropped with a
        warning. That is safe for at-least-once: a failed :meth:`write_batch` already raised,
        so the offsets that produced them were never committed and will be read again.
        """
        if self._producer is None:
            return
        try:
            self._producer.close(timeout=self.flush_timeout_s)
        except KafkaError as exc:
            log.warning("producer closed with unsent records", extra={"error": str(exc)})
            sender = getattr(self._producer, "_sender", None)
            if sender is not None:  # close() gives up before stopping its I/O thread
                sender.force_close()
            self._producer._closed = True


def _read_tail(consumer: Any, topic: str, max_records: int, timeout_s: float) -> list[list[Header]]:
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        return []
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    begin = consumer.beginning_offsets(tps)
    end = consumer.end_offsets(tps)
    for tp in tps:
        consumer.seek(tp, max(int(begin[tp]), int(end[tp]) - max_records))
    out: list[list[Header]] = []
    deadline = time.monotonic() + timeout_s
    while True:
        got = consumer.poll(timeout_ms=300, max_records=10_000)
        for recs in got.values():
            out.extend([(k, bytes(v)) for k, v in r.headers] for r in recs)
        if not got and all(consumer.position(tp) >= int(end[tp]) for tp in tps):
            return out
        if time.monotonic() > deadline:
            raise KafkaTimeoutError(f"reading {topic} back took over {timeout_s} s")


def ensure_topics(
    settings: KafkaSettings | str, partitions: Mapping[str, int], client_id: str = "causalwatch"
) -> None:
    """Create the missing topics with the given partition counts (existing ones untouched).

    ``settings`` is the ``KafkaSettings`` (connection and security), or for a plaintext
    broker just its bootstrap servers.
    """
    if isinstance(settings, str):
        settings = KafkaSettings(bootstrap_servers=settings, client_id=client_id)
    if settings.backend == "confluent":
        from ingest.confluent_backend import ensure_topics_confluent

        ensure_topics_confluent(settings, partitions)
        return
    admin: Any = None
    with map_kafka_errors("topic creation", secrets_of(settings)):
        try:
            admin = KafkaAdminClient(
                **kafka_python_config(settings), bootstrap_timeout_ms=settings.bootstrap_timeout_ms
            )
            existing = set(admin.list_topics())
            new = [
                NewTopic(name, num_partitions=n, replication_factor=1)
                for name, n in partitions.items()
                if name not in existing
            ]
            if new:
                admin.create_topics(new, raise_errors=False)
        except TopicAlreadyExistsError:
            pass
        finally:
            if admin is not None:
                admin.close()
