"""Dead-letter topic writer: every refused record (or sample) lands on ``<topic>.dlq``.

The record value is the original raw bytes, the key the original key, and headers say why
and where it came from, so a DLQ record can be inspected, fixed and re-produced as is:

=================================  =====================================================
header                             value
=================================  =====================================================
``x-causalwatch-reason``           stable reason code (see :mod:`ingest.validate`)
``x-causalwatch-message``          human-readable message naming field and value
``x-causalwatch-field``            the field at fault (when known)
``x-causalwatch-source-topic``     topic of the original record
``x-causalwatch-source-partition`` its partition (decimal)
``x-causalwatch-source-offset``    its offset (decimal)
``x-causalwatch-sample-index``     index of the bad sample inside the record (per-sample
                                   errors only: array index, or line number for Influx)
``x-causalwatch-truncated``        original length, when the value was cut to fit
=================================  =====================================================

:attr:`DeadLetterSink.counts` (reason -> records dead-lettered) grows only after the
producer acknowledged the batch; if it fails, :meth:`DeadLetterSink.write_batch` raises
:class:`~causalwatch.errors.BackendError` and the pipeline must not commit the offsets.

No duplicates. At-least-once processing reads a batch again after a crash, and a write
that timed out may still have landed; both would dead-letter the same record twice. So,
given ``read_back``, the sink reads the tail of a DLQ topic before its first write there and
again after every failed write, counts what is already there per source position
(topic, partition, offset, sample index, reason: all in the headers), and writes only what
is missing. The producer abandons its unsent records when a write fails
(:class:`ingest.kafka_sink.KafkaSink`), so nothing lands after the read-back.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Protocol

from causalwatch.errors import BackendError, RecordError

__all__ = ["DeadLetterSink", "dead_letter_item"]

log = logging.getLogger(__name__)

Header = tuple[str, bytes]
Item = tuple[bytes | None, bytes, list[Header]]

MAX_VALUE_BYTES = 900_000  # below the 1 MiB broker default, leaving room for headers
MAX_MESSAGE_CHARS = 1_000


class _Sink(Protocol):
    def write_batch(self, topic: str, items: list[Item]) -> None: ...


def dead_letter_item(
    err: RecordError,
    *,
    suffix: str = ".dlq",
    default_topic: str = "causalwatch.dlq",
    max_value_bytes: int = MAX_VALUE_BYTES,
) -> tuple[str, Item]:
    """The DLQ topic and ``(key, value, headers)`` for one error (pure).

    >>> from ingest.validate import IngestSchemaError
    >>> from causalwatch.models import RawRecord
    >>> rec = RawRecord("metrics", 2, 41, b'{"name": "x"}', key=b"k")
    >>> e = IngestSchemaError("no value", reason="missing_field", field="value", record=rec,
    ...                       sample_index=0)
    >>> topic, (key, value, headers) = dead_letter_item(e)
    >>> topic, key, value
    ('metrics.dlq', b'k', b'{"name": "x"}')
    >>> dict(headers)["x-causalwatch-source-offset"], dict(headers)["x-causalwatch-sample-index"]
    (b'41', b'0')
    """
    topic = f"{err.topic}{suffix}" if err.topic else default_topic
    value = err.raw if err.raw is not None else b""
    headers: list[Header] = [
        ("x-causalwatch-reason", err.reason.encode()),
        ("x-causalwatch-message", str(err)[:MAX_MESSAGE_CHARS].encode("utf-8", "replace")),
    ]
    if err.field is not None:
        headers.append(("x-causalwatch-field", err.field.encode("utf-8", "replace")))
    if err.topic is not None:
        headers.append(("x-causalwatch-source-topic", err.topic.encode()))
    if err.partition is not None:
        headers.append(("x-causalwatch-source-partition", str(err.partition).encode()))
    if err.offset is not None:
        headers.append(("x-causalwatch-source-offset", str(err.offset).encode()))
    idx = err.sample_index
    if idx is not None:
        headers.append(("x-causalwatch-sample-index", str(idx).encode()))
    if len(value) > max_value_bytes:
        headers.append(("x-causalwatch-truncated", str(len(value)).encode()))
        value = value[:max_value_bytes]
    return topic, (err.key, value, headers)


Position = tuple[str, str, str, str, str]  # source topic, partition, offset, sample, reason


def _position(headers: Sequence[Header]) -> Position | None:
    h = dict(headers)
    offset = h.get("x-causalwatch-source-offset")
    if offset is None:
        return None
    return (
        h.get("x-causalwatch-source-topic", b"").decode("utf-8", "replace"),
        h.get("x-causalwatch-source-partition", b"").decode("utf-8", "replace"),
        offset.decode("utf-8", "replace"),
        h.get("x-causalwatch-sample-index", b"").decode("utf-8", "replace"),
        h.get("x-causalwatch-reason", b"").decode("utf-8", "replace"),
    )


class DeadLetterSink:
    """Writes :class:`~causalwatch.errors.RecordError` batches to ``<source topic><suffix>``.

    Parameters
    ----------
    sink
        Anything with ``write_batch(topic, items)`` that raises ``BackendError`` on failure
        (:class:`ingest.kafka_source.KafkaSink` in the service).
    suffix
        Appended to the source topic (``kafka.dlq_suffix``).
    default_topic
        For errors that carry no source topic.
    read_back
        ``read_back(topic)``: the headers of the last records of a DLQ topic
        (``read_tail`` of :class:`ingest.kafka_sink.KafkaSink` and
        :class:`ingest.confluent_backend.ConfluentSink`); None turns de-duplication off.
    remember
        Source positions remembered for de-duplication (the oldest are forgotten first;
        only the records since the last checkpoint can come back).
    """

    def __init__(
        self,
        sink: _Sink,
        suffix: str = ".dlq",
        default_topic: str = "causalwatch.dlq",
        *,
        read_back: Callable[[str], list[list[Header]]] | None = None,
        remember: int = 200_000,
    ) -> None:
        self.sink = sink
        self.suffix = suffix
        self.default_topic = default_topic
        self.read_back = read_back
        self.remember = remember
        self.counts: dict[str, int] = {}
        self.total = 0
        #: records not written because the DLQ already held them
        self.duplicates_skipped = 0
        self._ensured: set[str] = set()
        self._seen: Counter[Position] = Counter()
        self._read: set[str] = set()

    def write_batch(self, errors: list[RecordError]) -> None:
        """Dead-letter ``errors``; counts grow only once the sink acknowledged all of them.

        Raises
        ------
        BackendError
            the producer failed; nothing is counted and offsets must not be committed.
        """
        if not errors:
            return
        by_topic: dict[str, list[Item]] = defaultdict(list)
        for err in errors:
            topic, item = dead_letter_item(
                err, suffix=self.suffix, default_topic=self.default_topic
            )
            by_topic[topic].append(item)
        for topic, items in by_topic.items():
            self._ensure(topic)
            if self.read_back is not None and topic not in self._read:
                self._remember(self.read_back(topic))
                self._read.add(topic)
            todo = self._missing(items)
            try:
                if todo:
                    self.sink.write_batch(topic, todo)
            except BackendError:
                log.warning("dead-letter write failed", extra={"topic": topic, "n": len(todo)})
                self._read.clear()  # some may have landed: read back before the next try
                raise
            self._remember([h for _k, _v, h in todo])
        counts = self.counts
        for err in errors:
            counts[err.reason] = counts.get(err.reason, 0) + 1
        self.total += len(errors)
        log.info("dead-lettered records", extra={"n": len(errors), "topics": sorted(by_topic)})

    def _missing(self, items: list[Item]) -> list[Item]:
        """Items beyond what the DLQ already holds at their source position."""
        if self.read_back is None:
            return items
        batch: Counter[Position] = Counter()
        out: list[Item] = []
        for item in items:
            pos = _position(item[2])
            if pos is not None:
                batch[pos] += 1
                if batch[pos] <= self._seen[pos]:
                    self.duplicates_skipped += 1
                    continue
            out.append(item)
        return out

    def _remember(self, headers: list[list[Header]]) -> None:
        if self.read_back is None:
            return
        for h in headers:
            pos = _position(h)
            if pos is not None:
                self._seen[pos] += 1
        if len(self._seen) > self.remember:  # forget the oldest half
            for pos in list(self._seen)[: len(self._seen) // 2]:
                del self._seen[pos]

    def _ensure(self, topic: str) -> None:
        # Brokers with topic auto-creation off need the DLQ topic made explicitly; once each.
        ensure = getattr(self.sink, "ensure_topics", None)
        if topic in self._ensured or ensure is None:
            return
        try:
            ensure({topic: 1})
        except BackendError as exc:
            log.warning(
                "could not create dead-letter topic", extra={"topic": topic, "err": str(exc)}
            )
        self._ensured.add(topic)
