"""Wiring: source -> decode -> detect -> explain -> publish.

This is the only module that composes the stages. The same functions serve the live
service (Kafka in, Redis/Prometheus/webhooks out), offline replay (files in, files out)
and the benchmarks (generators in): only the source and the sinks differ.

Layers, from pure to I/O:

- :func:`ingest_records` turns raw records into rows + samples + record errors (pure);
- :func:`process_samples` runs detector and explainer over one batch (pure, no I/O);
- the ``*Stage`` classes add the adapters (dead-letter topic, Redis, webhooks, internal
  topics) for one process role: ``all``, ``ingest``, ``detector`` or ``explainer``;
- :func:`run_stage` is the loop: poll, handle, checkpoint, commit.

At-least-once: a batch's outputs are published before its offsets can be committed, and
offsets are committed only after the checkpoint that covers them is in Redis.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from causalwatch.checkpoint import Checkpoint, RedisCheckpointStore
from causalwatch.errors import BackendError, RecordError
from causalwatch.models import AnomalyEvent, Explanation, RawRecord, SampleBatch
from causalwatch.publish.metrics import IncidentScore, PipelineStats, SeriesView
from causalwatch.series import SeriesIndex, labels_match, series_hash
from causalwatch.settings import SensitivityRule, Settings
from causalwatch.wire import SCORE_FIELDS, decode_columns, encode_columns
from detector.core import Detector, DetectorConfig, DetectorResult
from explainer.core import Explainer, ExplainerConfig
from explainer.dag import DependencyGraph
from ingest import IngestLimits, IngestSchemaError, assign_rows, decode_batch

__all__ = [
    "Cores",
    "StepOutput",
    "apply_sensitivity",
    "build_cores",
    "detector_config",
    "explainer_config",
    "ingest_limits",
    "ingest_records",
    "process_samples",
    "run_stage",
    "sensitivity_for",
]

log = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Offsets = dict[tuple[str, int], int]
Item = tuple[bytes | None, bytes, list[tuple[str, bytes]]]  # key, value, headers
EVICT_EVERY_S = 60.0


# --------------------------------------------------------------------------------------
# Settings -> plain core configuration (cores never see the Settings object)
# --------------------------------------------------------------------------------------
def detector_config(settings: Settings) -> DetectorConfig:
    d = settings.detector
    return DetectorConfig(
        season_s=d.season_s,
        alert_threshold=d.alert_threshold,
        clear_threshold=d.clear_threshold,
        min_alert_gap_s=d.min_alert_gap_s,
        warmup_points=d.warmup_points,
    )


def explainer_config(settings: Settings) -> ExplainerConfig:
    e = settings.explainer
    return ExplainerConfig(
        history_points=e.history_points,
        reference_points=e.reference_points,
        anomaly_points=e.anomaly_points,
        incident_window_s=e.incident_window_s,
        learn_graph=e.learn_graph,
        max_root_causes=e.max_root_causes,
    )


def ingest_limits(settings: Settings, *, replay: bool = False) -> IngestLimits:
    """Limits for decoding. Replay of old files turns the wall-clock age checks off."""
    limits = IngestLimits.from_settings(settings.ingest)
    if replay:
        limits = dataclasses.replace(limits, max_future_s=float("inf"), max_age_s=float("inf"))
    return limits


# --------------------------------------------------------------------------------------
# Pure cores
# --------------------------------------------------------------------------------------
@dataclass
class Cores:
    """The stage cores of one process, sharing one series index.

    ``lock`` serialises the pipeline loop with readers on other threads (metrics scrapes,
    on-demand explanations from the HTTP API).
    """

    index: SeriesIndex
    detector: Detector | None
    explainer: Explainer | None
    lock: threading.RLock = field(default_factory=threading.RLock)
    #: ``detector.sensitivity``: applied to each series when the detector first sees it
    sensitivity: tuple[SensitivityRule, ...] = ()


def sensitivity_for(key: str, rules: Sequence[SensitivityRule]) -> float:
    """The factor of the first rule whose matchers all match the series, else 1."""
    for rule in rules:
        if labels_match(key, rule.matchers):
            return rule.factor
    return 1.0


def apply_sensitivity(cores: Cores, rows: Sequence[int], keys: Sequence[str]) -> None:
    """Set each row's configured sensitivity (rows that match no rule get 1)."""
    if cores.detector is None or not cores.sensitivity or len(rows) == 0:
        return
    factors = [sensitivity_for(k, cores.sensitivity) for k in keys]
    cores.detector.set_sensitivity(np.asarray(rows, dtype=np.int64), np.asarray(factors))


