"""Assemble one live process: adapters, servers and threads around the pipeline.

``causalwatch run [all|ingest|detector|explainer]`` calls :func:`serve`. It connects the
adapters (Kafka source and producer, the Redis stores, the webhook dispatcher), hands them
to :func:`causalwatch.app.pipeline.build_pipeline` (the one place that wires stages) and
starts the servers around it; nothing here holds an algorithm or decides a policy. Threads:
the stage loop (caller's thread, or one thread with ``block=False``), the metrics HTTP
server, the HTTP API (``all`` and ``explainer``), the webhook dispatcher (``all`` and
``explainer``, when webhooks are configured).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from causalwatch import __version__
from causalwatch.app.collector import tune_collector
from causalwatch.app.pipeline import (
    Adapters,
    Cores,
    Pipeline,
    Resume,
    Revoke,
    Role,
    Source,
    Stage,
    Timers,
    build_cores,
    build_pipeline,
    incident_counts,
    incident_scores,
    series_view,
)
from causalwatch.app.ridethrough import BackendHealth, Retry, Retrying, Stopping
from causalwatch.errors import BackendError
from causalwatch.models import Explanation
from causalwatch.publish.metrics import MetricsServer, PipelineStats, build_registry
from causalwatch.settings import Settings
from causalwatch.store.checkpoint import RedisCheckpointStore
from causalwatch.store.client import connect, ping
from causalwatch.store.feedback import FeedbackStore
from causalwatch.store.graph import RedisDagCache
from causalwatch.store.results import ResultStore
from causalwatch.store.snapshots import SnapshotStore

if TYPE_CHECKING:
    from causalwatch.publish.webhooks import WebhookDispatcher

__all__ = ["Service", "serve"]

log = logging.getLogger(__name__)


@dataclass
class Service:
    """Handles on a running process, for the demo and the tests."""

    settings: Settings
    pipeline: Pipeline
    metrics_url: str
    api_url: str | None
    results: ResultStore
    stop: threading.Event
    ready: threading.Event = field(default_factory=threading.Event)
    closers: list[Callable[[], None]] = field(default_factory=list)
    error: BaseException | None = None
    health: BackendHealth | None = None

    @property
    def healthy(self) -> bool:
        return self.error is None and not self.stop.is_set()

    def not_ready(self) -> list[str]:
        """Why ``/readyz`` answers 503 (empty: ready)."""
        reasons = [] if self.health is None else self.health.reasons()
        if not self.healthy:
            reasons.append("stopped")
        return reasons

    @property
    def standby(self) -> bool:
        """An explainer replica waiting for the lease."""
        return self.pipeline.standby

    @property
    def stage(self) -> Stage:
        return self.pipeline.stage

    @property
    def stats(self) -> PipelineStats:
        return self.pipeline.stats

    @property
    def cores(self) -> Cores:
        return self.pipeline.cores


def serve(
    settings: Settings,
    stage_name: Role,
    *,
    stop: threading.Event | None = None,
    block: bool = True,
    on_ready: Callable[[Service], None] | None = None,
) -> Service:
    """Run one process role until ``stop`` is set (``block=False``: in a thread).

    Never gives up on a backend that is away: the metrics server and the HTTP API start
    first, then Redis and Kafka are waited for (``/readyz`` answers 503 naming the one that
    is unreachable, the ``causalwatch_backend_*`` gauges say since when), and during the run
    every sink and store call is retried with capped, jittered backoff
    (:mod:`causalwatch.app.ridethrough`) while consumption pauses.
    """
    from ingest.deadletter import DeadLetterSink
    from ingest.kafka_backend import make_sink
    from ingest.kafka_backend import make_source as make_kafka_source

    stop = stop or threading.Event()
    explains = stage_name in ("all", "explainer")
    client = connect(settings.redis)
    prefix = settings.redis.prefix
    results = ResultStore(
        client,
        prefix=prefix,
        stream_maxlen=settings.redis.stream_maxlen,
        latest_ttl_s=settings.redis.latest_ttl_s,
    )
    dag_cache = RedisDagCache(client, prefix=prefix)
    feedback = FeedbackStore(client, prefix=prefix)

    # The cores first, so the metrics registry reads them at scrape time.
    cores = build_cores(
        settings, detector=stage_name in ("all", "detector"), explainer=explains, trail=explains
    )
    snapshots = SnapshotStore(client, prefix=prefix, ttl_s=results.guard_ttl_s)
    stats = PipelineStats()
    health = BackendHealth(stats)
    retry = Retry(health, stop)
    registry = build_registry(
        stats,
        series=lambda: series_view(cores),
        incidents=lambda: incident_scores(cores),
        paging=lambda: incident_counts(cores),
        max_series=settings.publish.metrics_max_series,
        version=__version__,
        max_bytes=settings.publish.metrics_max_bytes,
    )
    metrics = MetricsServer(
        registry.registry, settings.publish.metrics_host, settings.publish.metrics_port
    ).start()
    closers: list[Callable[[], None]] = [metrics.stop]
    box = _Box(health=health, stop=stop)

    dispatcher: WebhookDispatcher | None = None
    if explains and settings.publish.webhooks:
        from causalwatch.publish.webhooks import WebhookDispatcher
        from causalwatch.store.outbox import WebhookOutbox

        dispatcher = WebhookDispatcher(
            WebhookOutbox(client, prefix),
            settings.publish.webhooks,
            settings.publish,
            page_base_url=settings.api.external_url,
        ).start()
        closers.append(dispatcher.close)
    api_url = None
    if explains:
        api_url = _start_api(
            settings, box, results, dag_cache, feedback, dispatcher, closers, snapshots
        )

    try:
        # Wait for the backends rather than exit: a restart during an outage rides it out.
        retry.call("redis", ping, client, settings.redis.url)
        # A write that cannot finish within 10 s is abandoned and retried (after reading
        # back what landed), so an outage shows in the gauges rather than as a hung flush.
        producer = retry.call("kafka", make_sink, settings.kafka, flush_timeout_s=10.0)
        closers.append(producer.close)
        if stage_name != "all":
            n = settings.kafka.internal_partitions
            topics = {settings.kafka.samples_topic: n, settings.kafka.scores_topic: n}
            retry.call("kafka", producer.ensure_topics, topics)
    except Stopping:
        _close_all(closers)
        raise
    lease = None
    if stage_name == "explainer":
        from causalwatch.store.lease import RedisLease

        lease = RedisLease(
            client,
            f"{prefix}lease:{settings.kafka.group_id}:explainer",
            ttl_s=settings.explainer.lease_ttl_s,
        )

    def kafka_source(topics: list[str], group_id: str, resume: Resume, revoke: Revoke) -> Source:
        source: Source = make_kafka_source(
            settings.kafka,
            topics=topics,
            group_id=group_id,
            resume_offsets=resume,
            on_revoke=revoke,
        )
        return source

    read_tail = getattr(producer, "read_tail", None)
    deadletter = DeadLetterSink(
        producer,
        suffix=settings.kafka.dlq_suffix,
        read_back=(lambda topic: retry.call("kafka", read_tail, topic)) if read_tail else None,
    )

    def retried(target: Any, backend: str) -> Any:
        return None if target is None else Retrying(target, retry, backend)

    adapters = Adapters(
        source=kafka_source,
        deadletter=retried(deadletter, "kafka"),
        results=retried(results, "redis"),
        outbox=retried(dispatcher, "redis"),
        producer=retried(producer, "kafka"),
        snapshots=retried(snapshots, "redis"),
        checkpoints=RedisCheckpointStore(
            client, f"{prefix}checkpoint:{settings.kafka.group_id}:{stage_name}"
        ),
        graph_cache=retried(dag_cache, "redis"),
        feedback=feedback,
        deliveries=dispatcher,
        lease=retried(lease, "redis"),
        timers=Timers(
            observe=lambda st, s: registry.batch_seconds.labels(stage=st).observe(s),
            explain=registry.explain_seconds.observe,
        ),
        retry=retry,
    )
    try:
        pipeline = build_pipeline(settings, stage_name, adapters, cores=cores, stats=stats)
    except Stopping:
        _close_all(closers)
        raise
    svc = Service(settings, pipeline, metrics.url, api_url, results, stop, closers=closers)
    svc.health = health
    box.svc = svc

    def loop() -> None:
        try:
            pipeline.run(stop, on_batch=svc.ready.set)
        except BaseException as exc:
            # Unexpected: record it (readiness fails), stop, and let the caller exit non-zero;
            # a restart resumes from the last checkpoint.
            svc.error = exc
            stop.set()
            log.exception("stage loop failed", extra={"stage": stage_name})
            if block:
                raise
        finally:
            _close_all(closers)

    if on_ready is not None:
        on_ready(svc)
    if block:
        tune_collector()  # this process runs the role: collector.py says why
        loop()
    else:
        thread = threading.Thread(target=loop, name=f"stage-{stage_name}", daemon=True)
        thread.start()
        svc.closers = [lambda: thread.join(30)]
    return svc


def _close_all(closers: list[Callable[[], None]]) -> None:
    for close in reversed(closers):
        try:
            close()
        except Exception:  # best effort at shutdown
            log.exception("shutdown step failed")


@dataclass
class _Box:
    """What the API's readiness probe and ``/explain`` reach before the pipeline exists."""

    health: BackendHealth
    stop: threading.Event
    svc: Service | None = None

    def readiness(self) -> tuple[bool, list[str]]:
        reasons = self.health.reasons()
        svc = self.svc
        if svc is not None and svc.error is not None:
            reasons.append(f"stage loop failed: {svc.error!r}"[:300])
        if self.stop.is_set():
            reasons.append("stopping")
        return not reasons, reasons

    def explain(
        self, node: str, series: str | None, at: float, since: float | None = None
    ) -> Explanation:
        if self.svc is None:
            raise BackendError(
                "the pipeline is starting (waiting for Redis/Kafka)", backend="redis"
            )
        return self.svc.pipeline.explain(node, series, at, since)


