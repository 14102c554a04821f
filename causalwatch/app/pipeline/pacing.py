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

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True, slots=True)
class HeldRecord:
    """A held record with what decoding made of it (kept, so it is not decoded twice)."""

    record: RawRecord
    keys: list[str]
    ts: FloatArray
    value: FloatArray
    errors: list[RecordError]


class Decoded(Sequence[HeldRecord]):
    """The records of a decoded poll as :class:`HeldRecord` items, built only for the
    records the pacer holds (the live path builds none)."""

    def __init__(
        self, records: Sequence[RawRecord], batch: SampleBatch, errors: list[RecordError]
    ) -> None:
        self.records, self.batch, self.errors = records, batch, errors
        self._bounds: IntArray | None = None
        self._order: IntArray | None = None
        self._errs: dict[tuple[str | None, int | None, int | None], list[RecordError]] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: Any) -> Any:
        if not isinstance(i, int):
            raise TypeError("Decoded takes one index")
        if self._bounds is None or self._order is None or self._errs is None:
            origin = self.batch.origin
            self._order = np.argsort(origin, kind="stable")
            self._bounds = np.searchsorted(origin[self._order], np.arange(len(self.records) + 1))
            self._errs = {}
            for e in self.errors:
                self._errs.setdefault((e.topic, e.partition, e.offset), []).append(e)
        idx = self._order[self._bounds[i] : self._bounds[i + 1]]
        rec = self.records[i]
        keys = self.batch.series_keys
        return HeldRecord(
            rec,
            [keys[j] for j in idx.tolist()],
            self.batch.ts[idx],
            self.batch.value[idx],
            self._errs.get((rec.topic, rec.partition, rec.offset), []),
        )


def joined(held: Sequence[HeldRecord]) -> tuple[list[RawRecord], SampleBatch, list[RecordError]]:
    """The records, samples (origins index the records) and rejects of released items."""
    keys: list[str] = []
    for h in held:
        keys.extend(h.keys)
    origin = np.repeat(np.arange(len(held), dtype=np.int64), [len(h.keys) for h in held])
    batch = SampleBatch(
        keys,
        np.concatenate([h.ts for h in held]) if held else np.empty(0),
        np.concatenate([h.value for h in held]) if held else np.empty(0),
        origin,
    )
    return [h.record for h in held], batch, [e for h in held for e in h.errors]


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