def build_cores(
    settings: Settings,
    graph: DependencyGraph | None = None,
    *,
    detector: bool = True,
    explainer: bool = True,
) -> Cores:
    index = SeriesIndex(settings.ingest.node_label, max_series=settings.ingest.max_series)
    det = Detector(detector_config(settings)) if detector else None
    exp = (
        Explainer(explainer_config(settings), graph or DependencyGraph(), index)
        if explainer
        else None
    )
    return Cores(
        index=index, detector=det, explainer=exp, sensitivity=settings.detector.sensitivity
    )


def ingest_records(
    records: Sequence[RawRecord],
    formats: Mapping[str, str],
    limits: IngestLimits,
    index: SeriesIndex,
    now_s: float,
) -> tuple[IntArray, SampleBatch, list[RecordError]]:
    """Decode, validate and index one poll: rows and samples kept, and the rejects."""
    batch, errors = decode_batch(records, formats, limits, now_s)
    rows, kept, more = assign_rows(batch, index, records)
    return rows, kept, errors + more


def in_order_mask(rows: IntArray, ts: FloatArray, last_ts: FloatArray) -> BoolArray:
    """Samples whose timestamp is after everything already seen for their series.

    A series' samples must arrive in time order: a repeat (an at-least-once producer
    re-sending) or a late sample is rejected instead of corrupting the state. Vectorised:
    compare each sample with the previous *kept* sample of its row, repeated until stable
    (one or two passes in practice).
    """
    n = len(rows)
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return keep
    prev_state = np.where(rows < len(last_ts), last_ts[np.minimum(rows, len(last_ts) - 1)], -np.inf)
    keep &= ~(ts <= prev_state)
    order = np.lexsort((np.arange(n), rows))
    while True:
        idx = order[keep[order]]
        if len(idx) < 2:
            break
        same = rows[idx[1:]] == rows[idx[:-1]]
        bad = same & (ts[idx[1:]] <= ts[idx[:-1]])
        if not bad.any():
            break
        keep[idx[1:][bad]] = False
    return keep


@dataclass
class StepOutput:
    """What one batch produced, before any I/O."""

    batch: SampleBatch
    rows: IntArray
    result: DetectorResult | None
    events: list[AnomalyEvent]
    explanations: list[Explanation]
    errors: list[RecordError]


def events_from(
    index: SeriesIndex, rows: IntArray, batch: SampleBatch, result: DetectorResult
) -> list[AnomalyEvent]:
    """One :class:`AnomalyEvent` per sample where a new alert fired."""
    out = []
    for i in np.flatnonzero(result.fired).tolist():
        row = int(rows[i])
        out.append(
            AnomalyEvent(
                row=row,
                series_key=batch.series_keys[i],
                node=index.node_of(row),
                ts=float(batch.ts[i]),
                value=float(batch.value[i]),
                expected=float(result.expected[i]),
                score=float(result.score[i]),
                severity=float(result.severity[i]),
            )
        )
    return out


def out_of_order_errors(
    batch: SampleBatch, mask: BoolArray, records: Sequence[RawRecord] | None
) -> list[RecordError]:
    errors: list[RecordError] = []
    for i in np.flatnonzero(~mask).tolist():
        origin = int(batch.origin[i])
        rec = records[origin] if records is not None and origin >= 0 else None
        errors.append(
            IngestSchemaError(
                f"field 'timestamp' {batch.ts[i]!r} is not after the last sample of series "
                f"{batch.series_keys[i]}",
                reason="out_of_order",
                field="timestamp",
                record=rec,
            )
        )
    return errors


