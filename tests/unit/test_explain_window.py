"""On-demand with a window: ``since`` (CLI ``--since``, ``start`` in ``--targets``, the API,
Alertmanager's ``startsAt``) fixes the anomaly window's start, bounded by the data held."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from causalwatch.app.pipeline import Pipeline, build_pipeline
from causalwatch.app.replay import Target, read_targets, replay_batches
from causalwatch.errors import StateError
from causalwatch.models import Explanation, SampleBatch
from causalwatch.settings import Settings
from causalwatch.tooling.simulate import Scenario, simulate
from explainer.dag import DependencyGraph, Edge


@pytest.fixture(scope="module")
def replayed() -> tuple[Pipeline, Scenario]:
    sc = simulate(6, n_points=500, step_s=60.0, seed=2, fault_kind="latency_shift")
    pipe = build_pipeline(
        Settings(), "all", graph=DependencyGraph([Edge(a, b) for a, b in sc.edges]), replay=True
    )

    def batches():  # type: ignore[no-untyped-def]
        for k in range(sc.n_points):
            keys, ts, value = sc.columns(k, k + 1)
            yield SampleBatch.from_lists(keys, ts.tolist(), value.tolist()), []

    replay_batches(pipe, batches())
    return pipe, sc


def test_since_fixes_the_window_start(replayed: tuple[Pipeline, Scenario]) -> None:
    pipe, sc = replayed
    at = sc.fault_end_ts - sc.step_s
    e = pipe.explain(sc.target_node, sc.target_series, at, since=sc.fault_start_ts)
    assert e.window.start <= sc.fault_start_ts + sc.step_s and e.window.end <= at
    default = pipe.explain(sc.target_node, sc.target_series, at)
    assert default.window.start > e.window.start  # the run of anomalous bins is shorter


def test_a_time_outside_the_held_data_is_refused_never_allocated(
    replayed: tuple[Pipeline, Scenario],
) -> None:
    pipe, sc = replayed
    at = float(sc.ts[-1])
    with pytest.raises(StateError, match=r"since .* outside the history held"):
        pipe.explain(sc.target_node, None, at, since=0.0)
    late = pipe.explain(sc.target_node, None, at, since=at + 3600.0)  # after the data
    assert late.window.end <= at  # a startsAt a scrape ahead of the data: its latest time
    with pytest.raises(StateError, match="outside the history held"):
        pipe.explain(sc.target_node, None, 1.0)
    t0 = time.perf_counter()
    with pytest.raises(StateError):  # far later than the data (more than its span): 404
        pipe.explain(sc.target_node, None, 1e15)
    assert time.perf_counter() - t0 < 5.0


def test_targets_take_an_optional_start_column(tmp_path: Path) -> None:
    f = tmp_path / "targets.csv"
    f.write_text(
        "node,series,at,start\n"
        "api,,2026-01-01T01:00:00,2026-01-01T00:30:00\n"
        'web,lat{service="web"},1767229200,\n'
    )
    got = read_targets(f)
    assert got == [
        Target("api", None, 1767229200.0, 1767227400.0),
        Target("web", 'lat{service="web"}', 1767229200.0, None),
    ]
    old = tmp_path / "old.csv"  # files without the column still work
    old.write_text("node,series,at\napi,,1767229200\n")
    assert read_targets(old) == [Target("api", None, 1767229200.0)]


def test_replay_targets_with_a_start_explain_over_that_window(
    replayed: tuple[Pipeline, Scenario],
) -> None:
    pipe, sc = replayed
    from causalwatch.app.replay import ReplaySummary, _explain_target

    got: list[Explanation | None] = []
    t = Target(sc.target_node, sc.target_series, sc.fault_end_ts - sc.step_s, sc.fault_start_ts)
    _explain_target(pipe, t, lambda _t, e, _err: got.append(e), ReplaySummary())
    assert got and got[0] is not None and got[0].window.start <= sc.fault_start_ts + sc.step_s
