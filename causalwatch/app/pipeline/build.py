"""The builder: settings + adapters -> one wired process role (:class:`Pipeline`)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from causalwatch.app.partitions import PartitionCheckpoints
from causalwatch.app.pipeline.loop import Source, run_stage
from causalwatch.app.pipeline.stages import (
    STAGES,
    DeadLetter,
    Outbox,
    Producer,
    Results,
    Role,
    Sinks,
    Snapshots,
    Stage,
    Timers,
)
from causalwatch.app.pipeline.steps import (
    Cores,
    StepOutput,
    build_cores,
    detector_config,
    incident_scores,
    ingest_limits,
    process_samples,
    sensitivity_for,
    series_view,
)
from causalwatch.app.ridethrough import Retry
from causalwatch.app.sync import (
    Deliveries,
    DeliveryStats,
    FeedbackSource,
    FeedbackSync,
    GraphCache,
    GraphSync,
    LearnedGraphPublisher,
    Lease,
    LeaseKeeper,
)
from causalwatch.errors import CausalwatchError, RecordError
from causalwatch.models import Explanation, RawRecord, SampleBatch
from causalwatch.publish.metrics import IncidentScore, PipelineStats, SeriesView
from causalwatch.settings import Settings
from causalwatch.store.checkpoint import CheckpointStore
from explainer.core import ExplainerConfig
from explainer.dag import DependencyGraph, load_graph
from ingest import assign_rows, decode_batch

TP = tuple[str, int]
Hook = Callable[[float], None]

# --------------------------------------------------------------------------------------
# The builder: settings + adapters -> one process role
# --------------------------------------------------------------------------------------
Resume = Callable[[list[TP]], Mapping[TP, int]]
Revoke = Callable[[list[TP]], None]


#: ``source(topics, group_id, resume, on_revoke)`` builds the consumer of a role: its input
#: ``topics`` in consumer group ``group_id``; ``resume``/``on_revoke`` as in :func:`run_stage`
SourceFactory = Callable[[list[str], str, Resume, Revoke], Source]


@dataclass(frozen=True)
class Adapters:
    """The I/O a pipeline runs against, all optional: replay and the benchmarks pass none.

    ``source`` builds the consumer (Kafka in the service); ``deadletter``, ``results``,
    ``outbox``, ``producer`` and ``snapshots`` (the incident page's plots and graph, written
    with each explanation) are the sinks; ``checkpoints`` stores the role's checkpoint
    (and, for ``detector``, one per input partition); ``graph_cache``, ``feedback``,
    ``deliveries`` and ``lease`` are the stores and publishers the between-batch hooks keep
    the cores in step with; ``timers`` receive seconds per stage; ``clock`` is wall time;
    ``retry`` repeats calls while a backend is unreachable.
    """

    source: SourceFactory | None = None
    deadletter: DeadLetter | None = None
    results: Results | None = None
    outbox: Outbox | None = None
    producer: Producer | None = None
    snapshots: Snapshots | None = None
    checkpoints: CheckpointStore | None = None
    graph_cache: GraphCache | None = None
    feedback: FeedbackSource | None = None
    deliveries: Deliveries | None = None
    lease: Lease | None = None
    timers: Timers = field(default_factory=Timers)
    clock: Callable[[], float] = time.time
    #: retries calls while a backend is unreachable (the service's; default: the loop's own)
    retry: Retry | None = None


class Pipeline:
    """One process role, wired: its cores, its stage and the adapters it runs against.

    Built by :func:`build_pipeline`. The live service calls :meth:`run`; replay and the
    benchmarks feed batches through :meth:`decode` and :meth:`process` (the same steps the
    stage runs per poll) and ask :meth:`explain` for on-demand explanations.
    """

    def __init__(self, settings: Settings, role: Role, stage: Stage, adapters: Adapters) -> None:
        self.settings = settings
        self.role = role
        self.stage = stage
        self.adapters = adapters
        self.standby = False  # an explainer replica waiting for the lease

    @property
    def cores(self) -> Cores:
        return self.stage.cores

    @property
    def stats(self) -> PipelineStats:
        return self.stage.stats

    # -- offline entry points (replay, benchmarks)
    def decode(
        self, records: Sequence[RawRecord], now_s: float
    ) -> tuple[SampleBatch, list[RecordError]]:
        """Decode and validate records of the role's input formats (pure)."""
        return decode_batch(records, self.stage.formats, self.stage.limits, now_s)

    def process(
        self,
        batch: SampleBatch,
        records: Sequence[RawRecord] | None = None,
        now_s: float | None = None,
    ) -> StepOutput:
        """Index, detect and explain one decoded batch; refused series and out-of-order
        samples are in ``errors``, each explanation's page kind (what receivers would get:
        ``watch``, ``page``, ``update``) in ``pages``. Holds the cores' lock."""
        with self.cores.lock:
            rows, kept, refused = assign_rows(batch, self.cores.index, records or [])
            out = process_samples(self.cores, rows, kept, now_s, records, self.adapters.clock())
            if len(out.batch):
                # the explainer worker, inline: deterministic, due requests at data time
                now = float(out.batch.ts.max()) if now_s is None else now_s
                out.explanations.extend(self.stage.worker.kick(now))
            # what receivers would get: the same page rule as publishing (nothing is sent)
            kinds = self.stage.page_kinds(out.explanations) if out.explanations else None
            if kinds and self.cores.queue is not None:
                self.cores.queue.published(kinds)
        if refused:
            out = dataclasses.replace(out, errors=refused + out.errors)
        if kinds:
            out = dataclasses.replace(out, pages=kinds)
        return out

    def explain(
        self, node: str, series: str | None, at: float, since: float | None = None
    ) -> Explanation:
        """Explain a node (or one series) at a time, on demand (the API, ``explain``);
        ``since`` fixes the start of the anomaly window (e.g. an alert's ``startsAt``)."""
        exp = self.cores.explainer
        if exp is None:
            raise CausalwatchError(f"the {self.role!r} role has no explainer")
        with self.cores.lock:
            return Explanation.from_result(exp.explain(node, series, at, window_start=since))

    def series_view(self) -> SeriesView | None:
        return series_view(self.cores)

    def incident_scores(self) -> list[IncidentScore]:
        return incident_scores(self.cores)

    # -- the live loop
    def run(self, stop: threading.Event, *, on_batch: Callable[[], None] | None = None) -> None:
        """Consume until ``stop`` is set. With a lease (``run explainer`` replicas), stand by
        until this process holds it; the lease is released when the loop ends."""
        if self.adapters.source is None:
            raise CausalwatchError("this pipeline was built without a source")
        lease = self.adapters.lease
        if lease is not None:
            while not stop.is_set() and not lease.acquire():
                self.standby = True
                stop.wait(2.0)
            self.standby = False
            if stop.is_set():
                return
        worker = self.stage.worker if self.cores.queue is not None else None
        if worker is not None:
            worker.start()  # explanations off the hot path
        try:
            run_stage(
                self.stage,
                self._make_source,
                self.adapters.checkpoints,
                stop,
                checkpoint_interval_s=self.settings.redis.checkpoint_interval_s,
                max_records=self.settings.kafka.max_poll_records,
                clock=self.adapters.clock,
                on_batch=on_batch,
                retry=self.adapters.retry,
                rebuild_records=self.settings.redis.checkpoint_rebuild_records,
                backlog_polls=self.settings.kafka.backlog_polls,
                pace_horizon_points=self.settings.kafka.pace_horizon_points,
            )
        finally:
            if worker is not None:
                worker.stop()
            if lease is not None:
                lease.release()

    def _make_source(self, resume: Resume, on_revoke: Revoke) -> Source:
        assert self.adapters.source is not None
        group_id = f"{self.settings.kafka.group_id}.{self.role}"
        return self.adapters.source(self.stage.topics(), group_id, resume, on_revoke)