def process_samples(
    cores: Cores,
    rows: IntArray,
    batch: SampleBatch,
    now_s: float | None = None,
    records: Sequence[RawRecord] | None = None,
) -> StepOutput:
    """Detect and explain one batch (pure: no I/O). ``now_s`` defaults to data time."""
    det = cores.detector
    if det is None:
        raise RuntimeError("process_samples needs a detector core")
    mask = in_order_mask(rows, batch.ts, det.last_ts)
    errors: list[RecordError] = []
    if not mask.all():
        errors = out_of_order_errors(batch, mask, records)
        batch, rows = batch.select(mask), rows[mask]
    if len(rows) == 0:
        return StepOutput(batch, rows, None, [], [], errors)
    if cores.sensitivity:
        # rows the detector has not seen yet (new series, or a row freed by eviction)
        cap = det.capacity
        fresh = (rows >= cap) | np.isnan(det.last_ts[np.minimum(rows, cap - 1)])
        if fresh.any():
            first = {int(rows[i]): batch.series_keys[i] for i in np.flatnonzero(fresh)}
            apply_sensitivity(cores, list(first), list(first.values()))
    result = det.step(rows, batch.ts, batch.value)
    events = events_from(cores.index, rows, batch, result)
    explanations: list[Explanation] = []
    if cores.explainer is not None:
        cores.explainer.observe(rows, batch.ts, batch.value)
        now = float(batch.ts.max()) if now_s is None else now_s
        explanations = cores.explainer.on_anomalies(events, now)
    return StepOutput(batch, rows, result, events, explanations, errors)


def evict_stale(cores: Cores, now_s: float, ttl_s: float) -> int:
    """Forget series not seen for ``ttl_s`` seconds, so state stays bounded.

    The explainer and detector forget the rows before the index frees them for reuse, so a
    new series never inherits an old one's state. Returns how many series were evicted.
    """
    det = cores.detector
    if det is None:
        return 0
    with cores.lock:
        rows = det.stale_rows(now_s, ttl_s)
        rows = np.asarray(
            [r for r in rows.tolist() if r < cores.index.capacity and cores.index.is_live(r)],
            dtype=np.int64,
        )
        if rows.size == 0:
            return 0
        if cores.explainer is not None:
            cores.explainer.forget_rows(rows)
        det.reset_rows(rows)
        cores.index.remove(rows)
    log.info("evicted stale series", extra={"rows": int(rows.size), "ttl_s": ttl_s})
    return int(rows.size)


def series_view(cores: Cores) -> SeriesView | None:
    """Latest detector state of live series, for the metrics collector."""
    det = cores.detector
    if det is None:
        return None
    with cores.lock:
        items = cores.index.items()
        if not items:
            return None
        keys = [k for k, _ in items]
        rows = np.fromiter((r for _, r in items), dtype=np.int64, count=len(items))
        nodes = [cores.index.node_of(int(r)) for r in rows]
        return SeriesView(
            keys=keys,
            nodes=nodes,
            score=det.last_score[rows].copy(),
            severity=_severity(det.last_score[rows]),
            value=det.last_value[rows].copy(),
            expected=det.last_expected[rows].copy(),
            lower=det.last_lower[rows].copy(),
            upper=det.last_upper[rows].copy(),
            alert=det.in_alert[rows].copy(),
        )


def _severity(score: FloatArray) -> FloatArray:
    # Same scale as DetectorResult.severity: 100 at a tail probability of 1e-8.
    p = np.maximum(1.0 - np.nan_to_num(score, nan=0.0), 1e-300)
    out: FloatArray = np.clip(100.0 * -np.log10(p) / 8.0, 0.0, 100.0)
    return out


def incident_scores(cores: Cores) -> list[IncidentScore]:
    exp = cores.explainer
    if exp is None:
        return []
    with cores.lock:
        out = []
        for inc in exp.open_incidents():
            for rc in inc.root_causes:
                node, score = rc[0], rc[1]
                share = float(rc[2]) if len(rc) > 2 else float("nan")
                out.append(IncidentScore(inc.incident_id, inc.target_node, node, score, share))
        return out


