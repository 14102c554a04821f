"""confluent-kafka (librdkafka) behind the same source/sink interface as kafka-python's.

``kafka.backend: confluent`` (``pip install causalwatch[fast]``) swaps
:class:`~ingest.kafka_source.KafkaSource` / :class:`~ingest.kafka_sink.KafkaSink` for
:class:`ConfluentSource` / :class:`ConfluentSink`. librdkafka consumes 3-4x more small
messages per second than kafka-python in one process (BENCHMARKS.md) and decodes every
codec natively. The semantics are the same:

- a consumer group with ``enable.auto.commit`` and ``enable.auto.offset.store`` off:
  offsets reach Kafka only through :meth:`ConfluentSource.commit`, after the checkpoint;
- on assignment ``resume_offsets`` says where to start; if it fails, the partitions stay
  paused and :meth:`ConfluentSource.next_batch` raises ``BackendError`` until it works, so
  nothing is read from a wrong position; ``on_revoke`` runs before a rebalance (or a lost
  session) takes partitions away, on the thread that calls ``next_batch``;
- a message librdkafka cannot read (bad compression, an unknown codec, a corrupt batch),
  which it would otherwise fetch again forever, is stepped over (a seek to the next
  offset) and comes back as a :class:`~causalwatch.models.RawRecord` with ``error`` set,
  to be dead-lettered; one per offset, like the kafka-python source;
- dead-letter headers, ``acks=all`` with a wait for every delivery, the DLQ tail read back
  for de-duplication after a restart (:meth:`ConfluentSink.read_tail`), ``compression_type``,
  the security settings and the reconnect backoff come from the same settings, and every
  error goes through :func:`ingest.kafka_errors.map_kafka_errors`.

librdkafka retries transport errors itself; those are logged (once per kind and minute),
not raised, as kafka-python's poll does not raise them either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    NewTopic,
)

from causalwatch.errors import BackendError
from causalwatch.models import RawRecord, raw_record
from causalwatch.settings import KafkaSettings
from ingest.kafka_config import librdkafka_config, secrets_of, spread_partitions
from ingest.kafka_errors import map_kafka_errors

__all__ = ["ConfluentSink", "ConfluentSource", "ensure_topics_confluent"]

log = logging.getLogger(__name__)
_lib_log = logging.getLogger("ingest.librdkafka")

TP = tuple[str, int]
Header = tuple[str, bytes]

# Message-level errors: the record at (topic, partition, offset) cannot be read.
# CORRUPT_MESSAGE (2) is the broker's code for a CRC failure; the stubs lack the name.
_RECORD_ERRORS = {KafkaError._BAD_MSG, KafkaError._BAD_COMPRESSION, 2}
_QUIET = {KafkaError._PARTITION_EOF, KafkaError._NO_OFFSET}


class ConfluentSource:
    """Batches of :class:`~causalwatch.models.RawRecord` from a consumer group (librdkafka).

    Same constructor and methods as :class:`ingest.kafka_source.KafkaSource`.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        resume_offsets: Callable[[list[TP]], Mapping[TP, int]] | None = None,
        topics: Sequence[str] | None = None,
        group_id: str | None = None,
        call_timeout_s: float = 10.0,
        lag_timeout_s: float = 5.0,
        on_revoke: Callable[[list[TP]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.resume_offsets = resume_offsets
        self.on_revoke = on_revoke
        self.topics = list(topics) if topics is not None else [t.name for t in settings.topics]
        self._timeout_s = call_timeout_s
        self._lag_timeout_s = lag_timeout_s
        self._secrets = secrets_of(settings)
        self._pending: list[TopicPartition] = []  # assigned, paused, not yet resumed
        self._resume_error: BaseException | None = None
        self._warned: dict[int, float] = {}
        # (topic, partition) -> (first offset of the unreadable batch, next offset to try)
        self._bad_batch: dict[TP, tuple[int, int]] = {}
        self.undecodable = 0
        self.lag_measured_at = 0.0
        conf = {
            **librdkafka_config(settings),
            "group.id": group_id if group_id is not None else settings.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": settings.auto_offset_reset,
            "session.timeout.ms": settings.session_timeout_ms,
            "heartbeat.interval.ms": settings.heartbeat_interval_ms,
            "max.poll.interval.ms": settings.max_poll_interval_ms,
            "enable.partition.eof": False,
        }
        with map_kafka_errors("consumer start", self._secrets):
            self._consumer = Consumer(conf, logger=_lib_log)
            self._consumer.subscribe(
                self.topics,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )

    # -- rebalance callbacks (run inside consume(), on the caller's thread)
    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        log.info(
            "partitions assigned",
            extra={"partitions": [(p.topic, p.partition) for p in partitions]},
        )
        if self.resume_offsets is None or not partitions:
            return
        try:
            offsets = self.resume_offsets(sorted((p.topic, p.partition) for p in partitions))
        except Exception as exc:  # the checkpoint store failed: hold them until it answers
            self._resume_error = exc
            self._pending = list(partitions)
            consumer.assign(partitions)
            consumer.pause(partitions)
            return
        for p in partitions:
            off = offsets.get((p.topic, p.partition))
            if off is not None:
                p.offset = int(off)
        consumer.assign(partitions)
        log.info(
            "resumed from checkpoint",
            extra={"offsets": {f"{t}:{p}": int(o) for (t, p), o in offsets.items()}},
        )

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        revoked = sorted((p.topic, p.partition) for p in partitions)
        self._pending = [p for p in self._pending if (p.topic, p.partition) not in revoked]
        if not self._pending:
            self._resume_error = None
        log.info("partitions revoked", extra={"partitions": revoked})
        if self.on_revoke is not None and revoked:
            self.on_revoke(revoked)

    def _retry_resume(self) -> None:
        assert self.resume_offsets is not None
        keys = sorted((p.topic, p.partition) for p in self._pending)
        try:
            offsets = self.resume_offsets(keys)
        except Exception as exc:
            self._resume_error = exc
            return
        with map_kafka_errors("seek after resume", self._secrets):
            for p in self._pending:
                off = offsets.get((p.topic, p.partition))
                if off is not None:
                    self._consumer.seek(TopicPartition(p.topic, p.partition, int(off)))
            self._consumer.resume(self._pending)
        self._pending, self._resume_error = [], None

    def next_batch(self, max_records: int) -> list[RawRecord]:
        """Up to ``max_records`` records, waiting at most ``settings.poll_timeout_ms``."""
        if self._pending:
            self._retry_resume()
        timeout_s = self.settings.poll_timeout_ms / 1000.0
        out: list[RawRecord] = []
        skipped: set[tuple[str, int, int]] = set()
        skip_deadline = 0.0
        while True:
            with map_kafka_errors("poll", self._secrets):
                msgs = self._consumer.consume(
                    num_messages=max_records - len(out), timeout=timeout_s
                )
            n_skipped = len(skipped)
            self._convert(msgs, out, skipped)
            if len(out) >= max_records or not skipped:
                break
            # Stepping over an unreadable batch: fetch again at once, in short polls, for up
            # to one more poll timeout, instead of one dead letter per poll timeout.
            if n_skipped == 0:
                skip_deadline = time.monotonic() + self.settings.poll_timeout_ms / 1000.0
            if time.monotonic() >= skip_deadline:
                break
            timeout_s = 0.005
        if self._resume_error is not None and self._pending:
            failure = self._resume_error
            raise BackendError(
                f"resume_offsets failed for "
                f"{sorted((p.topic, p.partition) for p in self._pending)}: {failure!r}",
                backend="kafka",
            ) from failure
        return out

    def _convert(
        self, msgs: list[Any], out: list[RawRecord], skipped: set[tuple[str, int, int]]
    ) -> None:
        m: Any
        append = out.append
        for m in msgs:
            err = m.error()
            if err is None:
                ts_type, ts = m.timestamp()
                append(
                    raw_record(
                        (
                            m.topic(),
                            m.partition(),
                            m.offset(),
                            m.value() or b"",
                            ts if ts_type else None,
                            m.key(),
                            None,
                        )
                    )
                )
            elif err.code() in _RECORD_ERRORS and m.topic() and m.offset() is not None:
                # librdkafka refetches a batch it cannot read forever, and names it by its
                # first offset whatever offset was asked for: step over it one offset at a
                # time (the batch's end is unknown), one dead letter per offset, as
                # kafka-python's path does.
                tp_key = (m.topic(), m.partition())
                base = int(m.offset())
                prev = self._bad_batch.get(tp_key)
                at = prev[1] if prev is not None and prev[0] == base else base
                where = (tp_key[0], tp_key[1], at)
                if where in skipped:
                    continue
                skipped.add(where)
                self._bad_batch[tp_key] = (base, at + 1)
                self.undecodable += 1
                with map_kafka_errors("seek past an undecodable batch", self._secrets):
                    self._consumer.seek(TopicPartition(where[0], where[1], at + 1))
                out.append(RawRecord(*where, b"", error=f"{err.name()}: {err.str()}"[:500]))
                if self.undecodable == 1 or self.undecodable % 1000 == 0:
                    log.warning(
                        "undecodable record batch skipped",
                        extra={
                            "topic": where[0],
                            "partition": where[1],
                            "offset": where[2],
                            "error": err.str()[:300],
                            "total": self.undecodable,
                        },
                    )
            else:
                self._library_error(err)

    def _library_error(self, err: Any) -> None:
        code = err.code()
        if code in _QUIET:
            return
        if err.fatal() or not (err.retriable() or code in _TRANSIENT):
            with map_kafka_errors("poll", self._secrets):
                raise KafkaException(err)
        now = time.monotonic()
        if now - self._warned.get(code, -1e9) >= 60.0:
            self._warned[code] = now
            log.warning("kafka client error (retrying)", extra={"error": err.str()[:300]})

    # -- offsets
    def commit(self, next_offsets: Mapping[TP, int]) -> None:
        """Commit the NEXT offset to read per partition (last processed + 1)."""
        assigned = set(self.assignment())
        offsets = [
            TopicPartition(t, p, int(o)) for (t, p), o in next_offsets.items() if (t, p) in assigned
        ]
        if len(offsets) < len(next_offsets):
            log.warning("skipped commit of unassigned partitions", extra={"n": len(next_offsets)})
        if not offsets:
            return
        with map_kafka_errors("commit", self._secrets):
            for tp in self._consumer.commit(offsets=offsets, asynchronous=False) or []:
                if tp.error is not None:
                    raise KafkaException(tp.error)

    def committed(self, tps: Sequence[TP]) -> dict[TP, int | None]:
        """The group's committed (next) offset of each partition; None where there is none."""
        with map_kafka_errors("committed offsets", self._secrets):
            got = self._consumer.committed([TopicPartition(t, p) for t, p in tps], timeout=10)
        return {(g.topic, g.partition): (int(g.offset) if g.offset >= 0 else None) for g in got}

    def seek(self, next_offsets: Mapping[TP, int]) -> None:
        """Move assigned partitions so the next record read is at the given offsets."""
        assigned = set(self.assignment())
        with map_kafka_errors("seek", self._secrets):
            for (t, p), off in next_offsets.items():
                if (t, p) in assigned:
                    self._consumer.seek(TopicPartition(t, p, int(off)))

    def assignment(self) -> list[TP]:
        with map_kafka_errors("assignment", self._secrets):
            return sorted((p.topic, p.partition) for p in self._consumer.assignment())

    def pause(self, tps: Sequence[TP]) -> None:
        """Stop fetching these assigned partitions (pacing a backlog); librdkafka purges
        what it fetched for them and fetches from the last message handed out + 1 after
        :meth:`resume`."""
        with map_kafka_errors("pause", self._secrets):
            assigned = {(p.topic, p.partition) for p in self._consumer.assignment()}
            want = [TopicPartition(t, p) for t, p in tps if (t, p) in assigned]
            if want:
                self._consumer.pause(want)

    def resume(self, tps: Sequence[TP]) -> None:
        """Fetch these partitions again, except those held for a failed checkpoint resume
        (:meth:`_retry_resume` resumes them once their start is known)."""
        held = {(p.topic, p.partition) for p in self._pending}
        with map_kafka_errors("resume", self._secrets):
            assigned = {(p.topic, p.partition) for p in self._consumer.assignment()}
            want = [TopicPartition(t, p) for t, p in tps if (t, p) in assigned - held]
            if want:
                self._consumer.resume(want)

    def cached_lag(self) -> dict[TP, int]:
        """Records left per partition from the watermarks the last fetch brought and the
        local position: no broker round trip (a query waits behind the fetches in flight,
        and the pacer asks at every batch of a backlog). A partition not fetched yet is
        left out; one fetched but never consumed is empty when its watermarks meet."""
        with map_kafka_errors("lag", self._secrets):
            tps = self._consumer.assignment()
            out: dict[TP, int] = {}
            for p in self._consumer.position(tps) if tps else []:
                got = self._consumer.get_watermark_offsets(
                    TopicPartition(p.topic, p.partition), cached=True
                )
                lo, hi = (int(got[0]), int(got[1])) if got else (-1, -1)
                if hi < 0:
                    continue
                if p.offset >= 0:
                    out[(p.topic, p.partition)] = max(0, hi - int(p.offset))
                elif lo >= 0 and lo == hi:
                    out[(p.topic, p.partition)] = 0
            return out

    def _positions(self, timeout_s: float) -> dict[TP, int]:
        tps = self._consumer.assignment()
        if not tps:
            return {}
        out = {}
        unknown = []
        for p in self._consumer.position(tps):
            if p.offset >= 0:
                out[(p.topic, p.partition)] = int(p.offset)
            else:
                unknown.append(TopicPartition(p.topic, p.partition))
        if unknown:  # nothing fetched yet: the committed offset, else the reset policy's end
            for p in self._consumer.committed(unknown, timeout=timeout_s):
                if p.offset >= 0:
                    out[(p.topic, p.partition)] = int(p.offset)
                else:
                    lo, hi = self._consumer.get_watermark_offsets(p, timeout=timeout_s)
                    earliest = self.settings.auto_offset_reset == "earliest"
                    out[(p.topic, p.partition)] = int(lo if earliest else hi)
        return out

    def positions(self) -> dict[TP, int]:
        """Next offset to read of each assigned partition."""
        with map_kafka_errors("position", self._secrets):
            return self._positions(self._timeout_s)

    def lag(self, *, fresh: bool = True) -> dict[TP, int]:
        """Records behind the end of each assigned partition: the larger of the broker's
        answer (``fresh``) and the end the last fetch of a partition brought (tansu's
        ListOffsets can report less than the true end); with ``fresh=False`` the latter
        alone, asking only for the partitions not fetched yet. A query waits behind the
        fetches in flight (up to ``fetch.wait.max.ms`` each on an idle partition), so
        ``fresh=False`` is what a busy loop asks for.

        The whole call takes at most about ``lag_timeout_s``; past it (broker away) a
        retryable ``BackendError`` is raised, so the caller shows the lag as stale.
        """
        deadline = time.monotonic() + self._lag_timeout_s
        with map_kafka_errors("lag", self._secrets):
            pos = self._positions(self._lag_timeout_s)
            out = {}
            for (t, p), position in pos.items():
                tp = TopicPartition(t, p)
                got = self._consumer.get_watermark_offsets(tp, cached=True)
                hi = int(got[1]) if got else -1  # -1001 (OFFSET_INVALID): not fetched yet
                if fresh or hi < 0:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "lag: broker slow"))
                    _, end = self._consumer.get_watermark_offsets(tp, timeout=left, cached=False)
                    hi = max(hi, int(end))  # tansu's ListOffsets can report less than the end
                out[(t, p)] = max(0, hi - position)
            self.lag_measured_at = time.monotonic()
            return out

    def close(self) -> None:
        with map_kafka_errors("close", self._secrets):
            self._consumer.close()


