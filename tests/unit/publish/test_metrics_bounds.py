"""/metrics stays encodable and bounded in size whatever the series keys hold."""

from __future__ import annotations

import urllib.request

import numpy as np
from prometheus_client import generate_latest

from causalwatch.publish.metrics import (
    IncidentScore,
    MetricsServer,
    PipelineStats,
    SeriesView,
    build_registry,
)


def _view(keys: list[str], nodes: list[str], alert: list[int]) -> SeriesView:
    n = len(keys)
    score = np.linspace(0.0, 0.5, n)
    flags = np.zeros(n, dtype=bool)
    flags[alert] = True
    return SeriesView(keys, nodes, score, score * 100, score, score, score - 1, score + 1, flags)


def test_a_lone_surrogate_in_a_key_does_not_break_the_scrape() -> None:
    """It was a 500 (UnicodeEncodeError) on every scrape, for every metric."""
    keys = ['x{a="\ud800"}', 'ok{a="caf\u00e9"}']
    view = _view(keys, ["\udfff", "web"], [0])
    reg = build_registry(
        PipelineStats(),
        series=lambda: view,
        incidents=lambda: [IncidentScore("i\ud800", "web", "\ud800", 0.5, 0.5)],
    )
    text = generate_latest(reg.registry).decode("utf-8")
    assert 'series="x{a=\\"\\\\ud800\\"}"' in text  # spelled out, escaped by the format
    assert 'series="ok{a=\\"café\\"}"' in text
    assert 'node="\\\\udfff"' in text


def test_scrape_size_is_capped_and_alerts_come_first() -> None:
    # 1,000 series whose keys are 40 kB each (32 labels of ~1 kB: within the ingest limits)
    big = ",".join(f'l{j}="{"v" * 1_000}"' for j in range(32))
    keys = [f"m{i}{{{big}}}" for i in range(1_000)]
    view = _view(keys, [f"n{i}" for i in range(1_000)], [3, 997])
    reg = build_registry(
        PipelineStats(), series=lambda: view, max_series=1_000, max_bytes=2 * 1_048_576
    )
    server = MetricsServer(reg.registry, "127.0.0.1", 0).start()
    try:
        with urllib.request.urlopen(server.url, timeout=10) as resp:
            body = resp.read()
    finally:
        server.stop()
    assert len(body) < 2 * 1_048_576 + 64_000, len(body)  # was ~250 MB uncapped
    text = body.decode()
    scored = [
        ln for ln in text.splitlines() if ln.startswith("causalwatch_detector_anomaly_score{")
    ]
    assert 0 < len(scored) < 1_000
    assert any('series="m3{' in ln for ln in scored) and any('series="m997{' in ln for ln in scored)
    assert "causalwatch_ingest_samples_total" in text  # fixed families are never cut
    assert 'causalwatch_detector_node_alert{node="n3"} 1.0' in text
