"""The explainer worker: the queue's rules, inline replay, the thread, the checkpoint, and
the automatic answer against the on-demand one at the same moment."""

from __future__ import annotations

import math
import threading

import numpy as np

from causalwatch.app.pipeline import build_pipeline
from causalwatch.app.pipeline.worker import ExplainQueue, ExplainWorker
from causalwatch.app.replay import replay_batches
from causalwatch.models import Explanation, SampleBatch
from causalwatch.publish.metrics import PipelineStats
from causalwatch.settings import Settings
from causalwatch.tooling.simulate import Scenario, simulate
from explainer.dag import DependencyGraph, Edge
from explainer.incidents import Grouped


def _never(_iid: str) -> bool:
    return False


def _always(_iid: str) -> bool:
    return True


def test_alerts_of_one_incident_coalesce_and_updates_wait_for_the_interval() -> None:
    q = ExplainQueue(max_pending=10, interval_points=5)
    q.submit(Grouped({"a": {"s1"}}), _never, 0.0, 60.0, 1.0)
    q.submit(Grouped({"a": {"s2"}}), _never, 60.0, 60.0, 2.0)
    assert len(q.pending) == 1 and q.coalesced == 1
    req = q.pop_due(60.0)
    assert req is not None and req.keys == ["s1", "s2"] and req.is_first
    assert req.alert_wall_s == 1.0  # latency counts from the oldest alert
    q.done(req, 60.0)
    q.submit(Grouped({"a": {"s1"}}), _always, 120.0, 60.0, 3.0)
    assert q.pop_due(120.0) is None and q.pop_due(359.0) is None
    upd = q.pop_due(360.0)  # 60 + 5 steps of 60 s
    assert upd is not None and not upd.is_first


def test_a_full_queue_drops_the_oldest_updates_never_a_first_explanation() -> None:
    q = ExplainQueue(max_pending=3, interval_points=0)
    for i in range(3):
        q.submit(Grouped({f"u{i}": {"s"}}), _always, float(i), 60.0, 0.0)  # updates
    q.submit(Grouped({"f0": {"s"}}), _never, 10.0, 60.0, 0.0)  # a first: u0 goes
    assert set(q.pending) == {"u1", "u2", "f0"} and q.dropped["full"] == 1
    for i in range(1, 4):
        q.submit(Grouped({f"f{i}": {"s"}}), _never, 10.0 + i, 60.0, 0.0)
    # only firsts are left, and none was dropped: they stay past the bound, counted apart
    assert set(q.pending) == {"f0", "f1", "f2", "f3"}
    assert q.dropped["full"] == 3 and q.dropped["overflow"] >= 1
    # firsts run before updates, oldest first
    assert [q.pop_due(math.inf).incident_id for _ in range(2)] == ["f0", "f1"]  # type: ignore[union-attr]


def test_a_merged_incident_takes_over_the_pending_request() -> None:
    q = ExplainQueue(max_pending=10, interval_points=0)
    q.submit(Grouped({"b": {"s1"}}), _never, 0.0, 60.0, 0.0)
    q.submit(Grouped({"a": {"s2"}}, merged={"b": "a"}), _never, 60.0, 60.0, 0.0)
    assert list(q.pending) == ["a"] and q.pending["a"].keys == ["s1", "s2"]


def test_the_queue_round_trips_through_json() -> None:
    q = ExplainQueue(max_pending=10, interval_points=2)
    q.submit(Grouped({"a": {"s1"}, "b": {"s2"}}), _never, 0.0, 60.0, 0.0)
    q.done(q.pop_due(0.0), 0.0)  # type: ignore[arg-type]
    back = ExplainQueue(max_pending=10, interval_points=2)
    back.load_json(q.to_json())
    assert list(back.pending) == list(q.pending) and back.last_run_ts == q.last_run_ts
    assert back.now_ts == q.now_ts


def _scenario(step_s: float = 60.0, seed: int = 3) -> Scenario:
    return simulate(6, n_points=700, step_s=step_s, seed=seed, fault_kind="latency_shift")


def _batches(sc: Scenario, per: int = 1):  # type: ignore[no-untyped-def]
    for k in range(0, sc.n_points, per):
        keys, ts, value = sc.columns(k, k + per)
        yield SampleBatch.from_lists(keys, ts.tolist(), value.tolist()), []


def _graph(sc: Scenario) -> DependencyGraph:
    return DependencyGraph([Edge(a, b) for a, b in sc.edges])


