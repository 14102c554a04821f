"""Prometheus metrics: one registry, one custom collector reading stage state at scrape time.

Names follow ``causalwatch_<stage>_<thing>_<unit>`` with ``_total`` on counters. Stage
statistics are plain counters that the pipeline bumps once per batch; the collector turns
them into metric families at each scrape (client_python's custom-collector pattern), so
there is no metric object per series and no per-record overhead.

Per-series gauges (``causalwatch_detector_anomaly_score{node,series}`` and friends) are
built fresh at scrape time for at most ``max_series`` series, the most anomalous first:
a series id never becomes a long-lived labelled child.

The response is bounded in size: the per-series, per-node and per-incident families stop
growing once their label text reaches ``max_bytes`` (``publish.metrics_max_bytes``),
alerts and the most anomalous series first, so series keys of tens of kB (each within the
ingest limits, but 1,000 of them) cannot make a scrape of 100 MB. Label values are made
encodable (a lone surrogate is spelled ``\\udXXX``): one bad key must not turn every
scrape into a 500.
"""

from __future__ import annotations

import platform
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import make_wsgi_app
from prometheus_client.registry import Collector

__all__ = [
    "METRIC_NAMES",
    "IncidentScore",
    "MetricsServer",
    "PipelineStats",
    "SeriesView",
    "build_registry",
]

FloatArray = npt.NDArray[np.float64]

BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class LatencyHistogram:
    """Cumulative-bucket histogram of seconds, bumped by the pipeline, read at scrape."""

    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    sum: float = 0.0

    def observe(self, seconds: float) -> None:
        i = next((k for k, b in enumerate(self.buckets) if seconds <= b), len(self.buckets))
        self.counts[i] += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        out, acc = [], 0
        for b, n in zip((*self.buckets, float("inf")), self.counts, strict=True):
            acc += n
            out.append(("+Inf" if b == float("inf") else repr(b), float(acc)))
        return out


def _latency_by_kind() -> dict[str, LatencyHistogram]:
    return {"first": LatencyHistogram(), "update": LatencyHistogram()}


@dataclass
class PipelineStats:
    """Counters the pipeline bumps once per batch (never per record)."""

    records_by_topic: Counter[str] = field(default_factory=Counter)
    samples: int = 0
    deadletter_by_reason: Counter[str] = field(default_factory=Counter)
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    lag_last_success_ts: float = 0.0
    #: partitions paused while a backlog is paced by data time (kafka.pace_horizon_points)
    paused_partitions: int = 0
    #: records held back by that pacing (each counted once, when first held)
    paced_records_total: int = 0
    alerts_total: int = 0
    explanations_total: int = 0
    explanations_by_verdict: Counter[str] = field(default_factory=Counter)
    explainer_errors_total: int = 0
    last_batch_ts: float = 0.0
    checkpoint_last_success_ts: float = 0.0
    webhook_deliveries: Counter[tuple[str, str]] = field(default_factory=Counter)
    webhook_outbox_size: int = 0
    api_requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: backend -> unix time it went down; a backend absent from the dict is up
    backend_down_since: dict[str, float] = field(default_factory=dict)
    backends: tuple[str, ...] = ("kafka", "redis")
    #: checkpoints found missing while Kafka held committed offsets (state rebuilt)
    checkpoint_lost_total: int = 0
    # the explainer worker (causalwatch.app.pipeline.worker)
    explain_queue_depth: int = 0
    explain_coalesced_total: int = 0
    #: rests the worker took so the consuming loop keeps up (explainer.worker_busy_share)
    explain_paced_total: int = 0
    explain_dropped: Counter[str] = field(default_factory=Counter)
    explain_latency: dict[str, LatencyHistogram] = field(default_factory=_latency_by_kind)
    pages: Counter[str] = field(default_factory=Counter)  # kind: page | update


@dataclass(frozen=True)
class SeriesView:
    """What the detector knows now, for live rows only (built by the pipeline at scrape)."""

    keys: list[str]
    nodes: list[str]
    score: FloatArray
    severity: FloatArray
    value: FloatArray
    expected: FloatArray
    lower: FloatArray
    upper: FloatArray
    alert: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class IncidentScore:
    incident_id: str
    target_node: str
    node: str
    score: float
    share: float


