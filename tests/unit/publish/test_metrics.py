from __future__ import annotations

import urllib.request

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from causalwatch.publish.metrics import (
    METRIC_NAMES,
    IncidentScore,
    MetricsServer,
    PipelineStats,
    SeriesView,
    build_registry,
)


def _view(n: int, alert_at: int) -> SeriesView:
    score = np.linspace(0.1, 0.9, n)
    alert = np.zeros(n, dtype=bool)
    alert[alert_at] = True
    return SeriesView(
        keys=[f'lat{{service="s{i}"}}' for i in range(n)],
        nodes=[f"s{i % 3}" for i in range(n)],
        score=score,
        severity=score * 100,
        value=np.arange(n, dtype=float),
        expected=np.ones(n),
        lower=np.zeros(n),
        upper=np.full(n, 2.0),
        alert=alert,
    )


def _scrape(server: MetricsServer) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = urllib.request.urlopen(server.url, timeout=5).read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_exposition_over_http_with_capped_series() -> None:
    stats = PipelineStats()
    stats.records_by_topic["metrics"] += 7
    stats.deadletter_by_reason["nan_value"] += 2
    stats.lag[("metrics", 0)] = 5
    stats.webhook_deliveries[("slack", "delivered")] += 1
    stats.api_requests[("GET", "200")] += 1
    stats.explanations_by_verdict.update(["root_cause", "root_cause", "inconclusive"])
    incidents = [IncidentScore("inc1", "frontend", "db", 0.9, 0.7)]
    reg = build_registry(
        stats, series=lambda: _view(10, alert_at=0), incidents=lambda: incidents, max_series=3
    )
    reg.batch_seconds.labels(stage="detect").observe(0.01)
    server = MetricsServer(reg.registry, "127.0.0.1", 0).start()
    try:
        got = _scrape(server)
    finally:
        server.stop()
    assert got["causalwatch_ingest_records_total"] == [({"topic": "metrics"}, 7.0)]
    assert got["causalwatch_ingest_deadletter_total"] == [({"reason": "nan_value"}, 2.0)]
    assert got["causalwatch_ingest_consumer_lag_records"] == [
        ({"topic": "metrics", "partition": "0"}, 5.0)
    ]
    scores = got["causalwatch_detector_anomaly_score"]
    assert len(scores) == 3  # the cap
    series = [labels["series"] for labels, _ in scores]
    # The alerting series comes first even though its score is the lowest; then by score.
    assert series[0] == 'lat{service="s0"}'
    assert series[1:] == ['lat{service="s9"}', 'lat{service="s8"}']
    assert got["causalwatch_detector_series"] == [({}, 10.0)]
    node_alert = dict((lab["node"], v) for lab, v in got["causalwatch_detector_node_alert"])
    assert node_alert == {"s0": 1.0, "s1": 0.0, "s2": 0.0}
    assert got["causalwatch_explainer_root_cause_score"] == [
        ({"incident_id": "inc1", "target_node": "frontend", "node": "db"}, 0.9)
    ]
    assert got["causalwatch_explainer_incidents_open"] == [({}, 1.0)]
    assert sorted(got["causalwatch_explainer_verdicts_total"], key=str) == [
        ({"verdict": "inconclusive"}, 1.0),
        ({"verdict": "root_cause"}, 2.0),
    ]
    assert ({"stage": "detect"}, 1.0) in got["causalwatch_pipeline_batch_seconds_count"]
    # Every documented family is exported (histograms by their _count sample).
    exported = set(got) | {n[: -len("_count")] for n in got if n.endswith("_count")}
    missing = [n for n in METRIC_NAMES if n not in exported]
    assert missing == []


def test_no_series_yet() -> None:
    reg = build_registry(PipelineStats())
    server = MetricsServer(reg.registry, "127.0.0.1", 0).start()
    try:
        got = _scrape(server)
    finally:
        server.stop()
    assert got["causalwatch_detector_series"] == [({}, 0.0)]
    assert "causalwatch_detector_anomaly_score" not in got