# --------------------------------------------------------------------------------------
# Adapters a stage may publish to (all optional, passed in)
# --------------------------------------------------------------------------------------
class DeadLetter(Protocol):
    def write_batch(self, errors: list[RecordError]) -> None: ...


class Results(Protocol):
    def publish(self, explanations: Sequence[Explanation]) -> int: ...


class Outbox(Protocol):
    def enqueue(self, explanations: Sequence[Explanation]) -> int: ...


class Producer(Protocol):
    def write_batch(self, topic: str, items: list[Item]) -> None: ...


@dataclass
class Sinks:
    deadletter: DeadLetter | None = None
    results: Results | None = None
    outbox: Outbox | None = None
    producer: Producer | None = None


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


class Stage:
    """One process role. Subclasses implement :meth:`handle`; state goes in checkpoints."""

    name = "stage"

    def __init__(
        self,
        settings: Settings,
        cores: Cores,
        sinks: Sinks,
        stats: PipelineStats,
        timers: Timers | None = None,
    ) -> None:
        self.settings = settings
        self.cores = cores
        self.sinks = sinks
        self.stats = stats
        self.timers = timers or Timers()
        self.formats = {t.name: t.format for t in settings.kafka.topics}
        self.limits = ingest_limits(settings)
        self.hooks: list[Callable[[float], None]] = []
        self._next_evict_s = 0.0
        # Per-partition checkpoints (the detector stage, whose input is partition-aligned).
        self.partitions: Any = None

    # -- input topics of this stage
    def topics(self) -> list[str]:
        return [t.name for t in self.settings.kafka.topics]

    def handle(self, records: list[RawRecord], now_s: float) -> None:
        raise NotImplementedError

    # -- shared steps
    def _deadletter(self, errors: list[RecordError]) -> None:
        if errors and self.sinks.deadletter is not None:
            self.sinks.deadletter.write_batch(errors)
        _count_errors(self.stats, errors)

    def _publish(self, explanations: list[Explanation]) -> None:
        if not explanations:
            return
        if self.sinks.results is not None:
            self.sinks.results.publish(explanations)
        if self.sinks.outbox is not None:
            self.sinks.outbox.enqueue(explanations)
        self.stats.explanations_total += len(explanations)

    def _produce_columns(
        self, topic: str, batch: SampleBatch, cols: Mapping[str, npt.NDArray[Any]]
    ) -> None:
        """One columnar message per series group to an internal topic, keyed by the group
        so a series always lands in the same partition."""
        producer = self.sinks.producer
        if producer is None:
            return
        items: list[Item] = []
        for part, idx in _partitioned(
            batch.series_keys, self.settings.kafka.internal_partitions
        ).items():
            keys = [batch.series_keys[i] for i in idx.tolist()]
            extra = {name: arr[idx] for name, arr in cols.items()}
            body = encode_columns(keys, batch.ts[idx], batch.value[idx], **extra)
            items.append((_group_key(part), body, []))
        producer.write_batch(topic, items)

    def _count_in(self, records: list[RawRecord]) -> None:
        for r in records:
            self.stats.records_by_topic[r.topic] += 1

    # -- checkpoints
    def snapshot(self) -> Checkpoint:
        cp = Checkpoint(meta={"stage": self.name, "index": self.cores.index.to_snapshot()})
        if self.cores.detector is not None:
            cp.arrays["detector"] = self.cores.detector.snapshot()
        if self.cores.explainer is not None:
            cp.arrays["explainer"] = self.cores.explainer.snapshot()
        return cp

    def restore(self, cp: Checkpoint) -> None:
        index = SeriesIndex.from_snapshot(cp.meta["index"], self.settings.ingest.max_series)
        detector = (
            Detector.restore(cp.arrays["detector"], detector_config(self.settings))
            if "detector" in cp.arrays and self.cores.detector is not None
            else self.cores.detector
        )
        explainer = self.cores.explainer
        if explainer is not None and "explainer" in cp.arrays:
            explainer = Explainer.restore(
                cp.arrays["explainer"], explainer_config(self.settings), explainer.graph, index
            )
        self.cores.index, self.cores.detector, self.cores.explainer = index, detector, explainer
        # the settings may have changed since the checkpoint: re-apply the rules
        live = index.items()
        apply_sensitivity(self.cores, [r for _, r in live], [k for k, _ in live])

    def periodic(self, now_s: float) -> None:
        """Housekeeping between batches: eviction of stale series, and the hooks added by
        the service (graph reloads, mutes)."""
        if now_s >= self._next_evict_s:
            self._next_evict_s = now_s + EVICT_EVERY_S
            evict_stale(self.cores, now_s, self.settings.detector.series_ttl_s)
        for hook in self.hooks:
            hook(now_s)