METRIC_NAMES = (
    "causalwatch_build_info",
    "causalwatch_ingest_records_total",
    "causalwatch_ingest_samples_total",
    "causalwatch_ingest_deadletter_total",
    "causalwatch_ingest_consumer_lag_records",
    "causalwatch_ingest_consumer_lag_last_success_timestamp_seconds",
    "causalwatch_ingest_paused_partitions",
    "causalwatch_ingest_paced_records_total",
    "causalwatch_pipeline_batch_seconds",
    "causalwatch_pipeline_last_batch_timestamp_seconds",
    "causalwatch_detector_series",
    "causalwatch_detector_alerts_total",
    "causalwatch_detector_alerts_open",
    "causalwatch_detector_anomaly_score",
    "causalwatch_detector_severity",
    "causalwatch_detector_value",
    "causalwatch_detector_expected",
    "causalwatch_detector_band_lower",
    "causalwatch_detector_band_upper",
    "causalwatch_detector_node_score",
    "causalwatch_detector_node_alert",
    "causalwatch_explainer_root_cause_score",
    "causalwatch_explainer_root_cause_share",
    "causalwatch_explainer_incidents_open",
    "causalwatch_explainer_explanations_total",
    "causalwatch_explainer_verdicts_total",
    "causalwatch_explainer_errors_total",
    "causalwatch_explainer_explain_seconds",
    "causalwatch_explainer_queue_depth",
    "causalwatch_explainer_coalesced_total",
    "causalwatch_explainer_dropped_total",
    "causalwatch_explainer_latency_seconds",
    "causalwatch_explainer_pages_total",
    "causalwatch_explainer_incidents_watching",
    "causalwatch_explainer_incidents_paged_total",
    "causalwatch_explainer_incidents_watched_total",
    "causalwatch_checkpoint_last_success_timestamp_seconds",
    "causalwatch_webhook_deliveries_total",
    "causalwatch_webhook_outbox_size",
    "causalwatch_api_requests_total",
    "causalwatch_backend_up",
    "causalwatch_backend_down_seconds",
    "causalwatch_checkpoint_lost_total",
)


#: Default cap on the label text of the per-series, per-node and incident families.
MAX_BYTES = 8 * 1_048_576


def _label(text: str) -> str:
    """A label value UTF-8 can encode (prometheus_client encodes the whole page at once)."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _cost(*labels: str) -> int:
    """Bytes one sample line takes beyond its labels' text (name, quotes, value)."""
    return sum(len(v) for v in labels) + 24 * len(labels) + 64


