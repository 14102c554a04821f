"""Pacing a backlog by data time against the real broker, through the real loop
(:func:`run_stage`) and both client backends: a backlog on 4 partitions reaches the stage
in near data-time order, nothing is lost or handled twice, only handled offsets are
committed, an empty partition blocks nothing, and a clean stop resumes exactly after what
was handled (held records are read again, not lost)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from causalwatch.app.pipeline.loop import run_stage
from causalwatch.app.pipeline.stages import Timers
from causalwatch.models import RawRecord
from causalwatch.publish.metrics import PipelineStats
from causalwatch.settings import TopicSettings
from causalwatch.tooling.embedded import EmbeddedBroker
from ingest import ensure_topics
from ingest.kafka_backend import make_sink, make_source
from tests.integration.test_ingest_kafka import kafka_settings

pytestmark = pytest.mark.integration

BACKENDS = ["kafka-python", "confluent"]
STEP_S = 60.0
POINTS = 5  # horizon: 5 steps of one minute
MINUTES = 600  # records per data partition, one a minute
DATA_PARTS = (0, 1, 2, 3)  # partition 4 stays empty
POLL = 100  # records per poll: one poll spans 100 minutes of one partition
T0 = 1_767_225_600.0


class ProbeStage:
    """The parts of a stage the loop uses; ``handle`` reads each record's data time from
    its value and asks the gate, as :class:`AllStage` does after decoding."""

    name = "probe"
    paced = True
    partitions = None
    muted = False
    sinks: Any = None  # a second run finds offsets committed without a checkpoint: the
    # loop rebuilds (muting the sinks) until each partition delivered a record

    def __init__(self) -> None:
        self.stats = PipelineStats()
        self.timers = Timers()
        self.cores = SimpleNamespace(explainer=SimpleNamespace(step_s=STEP_S))
        self.handled: list[tuple[int, int, float]] = []  # partition, offset, data time
        self.skews: list[float] = []
        self.done: dict[int, float] = {}

    def handle(self, records: list[RawRecord], now_s: float, *, gate: Any = None) -> None:
        ts = np.array([json.loads(r.value)["t"] for r in records], dtype=np.float64)
        if gate is not None:
            released, keep = gate.offer(records, ts)
            ts_r = [json.loads(r.value)["t"] for r in released]
            batch = list(zip(released, ts_r, strict=True)) + [
                (r, t) for r, t, k in zip(records, ts.tolist(), keep, strict=True) if k
            ]
        else:
            batch = list(zip(records, ts.tolist(), strict=True))
        for r, t in batch:
            self.handled.append((r.partition, r.offset, t))
            self.done[r.partition] = max(self.done.get(r.partition, -np.inf), t)
        if batch:
            last = T0 + (MINUTES - 1) * STEP_S
            cur = [self.done.get(p, T0 - STEP_S) for p in DATA_PARTS]
            behind = [c for c in cur if c < last]  # partitions that still have data
            if behind:
                self.skews.append(max(cur) - min(behind))

    def periodic(self, now_s: float) -> None:
        pass


class CheckedSource:
    """The real source; every commit is checked against what the stage handled."""

    def __init__(self, inner: Any, stage: ProbeStage, topic: str) -> None:
        self.inner, self.stage, self.topic = inner, stage, topic
        self.commits: list[dict[tuple[str, int], int]] = []

    def commit(self, next_offsets: Mapping[tuple[str, int], int]) -> None:
        handled: dict[int, int] = {}
        for p, off, _t in self.stage.handled:
            handled[p] = max(handled.get(p, -1), off)
        for (_t, p), nxt in next_offsets.items():
            assert nxt <= handled.get(p, -1) + 1, f"committed {nxt} past handled on {p}"
        self.commits.append(dict(next_offsets))
        self.inner.commit(next_offsets)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def produce_backlog(broker: EmbeddedBroker, uid: str, backend: str) -> tuple[str, Any]:
    topic = f"pace-{uid}"
    settings = kafka_settings(broker, uid, [TopicSettings(name=topic, format="json")], backend)
    ensure_topics(broker.bootstrap, {topic: 5})
    sink = make_sink(settings)
    items, parts = [], []
    for k in range(MINUTES):
        for p in DATA_PARTS:
            items.append((None, json.dumps({"t": T0 + k * STEP_S, "p": p}).encode(), []))
            parts.append(p)
    sink.write_batch(topic, items, parts)
    sink.close()
    return topic, settings


def run(
    settings: Any,
    topic: str,
    points: int,
    until: Callable[[ProbeStage], bool],
    timeout_s: float = 60.0,
) -> tuple[ProbeStage, CheckedSource]:
    stage = ProbeStage()
    stop = threading.Event()
    box: list[CheckedSource] = []

    def make(resume: Any, on_revoke: Any) -> CheckedSource:
        src = make_source(
            settings.model_copy(update={"max_poll_records": POLL}),
            resume_offsets=resume,
            topics=[topic],
            on_revoke=on_revoke,
        )
        box.append(CheckedSource(src, stage, topic))
        return box[-1]

    thread = threading.Thread(
        target=run_stage,
        args=(stage, make, None, stop),
        kwargs={"checkpoint_interval_s": 0.2, "max_records": POLL, "pace_horizon_points": points},
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not until(stage) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(30)
    assert not thread.is_alive()
    return stage, box[0]


def _all_read(stage: ProbeStage) -> bool:
    return len(stage.handled) >= MINUTES * len(DATA_PARTS)


def _exactly_once_in_order(handled: Sequence[tuple[int, int, float]]) -> None:
    by_part: dict[int, list[int]] = {}
    for p, off, _t in handled:
        by_part.setdefault(p, []).append(off)
    assert sorted(by_part) == list(DATA_PARTS)
    for offs in by_part.values():
        assert offs == list(range(MINUTES))  # each once, in offset order


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_backlog_on_four_partitions_arrives_in_near_time_order(
    broker: EmbeddedBroker, uid: str, backend: str
) -> None:
    topic, settings = produce_backlog(broker, uid, backend)
    stage, source = run(settings, topic, POINTS, _all_read)
    _exactly_once_in_order(stage.handled)
    # the horizon plus the data time one poll of one partition spans
    bound = POINTS * STEP_S + POLL * STEP_S
    assert stage.skews, "the backlog was held whole and reached the stage in one batch"
    assert max(stage.skews) <= bound, max(stage.skews)
    # the final commit covers every handled record, and the empty partition 4 held nobody
    last = source.commits[-1]
    assert {p: last.get((topic, p)) for p in DATA_PARTS} == dict.fromkeys(DATA_PARTS, MINUTES)
    assert stage.stats.paced_records_total > 0
    assert stage.stats.paused_partitions == 0  # nothing held once all is read


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_pacing_the_same_backlog_runs_far_apart(
    broker: EmbeddedBroker, uid: str, backend: str
) -> None:
    # the test above is meaningful: the clients hand over one partition at a time
    topic, settings = produce_backlog(broker, uid, backend)
    stage, _source = run(settings, topic, 0, _all_read)
    _exactly_once_in_order(stage.handled)
    assert max(stage.skews) > (POINTS + POLL) * STEP_S
    assert stage.stats.paced_records_total == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stop_while_records_are_held_resumes_after_the_handled_ones(
    broker: EmbeddedBroker, uid: str, backend: str
) -> None:
    topic, settings = produce_backlog(broker, uid, backend)
    half = MINUTES * len(DATA_PARTS) // 2
    first, src1 = run(settings, topic, POINTS, lambda s: len(s.handled) >= half)
    assert first.stats.paced_records_total > 0  # records were held when it stopped
    committed = src1.commits[-1]
    second, _src2 = run(
        settings, topic, POINTS, lambda s: len(first.handled) + len(s.handled) >= 2400
    )
    for p in DATA_PARTS:
        mine = [off for q, off, _t in second.handled if q == p]
        start = committed.get((topic, p), 0)
        assert not mine or mine[0] == start  # resumes exactly after the handled records
    # nothing lost and, after a clean stop, nothing handled twice
    _exactly_once_in_order(sorted(first.handled + second.handled))


def test_kafka_python_knows_an_empty_partitions_lag_before_fetching_it(
    broker: EmbeddedBroker, uid: str
) -> None:
    """kafka-python hands over one partition's buffered records before it reads the next
    fetch answers; the source asks the broker for the end of partitions no fetch has
    reported, so the empty partition 4 counts as caught up (lag 0), not as having lag."""
    topic, settings = produce_backlog(broker, uid, "kafka-python")
    src = make_source(
        settings.model_copy(update={"max_poll_records": POLL}), resume_offsets=None, topics=[topic]
    )
    try:
        deadline = time.monotonic() + 30
        first: list[Any] = []
        while time.monotonic() < deadline and not first:
            first = src.next_batch(POLL)  # joins the group, then reads
        assert {r.partition for r in first} < set(DATA_PARTS)  # one partition's backlog
        lag = src.cached_lag()  # right after the first poll, before partition 4's answer
        assert lag.get((topic, 4)) == 0, lag
        assert all(lag.get((topic, p), 1) > 0 for p in DATA_PARTS), lag
    finally:
        src.close()