_TRANSIENT = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._TIMED_OUT,
    KafkaError._RESOLVE,
    KafkaError._MAX_POLL_EXCEEDED,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}


class ConfluentSink:
    """A librdkafka producer with :class:`ingest.kafka_sink.KafkaSink`'s interface."""

    def __init__(self, settings: KafkaSettings, *, flush_timeout_s: float = 30.0) -> None:
        self.settings = settings
        self.flush_timeout_s = flush_timeout_s
        self._secrets = secrets_of(settings)
        conf = {
            **librdkafka_config(settings),
            "acks": "all",
            "compression.type": settings.compression_type,
            "linger.ms": 5,
            "message.max.bytes": 4 * 1_048_576,
            "message.timeout.ms": int(flush_timeout_s * 1000),
        }
        with map_kafka_errors("producer start", self._secrets):
            self._producer = Producer(conf, logger=_lib_log)
        self._n_partitions: dict[str, int] = {}

    def _count_partitions(self, topic: str) -> int:
        if not self._n_partitions.get(topic):
            meta = self._producer.list_topics(topic, timeout=self.flush_timeout_s)
            found = meta.topics.get(topic)
            ok = found is not None and found.error is None
            self._n_partitions[topic] = len(found.partitions) if ok and found else 0
        return self._n_partitions[topic]

    def write_batch(
        self,
        topic: str,
        items: Sequence[tuple[bytes | None, bytes, list[Header]]],
        partitions: Sequence[int] | None = None,
    ) -> None:
        """Send ``(key, value, headers)`` items and wait until all are acknowledged;
        ``partitions`` as in :meth:`ingest.kafka_sink.KafkaSink.write_batch`."""
        failed: list[Any] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                failed.append(err)

        deadline = time.monotonic() + self.flush_timeout_s
        with map_kafka_errors(f"produce to {topic!r}", self._secrets):
            parts = spread_partitions(partitions, len(items), topic, self._count_partitions)
            for (key, value, headers), part in zip(items, parts, strict=True):
                # librdkafka's "no partition given" is -1 (RD_KAFKA_PARTITION_UA)
                where = -1 if part is None else part
                while True:
                    try:
                        self._producer.produce(
                            topic,
                            value=value,
                            key=key,
                            headers=headers,  # type: ignore[arg-type]
                            on_delivery=on_delivery,
                            partition=where,
                        )
                        break
                    except BufferError:  # local queue full: serve deliveries, then retry
                        if time.monotonic() > deadline:
                            raise BackendError(
                                f"kafka produce to {topic!r} failed: local queue full for "
                                f"{self.flush_timeout_s}s",
                                backend="kafka",
                            ) from None
                        self._producer.poll(0.05)
            left = self._producer.flush(max(0.0, deadline - time.monotonic()))
            if failed:
                raise KafkaException(failed[0])
        if left:
            raise BackendError(
                f"kafka produce to {topic!r} failed: {left} records unacknowledged after "
                f"{self.flush_timeout_s}s",
                backend="kafka",
            )

    def read_tail(self, topic: str, max_records: int = 50_000) -> list[list[Header]]:
        """Headers of the last ``max_records`` records of each partition of ``topic`` (an
        empty list for a topic that does not exist), as
        :meth:`ingest.kafka_sink.KafkaSink.read_tail`: reads to the true end, past the end
        offsets the broker reports (tansu's can be short), until a poll brings nothing."""
        conf = {
            **librdkafka_config(self.settings),
            "group.id": f"{self.settings.client_id}-read-tail",  # required; nothing commits
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            "allow.auto.create.topics": False,
        }
        with map_kafka_errors(f"read back {topic!r}", self._secrets):
            consumer = Consumer(conf, logger=_lib_log)
            try:
                return _read_tail(consumer, topic, max_records, self.flush_timeout_s)
            finally:
                consumer.close()

    def ensure_topics(self, partitions: Mapping[str, int]) -> None:
        ensure_topics_confluent(self.settings, partitions)

    def close(self) -> None:
        """Flush what is pending (bounded); never raises."""
        try:
            left = self._producer.flush(self.flush_timeout_s)
        except KafkaException as exc:
            log.warning("producer closed with an error", extra={"error": str(exc)})
            return
        if left:
            log.warning("producer closed with unsent records", extra={"n": left})


