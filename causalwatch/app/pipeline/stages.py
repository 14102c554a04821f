"""The process roles: ``all``, ``ingest``, ``detector`` and ``explainer``.

Each :class:`Stage` turns one poll of records into outputs through the pure steps
(:mod:`~causalwatch.app.pipeline.steps`) and the sinks it is given (dead-letter topic, Redis
results, webhook outbox, internal topics). Hooks and the partition handover come through the
constructor; the builder (:mod:`~causalwatch.app.pipeline.build`) supplies them.
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from causalwatch.app.pipeline.pacing import Decoded, joined, without_held
from causalwatch.app.pipeline.snapshot import gather_snapshots, render_snapshots
from causalwatch.app.pipeline.steps import (
    Cores,
    apply_sensitivity,
    detector_config,
    evict_stale,
    explain_events,
    explain_queue,
    explainer_config,
    fired_events,
    ingest_limits,
    ingest_records,
    process_samples,
)
from causalwatch.app.pipeline.worker import ExplainWorker
from causalwatch.errors import RecordError
from causalwatch.models import Explanation, RawRecord, SampleBatch
from causalwatch.publish.metrics import PipelineStats
from causalwatch.series import SeriesIndex, series_hash
from causalwatch.settings import Settings
from causalwatch.store.checkpoint import Checkpoint
from causalwatch.wire import SCORE_FIELDS, decode_columns, encode_column_messages
from detector.core import Detector
from explainer.core import Explainer
from ingest import IngestLimits, assign_rows
from ingest.pacing import record_times

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
TP = tuple[str, int]
Item = tuple[bytes | None, bytes, list[tuple[str, bytes]]]  # key, value, headers
Hook = Callable[[float], None]
Role = Literal["all", "ingest", "detector", "explainer"]
EVICT_EVERY_S = 60.0
#: time constant of the loop's duty (:meth:`Stage.is_busy`): it follows a change of regime
#: (live to backlog) within about half a second
DUTY_TAU_S = 0.25
_TOPIC = operator.attrgetter("topic")


# --------------------------------------------------------------------------------------
# Adapters a stage may publish to (all optional, passed in)
# --------------------------------------------------------------------------------------
class DeadLetter(Protocol):
    def write_batch(self, errors: list[RecordError]) -> None: ...


class Results(Protocol):
    def publish(self, explanations: Sequence[Explanation]) -> int: ...


class Outbox(Protocol):
    def enqueue(
        self,
        explanations: Sequence[Explanation],
        now: float | None = None,
        *,
        pages: Mapping[str, tuple[str, float]] | None = None,
    ) -> int: ...


class Snapshots(Protocol):
    def write_batch(self, snapshots: Sequence[Mapping[str, Any]]) -> int: ...


class Producer(Protocol):
    def write_batch(
        self, topic: str, items: list[Item], partitions: Sequence[int] | None = None
    ) -> None: ...


@dataclass
class Sinks:
    deadletter: DeadLetter | None = None
    results: Results | None = None
    outbox: Outbox | None = None
    producer: Producer | None = None
    snapshots: Snapshots | None = None


@dataclass
class Timers:
    """Histograms of seconds per stage (``observe(stage, seconds)``)."""

    observe: Callable[[str, float], None] = lambda stage, s: None
    explain: Callable[[float], None] = lambda s: None


def _count_errors(stats: PipelineStats, errors: list[RecordError]) -> None:
    for err in errors:
        stats.deadletter_by_reason[err.reason] += 1


def _partitioned(keys: list[str], n_partitions: int) -> dict[int, npt.NDArray[np.int64]]:
    part = np.fromiter((series_hash(k) % n_partitions for k in keys), dtype=np.int64)
    return {int(p): np.flatnonzero(part == p) for p in np.unique(part)}


def _group_key(group: int) -> bytes:
    """Message key of a series group: the same for every batch, so the broker's partitioner
    always sends a series to the same partition and its samples stay in order."""
    return f"series-group-{group}".encode()


class Gate(Protocol):
    """Pacing by data time (:class:`causalwatch.app.pipeline.pacing.SourcePacing`)."""

    def offer(
        self, records: Sequence[RawRecord], ts: FloatArray, items: Sequence[Any] | None = None
    ) -> tuple[list[Any], BoolArray]: ...


class PartitionStore(Protocol):
    """Per-partition state handover (:class:`causalwatch.app.partitions.PartitionCheckpoints`)."""

    owned: set[TP]

    def track(self, rows: IntArray, origin: IntArray, records: Sequence[RawRecord]) -> None: ...
    def load(self, tps: Sequence[TP]) -> dict[TP, int]: ...
    def save(self, tps: Sequence[TP], offsets: Mapping[TP, int]) -> None: ...
    def drop(self, tps: Sequence[TP]) -> None: ...


class Stage:
    """One process role. Subclasses implement :meth:`handle`; state goes in checkpoints.

    ``hooks`` run between batches with the time (graph reloads, feedback, lease renewal);
    ``partitions`` hands state over per input partition (the detector stage, whose input is
    partition-aligned); ``formats`` maps input topic -> record format (default: the
    settings' topics). Everything is given here, never attached afterwards.
    """

    name = "stage"

    def __init__(
        self,
        settings: Settings,
        cores: Cores,
        sinks: Sinks,
        stats: PipelineStats,
        timers: Timers | None = None,
        *,
        hooks: Sequence[Hook] = (),
        partitions: PartitionStore | None = None,
        formats: Mapping[str, str] | None = None,
        limits: IngestLimits | None = None,
    ) -> None:
        self.settings = settings
        self.cores = cores
        self.sinks = sinks
        self.stats = stats
        self.timers = timers or Timers()
        #: re-learning history with every sink off (a lost checkpoint's rebuild): alerts are
        #: explained inline into the muted sinks, never queued for the worker, which would
        #: publish them after the sinks are back
        self.muted = False
        self.formats = (
            dict(formats)
            if formats is not None
            else {t.name: t.format for t in settings.kafka.topics}
        )
        self.limits = limits or ingest_limits(settings)
        self.hooks: tuple[Hook, ...] = tuple(hooks)
        self.partitions = partitions
        self._next_evict_s = 0.0
        #: share of the wall clock spent handling batches (moving average) and when the
        #: last one ended: how busy the consuming loop is (:meth:`is_busy`)
        self._duty = 0.0
        self._handled_at = 0.0
        #: ranks the queued alerts: inline after each batch unless started (threaded)
        self.worker = ExplainWorker(
            cores.lock,
            lambda: self.cores.queue,
            self._explain_touched,
            self._publish,
            stats,
            observe_s=self.timers.explain,
            busy_share=settings.explainer.worker_busy_share,
            is_busy=self.is_busy,
        )

    def _note_handled(self, t0: float, t1: float) -> None:
        """A batch was handled from ``t0`` to ``t1`` (``perf_counter``): update the duty, a
        moving average over wall time (time constant ``DUTY_TAU_S``), so one long batch of
        a backlog counts as much as many short ones over the same time (averaged per batch,
        the few 1-2 s batches of a large backlog never made the loop look busy, and the
        worker ran unpaced). The first batch counts with no gap before it."""
        gap = max(0.0, t0 - self._handled_at) if self._handled_at else 0.0
        busy = max(0.0, t1 - t0)
        span = busy + gap
        if span > 0.0:
            w = -math.expm1(-span / DUTY_TAU_S)
            self._duty += w * (busy / span - self._duty)
        self._handled_at = t1

    def is_busy(self) -> bool:
        """Whether the loop has a backlog: batches took at least 40 % of the wall clock
        lately (the rest is polling, checkpoints, waiting for data) and one ended within the
        last second. At live rates a poll waits for data most of the time."""
        return self._duty >= 0.4 and time.perf_counter() - self._handled_at < 1.0

    # -- input topics of this stage
    def topics(self) -> list[str]:
        return [t.name for t in self.settings.kafka.topics]

    #: whether :meth:`handle` takes a ``gate`` (pacing a backlog by data time)
    paced = False

    def handle(self, records: list[RawRecord], now_s: float, *, gate: Gate | None = None) -> None:
        raise NotImplementedError

    # -- shared steps
    def _deadletter(self, errors: list[RecordError]) -> None:
        if errors and self.sinks.deadletter is not None:
            self.sinks.deadletter.write_batch(errors)
        _count_errors(self.stats, errors)

    def _explain_touched(self, touched: dict[str, list[str]]) -> list[Explanation]:
        exp = self.cores.explainer
        if exp is None:
            return []
        out = [Explanation.from_result(r) for r in exp.explain_touched(touched)]
        if out:
            # the page kind is decided now, while the incident is surely open: by the time
            # the worker publishes (outside the lock), a backlog's data time may have closed
            # or merged it
            self.page_kinds(out)
        return out

    def page_kinds(self, explanations: list[Explanation]) -> dict[str, tuple[str, float]] | None:
        """Each explanation's kind, by id: ``watch`` (its incident's alerts have not agreed
        yet: published, not paged), the incident's ``page``, or an ``update``; pages and
        updates counted in ``stats.pages``. None without a queue (nothing pages). Decided
        once per explanation id (:meth:`ExplainQueue.pages_for`)."""
        queue = self.cores.queue
        if queue is None:
            return None
        exp = self.cores.explainer
        with self.cores.lock:
            pages, new = queue.pages_for(
                explanations, exp.is_paging if exp is not None else lambda iid: True
            )
        self.stats.pages.update({k: n for k, n in new.items() if k != "watch"})
        return pages

    def _publish(self, explanations: list[Explanation]) -> None:
        """Explanations to Redis; those of paging incidents also to the webhook outbox, each
        its incident's ``page`` or an ``update`` (one page per incident, counted in
        ``stats.pages``); a watching incident's are not sent to receivers."""
        if not explanations:
            return
        queue = self.cores.queue
        pages = self.page_kinds(explanations)
        if self.sinks.snapshots is not None and self.cores.trail is not None:
            # before the results: a page opened from the notification finds its plots
            with self.cores.lock:
                gathered = gather_snapshots(
                    self.cores,
                    explanations,
                    reference_points=self.settings.explainer.reference_points,
                )
            # formatted outside the lock: the loop's next batch need not wait for it
            self.sinks.snapshots.write_batch(render_snapshots(gathered))
        if self.sinks.results is not None:
            self.sinks.results.publish(explanations)
        if self.sinks.outbox is not None:
            paged = [e for e in explanations if pages is None or pages[e.id][0] != "watch"]
            if paged:
                self.sinks.outbox.enqueue(paged, pages=pages)
        if queue is not None:
            with self.cores.lock:
                queue.published(e.id for e in explanations)
        self.stats.explanations_total += len(explanations)
        self.stats.explanations_by_verdict.update(e.verdict for e in explanations)

    def _produce_columns(
        self, topic: str, batch: SampleBatch, cols: Mapping[str, npt.NDArray[Any]]
    ) -> None:
        """Columnar messages per series group to an internal topic (one, or more past the
        size bound: :func:`~causalwatch.wire.encode_column_messages`), each sent to its
        group's own partition (not where the client hashes the key: four keys often share
        partitions), so a series always lands in the same partition and the groups spread
        evenly over the consumers of the next stage."""
        producer = self.sinks.producer
        if producer is None:
            return
        items: list[Item] = []
        parts: list[int] = []
        for part, idx in _partitioned(
            batch.series_keys, self.settings.kafka.internal_partitions
        ).items():
            keys = [batch.series_keys[i] for i in idx.tolist()]
            extra = {name: arr[idx] for name, arr in cols.items()}
            for body in encode_column_messages(keys, batch.ts[idx], batch.value[idx], extra):
                items.append((_group_key(part), body, []))
                parts.append(part)
        producer.write_batch(topic, items, parts)

    def _kick(self, batch: SampleBatch) -> list[Explanation]:
        """Wake the explainer worker after a batch (inline: its explanations, to publish)."""
        if self.cores.queue is None or len(batch) == 0:
            return []
        return self.worker.kick(float(batch.ts.max()))

    def _count_in(self, records: list[RawRecord]) -> None:
        self.stats.records_by_topic.update(map(_TOPIC, records))  # counted in C

    # -- checkpoints
    def snapshot(self, *, views: bool = False) -> Checkpoint:
        """The stage's checkpoint (offsets left to the caller). ``views=True`` puts
        read-only views of the detector's arrays and of the explainer's sample history in
        it instead of copies (about 1 GB at 1M series for the detector, 0.8 GB at 100k for
        the history): only for a caller that saves the checkpoint before they are written
        again, on the thread that writes them (the loop's ``_checkpoint``). The rest of
        the explainer's state (incidents, Granger tests) is always copied: the worker
        thread writes it while the checkpoint is saved."""
        cp = Checkpoint(meta={"stage": self.name, "index": self.cores.index.to_snapshot()})
        if self.cores.detector is not None:
            cp.arrays["detector"] = self.cores.detector.snapshot(copy=not views)
        if self.cores.explainer is not None:
            cp.arrays["explainer"] = self.cores.explainer.snapshot(history_views=views)
        if self.cores.queue is not None:
            # pending requests and explanations built but not yet published: the offsets
            # this checkpoint commits are covered by them (at-least-once)
            cp.meta["explain_queue"] = self.cores.queue.to_json()
        return cp

    def restore(self, cp: Checkpoint) -> None:
        index = SeriesIndex.from_snapshot(cp.meta["index"], self.settings.ingest.max_series)
        detector = (
            # the loaded arrays become the state (no second copy); cp is not used again
            Detector.restore(cp.arrays["detector"], detector_config(self.settings), adopt=True)
            if "detector" in cp.arrays and self.cores.detector is not None
            else self.cores.detector
        )
        explainer = self.cores.explainer
        if explainer is not None and "explainer" in cp.arrays:
            explainer = Explainer.restore(
                cp.arrays["explainer"],
                explainer_config(self.settings),
                explainer.graph,
                index,
                adopt=True,  # as the detector's: cp is not used again
            )
        self.cores.index, self.cores.detector, self.cores.explainer = index, detector, explainer
        if self.cores.queue is not None:
            queue = explain_queue(self.settings)
            if "explain_queue" in cp.meta:
                queue.load_json(cp.meta["explain_queue"])
            self.cores.queue = queue
        if self.cores.trail is not None:
            self.cores.trail.clear()  # its rows were the old index's
        # the settings may have changed since the checkpoint: re-apply the rules
        live = index.items()
        apply_sensitivity(self.cores, [r for _, r in live], [k for k, _ in live])

    def periodic(self, now_s: float) -> None:
        """Housekeeping between batches: eviction of stale series, then the hooks (graph
        reloads, feedback, lease renewal)."""
        if now_s >= self._next_evict_s:
            self._next_evict_s = now_s + EVICT_EVERY_S
            evict_stale(self.cores, now_s, self.settings.detector.series_ttl_s)
        for hook in self.hooks:
            hook(now_s)


