"""The explainer worker's pacing: while the consuming loop is busy it works at most its
share of the wall clock; alerts meanwhile coalesce, first explanations are never dropped;
an idle loop never holds it back."""

from __future__ import annotations

import itertools
import threading
import time

from causalwatch.app.pipeline.worker import ExplainQueue, ExplainWorker
from causalwatch.models import Explanation
from causalwatch.publish.metrics import PipelineStats
from explainer.incidents import Grouped


def _never(_iid: str) -> bool:
    return False


def _worker(
    busy: threading.Event, share: float, ran: list[tuple[str, float]], cost_s: float
) -> tuple[ExplainWorker, ExplainQueue, threading.RLock, PipelineStats]:
    lock = threading.RLock()
    q = ExplainQueue(max_pending=2, interval_points=0)
    stats = PipelineStats()

    def explain(touched: dict[str, list[str]]) -> list[Explanation]:
        t = time.perf_counter()
        while time.perf_counter() - t < cost_s:  # "ranking": CPU for cost_s
            pass
        ran.extend((iid, time.perf_counter()) for iid in touched)
        return []

    w = ExplainWorker(
        lock, lambda: q, explain, lambda exps: None, stats, busy_share=share, is_busy=busy.is_set
    )
    return w, q, lock, stats


def _wait_for(cond, timeout_s: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def test_a_busy_loop_holds_the_worker_to_its_share_and_first_explanations_all_run() -> None:
    busy = threading.Event()
    busy.set()
    ran: list[tuple[str, float]] = []
    w, q, lock, stats = _worker(busy, share=0.25, ran=ran, cost_s=0.02)
    with lock:
        for i in range(6):  # six incidents' first alerts, past the queue's bound of 2
            q.submit(Grouped({f"f{i}": {"s"}}), _never, 0.0, 60.0, 0.0)
    w.start()
    try:
        with lock:
            w.kick(0.0)
        _wait_for(lambda: len(ran) == 6)
    finally:
        w.stop()
    assert sorted(i for i, _ in ran) == [f"f{i}" for i in range(6)]  # none dropped
    assert q.dropped["overflow"] >= 1  # kept past the bound, counted
    assert stats.explain_paced_total >= 5
    # 20 ms of work, then about 60 ms of rest at a share of 0.25
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(ran)]
    assert min(gaps) >= 0.06


def test_an_idle_loop_never_holds_the_worker_back() -> None:
    busy = threading.Event()  # not busy
    ran: list[tuple[str, float]] = []
    w, q, lock, stats = _worker(busy, share=0.05, ran=ran, cost_s=0.01)
    with lock:
        for i in range(4):
            q.submit(Grouped({f"f{i}": {"s"}}), _never, 0.0, 60.0, 0.0)
    w.start()
    try:
        with lock:
            w.kick(0.0)
        _wait_for(lambda: len(ran) == 4)
    finally:
        w.stop()
    assert stats.explain_paced_total == 0
    # a share of 0.05 would have rested 190 ms after each
    assert ran[-1][1] - ran[0][1] < 0.15


def test_the_stage_is_busy_only_while_batches_take_most_of_the_wall_clock() -> None:
    from causalwatch.app.pipeline import AllStage, Sinks, build_cores
    from causalwatch.settings import load_settings

    settings = load_settings(kafka={"topics": [{"name": "m", "format": "json"}]})
    stage = AllStage(settings, build_cores(settings, None), Sinks(), PipelineStats())
    assert stage.worker._is_busy == stage.is_busy and stage.worker._busy_share == 0.2
    now = time.perf_counter()
    t = now - 0.5
    for _ in range(20):  # live: 1 ms batches every 200 ms of waiting for data
        stage._note_handled(t, t + 0.001)
        t += 0.2
    assert not stage.is_busy()
    t = now - 0.3
    for _ in range(20):  # a backlog: 10 ms batches, 2 ms polls between them
        stage._note_handled(t, t + 0.01)
        t += 0.012
    assert stage.is_busy()
    stage._handled_at = now - 2.0  # no batch for 2 s: not busy any more
    assert not stage.is_busy()


def test_one_long_batch_makes_the_stage_busy() -> None:
    """A large backlog comes in a few 1-2 s batches (``backlog_polls`` full polls each): the
    first of them already counts, and a poll between them does not hide them. Short live
    batches after a long wait stay idle."""
    from causalwatch.app.pipeline import AllStage, Sinks, build_cores
    from causalwatch.settings import load_settings

    settings = load_settings(kafka={"topics": [{"name": "m", "format": "json"}]})
    stage = AllStage(settings, build_cores(settings, None), Sinks(), PipelineStats())
    now = time.perf_counter()
    stage._note_handled(now - 1.5, now)  # the very first batch, 1.5 s
    assert stage.is_busy()
    live = AllStage(settings, build_cores(settings, None), Sinks(), PipelineStats())
    live._note_handled(now - 0.001, now)  # a first batch of 1 ms
    assert not live.is_busy()
    t = now - 0.9
    for _ in range(4):  # 1 ms batches, 300 ms apart (the last ends now)
        live._note_handled(t, t + 0.001)
        t += 0.3
    assert not live.is_busy()
    later = AllStage(settings, build_cores(settings, None), Sinks(), PipelineStats())
    t = now - 3.0
    for _ in range(4):  # the same live batches, then a 1.15 s batch after a 0.95 s wait
        later._note_handled(t, t + 0.001)
        t += 0.3
    later._note_handled(now - 1.15, now)
    assert later.is_busy()
