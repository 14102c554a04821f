"""The scenario generator: seeded, acyclic, faults visible at the root and downstream."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from causalwatch.errors import ConfigError
from causalwatch.series import series_key
from causalwatch.tooling.simulate import (
    FAULT_KINDS,
    METRICS,
    demo_service_graph,
    microservice_demo_scenario,
    random_service_dag,
    simulate,
    write_scenario,
)


def _is_acyclic(nodes: tuple[str, ...], edges: tuple[tuple[str, str], ...]) -> bool:
    indeg = {v: 0 for v in nodes}
    children: dict[str, list[str]] = {v: [] for v in nodes}
    for c, e in edges:
        indeg[e] += 1
        children[c].append(e)
    ready = [v for v, d in indeg.items() if d == 0]
    seen = 0
    while ready:
        v = ready.pop()
        seen += 1
        for w in children[v]:
            indeg[w] -= 1
            if indeg[w] == 0:
                ready.append(w)
    return seen == len(nodes)


@pytest.mark.parametrize("n_nodes", [10, 50, 200])
def test_random_dag_is_acyclic_connected_and_layered(n_nodes: int) -> None:
    g = random_service_dag(n_nodes, seed=n_nodes)
    assert len(g.nodes) == n_nodes == len(set(g.nodes))
    assert _is_acyclic(g.nodes, g.edges)
    assert len(set(g.edges)) == len(g.edges)
    # Every node can reach the frontend: it is the causal sink of the whole graph.
    assert g.ancestors("frontend") == set(g.nodes) - {"frontend"}
    # Backends call nothing; the frontend is called by nobody.
    for v in g.nodes:
        if g.kinds[v] in ("db", "cache", "provider"):
            assert g.callees(v) == []
    assert g.callers("frontend") == []
    assert {g.kinds[v] for v in g.nodes} >= {"frontend", "gateway", "service"}


def test_random_dag_is_deterministic_per_seed() -> None:
    assert random_service_dag(30, seed=5) == random_service_dag(30, seed=5)
    assert random_service_dag(30, seed=5).edges != random_service_dag(30, seed=6).edges


def test_simulate_is_deterministic_and_shaped() -> None:
    a = simulate(20, n_points=300, seed=11, metrics=METRICS, fault_kind="error_burst")
    b = simulate(20, n_points=300, seed=11, metrics=METRICS, fault_kind="error_burst")
    c = simulate(20, n_points=300, seed=12, metrics=METRICS, fault_kind="error_burst")
    assert np.array_equal(a.values, b.values) and a.roots == b.roots
    assert not np.array_equal(a.values, c.values)
    assert a.values.shape == (20 * 3, 300)
    assert a.ts.shape == (300,) and np.all(np.diff(a.ts) == 60.0)
    assert np.all(np.isfinite(a.values))
    assert len(a.series_keys) == len(set(a.series_keys)) == 60
    err = a.values[[m == "error_rate" for m in a.series_metrics]]
    assert err.min() >= 0.0 and err.max() <= 1.0
    assert a.fault_start == 240 and a.fault_end_ts == a.ts[0] + (240 + 15) * 60.0


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_fault_shows_at_root_and_propagates_downstream(kind: str) -> None:
    sc = simulate(12, n_points=600, fault_kind=kind, seed=4)
    (root,) = sc.roots
    assert sc.fault_metric in sc.metrics
    x = sc.series(root, sc.fault_metric)
    before, during = x[300 : sc.fault_start], x[sc.fault_start : sc.fault_start + 30]
    if kind == "variance_change":
        assert during.std() > 2.0 * before.std()
    else:
        assert during.mean() - before.mean() > 3.0 * before.std()
    # The target is downstream of the root and the fault still shows there.
    assert sc.target_node in sc.graph.descendants(root)
    assert sc.visibility[sc.target_node] >= 4.0
    assert sc.visibility[root] >= 4.0 or kind == "variance_change"


def test_unaffected_nodes_do_not_change() -> None:
    sc = simulate(30, n_points=600, fault_kind="latency_shift", seed=8)
    affected = sc.graph.descendants(sc.roots[0]) | {sc.roots[0]}
    quiet = [v for v in sc.nodes if v not in affected]
    assert quiet
    for v in quiet:
        assert abs(sc.visibility[v]) < 4.0


def test_two_roots_are_independent() -> None:
    sc = simulate(50, n_points=400, fault_kind="latency_shift", n_roots=2, seed=3)
    a, b = sc.roots
    assert a != b
    assert b not in sc.graph.descendants(a) and a not in sc.graph.descendants(b)


def test_columns_are_time_ordered_and_match_values() -> None:
    sc = simulate(10, n_points=50, seed=1, metrics=("latency_ms", "requests_per_s"))
    keys, ts, value = sc.columns(10, 20)
    assert len(keys) == ts.shape[0] == value.shape[0] == 10 * 20
    assert np.all(np.diff(ts) >= 0)
    i = sc.series_keys.index(series_key("requests_per_s", {"service": "frontend"}))
    picked = value[[k == sc.series_keys[i] for k in keys]]
    assert np.array_equal(picked, sc.values[i, 10:20])


def test_demo_scenario_degrades_catalog_callers() -> None:
    sc = microservice_demo_scenario(seed=0)
    assert sc.roots == ("catalog-db",)
    assert set(sc.metrics) == set(METRICS)
    assert sc.graph == demo_service_graph()
    for v in ("catalog-db", "catalog", "api-gateway"):
        assert sc.visibility[v] >= 4.0, v
    for v in ("cart-db", "payment-provider", "auth"):
        assert abs(sc.visibility[v]) < 4.0, v


def test_write_scenario_round_trips(tmp_path: Path) -> None:
    sc = simulate(10, n_points=40, seed=2, fault_len=5)
    paths = write_scenario(sc, tmp_path / "out")
    lines = paths["samples"].read_text().splitlines()
    assert len(lines) == 10 * 40
    first = json.loads(lines[0])
    assert set(first) == {"name", "labels", "timestamp", "value"}
    assert first["labels"]["service"] in sc.nodes and first["timestamp"] == sc.ts[0]
    stamps = [json.loads(line)["timestamp"] for line in lines]
    assert stamps == sorted(stamps)
    csv = paths["graph"].read_text().splitlines()
    assert csv[0] == "cause,effect" and len(csv) == 1 + len(sc.edges)
    truth = json.loads(paths["truth"].read_text())
    assert truth["roots"] == list(sc.roots)
    assert truth["fault_end_ts"] - truth["fault_start_ts"] == 5 * 60.0


def test_bad_arguments_name_the_setting() -> None:
    with pytest.raises(ConfigError, match="fault_kind"):
        simulate(10, fault_kind="meteor")
    with pytest.raises(ConfigError, match="n_roots"):
        simulate(10, n_roots=3)
    with pytest.raises(ConfigError, match="n_nodes"):
        random_service_dag(1)
