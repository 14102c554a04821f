"""Assemble one live process: settings -> adapters -> stage loop, plus HTTP servers.

``causalwatch run [all|ingest|detector|explainer]`` calls :func:`serve`. Each piece is a
small adapter passed into :func:`causalwatch.pipeline.run_stage`; nothing here holds an
algorithm. Threads: the stage loop (caller's thread), the metrics HTTP server, the HTTP API
(``all`` and ``explainer``), the webhook dispatcher (``all`` and ``explainer``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from causalwatch import __version__
from causalwatch.checkpoint import RedisCheckpointStore
from causalwatch.errors import BackendError, CausalwatchError
from causalwatch.models import Explanation
from causalwatch.pipeline import (
    STAGES,
    Cores,
    Sinks,
    Stage,
    Timers,
    build_cores,
    detector_config,
    incident_scores,
    run_stage,
    sensitivity_for,
    series_view,
)
from causalwatch.publish.metrics import MetricsServer, PipelineStats, build_registry
from causalwatch.publish.redis import ResultStore, connect
from causalwatch.settings import Settings
from explainer.dag import DependencyGraph, load_graph
from explainer.redis_dag_cache import RedisDagCache

__all__ = ["Service", "serve"]

LEARNED_EVERY_S = 30.0

log = logging.getLogger(__name__)


@dataclass
class Service:
    """Handles on a running process, for the demo and the tests."""

    settings: Settings
    stage: Stage
    stats: PipelineStats
    metrics_url: str
    api_url: str | None
    results: ResultStore
    stop: threading.Event
    ready: threading.Event = field(default_factory=threading.Event)
    closers: list[Callable[[], None]] = field(default_factory=list)
    error: BaseException | None = None
    standby: bool = False  # an explainer replica waiting for the lease

    @property
    def healthy(self) -> bool:
        return self.error is None and not self.stop.is_set()

    @property
    def cores(self) -> Cores:
        return self.stage.cores


class GraphSync:
    """Keeps the explainer's given graph equal to the one cached in Redis (by version)."""

    def __init__(self, cache: RedisDagCache, cores: Cores, interval_s: float = 2.0) -> None:
        self.cache = cache
        self.cores = cores
        self.interval_s = interval_s
        self.version = -1
        self._next = 0.0

    def start(self, graph_file: Any) -> DependencyGraph:
        if graph_file is not None:
            given = load_graph(graph_file)
            current = self.cache.get()
            if current is None or _edge_set(current) != _edge_set(given):
                self.cache.put(given)
        graph = self.cache.get() or DependencyGraph()
        self.version = self.cache.version()
        return graph

    def poll(self, now: float) -> None:
        if now < self._next:
            return
        self._next = now + self.interval_s
        try:
            version = self.cache.version()
            if version != self.version:
                graph = self.cache.get()
                if graph is not None and self.cores.explainer is not None:
                    with self.cores.lock:
                        self.cores.explainer.set_graph(graph)
                    log.info("graph reloaded", extra={"graph_version": version})
                self.version = version
        except BackendError as exc:
            log.warning("graph poll failed", extra={"error": str(exc)})


def _edge_set(graph: DependencyGraph) -> set[tuple[str, str]]:
    return {(e.cause, e.effect) for e in graph.edges if e.provenance == "given"}


class FeedbackSync:
    """Applies mutes and false-positive marks from the feedback store to the detector."""

    def __init__(self, feedback: Any, cores: Cores, interval_s: float = 2.0) -> None:
        self.feedback = feedback
        self.cores = cores
        self.interval_s = interval_s
        self._next = 0.0
        self._fp_since = 0.0
        self._fp_count: dict[str, int] = {}
        self._applied: tuple[Any, int] | None = None

    def poll(self, now: float) -> None:
        if now < self._next or self.cores.detector is None:
            return
        self._next = now + self.interval_s
        try:
            mutes = self.feedback.active_mutes(now)
            fps = self.feedback.false_positives_since(self._fp_since)
        except BackendError as exc:
            log.warning("feedback poll failed", extra={"error": str(exc)})
            return
        det = self.cores.detector
        with self.cores.lock:
            state = (tuple(sorted((m.id, m.until) for m in mutes)), len(self.cores.index))
            if mutes and state != self._applied:
                for m in mutes:
                    rows = [r for k, r in self.cores.index.items() if m.matches(k)]
                    if rows:
                        idx = np.asarray(rows, dtype=np.int64)
                        det.mute(idx, np.full(len(idx), float(m.until)))
                self._applied = state
            for fp in fps:
                self._fp_since = max(self._fp_since, float(fp.marked_at) + 1e-6)
                for key in fp.series:
                    self._fp_count[key] = self._fp_count.get(key, 0) + 1
            if fps:
                keys = [k for k in self._fp_count if self.cores.index.get(k) is not None]
                if keys:
                    idx = np.asarray([self.cores.index.get(k) for k in keys], dtype=np.int64)
                    # Each false-positive mark halves how readily the series alerts,
                    # on top of its configured sensitivity.
                    rules = self.cores.sensitivity
                    factor = np.asarray(
                        [sensitivity_for(k, rules) * 0.5 ** self._fp_count[k] for k in keys]
                    )
                    det.set_sensitivity(idx, factor)
        return