def _has_explainer(role: Role) -> bool:
    return role in ("all", "explainer")


def _has_detector(role: Role) -> bool:
    return role in ("all", "detector")


def build_pipeline(
    settings: Settings,
    role: Role = "all",
    adapters: Adapters | None = None,
    *,
    graph: DependencyGraph | None = None,
    cores: Cores | None = None,
    stats: PipelineStats | None = None,
    replay: bool = False,
    formats: Mapping[str, str] | None = None,
    explainer_cfg: ExplainerConfig | None = None,
) -> Pipeline:
    """Build one process role from the settings and its adapters: the cores, the stage, its
    hooks and partition handover.

    ``graph``: the explainer's starting graph; default: with a ``graph_cache``, the cached
    given graph (``explainer.graph_file`` replaces it when its edges differ), else the graph
    file, else an empty graph. ``cores`` and ``stats`` are built here unless given (the
    service builds the cores first so its metrics registry can read them). ``replay`` turns
    the wall-clock age checks of decoding off; ``formats`` maps input topic -> format
    (default: the settings' topics); ``explainer_cfg`` overrides the explainer settings.
    """
    adapters = adapters or Adapters()
    cache = adapters.graph_cache
    if graph is None and cache is None and settings.explainer.graph_file is not None:
        graph = load_graph(settings.explainer.graph_file)
    if cores is None:
        cores = build_cores(
            settings,
            graph,
            detector=_has_detector(role),
            explainer=_has_explainer(role),
            explainer_cfg=explainer_cfg,
        )
    elif graph is not None and cores.explainer is not None:
        cores.explainer.set_graph(graph)
    hooks: list[Hook] = []
    if cores.explainer is not None and cache is not None:
        sync = GraphSync(cache, cores)
        cores.explainer.set_graph(sync.start(settings.explainer.graph_file))
        hooks += [sync, LearnedGraphPublisher(cache, cores)]
    if cores.detector is not None and adapters.feedback is not None:
        rules = cores.sensitivity
        hooks.append(FeedbackSync(adapters.feedback, cores, lambda k: sensitivity_for(k, rules)))
    stats = stats or PipelineStats()
    if adapters.deliveries is not None:
        hooks.append(DeliveryStats(adapters.deliveries, stats))
    if adapters.lease is not None:
        hooks.append(LeaseKeeper(adapters.lease))
    partitions = None
    if role == "detector" and adapters.checkpoints is not None:
        # Scaled detectors hand series state over with their partitions.
        partitions = PartitionCheckpoints(
            cores, adapters.checkpoints.for_partition, detector_config(settings)
        )
    sinks = Sinks(
        deadletter=adapters.deadletter,
        results=adapters.results if _has_explainer(role) else None,
        outbox=adapters.outbox,
        producer=adapters.producer,
        snapshots=adapters.snapshots if _has_explainer(role) else None,
    )
    stage = STAGES[role](
        settings,
        cores,
        sinks,
        stats,
        adapters.timers,
        hooks=hooks,
        partitions=partitions,
        formats=formats,
        limits=ingest_limits(settings, replay=replay),
    )
    return Pipeline(settings, role, stage, adapters)
