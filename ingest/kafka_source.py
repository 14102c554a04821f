"""Kafka consumer adapter (kafka-python): a consumer-group source with manual commits and
checkpoint resume.

:class:`KafkaSource` reads the input topics in a consumer group with
``enable_auto_commit=False``. Offsets move forward in Kafka only when the pipeline calls
:meth:`KafkaSource.commit` with the *next* offset to read, after what the records produced is
published and checkpointed (at-least-once). On every partition assignment the source asks
``resume_offsets`` (the pipeline's checkpoint) where to start and seeks there, so a restart
resumes from the checkpoint, not from Kafka's committed offset; partitions the checkpoint
does not know start from the committed offset, else ``auto_offset_reset``.

Undecodable batches. kafka-python decompresses a fetched batch while :meth:`poll` hands out
records, and a batch it cannot read (a codec library missing, an unknown codec, a corrupt
payload or CRC) makes ``poll`` raise for the whole fetch, again on every retry: one bad
batch would stop every partition and topic. The source finds the partition and offset the
failure belongs to, seeks one record past it and returns a
:class:`~causalwatch.models.RawRecord` with ``error`` set for that offset; the decoder
dead-letters it (reason ``undecodable_batch``) and its offset is committed like any other,
so every offset of the topic is either processed or dead-lettered. A batch of *n* bad
records costs *n* fetches (the batch's end is not known without decompressing it).

Group timing comes from :class:`~causalwatch.settings.KafkaSettings`: kafka-python 3's
default 45 s session makes a group join take ~23 s against tansu, the defaults there ~3 s.
Errors go through :func:`ingest.kafka_errors.map_kafka_errors`. The producer side
(:class:`KafkaSink`, :func:`ensure_topics`) lives in :mod:`ingest.kafka_sink` and is
re-exported here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kafka import KafkaConsumer
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CorruptRecordError, KafkaError, UnsupportedCodecError
from kafka.structs import OffsetAndMetadata, TopicPartition

from causalwatch.errors import BackendError
from causalwatch.models import RawRecord, raw_record
from causalwatch.settings import KafkaSettings
from ingest.kafka_config import kafka_python_config, secrets_of
from ingest.kafka_errors import map_kafka_errors
from ingest.kafka_sink import KafkaSink, ensure_topics

__all__ = ["KafkaSink", "KafkaSource", "ResumeOffsets", "ensure_topics"]

log = logging.getLogger(__name__)

TP = tuple[str, int]
ResumeOffsets = Callable[[list[TP]], Mapping[TP, int]]

#: Seconds between broker queries for the end of partitions no fetch has reported yet
#: (:meth:`KafkaSource.cached_lag`).
UNKNOWN_END_EVERY_S = 1.0
#: ... and after a query that failed: the loop must not wait ``lag_timeout_s`` every second
#: while the broker is away
UNKNOWN_END_BACKOFF_S = 30.0


def _raised_reading_records(exc: BaseException) -> bool:
    """Whether ``exc`` comes from reading a batch (decompression or record parsing): the
    codecs raise their own errors (zlib, lz4, zstd, snappy) and a corrupt batch can raise
    struct or index errors, all from kafka-python's record reader."""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "_unpack_records" or "/kafka/record/" in code.co_filename:
            return True
        tb = tb.tb_next
    return False


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self.source._pending -= set(revoked)
        log.info("partitions revoked", extra={"partitions": [tuple(tp) for tp in revoked]})
        if self.source.on_revoke is not None and revoked:
            # Runs inside poll(), on the loop's thread: the stage can checkpoint and hand
            # over the state of these partitions before another member reads them.
            self.source.on_revoke(sorted((tp.topic, tp.partition) for tp in revoked))

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self.source._pending |= set(assigned)
        log.info("partitions assigned", extra={"partitions": [tuple(tp) for tp in assigned]})
        self.source._resume()  # seek before this poll fetches anything