class AllStage(Stage):
    """Everything in one process: raw topics in, explanations out."""

    name = "all"

    def handle(self, records: list[RawRecord], now_s: float) -> None:
        self._count_in(records)
        t0 = time.perf_counter()
        with self.cores.lock:
            rows, batch, errors = ingest_records(
                records, self.formats, self.limits, self.cores.index, now_s
            )
            t1 = time.perf_counter()
            out = process_samples(self.cores, rows, batch, records=records)
        t2 = time.perf_counter()
        self._deadletter(errors + out.errors)
        self._publish(out.explanations)
        t3 = time.perf_counter()
        self.stats.samples += len(out.batch)
        self.stats.alerts_total += len(out.events)
        self.timers.observe("decode", t1 - t0)
        self.timers.observe("detect", t2 - t1)
        self.timers.observe("publish", t3 - t2)


class IngestStage(Stage):
    """Raw topics in; validated samples to the internal samples topic, partitioned by series."""

    name = "ingest"

    def handle(self, records: list[RawRecord], now_s: float) -> None:
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

    def handle(self, records: list[RawRecord], now_s: float) -> None:
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


class ExplainerStage(Stage):
    """Scores topic in; explanations to Redis and webhooks."""

    name = "explainer"

    def topics(self) -> list[str]:
        return [self.settings.kafka.scores_topic]

    def handle(self, records: list[RawRecord], now_s: float) -> None:
        self._count_in(records)
        t0 = time.perf_counter()
        decoded, errors = _decode_internal(records, SCORE_FIELDS)
        explanations: list[Explanation] = []
        exp = self.cores.explainer
        with self.cores.lock:
            for batch, cols in decoded:
                rows, batch, more = assign_rows(batch, self.cores.index, records)
                errors.extend(more)
                if exp is None or len(rows) == 0:
                    continue
                exp.observe(rows, batch.ts, batch.value)
                events = []
                fired = cols["fired"] > 0.5
                for i in np.flatnonzero(fired).tolist():
                    row = int(rows[i])
                    events.append(
                        AnomalyEvent(
                            row=row,
                            series_key=batch.series_keys[i],
                            node=self.cores.index.node_of(row),
                            ts=float(batch.ts[i]),
                            value=float(batch.value[i]),
                            expected=float(cols["expected"][i]),
                            score=float(cols["score"][i]),
                            severity=float(cols["severity"][i]),
                        )
                    )
                explanations.extend(exp.on_anomalies(events, float(batch.ts.max())))
        self._deadletter(errors)
        self._publish(explanations)
        self.stats.samples += sum(len(b) for b, _ in decoded)
        self.timers.observe("explain", time.perf_counter() - t0)


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


STAGES: dict[str, type[Stage]] = {
    "all": AllStage,
    "ingest": IngestStage,
    "detector": DetectorStage,
    "explainer": ExplainerStage,
}


# --------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------
class Source(Protocol):
    def next_batch(self, max_records: int) -> list[RawRecord]: ...
    def commit(self, next_offsets: Mapping[tuple[str, int], int]) -> None: ...
    def lag(self) -> dict[tuple[str, int], int]: ...
    def close(self) -> None: ...