class AllStage(Stage):
    """Everything in one process: raw topics in, explanations out."""

    name = "all"
    paced = True

    def handle(self, records: list[RawRecord], now_s: float, *, gate: Gate | None = None) -> None:
        """Decode, detect, explain and publish one poll. With a ``gate`` the records whose
        data time is too far ahead wait in it; those it releases (read earlier) join this
        batch ahead of the new ones, so a partition's order is kept."""
        self._count_in(records)
        t0 = time.perf_counter()
        with self.cores.lock:
            rows, batch, errors = ingest_records(
                records, self.formats, self.limits, self.cores.index, now_s
            )
            if gate is not None:
                records, rows, batch, errors = self._gated(
                    gate, records, rows, batch, errors, now_s
                )
            t1 = time.perf_counter()
            out = process_samples(self.cores, rows, batch, records=records, wall_s=now_s)
            explanations = self._kick(out.batch)
        t2 = time.perf_counter()
        self._deadletter(errors + out.errors)
        self._publish(explanations)
        t3 = time.perf_counter()
        self.stats.samples += len(out.batch)
        self.stats.alerts_total += len(out.events)
        self.timers.observe("decode", t1 - t0)
        self.timers.observe("detect", t2 - t1)
        self.timers.observe("publish", t3 - t2)
        self._note_handled(t0, time.perf_counter())

    def _gated(
        self,
        gate: Gate,
        records: list[RawRecord],
        rows: IntArray,
        batch: SampleBatch,
        errors: list[RecordError],
        now_s: float,
    ) -> tuple[list[RawRecord], IntArray, SampleBatch, list[RecordError]]:
        """The batch the gate lets through: released records first (their samples kept
        from when they were held, rows looked up again), then the new records it keeps;
        origins index the returned record list."""
        polled = Decoded(records, batch, errors)
        released, keep = gate.offer(
            records, record_times(len(records), batch.origin, batch.ts), polled
        )
        if not keep.all():
            polled.shrink(~keep)  # the held records' data alone waits (pacing.Decoded)
        rows, batch, errors = without_held(keep, records, rows, batch, errors)
        if not released:
            return records, rows, batch, errors
        r_records, r_batch, r_errors = joined(released)
        r_rows, r_batch, more = assign_rows(r_batch, self.cores.index, r_records)
        shifted = np.where(batch.origin >= 0, batch.origin + len(r_records), -1)
        batch = SampleBatch(batch.series_keys, batch.ts, batch.value, shifted)
        return (
            r_records + records,
            np.concatenate([r_rows, rows]),
            SampleBatch.concat([r_batch, batch]),
            r_errors + more + errors,
        )


