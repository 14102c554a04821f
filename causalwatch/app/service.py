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
from typing import TYPE_CHECKING

from causalwatch import __version__
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
    incident_scores,
    series_view,
)
from causalwatch.publish.metrics import MetricsServer, PipelineStats, build_registry
from causalwatch.settings import Settings
from causalwatch.store.checkpoint import RedisCheckpointStore
from causalwatch.store.client import connect, ping
from causalwatch.store.feedback import FeedbackStore
from causalwatch.store.graph import RedisDagCache
from causalwatch.store.results import ResultStore

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

    @property
    def healthy(self) -> bool:
        return self.error is None and not self.stop.is_set()

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
    """Run one process role until ``stop`` is set (``block=False``: in a thread)."""
    from ingest.deadletter import DeadLetterSink
    from ingest.kafka_backend import make_sink
    from ingest.kafka_backend import make_source as make_kafka_source

    stop = stop or threading.Event()
    explains = stage_name in ("all", "explainer")
    client = connect(settings.redis)
    ping(client, settings.redis.url)
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
    cores = build_cores(settings, detector=stage_name in ("all", "detector"), explainer=explains)
    stats = PipelineStats()
    registry = build_registry(
        stats,
        series=lambda: series_view(cores),
        incidents=lambda: incident_scores(cores),
        max_series=settings.publish.metrics_max_series,
        version=__version__,
        max_bytes=settings.publish.metrics_max_bytes,
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
    dispatcher: WebhookDispatcher | None = None
    if explains and settings.publish.webhooks:
        from causalwatch.publish.webhooks import WebhookDispatcher
        from causalwatch.store.outbox import WebhookOutbox

        dispatcher = WebhookDispatcher(
            WebhookOutbox(client, prefix), settings.publish.webhooks, settings.publish
        ).start()
        closers.append(dispatcher.close)
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

    adapters = Adapters(
        source=kafka_source,
        deadletter=DeadLetterSink(producer, suffix=settings.kafka.dlq_suffix),
        results=results,
        outbox=dispatcher,
        producer=producer,
        checkpoints=RedisCheckpointStore(
            client, f"{prefix}checkpoint:{settings.kafka.group_id}:{stage_name}"
        ),
        graph_cache=dag_cache,
        feedback=feedback,
        deliveries=dispatcher,
        lease=lease,
        timers=Timers(
            observe=lambda st, s: registry.batch_seconds.labels(stage=st).observe(s),
            explain=registry.explain_seconds.observe,
        ),
    )
    pipeline = build_pipeline(settings, stage_name, adapters, cores=cores, stats=stats)
    svc = Service(settings, pipeline, metrics.url, None, results, stop, closers=closers)
    if explains:
        svc.api_url = _start_api(svc, dag_cache, feedback, dispatcher)

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
    svc: Service,
    dag_cache: RedisDagCache,
    feedback: FeedbackStore,
    dispatcher: WebhookDispatcher | None,
) -> str:
    import uvicorn

    from causalwatch.publish.api import create_app

    settings = svc.settings
    app = create_app(
        store=svc.results,
        graph_cache=dag_cache,
        feedback=feedback,
        explain=svc.pipeline.explain,
        dispatcher=dispatcher,
        token=settings.api.token.get_secret_value() if settings.api.token else None,
        max_body_bytes=settings.api.max_body_bytes,
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