def _start_api(
    settings: Settings,
    box: _Box,
    results: ResultStore,
    dag_cache: RedisDagCache,
    feedback: FeedbackStore,
    dispatcher: WebhookDispatcher | None,
    closers: list[Callable[[], None]],
    snapshots: SnapshotStore,
) -> str:
    import uvicorn

    from causalwatch.publish.api import create_app
    from causalwatch.publish.api.pages import PageSources
    from causalwatch.store.feed import ExplanationFeed

    app = create_app(
        store=results,
        graph_cache=dag_cache,
        feedback=feedback,
        explain=box.explain,
        dispatcher=dispatcher,
        token=settings.api.token.get_secret_value() if settings.api.token else None,
        ready=box.readiness,
        node_label=settings.ingest.node_label,
        alert_queue_size=settings.api.alert_queue_size,
        alert_workers=settings.api.alert_workers,
        pages=PageSources(
            snapshots=snapshots,
            feed=ExplanationFeed(results.client, prefix=settings.redis.prefix),
            secure_cookie=(settings.api.external_url or "").startswith("https://"),
        ),
        max_body_bytes=settings.api.max_body_bytes,
    )
    config = uvicorn.Config(
        app,
        host=settings.api.host,
        port=settings.api.port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=3,  # open event streams (the pages) must not hold a stop
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

    closers.append(stop_api)
    return f"http://{settings.api.host}:{port}"