class IngestStage(Stage):
    """Raw topics in; validated samples to the internal samples topic, partitioned by series."""

    name = "ingest"

    def handle(self, records: list[RawRecord], now_s: float, *, gate: Gate | None = None) -> None:
        self._count_in(records)
        t0 = time.perf_counter()
        _rows, batch, errors = ingest_records(
            records, self.formats, self.limits, self.cores.index, now_s
        )
        self._deadletter(errors)
        if len(batch):
            self._produce_columns(self.settings.kafka.samples_topic, batch, {})
        self.stats.samples += len(batch)
        self.timers.observe("decode", time.perf_counter() - t0)


class DetectorStage(Stage):
    """Samples topic in; scores (with fired alerts) to the scores topic."""

    name = "detector"

    def topics(self) -> list[str]:
        return [self.settings.kafka.samples_topic]

    def handle(self, records: list[RawRecord], now_s: float, *, gate: Gate | None = None) -> None:
        self._count_in(records)
        t0 = time.perf_counter()
        batches, errors = _decode_internal(records, ())
        batch = SampleBatch.concat([b for b, _ in batches])
        with self.cores.lock:
            rows, batch, more = assign_rows(batch, self.cores.index, records)
            out = process_samples(self.cores, rows, batch, records=records)
            if self.partitions is not None:
                self.partitions.track(out.rows, out.batch.origin, records)
        self._deadletter(errors + more + out.errors)
        res = out.result
        if res is not None:
            cols = {
                "score": res.score,
                "severity": res.severity,
                "expected": res.expected,
                "lower": res.lower,
                "upper": res.upper,
                "fired": res.fired.astype(np.float64),
            }
            self._produce_columns(self.settings.kafka.scores_topic, out.batch, cols)
        self.stats.samples += len(out.batch)
        self.stats.alerts_total += len(out.events)
        self.timers.observe("detect", time.perf_counter() - t0)


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """One message of the scores topic: its samples and what the detector said of each."""

    batch: SampleBatch
    score: FloatArray
    severity: FloatArray
    expected: FloatArray
    lower: FloatArray
    upper: FloatArray
    fired: BoolArray

    def select(self, mask: BoolArray) -> ScoredBatch:
        """The samples where ``mask`` is True, columns kept aligned."""
        return ScoredBatch(
            self.batch.select(mask),
            self.score[mask],
            self.severity[mask],
            self.expected[mask],
            self.lower[mask],
            self.upper[mask],
            self.fired[mask],
        )