class KafkaSource:
    """Batches of :class:`~causalwatch.models.RawRecord` from the input topics of a group.

    Parameters
    ----------
    settings
        Bootstrap servers, security, group, topics and the group timing/poll knobs.
    resume_offsets
        Called with the newly assigned ``(topic, partition)`` list; returns the next offset
        to read for those it knows (the checkpoint). If it raises, the records of those
        partitions are dropped and :meth:`next_batch` raises ``BackendError``; the next call
        tries again, so nothing is read from a wrong position.
    topics, group_id
        Override ``settings.topics`` / ``settings.group_id`` (internal topics, tests).
    on_revoke
        Called with the ``(topic, partition)`` list a rebalance takes away, before another
        member can read them (per-partition checkpoints hand their state over here).
    call_timeout_s
        Bound on blocking calls other than poll (commit, position); past it a retryable
        ``BackendError`` is raised instead of hanging on a lost broker. :meth:`lag` waits
        at most ``lag_timeout_s``.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        resume_offsets: ResumeOffsets | None = None,
        topics: Sequence[str] | None = None,
        group_id: str | None = None,
        call_timeout_s: float = 10.0,
        lag_timeout_s: float = 2.0,
        on_revoke: Callable[[list[TP]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_revoke = on_revoke
        self._timeout_ms = int(call_timeout_s * 1000)
        self._lag_timeout_ms = int(lag_timeout_s * 1000)
        self.topics = list(topics) if topics is not None else [t.name for t in settings.topics]
        self.resume_offsets = resume_offsets
        self._pending: set[TopicPartition] = set()
        self._resume_error: BaseException | None = None
        self._secrets = secrets_of(settings)
        #: records skipped because their batch could not be read (each also dead-lettered)
        self.undecodable = 0
        #: monotonic time of the last lag measured against the broker (0: never)
        self.lag_measured_at = 0.0
        self._asked_ends: dict[TopicPartition, int] = {}  # see cached_lag
        self._ask_after = 0.0
        with map_kafka_errors("consumer start", self._secrets):
            self._consumer = KafkaConsumer(
                **kafka_python_config(settings),
                group_id=group_id if group_id is not None else settings.group_id,
                enable_auto_commit=False,
                auto_offset_reset=settings.auto_offset_reset,
                session_timeout_ms=settings.session_timeout_ms,
                heartbeat_interval_ms=settings.heartbeat_interval_ms,
                max_poll_interval_ms=settings.max_poll_interval_ms,
                max_poll_records=settings.max_poll_records,
            )
            self._consumer.subscribe(self.topics, listener=_Listener(self))

    def _resume(self) -> None:
        if not self._pending or self.resume_offsets is None:
            self._pending.clear()
            self._resume_error = None  # nothing left to resume (e.g. revoked meanwhile)
            return
        try:
            offsets = self.resume_offsets(sorted((tp.topic, tp.partition) for tp in self._pending))
            for tp in self._pending:
                offset = offsets.get((tp.topic, tp.partition))
                if offset is not None:
                    self._consumer.seek(tp, int(offset))
        except Exception as exc:  # the checkpoint store failed: keep pending, retry later
            self._resume_error = exc
            return
        log.info(
            "resumed from checkpoint",
            extra={"offsets": {f"{t}:{p}": int(o) for (t, p), o in offsets.items()}},
        )
        self._pending.clear()
        self._resume_error = None

    def next_batch(self, max_records: int) -> list[RawRecord]:
        """Up to ``max_records`` records, waiting at most ``settings.poll_timeout_ms``."""
        self._resume()
        polled: dict[Any, list[Any]] = {}
        if self._resume_error is None:
            with map_kafka_errors("poll", self._secrets):
                polled = self._poll(max_records)
        if self._resume_error is not None:
            err = self._resume_error
            with map_kafka_errors("seek after failed resume", self._secrets):
                for tp in self._pending.intersection(polled):  # read from a wrong position:
                    if polled[tp]:  # rewind so nothing is lost if the checkpoint lacks it
                        self._consumer.seek(tp, polled[tp][0].offset)
            polled = {tp: rs for tp, rs in polled.items() if tp not in self._pending}
            if not polled:
                raise BackendError(
                    f"resume_offsets failed for {sorted(map(tuple, self._pending))}: {err!r}",
                    backend="kafka",
                ) from err
        out: list[RawRecord] = []
        for tp, recs in polled.items():
            if recs and isinstance(recs[0], RawRecord):  # an undecodable batch's record
                out.extend(recs)
                continue
            topic, part = tp.topic, tp.partition
            out.extend(
                [
                    raw_record((topic, part, r.offset, r.value or b"", r.timestamp, r.key, None))
                    for r in recs
                ]
            )
        return out

    def _poll(self, max_records: int) -> dict[Any, list[Any]]:
        try:
            return dict(
                self._consumer.poll(
                    timeout_ms=self.settings.poll_timeout_ms, max_records=max_records
                )
            )
        except Exception as exc:
            bad = self._undecodable_at(exc)
            if bad is None:
                raise
            reason = f"{type(exc).__name__}: {exc}"[:500]
        tp, offset = bad
        self._consumer.seek(tp, offset + 1)
        self.undecodable += 1
        if self.undecodable == 1 or self.undecodable % 1000 == 0:
            log.warning(
                "undecodable record batch skipped",
                extra={
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "offset": offset,
                    "error": reason,
                    "total": self.undecodable,
                },
            )
        return {tp: [RawRecord(tp.topic, tp.partition, offset, b"", error=reason)]}

    def _undecodable_at(self, exc: BaseException) -> tuple[TopicPartition, int] | None:
        """Partition and offset of the batch ``poll`` could not read, if that was it.

        A decode failure raises from the fetcher while it holds the failing partition's
        records (``_next_partition_records``), with that partition's position still at the
        record that failed; no public API names it. Other errors (the broker, the group)
        give None and are mapped as backend errors.
        """
        if isinstance(exc, KafkaError):
            if not isinstance(exc, CorruptRecordError | UnsupportedCodecError):
                return None
        elif not _raised_reading_records(exc):
            return None  # a bug elsewhere, not the batch: let it surface
        part = getattr(getattr(self._consumer, "_fetcher", None), "_next_partition_records", None)
        tp = getattr(part, "topic_partition", None)
        if tp is None or tp not in self._consumer.assignment():
            return None
        position = self._consumer.position(tp, self._timeout_ms)
        return (tp, int(position)) if position is not None else None

    def commit(self, next_offsets: Mapping[TP, int]) -> None:
        """Commit the NEXT offset to read per partition (last processed + 1)."""
        assigned = self._consumer.assignment()
        offsets = {
            tp: OffsetAndMetadata(int(off), "", -1)
            for (topic, part), off in next_offsets.items()
            if (tp := TopicPartition(topic, part)) in assigned
        }
        if len(offsets) < len(next_offsets):
            log.warning("skipped commit of unassigned partitions", extra={"n": len(next_offsets)})
        if not offsets:
            return
        with map_kafka_errors("commit", self._secrets):
            self._consumer.commit(offsets, timeout_ms=self._timeout_ms)

    def committed(self, tps: Sequence[TP]) -> dict[TP, int | None]:
        """The group's committed (next) offset of each partition; None where there is none."""
        with map_kafka_errors("committed offsets", self._secrets):
            out: dict[TP, int | None] = {}
            for topic, part in tps:
                off = self._consumer.committed(TopicPartition(topic, part))
                out[(topic, part)] = None if off is None else int(off)
            return out

    def seek(self, next_offsets: Mapping[TP, int]) -> None:
        """Move assigned partitions so the next record read is at the given offsets."""
        with map_kafka_errors("seek", self._secrets):
            assigned = self._consumer.assignment()
            for (topic, part), off in next_offsets.items():
                tp = TopicPartition(topic, part)
                if tp in assigned:
                    self._consumer.seek(tp, int(off))

    def assignment(self) -> list[TP]:
        return sorted((tp.topic, tp.partition) for tp in self._consumer.assignment())

    # No pause/resume here (pacing holds records in its buffer alone): kafka-python 3.0.12
    # parks a paused partition's fetched records and restores them one partition per poll,
    # only while its in-line slot is empty; with a drained slot of another paused partition
    # left in it, resumed partitions were never fetched again (most runs of a reproduction
    # of tests/integration/test_pacing_kafka.py stalled against tansu, 6 of 7 counted, also
    # with incremental fetch sessions off).

    def cached_lag(self) -> dict[TP, int]:
        """Records left per partition from the end the last fetch brought and the local
        position: no broker round trip once a partition was fetched. For partitions no
        fetch has reported yet, the broker's end offset, asked at most every
        :data:`UNKNOWN_END_EVERY_S` (a partition left out counts as having lag to the
        pacer). Why: kafka-python hands over one partition's buffered records before it
        reads the next fetch answers, so an empty partition's answer can wait behind every
        other partition's backlog, and until then it held all of them back (the backlog of
        tests/integration/test_pacing_kafka.py was then held whole and released in one
        batch, one run in three)."""
        with map_kafka_errors("lag", self._secrets):
            out: dict[TP, int] = {}
            ends: dict[TopicPartition, int] = {}
            unknown: list[TopicPartition] = []
            for tp in self._consumer.assignment():
                high = self._consumer.highwater(tp)
                if high is None:
                    unknown.append(tp)
                else:
                    ends[tp] = int(high)
            if unknown and time.monotonic() >= self._ask_after:  # asked again when due
                try:
                    got = self._consumer.end_offsets(unknown, timeout_ms=self._lag_timeout_ms)
                except KafkaError:  # broker slow or away: they stay unknown (as having lag)
                    self._ask_after = time.monotonic() + UNKNOWN_END_BACKOFF_S
                else:
                    self._ask_after = time.monotonic() + UNKNOWN_END_EVERY_S
                    self._asked_ends = {tp: int(end) for tp, end in got.items()}
            for tp in unknown:
                if tp in self._asked_ends:
                    ends[tp] = self._asked_ends[tp]
            for tp, end in ends.items():
                pos = self._consumer.position(tp, self._lag_timeout_ms)
                if pos is not None:
                    out[(tp.topic, tp.partition)] = max(0, end - int(pos))
            return out

    def positions(self) -> dict[TP, int]:
        """Next offset to read of each assigned partition."""
        with map_kafka_errors("position", self._secrets):
            return {
                (tp.topic, tp.partition): int(self._consumer.position(tp, self._timeout_ms))
                for tp in self._consumer.assignment()
            }

    def lag(self, *, fresh: bool = True) -> dict[TP, int]:
        """Records behind the end of each assigned partition (end offset - position).

        Asks the broker for the end offsets (at most ``lag_timeout_s``) and takes the larger
        of that and the high watermark of the last fetch (tansu's ListOffsets can report
        less than the true end). With ``fresh=False`` the high watermark alone where a
        fetch brought one (a query waits behind the fetches in flight), asking only for
        the partitions not fetched yet. Raises a retryable ``BackendError`` when the broker does
        not answer, so a caller can show the lag as stale rather than frozen;
        :attr:`lag_measured_at` is the monotonic time of the last answer.
        """
        with map_kafka_errors("lag", self._secrets):
            tps = list(self._consumer.assignment())
            if not tps:
                self.lag_measured_at = time.monotonic()
                return {}
            high = {tp: self._consumer.highwater(tp) for tp in tps}
            ask = tps if fresh else [tp for tp in tps if high[tp] is None]
            ends = self._consumer.end_offsets(ask, timeout_ms=self._lag_timeout_ms) if ask else {}
            out = {}
            for tp in tps:
                end = max(int(ends.get(tp, 0)), int(high[tp] or 0))
                pos = int(self._consumer.position(tp, self._lag_timeout_ms))
                out[(tp.topic, tp.partition)] = max(0, end - pos)
            self.lag_measured_at = time.monotonic()
            return out

    def close(self) -> None:
        with map_kafka_errors("close", self._secrets):
            self._consumer.close(autocommit=False)
