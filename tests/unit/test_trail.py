"""The incident page's short history (trail) and the snapshot written with an explanation."""

from __future__ import annotations

import json

import numpy as np

from causalwatch.app.pipeline.snapshot import build_snapshots
from causalwatch.app.pipeline.steps import Cores
from causalwatch.app.pipeline.trail import COLUMNS, Trail
from causalwatch.models import Explanation
from causalwatch.series import SeriesIndex
from explainer.core import Explainer, ExplainerConfig
from explainer.dag import DependencyGraph, Edge
from tests.unit.publish.test_webhooks import make_explanation


def _cols(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.normal(size=n) for _ in COLUMNS]


def test_batch_equals_one_by_one_and_memory_is_bounded() -> None:
    rng = np.random.default_rng(3)
    rows = rng.integers(0, 5, size=200)
    ts = np.arange(200, dtype=np.float64)
    cols = _cols(200, rng)
    batch, single = Trail(points=16), Trail(points=16)
    batch.append(rows, ts, *cols)
    for i in range(200):
        single.append(rows[i : i + 1], ts[i : i + 1], *[c[i : i + 1] for c in cols])
    for r in range(5):
        a, b = batch.read(r), single.read(r)
        assert set(a) == {"ts", *COLUMNS}
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
        assert a["ts"].size == 16 and np.all(np.diff(a["ts"]) > 0)  # the last 16, in order
        mine = ts[rows == r][-16:]
        np.testing.assert_array_equal(a["ts"], mine)
    assert batch.ts.shape == (8, 16)  # capacity doubles from 8; points never grow
    assert batch.bytes_per_series == 16 * 28 + 16


def test_clear_forgets_rows_or_everything() -> None:
    t = Trail(points=4)
    t.append(np.array([0, 1]), np.array([1.0, 1.0]), *[np.ones(2)] * 5)
    t.clear(np.array([1, 99]))
    assert t.read(0)["ts"].size == 1 and t.read(1)["ts"].size == 0
    t.clear()
    assert t.read(0)["ts"].size == 0


def test_snapshot_holds_target_and_candidates_windows_and_graph() -> None:
    idx = SeriesIndex()
    graph = DependencyGraph([Edge("db", "api"), Edge("api", "web"), Edge("cache", "api")])
    ex = Explainer(ExplainerConfig(step_s=60.0, learn_graph=False), graph, idx)
    trail = Trail(points=150)
    cores = Cores(index=idx, detector=None, explainer=ex, trail=trail)
    nodes = ("db", "api", "web", "cache")
    keys = [f'latency{{service="{n}"}}' for n in nodes]
    rows = idx.rows_for(keys)
    rng = np.random.default_rng(0)
    t0 = 1_700_000_000.0
    n = 300
    for i in range(n):
        db = rng.normal(10, 1) + (8 if i >= n - 5 else 0)
        cache = rng.normal(3, 0.3)
        api = 2 * db + cache + rng.normal()
        web = api + 5 + rng.normal()
        v = np.array([db, api, web, cache])
        ts = np.full(4, t0 + 60.0 * i)
        ex.observe(rows, ts, v)
        score = np.where(np.arange(4) < 3, 0.9999 if i >= n - 5 else 0.5, 0.5)
        trail.append(rows, ts, v, v * 0 + v.mean(), v - 1, v + 1, score)
    exp = Explanation.from_result(ex.explain("web", None, t0 + 60.0 * (n - 1)))
    (snap,) = build_snapshots(cores, [exp], reference_points=120, max_series=3)
    json.dumps(snap, allow_nan=False)  # strict JSON
    assert snap["explanation_id"] == exp.id and snap["step_s"] == 60.0
    assert snap["anomaly"] == [exp.window.start, exp.window.end]
    assert snap["reference"] == [exp.window.start - 120 * 60.0, exp.window.start]
    series = snap["series"]
    assert series[0]["role"] == "target" and series[0]["series"] == exp.target.series
    assert len(series) == 3 and [s["role"] for s in series[1:]] == ["candidate"] * 2
    assert {s["series"] for s in series[1:]} <= {rc.series for rc in exp.root_causes}
    target = series[0]
    assert 130 <= len(target["ts"]) <= 150  # reference + anomaly, from the trail
    assert target["ts"][-1] == t0 + 60.0 * (n - 1)  # to the second, not rounded
    assert len(target["value"]) == len(target["ts"]) == len(target["upper"])
    g = snap["graph"]
    sev = {x["node"]: x["severity"] for x in g["nodes"]}
    assert set(sev) == set(nodes) and sev["db"] >= 50 > 10 > sev["cache"]
    assert {(e["cause"], e["effect"], e["provenance"]) for e in g["edges"]} == {
        ("db", "api", "given"),
        ("api", "web", "given"),
        ("cache", "api", "given"),
    }


def test_no_trail_no_snapshot() -> None:
    idx = SeriesIndex()
    ex = Explainer(ExplainerConfig(step_s=60.0), DependencyGraph(), idx)
    cores = Cores(index=idx, detector=None, explainer=ex)
    exp = make_explanation()
    assert build_snapshots(cores, [exp], reference_points=120) == []