def _decode_scores(records: list[RawRecord]) -> tuple[list[ScoredBatch], list[RecordError]]:
    decoded, errors = _decode_internal(records, SCORE_FIELDS)
    scored = [
        ScoredBatch(
            b, c["score"], c["severity"], c["expected"], c["lower"], c["upper"], c["fired"] > 0.5
        )
        for b, c in decoded
    ]
    return scored, errors


class ExplainerStage(Stage):
    """Scores topic in; explanations to Redis and webhooks."""

    name = "explainer"

    def topics(self) -> list[str]:
        return [self.settings.kafka.scores_topic]

    def handle(self, records: list[RawRecord], now_s: float, *, gate: Gate | None = None) -> None:
        self._count_in(records)
        t0 = time.perf_counter()
        decoded, errors = _decode_scores(records)
        explanations: list[Explanation] = []
        exp = self.cores.explainer
        now_max = -np.inf
        with self.cores.lock:
            for sb in decoded:
                rows, batch, more = assign_rows(sb.batch, self.cores.index, records)
                errors.extend(more)
                if more:
                    # series refused (this index is full): drop their score columns too, so
                    # every kept sample keeps its own score and alert flag
                    keys = sb.batch.series_keys
                    sb = sb.select(np.fromiter((k in self.cores.index for k in keys), bool))
                if exp is None or len(rows) == 0:
                    continue
                if self.cores.trail is not None:
                    self.cores.trail.append(
                        rows, batch.ts, batch.value, sb.expected, sb.lower, sb.upper, sb.score
                    )
                events = fired_events(
                    self.cores.index, rows, batch, sb.fired, sb.expected, sb.score, sb.severity
                )
                now = float(batch.ts.max())
                now_max = max(now_max, now)
                queue = None if self.muted else self.cores.queue
                explanations.extend(explain_events(exp, rows, batch, events, now, queue, now_s))
            if self.cores.queue is not None and not self.muted and np.isfinite(now_max):
                explanations.extend(self.worker.kick(float(now_max)))
        self._deadletter(errors)
        self._publish(explanations)
        self.stats.samples += sum(len(sb.batch) for sb in decoded)
        t1 = time.perf_counter()
        self.timers.observe("explain", t1 - t0)
        self._note_handled(t0, t1)


def _decode_internal(
    records: list[RawRecord], extra: tuple[str, ...]
) -> tuple[list[tuple[SampleBatch, dict[str, FloatArray]]], list[RecordError]]:
    out: list[tuple[SampleBatch, dict[str, FloatArray]]] = []
    errors: list[RecordError] = []
    for i, rec in enumerate(records):
        try:
            batch, cols = decode_columns(rec.value, extra)
        except RecordError as err:
            err.topic, err.partition, err.offset = rec.topic, rec.partition, rec.offset
            errors.append(err)
            continue
        batch.origin[:] = i
        out.append((batch, cols))
    return out, errors


STAGES: dict[Role, type[Stage]] = {
    "all": AllStage,
    "ingest": IngestStage,
    "detector": DetectorStage,
    "explainer": ExplainerStage,
}