def run_stage(
    stage: Stage,
    make_source: Callable[..., Source],
    checkpoints: RedisCheckpointStore | None,
    stop: threading.Event,
    *,
    checkpoint_interval_s: float = 5.0,
    max_records: int = 5_000,
    clock: Callable[[], float] = time.time,
    on_batch: Callable[[], None] | None = None,
) -> None:
    """Poll, handle, checkpoint and commit until ``stop`` is set.

    ``make_source(resume, on_revoke)`` builds the consumer. ``resume(partitions)`` returns
    the next offsets stored for newly assigned partitions; ``on_revoke(partitions)`` runs
    before a rebalance takes partitions away. With ``stage.partitions`` set, state is
    checkpointed and handed over per partition; otherwise one checkpoint holds it all.
    """
    offsets: Offsets = {}
    parts = stage.partitions
    if checkpoints is not None and parts is None:
        cp = checkpoints.load()
        if cp is not None and cp.meta.get("stage") == stage.name:
            stage.restore(cp)
            offsets = dict(cp.offsets)
            log.info(
                "resumed from checkpoint",
                extra={
                    "stage": stage.name,
                    "series": len(stage.cores.index),
                    "partitions": len(offsets),
                },
            )

    def resume(partitions: list[tuple[str, int]]) -> Mapping[tuple[str, int], int]:
        if parts is not None:
            got: dict[tuple[str, int], int] = parts.load(partitions)
            offsets.update(got)
            return got
        return {tp: offsets[tp] for tp in partitions if tp in offsets}

    def on_revoke(partitions: list[tuple[str, int]]) -> None:
        if parts is None:
            return
        parts.save(partitions, offsets)
        parts.drop(partitions)
        for tp in partitions:
            offsets.pop(tp, None)

    source = make_source(resume, on_revoke)
    last_cp = time.monotonic()
    next_lag = last_cp + checkpoint_interval_s
    dirty = False
    try:
        while not stop.is_set():
            records = source.next_batch(max_records)
            now = clock()
            if records:
                stage.handle(records, now)
                for r in records:
                    key = (r.topic, r.partition)
                    if offsets.get(key, -1) <= r.offset:
                        offsets[key] = r.offset + 1
                dirty = True
                stage.stats.last_batch_ts = now
                if on_batch is not None:
                    on_batch()
            stage.periodic(now)
            if dirty and time.monotonic() - last_cp >= checkpoint_interval_s:
                _checkpoint(stage, source, checkpoints, offsets, now)
                last_cp, dirty = time.monotonic(), False
                next_lag = last_cp + checkpoint_interval_s
            elif time.monotonic() >= next_lag:  # idle or stalled: the lag must not freeze
                _measure_lag(stage, source, now)
                next_lag = time.monotonic() + checkpoint_interval_s
        if dirty:
            _checkpoint(stage, source, checkpoints, offsets, clock())
    finally:
        source.close()


def _measure_lag(stage: Stage, source: Source, now: float) -> None:
    """Refresh the lag gauge; when the broker does not answer, keep the last values and
    let ``lag_last_success_ts`` (exported) show how stale they are."""
    try:
        stage.stats.lag = source.lag()
    except BackendError as exc:
        log.warning("consumer lag unavailable", extra={"stage": stage.name, "error": str(exc)})
        return
    stage.stats.lag_last_success_ts = now


def _checkpoint(
    stage: Stage,
    source: Source,
    checkpoints: RedisCheckpointStore | None,
    offsets: Offsets,
    now: float,
) -> None:
    t0 = time.perf_counter()
    if stage.partitions is not None:
        stage.partitions.save(sorted(stage.partitions.owned), offsets)
    elif checkpoints is not None:
        with stage.cores.lock:
            cp = stage.snapshot()
        cp.offsets = dict(offsets)
        checkpoints.save(cp)
    try:
        source.commit(offsets)
    except BackendError as exc:
        # The checkpoint is durable; a failed commit only delays lag dashboards.
        log.warning("offset commit failed", extra={"stage": stage.name, "error": str(exc)})
    else:
        _measure_lag(stage, source, now)
    stage.stats.checkpoint_last_success_ts = now
    stage.timers.observe("checkpoint", time.perf_counter() - t0)
