"""Pacing a backlog by data time, against a live source: the adapter of :mod:`ingest.pacing`.

The stage decodes a poll and asks :meth:`SourcePacing.offer` which records go on now; the
rest wait in the :class:`~ingest.pacing.Pacer` (in memory, in order, with their decoded
samples: :class:`Decoded`) and, where the source can pause (confluent), their partitions
are paused (:meth:`after_batch`) so a held partition is not fetched again until the others
caught up. librdkafka purges what it fetched for a paused partition and fetches from the
last message handed out + 1 after resume; the position is past the held records (they
were handed out), so nothing is read twice or skipped while the process lives.
kafka-python is not paused (see :mod:`ingest.kafka_source`): it keeps handing records out,
which wait behind the held ones of their partition.

At-least-once: a held record's offset is never committed; the loop commits only what the
pacer admitted (:meth:`pop_admitted`). A restart reads held records again from the last
checkpoint; a revoked partition's held records are dropped (:meth:`drop`) and its new
owner reads them from the committed offset. Memory: at most :data:`MAX_HELD_BYTES` of
record values wait; past it the partition held the longest goes through whole.

The horizon is ``kafka.pace_horizon_points`` steps of the explainer's step (0 until it is
inferred: strict data-time order for the first batches). Live, every partition is caught
up, no record can wait and the lag is never asked (:meth:`ingest.pacing.Pacer.offer`'s
cheap path): the cost is the per-record data time, O(samples) per batch. The lag comes
from the ends the last fetches brought (``cached_lag``: no broker round trip per batch).
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from causalwatch.errors import BackendError, RecordError
from causalwatch.models import RawRecord, SampleBatch
from causalwatch.publish.metrics import PipelineStats
from ingest.pacing import Pacer

log = logging.getLogger(__name__)

TP = tuple[str, int]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


#: Bytes of record values held back at most: four merged backlog batches
#: (``loop.BACKLOG_BATCH_BYTES``). Past it the partition held the longest is let through
#: whole: order is given up for memory, never a record. With a source that cannot pause
#: (kafka-python, below) this is what bounds the buffer.
MAX_HELD_BYTES = 4 * 64 * 2**20


class SourcePacing:
    """A :class:`~ingest.pacing.Pacer` driven against ``source`` (``assignment``,
    ``cached_lag`` or ``lag``, ``pause``, ``resume``; a source without pause still paces,
    through the buffer alone, bounded by :data:`MAX_HELD_BYTES`).

    ``horizon_s()`` is read at every batch (the explainer's step may be inferred late);
    ``clock`` is monotonic seconds (stall detection).
    """

    def __init__(
        self,
        source: Any,
        stats: PipelineStats,
        horizon_s: Callable[[], float],
        *,
        pacer: Pacer[Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.stats = stats
        self.horizon_s = horizon_s
        self.pacer: Pacer[Any] = (
            pacer if pacer is not None else Pacer(max_held_bytes=MAX_HELD_BYTES)
        )
        self.clock = clock
        self.paused: set[TP] = set()
        self._since: float | None = None  # when the current pacing episode started
        self._episode_held = 0
        self._stalled: set[TP] = set()

    @property
    def holding(self) -> bool:
        return self.pacer.holding

    def offer(
        self, records: Sequence[RawRecord], ts: FloatArray, items: Sequence[Any] | None = None
    ) -> tuple[list[Any], BoolArray]:
        """Held items due now (handle them first) and which of ``records`` go on now.
        ``items`` (default: the records) is what is held for each record; it is read only
        for the records held (:class:`Decoded` keeps their samples, not decoded twice)."""
        before = self.pacer.held_total
        released, keep = self.pacer.offer(
            [(r.topic, r.partition) for r in records],
            [r.offset for r in records],
            ts,
            records if items is None else items,
            horizon_s=self.horizon_s(),
            assigned=self._assigned(),
            lag=self._lag,
            now_s=self.clock(),
            sizes=[len(r.value) for r in records],
        )
        self._episode_held += self.pacer.held_total - before
        self.stats.paced_records_total += self.pacer.held_total - before
        return released, keep

    def _assigned(self) -> list[TP]:
        assignment = getattr(self.source, "assignment", None)
        if assignment is None:
            return []
        try:
            return list(assignment())
        except BackendError:
            return []

    def _lag(self) -> dict[TP, int]:
        """Records left per partition from the ends the last fetches brought (no broker
        round trip once a partition was fetched); unknown (broker away): every partition
        counts as having lag, and the stall bound keeps the wait finite."""
        cached = getattr(self.source, "cached_lag", None)
        try:
            return dict(cached() if cached is not None else self.source.lag(fresh=False))
        except BackendError:
            return {}

    def after_batch(self) -> None:
        """Pause the partitions that hold records, resume those that no longer do, log
        when pacing starts and stops, and set the gauge."""
        held = self.pacer.held_partitions()
        self._switch(sorted(held - self.paused), sorted(self.paused - held))
        now = self.clock()
        if held and self._since is None:
            self._since = now
            log.info(
                "pacing a backlog by data time: partitions ahead are held back",
                extra={
                    "held": [f"{t}:{p}" for t, p in sorted(held)],
                    "horizon_s": self.horizon_s(),
                },
            )
        elif not held and self._since is not None:
            log.info(
                "pacing stopped: the partitions are within the horizon",
                extra={"held_records": self._episode_held, "seconds": round(now - self._since, 3)},
            )
            self._since, self._episode_held = None, 0
        stalled = self.pacer.stalled
        if stalled - self._stalled:
            log.warning(
                "pacing: a partition with lag delivered nothing; it no longer holds others back",
                extra={"partitions": [f"{t}:{p}" for t, p in sorted(stalled - self._stalled)]},
            )
        self._stalled = set(stalled)
        self.stats.paused_partitions = len(self.paused)

    def _switch(self, pause: list[TP], resume: list[TP]) -> None:
        if pause and hasattr(self.source, "pause"):
            try:
                self.source.pause(pause)
                self.paused.update(pause)
            except BackendError as exc:  # the buffer still holds them back
                log.info("pause failed", extra={"error": str(exc)})
        if resume:
            try:
                self.source.resume(resume)
            except BackendError as exc:
                log.info("resume failed", extra={"error": str(exc)})
                return  # tried again after the next batch
            self.paused.difference_update(resume)

    def drop(self, tps: Sequence[TP]) -> None:
        """Partitions revoked: forget their held records (not committed: the new owner
        reads them again) and their paused state (a new assignment starts unpaused)."""
        self.pacer.drop(tps)
        self.paused.difference_update(tps)
        self.stats.paused_partitions = len(self.paused)

    def release_all(self) -> list[RawRecord]:
        """Every held record (pacing bypassed: a rebuild after a lost checkpoint); they are
        decoded again."""
        out = [getattr(it, "record", it) for it in self.pacer.release_all()]
        self.after_batch()
        return out

    def pop_admitted(self) -> dict[TP, int]:
        return self.pacer.pop_admitted()


class HeldRecord(NamedTuple):
    """A held record: its poll and its index there (the poll keeps what decoding made of
    it, so it is not decoded twice). A tuple of two references, because a backlog holds
    tens of thousands of them and every object in the heap is one more for the collector
    to walk."""

    poll: Decoded
    at: int  # its index in the poll as read

    @property
    def record(self) -> RawRecord:
        return self.poll.records[self.poll.position(self.at)]


#: ``_held_record((poll, at))``: a :class:`HeldRecord` in one C call (a named tuple's own
#: ``__new__`` is a Python lambda, measurable at one per held record)
_held_record: Callable[[tuple[Decoded, int]], HeldRecord] = functools.partial(
    tuple.__new__, HeldRecord
)


class Decoded(Sequence[HeldRecord]):
    """The records of a decoded poll, handed to the pacer as :class:`HeldRecord` items (it
    reads only the held ones). Once the pacer decided, :meth:`shrink` keeps the held
    records' data alone, in columns, and lets go of the rest of the poll."""

    def __init__(
        self, records: Sequence[RawRecord], batch: SampleBatch, errors: list[RecordError]
    ) -> None:
        self.records, self.batch, self.errors = records, batch, errors
        self._n = len(records)
        self._pos: IntArray | None = None  # index as read -> index in the shrunk columns
        self._bounds: IntArray | None = None  # samples of record k: _bounds[k]:_bounds[k+1]
        self._errs: dict[tuple[str | None, int | None, int | None], list[RecordError]] = {}

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:
        if not isinstance(i, int):
            raise TypeError("Decoded takes one index")
        return _held_record((self, i))

    def position(self, i: int) -> int:
        return i if self._pos is None else int(self._pos[i])

    def shrink(self, held: BoolArray) -> None:
        """Keep only the ``held`` records (as read), their samples and their rejects."""
        which = np.flatnonzero(held)
        origin = self.batch.origin
        order = np.argsort(origin, kind="stable")
        bounds = np.searchsorted(origin[order], np.arange(self._n + 1))
        lengths = bounds[which + 1] - bounds[which]
        take = order[_ranges(bounds[which], lengths)]
        keys = self.batch.series_keys
        self.records = [self.records[k] for k in which.tolist()]
        self.batch = SampleBatch(
            [keys[k] for k in take.tolist()],
            self.batch.ts[take],
            self.batch.value[take],
            np.repeat(np.arange(which.size, dtype=np.int64), lengths),
        )
        self._bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        pos = np.full(self._n, -1, dtype=np.int64)
        pos[which] = np.arange(which.size)
        self._pos = pos
        if self.errors:  # most polls have none: no set of every held record then
            wanted = {(r.topic, r.partition, r.offset) for r in self.records}
            for e in self.errors:
                k = (e.topic, e.partition, e.offset)
                if k in wanted:
                    self._errs.setdefault(k, []).append(e)
            self.errors = []

    def take(self, idx: list[int]) -> tuple[list[RawRecord], SampleBatch, list[RecordError]]:
        """Records ``idx`` (as read, of a shrunk poll): records, samples (origins index the
        returned records) and rejects, in that order."""
        if self._pos is None or self._bounds is None:
            raise RuntimeError("take() before shrink()")
        pos = self._pos[np.asarray(idx, dtype=np.int64)]
        starts = self._bounds[pos]
        lengths = self._bounds[pos + 1] - starts
        sel = _ranges(starts, lengths)
        keys = self.batch.series_keys
        recs = [self.records[k] for k in pos.tolist()]
        errs = [e for r in recs for e in self._errs.get((r.topic, r.partition, r.offset), ())]
        batch = SampleBatch(
            [keys[k] for k in sel.tolist()],
            self.batch.ts[sel],
            self.batch.value[sel],
            np.repeat(np.arange(len(recs), dtype=np.int64), lengths),
        )
        return recs, batch, errs


def _ranges(starts: IntArray, lengths: IntArray) -> IntArray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])``, vectorised."""
    first = np.cumsum(lengths) - lengths  # where each range begins in the output
    total = int(lengths.sum())
    out: IntArray = np.arange(total, dtype=np.int64) + np.repeat(starts - first, lengths)
    return out


def joined(held: Sequence[HeldRecord]) -> tuple[list[RawRecord], SampleBatch, list[RecordError]]:
    """The records, samples (origins index the records) and rejects of released items, in
    the order released: one gather per run of items from the same poll."""
    records: list[RawRecord] = []
    batches: list[SampleBatch] = []
    errors: list[RecordError] = []
    for poll, run in itertools.groupby(held, key=lambda h: h.poll):
        recs, batch, errs = poll.take([h.at for h in run])
        if records:
            shifted = batch.origin + len(records)
            batch = SampleBatch(batch.series_keys, batch.ts, batch.value, shifted)
        records.extend(recs)
        batches.append(batch)
        errors.extend(errs)
    return records, SampleBatch.concat(batches), errors


def without_held(
    keep: BoolArray,
    records: Sequence[RawRecord],
    rows: IntArray,
    batch: SampleBatch,
    errors: list[RecordError],
) -> tuple[IntArray, SampleBatch, list[RecordError]]:
    """The samples and rejects of the records that go on now (``keep``); a held record's
    samples and errors come back with it when it is released (kept in its
    :class:`HeldRecord`, not decoded again)."""
    if keep.all():
        return rows, batch, errors
    origin = batch.origin
    mask = np.ones(len(batch), dtype=bool)
    ok = origin >= 0
    mask[ok] = keep[origin[ok]]
    held = {(r.topic, r.partition, r.offset) for r, k in zip(records, keep, strict=True) if not k}
    errors = [e for e in errors if (e.topic, e.partition, e.offset) not in held]
    return rows[mask], batch.select(mask), errors
