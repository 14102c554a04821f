"""The run loop keeps the consumer-lag gauge fresh even when no records arrive, and when the
broker cannot answer it keeps the last values and the time they were measured, so the lag
shows as stale instead of silently frozen (issue 11: the lag gauge froze during a cut)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from prometheus_client import generate_latest

from causalwatch.app.pipeline import IngestStage, Sinks, build_cores, run_stage
from causalwatch.errors import BackendError
from causalwatch.models import RawRecord
from causalwatch.publish.metrics import PipelineStats, build_registry
from causalwatch.settings import load_settings


class IdleSource:
    """No records ever; the broker answers lag queries until ``down`` is set."""

    def __init__(self, stop: threading.Event, answers_before_down: int, calls_total: int):
        self.stop = stop
        self.calls = 0
        self.answers_before_down = answers_before_down
        self.calls_total = calls_total
        self.polls = 0
        self.fresh: list[bool] = []

    def next_batch(self, max_records: int) -> list[RawRecord]:
        self.polls += 1
        if self.polls > 10_000:  # a loop that never measures the lag ends (and fails) too
            self.stop.set()
        return []

    def commit(self, next_offsets: Mapping[tuple[str, int], int]) -> None:
        raise AssertionError("nothing was read, nothing to commit")

    def lag(self, *, fresh: bool = True) -> dict[tuple[str, int], int]:
        self.fresh.append(fresh)
        self.calls += 1
        if self.calls >= self.calls_total:
            self.stop.set()
        if self.calls > self.answers_before_down:
            raise BackendError("kafka lag failed: broker away", backend="kafka")
        return {("m", 0): 40 + self.calls}

    def close(self) -> None:
        pass


def test_lag_is_measured_while_idle_and_goes_stale_when_the_broker_is_away() -> None:
    settings = load_settings()
    stats = PipelineStats()
    stage = IngestStage(settings, build_cores(settings, None, explainer=False), Sinks(), stats)
    stop = threading.Event()
    source = IdleSource(stop, answers_before_down=2, calls_total=5)
    clock = iter(float(t) for t in range(1_000, 100_000))
    seen: list[tuple[Any, float]] = []

    def now() -> float:
        t = next(clock)
        seen.append((dict(stats.lag), stats.lag_last_success_ts))
        return t

    run_stage(
        stage, lambda resume, revoke: source, None, stop, checkpoint_interval_s=0.0, clock=now
    )
    assert source.calls == 5 and source.polls >= 5
    assert source.fresh == [True] * 5  # an idle loop asks the broker: how it sees it gone
    # Two answers, then three failures: the last answer's values stay, with their time.
    assert stats.lag == {("m", 0): 42}
    measured = stats.lag_last_success_ts
    assert measured > 0 and [ts for _, ts in seen].count(measured) >= 3
    text = generate_latest(build_registry(stats, version="t").registry).decode()
    assert f"causalwatch_ingest_consumer_lag_last_success_timestamp_seconds {measured}" in text


class OneBatchSource(IdleSource):
    """One batch of records, then nothing; commits succeed."""

    def __init__(self, stop: threading.Event, topic: str) -> None:
        super().__init__(stop, answers_before_down=100, calls_total=3)
        self.topic = topic
        self.commits = 0

    def next_batch(self, max_records: int) -> list[RawRecord]:
        self.polls += 1
        if self.polls == 1:
            value = b'{"name": "m", "timestamp": 1700000000, "value": 1.0}'
            return [RawRecord(self.topic, 0, 0, value)]
        return super().next_batch(max_records)

    def commit(self, next_offsets: Mapping[tuple[str, int], int]) -> None:
        self.commits += 1


def test_after_a_checkpoint_the_lag_comes_from_the_fetched_ends() -> None:
    """After a checkpoint's commit the loop takes the partitions' ends from the last fetches
    (``fresh=False``): asking the broker waited behind the fetches in flight."""
    settings = load_settings()
    stats = PipelineStats()
    stage = IngestStage(settings, build_cores(settings, None, explainer=False), Sinks(), stats)
    stop = threading.Event()
    source = OneBatchSource(stop, settings.kafka.topics[0].name)
    clock = iter(float(t) for t in range(1_000, 100_000))
    run_stage(
        stage,
        lambda resume, revoke: source,
        None,
        stop,
        checkpoint_interval_s=0.0,
        clock=lambda: next(clock),
    )
    assert source.commits == 1
    assert source.fresh[0] is False  # the checkpoint's
    assert source.fresh[1:] == [True, True]  # then idle