def _read_tail(consumer: Any, topic: str, max_records: int, timeout_s: float) -> list[list[Header]]:
    meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        return []  # UNKNOWN_TOPIC_OR_PART: nothing was ever dead-lettered there
    nxt: dict[int, int] = {}
    end: dict[int, int] = {}
    tps = []
    for p in sorted(meta.partitions):
        lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
        nxt[p], end[p] = max(int(lo), int(hi) - max_records), int(hi)
        tps.append(TopicPartition(topic, p, nxt[p]))
    consumer.assign(tps)
    out: list[list[Header]] = []
    deadline = time.monotonic() + timeout_s
    while True:
        msgs = consumer.consume(num_messages=10_000, timeout=0.3)
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() in _QUIET:
                    continue
                raise KafkaException(err)
            nxt[m.partition()] = max(nxt[m.partition()], int(m.offset()) + 1)
            out.append([(k, bytes(v) if v is not None else b"") for k, v in m.headers() or []])
        if not msgs and all(nxt[p] >= end[p] for p in end):
            return out
        if time.monotonic() > deadline:
            raise KafkaException(
                KafkaError(KafkaError._TIMED_OUT, f"reading {topic} back took over {timeout_s} s")
            )


def ensure_topics_confluent(settings: KafkaSettings, partitions: Mapping[str, int]) -> None:
    """Create the missing topics with the given partition counts (existing ones untouched)."""
    secrets = secrets_of(settings)
    with map_kafka_errors("topic creation", secrets):
        admin = AdminClient({**librdkafka_config(settings)}, logger=_lib_log)
        existing = set(admin.list_topics(timeout=settings.bootstrap_timeout_ms / 1000).topics)
        new = [
            NewTopic(name, num_partitions=n, replication_factor=1)
            for name, n in partitions.items()
            if name not in existing
        ]
        if not new:
            return
        for _name, fut in admin.create_topics(new, request_timeout=10.0).items():
            try:
                fut.result(timeout=15.0)
            except KafkaException as exc:
                if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue
                raise