class _StageCollector(Collector):
    def __init__(
        self,
        stats: PipelineStats,
        series: Callable[[], SeriesView | None],
        incidents: Callable[[], list[IncidentScore]],
        max_series: int,
        version: str,
        max_bytes: int = MAX_BYTES,
        paging: Callable[[], tuple[int, int, int]] = lambda: (0, 0, 0),
    ) -> None:
        self.stats = stats
        self.series = series
        self.incidents = incidents
        self.paging = paging
        self.max_series = max_series
        self.version = version
        self.max_bytes = max_bytes
        self._budget = max_bytes

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        info = GaugeMetricFamily(
            "causalwatch_build_info", "Build information.", labels=["version", "python"]
        )
        info.add_metric([self.version, platform.python_version()], 1.0)
        yield info

        rec = CounterMetricFamily(
            "causalwatch_ingest_records", "Kafka records consumed.", labels=["topic"]
        )
        for topic, n in sorted(s.records_by_topic.items()):
            rec.add_metric([topic], n)
        yield rec
        yield CounterMetricFamily(
            "causalwatch_ingest_samples", "Valid samples decoded.", value=s.samples
        )
        dlq = CounterMetricFamily(
            "causalwatch_ingest_deadletter",
            "Records or samples sent to the dead-letter topic.",
            labels=["reason"],
        )
        for reason, n in sorted(s.deadletter_by_reason.items()):
            dlq.add_metric([reason], n)
        yield dlq
        lag = GaugeMetricFamily(
            "causalwatch_ingest_consumer_lag_records",
            "Records between the consumer position and the end of each partition.",
            labels=["topic", "partition"],
        )
        for (topic, part), n in sorted(s.lag.items()):
            lag.add_metric([topic, str(part)], n)
        yield lag
        yield GaugeMetricFamily(
            "causalwatch_ingest_consumer_lag_last_success_timestamp_seconds",
            "Unix time the consumer lag was last measured (the lag gauge is stale past it).",
            value=s.lag_last_success_ts,
        )
        yield GaugeMetricFamily(
            "causalwatch_ingest_paused_partitions",
            "Partitions paused because their data time is ahead of the slowest partition "
            "with lag by more than the pacing horizon (a backlog; 0 live).",
            value=s.paused_partitions,
        )
        yield CounterMetricFamily(
            "causalwatch_ingest_paced_records",
            "Records held back until the other partitions' data time caught up.",
            value=s.paced_records_total,
        )
        yield GaugeMetricFamily(
            "causalwatch_pipeline_last_batch_timestamp_seconds",
            "Unix time when the last batch finished.",
            value=s.last_batch_ts,
        )
        yield CounterMetricFamily(
            "causalwatch_detector_alerts", "Alerts opened by the detector.", value=s.alerts_total
        )
        yield CounterMetricFamily(
            "causalwatch_explainer_explanations",
            "Explanations published.",
            value=s.explanations_total,
        )
        verdicts = CounterMetricFamily(
            "causalwatch_explainer_verdicts",
            "Explanations published, by verdict (root_cause or inconclusive).",
            labels=["verdict"],
        )
        for verdict in ("root_cause", "inconclusive"):
            verdicts.add_metric([verdict], s.explanations_by_verdict[verdict])
        yield verdicts
        yield CounterMetricFamily(
            "causalwatch_explainer_errors",
            "Explanations that failed with an error.",
            value=s.explainer_errors_total,
        )
        yield from _worker_families(s)
        yield from _paging_families(*self.paging())
        yield GaugeMetricFamily(
            "causalwatch_checkpoint_last_success_timestamp_seconds",
            "Unix time of the last durable checkpoint.",
            value=s.checkpoint_last_success_ts,
        )
        wh = CounterMetricFamily(
            "causalwatch_webhook_deliveries",
            "Webhook delivery attempts by outcome.",
            labels=["kind", "outcome"],
        )
        for (kind, outcome), n in sorted(s.webhook_deliveries.items()):
            wh.add_metric([kind, outcome], n)
        yield wh
        yield GaugeMetricFamily(
            "causalwatch_webhook_outbox_size",
            "Webhook deliveries waiting in the outbox.",
            value=s.webhook_outbox_size,
        )
        api = CounterMetricFamily(
            "causalwatch_api_requests", "HTTP API requests.", labels=["method", "code"]
        )
        for (method, code), n in sorted(s.api_requests.items()):
            api.add_metric([method, code], n)
        yield api
        yield from self._backend_families()

        self._budget = self.max_bytes
        yield from self._series_families()
        yield from self._incident_families()

    def _backend_families(self) -> Iterator[Metric]:
        s = self.stats
        now = time.time()
        down = dict(s.backend_down_since)
        up = GaugeMetricFamily(
            "causalwatch_backend_up",
            "1 while the backend answers, 0 while it is unreachable (retried, consumption paused).",
            labels=["backend"],
        )
        secs = GaugeMetricFamily(
            "causalwatch_backend_down_seconds",
            "Seconds the backend has been unreachable (0 while it is up).",
            labels=["backend"],
        )
        for name in sorted(set(s.backends) | set(down)):
            since = down.get(name)
            up.add_metric([name], 0.0 if since is not None else 1.0)
            secs.add_metric([name], 0.0 if since is None else max(0.0, now - since))
        yield up
        yield secs
        yield CounterMetricFamily(
            "causalwatch_checkpoint_lost",
            "Checkpoints found missing while Kafka held committed offsets (state rebuilt).",
            value=s.checkpoint_lost_total,
        )

    def _series_families(self) -> Iterator[Metric]:
        view = self.series()
        n = 0 if view is None else len(view.keys)
        yield GaugeMetricFamily("causalwatch_detector_series", "Live series.", value=n)
        open_alerts = 0 if view is None else int(view.alert.sum())
        yield GaugeMetricFamily(
            "causalwatch_detector_alerts_open", "Series now in alert.", value=open_alerts
        )
        specs = [
            ("causalwatch_detector_anomaly_score", "Latest anomaly score in [0, 1].", "score"),
            ("causalwatch_detector_severity", "Latest severity, 0-100.", "severity"),
            ("causalwatch_detector_value", "Latest observed value.", "value"),
            ("causalwatch_detector_expected", "Expected value.", "expected"),
            ("causalwatch_detector_band_lower", "Lower edge of the normal band.", "lower"),
            ("causalwatch_detector_band_upper", "Upper edge of the normal band.", "upper"),
        ]
        fams = {
            attr: GaugeMetricFamily(name, doc, labels=["node", "series"])
            for name, doc, attr in specs
        }
        node_score = GaugeMetricFamily(
            "causalwatch_detector_node_score",
            "Highest anomaly score among a node's series.",
            labels=["node"],
        )
        node_alert = GaugeMetricFamily(
            "causalwatch_detector_node_alert",
            "1 while any series of the node is in alert.",
            labels=["node"],
        )
        if view is not None and n:
            score = np.nan_to_num(view.score, nan=0.0)
            # Most anomalous first, alerts before everything: a cap never hides an alert.
            order = np.lexsort((-score, ~view.alert))[: self.max_series]
            arrays = {attr: getattr(view, attr) for _n, _d, attr in specs}
            for i in order.tolist():
                labels = [_label(view.nodes[i]), _label(view.keys[i])]
                cost = len(fams) * _cost(*labels)
                if cost > self._budget:
                    break
                self._budget -= cost
                for attr, fam in fams.items():
                    fam.add_metric(labels, float(arrays[attr][i]))
            best: dict[str, float] = {}
            alerting: dict[str, bool] = {}
            for i, node in enumerate(view.nodes):
                best[node] = max(best.get(node, 0.0), float(score[i]))
                alerting[node] = alerting.get(node, False) or bool(view.alert[i])
            # alerting nodes first, then the highest scores: what the cap keeps
            for node in sorted(best, key=lambda nd: (not alerting[nd], -best[nd], nd)):
                label = _label(node)
                cost = 2 * _cost(label)
                if cost > self._budget:
                    break
                self._budget -= cost
                node_score.add_metric([label], best[node])
                node_alert.add_metric([label], 1.0 if alerting[node] else 0.0)
        yield from fams.values()
        yield node_score
        yield node_alert

    def _incident_families(self) -> Iterator[Metric]:
        rows = self.incidents()
        score = GaugeMetricFamily(
            "causalwatch_explainer_root_cause_score",
            "Root-cause score of a candidate node in an open incident.",
            labels=["incident_id", "target_node", "node"],
        )
        share = GaugeMetricFamily(
            "causalwatch_explainer_root_cause_share",
            "Share of the target's deviation attributed to a candidate node.",
            labels=["incident_id", "target_node", "node"],
        )
        for r in rows:
            labels = [_label(r.incident_id), _label(r.target_node), _label(r.node)]
            cost = 2 * _cost(*labels)
            if cost > self._budget:
                break
            self._budget -= cost
            score.add_metric(labels, r.score)
            share.add_metric(labels, r.share)
        yield score
        yield share
        yield GaugeMetricFamily(
            "causalwatch_explainer_incidents_open",
            "Open incidents.",
            value=len({r.incident_id for r in rows}),
        )