def test_replay_explains_inline_and_equals_the_on_demand_answer_at_the_same_moment() -> None:
    """The rule: the automatic explanation of a target is the on-demand explanation of the
    same series at the same moment (its anchor, the end of its window), on the same data."""
    sc = _scenario()
    pipe = build_pipeline(Settings(), "all", graph=_graph(sc), replay=True)
    compared = 0

    def on_step(out) -> None:  # type: ignore[no-untyped-def]
        nonlocal compared
        for e in out.explanations:
            got = pipe.explain(e.target.node, e.target.series, e.window.end)
            assert [rc.node for rc in got.root_causes] == [rc.node for rc in e.root_causes]
            np.testing.assert_allclose(
                [rc.score for rc in got.root_causes], [rc.score for rc in e.root_causes]
            )
            compared += 1

    summary = replay_batches(pipe, _batches(sc), on_step=on_step)
    assert summary.alerts > 0 and summary.explanations > 0
    assert compared == summary.explanations
    # the onset came first: version 1 of every incident before any of its updates
    assert pipe.stats.explain_latency["first"].counts != [0] * len(
        pipe.stats.explain_latency["first"].counts
    )


def test_replay_is_deterministic_and_closes_stale_incidents() -> None:
    sc = _scenario()
    runs = []
    for _ in range(2):
        pipe = build_pipeline(Settings(), "all", graph=_graph(sc), replay=True)
        got: list[Explanation] = []

        def keep(out, got=got) -> None:  # type: ignore[no-untyped-def]
            got.extend(out.explanations)

        replay_batches(pipe, _batches(sc, per=7), on_step=keep)
        runs.append([(e.id, [rc.node for rc in e.root_causes]) for e in got])
        # data runs ~80 steps past the fault's end: its incident is closed by then
        assert pipe.cores.explainer is not None
        last = float(sc.ts[-1])
        window = pipe.cores.explainer.incident_window_s
        for inc in pipe.cores.explainer.open_incidents():
            assert inc.incident_id  # every open one had an event within the window
        assert all(
            last - i.last_ts <= window for i in pipe.cores.explainer._incidents.open.values()
        )
    assert runs[0] == runs[1] and runs[0]


def test_the_threaded_worker_publishes_off_the_caller_and_checkpoints_what_is_pending() -> None:
    """Threaded: ``kick`` returns at once; the worker ranks under the lock and publishes
    outside it; a snapshot taken while a publish fails holds the unpublished explanation."""
    sc = _scenario()
    pipe = build_pipeline(Settings(), "all", graph=_graph(sc), replay=True)
    cores = pipe.cores
    published: list[Explanation] = []
    fail = threading.Event()
    fail.set()
    failed = threading.Event()

    def publish(exps: list[Explanation]) -> None:
        from causalwatch.errors import BackendError

        if fail.is_set():
            failed.set()
            raise BackendError("redis away", backend="redis")
        published.extend(exps)

    stage = pipe.stage
    worker = ExplainWorker(
        cores.lock,
        lambda: cores.queue,
        stage._explain_touched,
        publish,
        PipelineStats(),
        retry_s=0.05,
    )
    stage.worker = worker
    worker.start()
    try:
        for batch, _ in _batches(sc, per=20):
            out = pipe.process(batch)
            assert out.explanations == []  # nothing ranked on the caller's path
        assert failed.wait(30)
        with cores.lock:
            snap = stage.snapshot()
        assert snap.meta["explain_queue"]["unpublished"]  # kept until durable
        fail.clear()
        deadline = threading.Event()
        for _ in range(600):
            with cores.lock:
                q = cores.queue
                assert q is not None
                if not q.unpublished and not q.pending and published:
                    break
            deadline.wait(0.05)
        assert published and not cores.queue.unpublished  # type: ignore[union-attr]
    finally:
        worker.stop()
    assert worker.stats.explain_latency["first"].sum >= 0.0


def test_pending_explanations_survive_a_checkpoint_restore() -> None:
    """At-least-once: alerts submitted but not yet explained are in the checkpoint; a
    process restored from it explains them exactly as the original would have."""
    from causalwatch.app.pipeline import process_samples

    sc = _scenario()
    graph = _graph(sc)
    a = build_pipeline(Settings(), "all", graph=graph, replay=True)
    fault = sc.fault_start
    for batch, _ in _batches(sc):
        if float(batch.ts[0]) > float(sc.ts[fault + 5]):
            break
        with a.cores.lock:  # detect and submit, but do not run the worker
            rows = a.cores.index.rows_for(batch.series_keys)
            process_samples(a.cores, rows, batch)
    assert a.cores.queue is not None and a.cores.queue.pending
    with a.cores.lock:
        cp = a.stage.snapshot()
    b = build_pipeline(Settings(), "all", graph=graph, replay=True)
    b.stage.restore(cp)
    assert b.cores.queue is not None
    assert list(b.cores.queue.pending) == list(a.cores.queue.pending)
    now = float(sc.ts[fault + 5])
    with a.cores.lock, b.cores.lock:
        got_a = a.stage.worker.kick(now)
        got_b = b.stage.worker.kick(now)
    assert got_a and [e.id for e in got_b] == [e.id for e in got_a]
    assert [[rc.node for rc in e.root_causes] for e in got_b] == [
        [rc.node for rc in e.root_causes] for e in got_a
    ]
