"""The loop with pacing (:mod:`causalwatch.app.pipeline.pacing`) against a fake source: held
records are not committed, a revoke drops them (the next owner reads them again), pause and
resume follow what is held, and the setting is validated."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from causalwatch.app.pipeline.loop import run_stage
from causalwatch.app.pipeline.stages import Timers
from causalwatch.errors import ConfigError
from causalwatch.models import RawRecord
from causalwatch.publish.metrics import PipelineStats
from causalwatch.settings import load_settings

A, B = ("m", 0), ("m", 1)


def rec(tp: tuple[str, int], offset: int, t: float) -> RawRecord:
    return RawRecord(tp[0], tp[1], offset, json.dumps({"t": t}).encode())


class Stage:
    name, paced, partitions, muted, sinks = "fake", True, None, False, None

    def __init__(self, stop: threading.Event, until: Callable[[Stage], bool]) -> None:
        self.stats, self.timers = PipelineStats(), Timers()
        self.cores = SimpleNamespace(explainer=SimpleNamespace(step_s=60.0))
        self.handled: list[tuple[int, int]] = []
        self.stop, self.until = stop, until

    def handle(self, records: list[RawRecord], now_s: float, *, gate: Any = None) -> None:
        ts = np.array([json.loads(r.value)["t"] for r in records], dtype=np.float64)
        released, keep = gate.offer(records, ts)
        for r in released + [r for r, k in zip(records, keep, strict=True) if k]:
            self.handled.append((r.partition, r.offset))
        if self.until(self):
            self.stop.set()

    def periodic(self, now_s: float) -> None:
        pass


class Source:
    """Polls from a script; ``revoke_at`` calls the loop's on_revoke before that poll."""

    def __init__(
        self, polls: list[list[RawRecord]], on_revoke: Any, revoke_at: int, stop: threading.Event
    ) -> None:
        self.polls, self.on_revoke, self.revoke_at, self.stop = polls, on_revoke, revoke_at, stop
        self.n = 0
        self.commits: list[dict[tuple[str, int], int]] = []
        self.paused: list[list[tuple[str, int]]] = []
        self.resumed: list[list[tuple[str, int]]] = []
        self.assigned = [A, B]

    def next_batch(self, max_records: int) -> list[RawRecord]:
        if self.n == self.revoke_at:
            self.assigned = [A]
            self.on_revoke([B])
        self.n += 1
        if self.n > 200:  # the script is long over: end the run
            self.stop.set()
        return self.polls.pop(0) if self.polls else []

    def assignment(self) -> list[tuple[str, int]]:
        return list(self.assigned)

    def cached_lag(self) -> dict[tuple[str, int], int]:
        return dict.fromkeys(self.assigned, 10)  # a backlog everywhere

    def lag(self, *, fresh: bool = True) -> dict[tuple[str, int], int]:
        return self.cached_lag()

    def pause(self, tps: list[tuple[str, int]]) -> None:
        self.paused.append(tps)

    def resume(self, tps: list[tuple[str, int]]) -> None:
        self.resumed.append(tps)

    def commit(self, next_offsets: Mapping[tuple[str, int], int]) -> None:
        self.commits.append(dict(next_offsets))

    def close(self) -> None: ...


def run(polls: list[list[RawRecord]], until: Callable[[Stage], bool], revoke_at: int = -1):  # type: ignore[no-untyped-def]
    stop = threading.Event()
    stage = Stage(stop, until)
    box: list[Source] = []

    def make(resume: Any, on_revoke: Any) -> Source:
        box.append(Source(polls, on_revoke, revoke_at, stop))
        return box[0]

    run_stage(stage, make, None, stop, checkpoint_interval_s=0.0, pace_horizon_points=5)  # type: ignore[arg-type]
    return stage, box[0]


def test_held_records_are_not_committed_and_their_partition_is_paused_then_resumed() -> None:
    polls = [[rec(A, 0, 0.0), rec(A, 1, 3600.0)], [rec(B, 0, 0.0)], [rec(B, 1, 3600.0)]]
    stage, src = run(polls, lambda s: len(s.handled) >= 4)
    assert stage.handled == [(0, 0), (1, 0), (0, 1), (1, 1)]
    commits = [c for c in src.commits if c]
    # B not read yet: A waited whole; then A:1 (an hour ahead) waited: never committed early
    assert commits[0] == {A: 1, B: 1}
    assert src.paused[0] == [A] and [A] in src.resumed
    assert src.commits[-1] == {A: 2, B: 2}


def test_a_revoke_drops_the_held_records_uncommitted() -> None:
    polls = [[rec(B, 0, 0.0)], [rec(B, 1, 3600.0)], [rec(A, 0, 0.0)], [rec(A, 1, 60.0)]]
    stage, src = run(polls, lambda s: len(s.handled) >= 3, revoke_at=2)
    # B:1 was held when B was revoked: dropped, never handled here, never committed
    assert (1, 1) not in stage.handled
    assert all(c.get(B, 0) <= 1 for c in src.commits)
    assert stage.stats.paused_partitions == 0


def test_the_setting_is_validated() -> None:
    assert load_settings().kafka.pace_horizon_points == 5
    assert load_settings(kafka={"pace_horizon_points": 0}).kafka.pace_horizon_points == 0
    with pytest.raises(ConfigError):
        load_settings(kafka={"pace_horizon_points": -1})