def _worker_families(s: PipelineStats) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "causalwatch_explainer_queue_depth",
        "Incidents waiting to be (re-)explained.",
        value=s.explain_queue_depth,
    )
    yield CounterMetricFamily(
        "causalwatch_explainer_coalesced",
        "Alerts coalesced into an incident's pending explanation.",
        value=s.explain_coalesced_total,
    )
    yield CounterMetricFamily(
        "causalwatch_explainer_paced",
        "Rests the explainer worker took while the consuming loop was busy (its share of "
        "the wall clock held to explainer.worker_busy_share).",
        value=s.explain_paced_total,
    )
    dropped = CounterMetricFamily(
        "causalwatch_explainer_dropped",
        "Pending re-explanations dropped (full: the queue was full; overflow: first "
        "explanations kept past the bound).",
        labels=["reason"],
    )
    for reason in ("full", "overflow"):
        dropped.add_metric([reason], s.explain_dropped.get(reason, 0))
    yield dropped
    lat = HistogramMetricFamily(
        "causalwatch_explainer_latency_seconds",
        "Seconds from an incident's alert to its explanation in Redis.",
        labels=["kind"],
    )
    for kind, h in sorted(s.explain_latency.items()):
        lat.add_metric([kind], h.cumulative(), h.sum)
    yield lat
    pages = CounterMetricFamily(
        "causalwatch_explainer_pages",
        "Incident pages sent to receivers (page: a new incident; update: a later one).",
        labels=["kind"],
    )
    for kind in ("page", "update"):
        pages.add_metric([kind], s.pages.get(kind, 0))
    yield pages


