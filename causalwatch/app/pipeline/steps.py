"""The pure steps of the pipeline: the cores of one process and what one batch does to them.

No I/O here: settings become plain core configurations, records become rows and samples,
a batch is detected and explained, stale series are evicted, and the state is read for the
metrics. The stages (:mod:`~causalwatch.app.pipeline.stages`) add the adapters.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from causalwatch.app.pipeline.trail import Trail
from causalwatch.app.pipeline.worker import ExplainQueue
from causalwatch.errors import RecordError
from causalwatch.models import AnomalyEvent, Explanation, RawRecord, SampleBatch
from causalwatch.publish.metrics import IncidentScore, SeriesView
from causalwatch.series import SeriesIndex, labels_match
from causalwatch.settings import SensitivityRule, Settings
from detector.core import Detector, DetectorConfig, DetectorResult
from detector.severity import severity_from_score
from explainer.core import Explainer, ExplainerConfig
from explainer.dag import DependencyGraph
from ingest import IngestLimits, IngestSchemaError, assign_rows, decode_batch

log = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


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
        warmup_s=d.warmup_s,
        backend=d.backend,
    )


def explainer_config(settings: Settings) -> ExplainerConfig:
    e = settings.explainer
    return ExplainerConfig(
        history_points=e.history_points,
        reference_points=e.reference_points,
        anomaly_points=e.anomaly_points,
        incident_window_s=e.incident_window_s,
        incident_window_points=e.incident_window_points,
        page_agreement=e.page_agreement,
        page_overwhelming_p=e.page_overwhelming_p,
        learn_graph=e.learn_graph,
        max_root_causes=e.max_root_causes,
        no_graph_ranking=e.no_graph_ranking,
        learned_edges_in_graph=e.learned_edges_in_graph,
        explain_window=e.explain_window,
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
    #: alerts waiting for the explainer worker (None: explained inline)
    queue: ExplainQueue | None = None
    #: scored samples with expected value and band, for the incident page (None: not kept)
    trail: Trail | None = None


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


def prepare_detector(det: Detector) -> None:
    """Log which detector path runs, once per process, and compile it before the first
    batch (a first compile on a machine takes seconds; later starts load numba's cache)."""
    if det.backend == "numba":
        log.info("detector: compiled per-point loop (numba); preparing it ...")
        log.info("detector: numba loop ready in %.1f s", det.prepare())
    else:
        log.info("detector: numpy path (numba not installed or detector.backend=numpy)")


def build_cores(
    settings: Settings,
    graph: DependencyGraph | None = None,
    *,
    detector: bool = True,
    explainer: bool = True,
    explainer_cfg: ExplainerConfig | None = None,
    trail: bool = False,
) -> Cores:
    """The cores of one process sharing one series index. ``explainer_cfg`` overrides the
    configuration taken from the settings (benchmarks that fix ``step_s``); ``trail`` keeps
    the incident page's short history (``explainer.trail_points``) in an explaining
    process."""
    index = SeriesIndex(settings.ingest.node_label, max_series=settings.ingest.max_series)
    det = Detector(detector_config(settings)) if detector else None
    if det is not None:
        prepare_detector(det)
    exp = (
        Explainer(explainer_cfg or explainer_config(settings), graph or DependencyGraph(), index)
        if explainer
        else None
    )
    points = settings.explainer.trail_points
    return Cores(
        index=index,
        detector=det,
        explainer=exp,
        sensitivity=settings.detector.sensitivity,
        queue=explain_queue(settings) if explainer else None,
        trail=Trail(points) if trail and exp is not None and points > 0 else None,
    )


def explain_queue(settings: Settings) -> ExplainQueue:
    e = settings.explainer
    return ExplainQueue(max_pending=e.queue_max_pending, interval_points=e.update_interval_points)


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
    order = np.argsort(rows, kind="stable")  # by row, arrival order within a row
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
    #: explanation id -> (``watch`` | ``page`` | ``update``, severity at the page), set by
    #: :meth:`~causalwatch.app.pipeline.Pipeline.process` (what receivers would get)
    pages: dict[str, tuple[str, float]] = field(default_factory=dict)


def fired_events(
    index: SeriesIndex,
    rows: IntArray,
    batch: SampleBatch,
    fired: BoolArray,
    expected: FloatArray,
    score: FloatArray,
    severity: FloatArray,
) -> list[AnomalyEvent]:
    out = []
    for i in np.flatnonzero(fired).tolist():
        row = int(rows[i])
        out.append(
            AnomalyEvent(
                row=row,
                series_key=batch.series_keys[i],
                node=index.node_of(row),
                ts=float(batch.ts[i]),
                value=float(batch.value[i]),
                expected=float(expected[i]),
                score=float(score[i]),
                severity=float(severity[i]),
            )
        )
    return out


def events_from(
    index: SeriesIndex, rows: IntArray, batch: SampleBatch, result: DetectorResult
) -> list[AnomalyEvent]:
    """One :class:`AnomalyEvent` per sample where a new alert fired."""
    return fired_events(
        index, rows, batch, result.fired, result.expected, result.score, result.severity
    )


def explain_events(
    explainer: Explainer,
    rows: IntArray,
    batch: SampleBatch,
    events: Sequence[AnomalyEvent],
    now_s: float,
    queue: ExplainQueue | None = None,
    wall_s: float = 0.0,
) -> list[Explanation]:
    """The explain step: the batch's samples into the explainer's history, the new alerts
    grouped into incidents, stale incidents closed. Every role that explains goes through
    here.

    With a ``queue`` the touched incidents are submitted to it (``O(batch)``, no ranking;
    the explainer worker ranks them, :mod:`~causalwatch.app.pipeline.worker`) and nothing
    is returned; without, they are ranked here and the explanations returned. ``now_s`` is
    data time; ``wall_s`` the wall time of the batch (for the latency measurement).
    """
    explainer.observe(rows, batch.ts, batch.value)
    if queue is None:
        out = [Explanation.from_result(r) for r in explainer.on_anomalies(events, now_s)]
        explainer.close_stale(now_s)
        return out
    if events:
        grouped = explainer.group(events)
        queue.submit(grouped, explainer.is_explained, now_s, explainer.step_s, wall_s)
    growing = explainer.growing(now_s)  # explain_window="now": updates on new data too
    if growing.touched:
        queue.submit(growing, explainer.is_explained, now_s, explainer.step_s, wall_s)
    queue.forget(explainer.close_stale(now_s, keep=queue.pending_ids()))
    return []


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
    wall_s: float = 0.0,
) -> StepOutput:
    """Detect one batch and hand its alerts to the explain step (pure: no I/O). ``now_s``
    defaults to data time; with ``cores.queue`` the explanations come from the worker."""
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
    if cores.trail is not None:
        cores.trail.append(
            rows, batch.ts, batch.value, result.expected, result.lower, result.upper, result.score
        )
    events = events_from(cores.index, rows, batch, result)
    explanations: list[Explanation] = []
    if cores.explainer is not None:
        now = float(batch.ts.max()) if now_s is None else now_s
        explanations = explain_events(
            cores.explainer, rows, batch, events, now, cores.queue, wall_s
        )
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
        if cores.trail is not None:
            cores.trail.clear(rows)
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
            severity=severity_from_score(det.last_score[rows]),
            value=det.last_value[rows].copy(),
            expected=det.last_expected[rows].copy(),
            lower=det.last_lower[rows].copy(),
            upper=det.last_upper[rows].copy(),
            alert=det.in_alert[rows].copy(),
        )


def incident_counts(cores: Cores) -> tuple[int, int, int]:
    """``(open incidents watching, incidents paged, incidents closed without paging)``
    of the explaining process, for the metrics (zeros without an explainer)."""
    exp = cores.explainer
    if exp is None:
        return 0, 0, 0
    with cores.lock:
        return exp.incident_counts()


def incident_scores(cores: Cores) -> list[IncidentScore]:
    exp = cores.explainer
    if exp is None:
        return []
    with cores.lock:  # only the rows: the scrape holds the lock the loop's batches need
        rows = exp.root_cause_rows()
    return [IncidentScore(*row) for row in rows]