def serve(
    settings: Settings,
    stage_name: str,
    *,
    stop: threading.Event | None = None,
    block: bool = True,
    on_ready: Callable[[Service], None] | None = None,
) -> Service:
    """Run one process role until ``stop`` is set (``block=False``: in a thread)."""
    from ingest.deadletter import DeadLetterSink
    from ingest.kafka_backend import make_sink
    from ingest.kafka_backend import make_source as kafka_source

    stop = stop or threading.Event()
    stats = PipelineStats()
    client = connect(settings.redis.url)
    try:
        client.ping()
    except Exception as exc:  # redis.exceptions.RedisError and socket errors
        raise BackendError(
            f"cannot reach Redis at {settings.redis.url} (setting redis.url, env "
            f"CAUSALWATCH_REDIS__URL): {exc}",
            backend="redis",
        ) from exc
    prefix = settings.redis.prefix
    results = ResultStore(
        client,
        prefix=prefix,
        stream_maxlen=settings.redis.stream_maxlen,
        latest_ttl_s=settings.redis.latest_ttl_s,
    )
    dag_cache = RedisDagCache(client, prefix=prefix)
    wants_explainer = stage_name in ("all", "explainer")
    wants_detector = stage_name in ("all", "detector")
    cores = build_cores(settings, None, detector=wants_detector, explainer=wants_explainer)
    graph_sync = GraphSync(dag_cache, cores)
    if wants_explainer:
        graph = graph_sync.start(settings.explainer.graph_file)
        assert cores.explainer is not None
        cores.explainer.set_graph(graph)

    registry = build_registry(
        stats,
        series=lambda: series_view(cores),
        incidents=lambda: incident_scores(cores),
        max_series=settings.publish.metrics_max_series,
        version=__version__,
    )
    timers = Timers(
        observe=lambda st, s: registry.batch_seconds.labels(stage=st).observe(s),
        explain=registry.explain_seconds.observe,
    )
    metrics = MetricsServer(
        registry.registry, settings.publish.metrics_host, settings.publish.metrics_port
    ).start()
    closers: list[Callable[[], None]] = [metrics.stop]

    producer = make_sink(settings.kafka)
    closers.append(producer.close)
    if stage_name != "all":
        n = settings.kafka.internal_partitions
        producer.ensure_topics({settings.kafka.samples_topic: n, settings.kafka.scores_topic: n})
    dispatcher = None
    if wants_explainer and settings.publish.webhooks:
        from causalwatch.publish.webhooks import WebhookDispatcher

        dispatcher = WebhookDispatcher(
            client, prefix, settings.publish.webhooks, settings.publish
        ).start()
        closers.append(dispatcher.close)
    sinks = Sinks(
        deadletter=DeadLetterSink(producer, suffix=settings.kafka.dlq_suffix),
        results=results if wants_explainer else None,
        outbox=dispatcher,
        producer=producer,
    )
    stage = STAGES[stage_name](settings, cores, sinks, stats, timers)

    feedback_sync = None
    api_url = None
    svc = Service(settings, stage, stats, metrics.url, None, results, stop, closers=closers)
    from causalwatch.publish.feedback import FeedbackStore

    feedback = FeedbackStore(client, prefix=prefix)
    if wants_detector:
        feedback_sync = FeedbackSync(feedback, cores)
    if wants_explainer:
        api_url = _start_api(settings, svc, results, dag_cache, feedback, dispatcher, client)
        svc.api_url = api_url

    next_learned = [0.0]

    def periodic(now: float) -> None:
        graph_sync.poll(now)
        if cores.explainer is not None and now >= next_learned[0]:
            # Share what this explainer learned, so `graph show` and other processes see it.
            next_learned[0] = now + LEARNED_EVERY_S
            with cores.lock:
                learned = cores.explainer.learned_edges()
            try:
                dag_cache.put_learned(learned, now)
            except BackendError as exc:
                log.warning("learned-graph publish failed", extra={"error": str(exc)})
        if feedback_sync is not None:
            feedback_sync.poll(now)
        if dispatcher is not None:
            stats.webhook_deliveries.clear()
            stats.webhook_deliveries.update(dispatcher.counters())
            stats.webhook_outbox_size = dispatcher.outbox_size()

    stage.hooks.append(periodic)
    checkpoints = RedisCheckpointStore(
        client, f"{prefix}checkpoint:{settings.kafka.group_id}:{stage_name}"
    )

    if stage_name == "detector":
        # Scaled detectors hand series state over with their partitions.
        from causalwatch.partition_state import PartitionCheckpoints

        stage.partitions = PartitionCheckpoints(
            cores, client, f"{checkpoints.key}:partition", detector_config(settings)
        )

    def make_source(
        resume: Callable[[list[tuple[str, int]]], Mapping[tuple[str, int], int]],
        on_revoke: Callable[[list[tuple[str, int]]], None],
    ) -> Any:
        return kafka_source(
            settings.kafka,
            topics=stage.topics(),
            group_id=f"{settings.kafka.group_id}.{stage_name}",
            resume_offsets=resume,
            on_revoke=on_revoke,
        )

    lease = None
    if stage_name == "explainer":
        from causalwatch.lease import RedisLease

        lease = RedisLease(
            client,
            f"{prefix}lease:{settings.kafka.group_id}:explainer",
            ttl_s=settings.explainer.lease_ttl_s,
        )
        renew_every_s = lease.ttl_ms / 3000.0
        next_renew = [0.0]

        def keep_lease(now: float) -> None:
            if time.monotonic() < next_renew[0]:
                return
            next_renew[0] = time.monotonic() + renew_every_s
            if not lease.renew():
                raise BackendError(
                    "lost the explainer lease to another replica; stopping to stand by",
                    backend="redis",
                )

        stage.hooks.append(keep_lease)

    def loop() -> None:
        if lease is not None:
            # Stand by until this replica holds the explainer lease.
            while not stop.is_set() and not lease.acquire():
                svc.standby = True
                stop.wait(2.0)
            svc.standby = False
            if stop.is_set():
                for close in reversed(closers):
                    close()
                return
            closers.insert(0, lease.release)
        try:
            run_stage(
                stage,
                make_source,
                checkpoints,
                stop,
                checkpoint_interval_s=settings.redis.checkpoint_interval_s,
                max_records=settings.kafka.max_poll_records,
                on_batch=svc.ready.set,
            )
        except BaseException as exc:
            # Unexpected: record it (readiness fails), stop, and let the caller exit non-zero;
            # a restart resumes from the last checkpoint.
            svc.error = exc
            stop.set()
            log.exception("stage loop failed", extra={"stage": stage_name})
            if block:
                raise
        finally:
            for close in reversed(closers):
                try:
                    close()
                except Exception:  # best effort at shutdown
                    log.exception("shutdown step failed")

    if on_ready is not None:
        on_ready(svc)
    if block:
        loop()
    else:
        thread = threading.Thread(target=loop, name=f"stage-{stage_name}", daemon=True)
        thread.start()
        svc.closers = [lambda: thread.join(30)]
    return svc


def _start_api(
    settings: Settings,
    svc: Service,
    results: ResultStore,
    dag_cache: RedisDagCache,
    feedback: Any,
    dispatcher: Any,
    client: Any,
) -> str:
    import uvicorn

    from causalwatch.publish.http_api import create_app

    cores = svc.cores

    def explain(node: str, series: str | None, at: float) -> Explanation:
        if cores.explainer is None:
            raise CausalwatchError("this process has no explainer")
        with cores.lock:
            return cores.explainer.explain(node, series, at)

    app = create_app(
        store=results,
        graph_cache=dag_cache,
        feedback=feedback,
        explain=explain,
        dispatcher=dispatcher,
        token=settings.api.token,
        ready=lambda: svc.healthy,
        node_label=settings.ingest.node_label,
        alert_queue_size=settings.api.alert_queue_size,
        alert_workers=settings.api.alert_workers,
    )
    config = uvicorn.Config(
        app, host=settings.api.host, port=settings.api.port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="http-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    port = settings.api.port
    if server.servers:
        port = server.servers[0].sockets[0].getsockname()[1]

    def stop_api() -> None:
        server.should_exit = True
        thread.join(5)

    svc.closers.append(stop_api)
    return f"http://{settings.api.host}:{port}"