def _paging_families(watching: int, paged: int, watched: int) -> Iterator[Metric]:
    """Incidents watched vs paged (explainer.incidents: an incident pages once its alerts
    agree), read from the explainer's state at scrape time."""
    yield GaugeMetricFamily(
        "causalwatch_explainer_incidents_watching",
        "Open incidents watching: explained and visible, not paged (their alerts have not "
        "agreed yet).",
        value=watching,
    )
    yield CounterMetricFamily(
        "causalwatch_explainer_incidents_paged",
        "Incidents that paged (their alerts agreed, or one was overwhelming).",
        value=paged,
    )
    yield CounterMetricFamily(
        "causalwatch_explainer_incidents_watched",
        "Incidents closed without paging (watched only).",
        value=watched,
    )


@dataclass
class Registry:
    """The registry built once at start-up plus the histograms stages observe into."""

    registry: CollectorRegistry
    batch_seconds: Histogram
    explain_seconds: Histogram


def build_registry(
    stats: PipelineStats,
    *,
    series: Callable[[], SeriesView | None] = lambda: None,
    incidents: Callable[[], list[IncidentScore]] = list,
    max_series: int = 1_000,
    version: str = "0.0.0",
    max_bytes: int = MAX_BYTES,
    paging: Callable[[], tuple[int, int, int]] = lambda: (0, 0, 0),
) -> Registry:
    """The registry of a process. ``max_series`` and ``max_bytes`` bound what one scrape
    holds (``publish.metrics_max_series``, ``publish.metrics_max_bytes``); ``paging``
    returns (open incidents watching, incidents paged, incidents closed without paging)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        _StageCollector(stats, series, incidents, max_series, version, max_bytes, paging)
    )
    batch = Histogram(
        "causalwatch_pipeline_batch_seconds",
        "Seconds spent per batch in each stage.",
        labelnames=["stage"],
        buckets=BATCH_BUCKETS,
        registry=registry,
    )
    explain = Histogram(
        "causalwatch_explainer_explain_seconds",
        "Seconds per explanation.",
        buckets=BATCH_BUCKETS,
        registry=registry,
    )
    return Registry(registry, batch, explain)


class MetricsServer:
    """Serves ``/metrics`` from one registry on a background thread."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        class _Server(ThreadingHTTPServer, WSGIServer):
            daemon_threads = True

        class _Quiet(WSGIRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

        app = make_wsgi_app(registry)
        self._server = make_server(host, port, app, _Server, handler_class=_Quiet)
        self.host = host
        self.port = int(self._server.server_port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
