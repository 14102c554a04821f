"""Retry with capped, jittered backoff, and the backend record behind the gauges/readyz."""

from __future__ import annotations

import random
import threading

import pytest

from causalwatch.app.ridethrough import BackendHealth, Retry, Retrying, Stopping
from causalwatch.errors import BackendError
from causalwatch.publish.metrics import PipelineStats, build_registry


def test_retries_until_the_backend_answers_and_records_the_outage() -> None:
    stats = PipelineStats()
    health = BackendHealth(stats)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise BackendError("redis down", backend="redis")
        return "ok"

    seen_down = []
    retry = Retry(health, threading.Event(), base_s=0.001, cap_s=0.002)
    orig = health.down

    def down(b: str, e: str) -> None:
        orig(b, e)
        seen_down.append(dict(stats.backend_down_since))

    health.down = down  # type: ignore[method-assign]
    assert retry.call("redis", flaky) == "ok"
    assert len(calls) == 4 and "redis" in seen_down[0]
    assert stats.backend_down_since == {} and health.reasons() == ["pipeline starting"]


def test_a_non_retryable_error_raises_at_once() -> None:
    retry = Retry(BackendHealth(PipelineStats()), threading.Event())

    def bad() -> None:
        raise BackendError("NOAUTH", backend="redis", retryable=False)

    with pytest.raises(BackendError):
        retry.call("redis", bad)


def test_stop_during_the_wait_raises_stopping() -> None:
    stop = threading.Event()
    stop.set()

    def down() -> None:
        raise BackendError("gone", backend="kafka")

    with pytest.raises(Stopping):
        Retrying(
            type("T", (), {"f": staticmethod(down)})(),
            Retry(BackendHealth(PipelineStats()), stop),
            "kafka",
        ).f()


def test_delays_are_capped_with_full_jitter() -> None:
    retry = Retry(
        BackendHealth(PipelineStats()),
        threading.Event(),
        base_s=0.05,
        cap_s=1.0,
        rng=random.Random(1),
    )
    delays = [retry.delay_s(a) for a in range(1, 40)]
    assert max(delays) <= 1.0 and min(delays) >= 0.0
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered, not in step


def test_gauges_say_which_backend_is_down_and_since_when() -> None:
    stats = PipelineStats()
    health = BackendHealth(stats, clock=lambda: 1000.0)
    health.beat()
    health.down("redis", "connection refused")
    stats.backend_down_since["redis"] = 0.0  # down since the epoch: a long outage
    text = "\n".join(
        f"{s.name}{s.labels} {s.value}"
        for fam in build_registry(stats).registry.collect()
        for s in fam.samples
        if s.name.startswith("causalwatch_backend")
    )
    assert "causalwatch_backend_up{'backend': 'redis'} 0.0" in text
    assert "causalwatch_backend_up{'backend': 'kafka'} 1.0" in text
    assert health.reasons()[0].startswith("redis unreachable for 1000 s: connection refused")
