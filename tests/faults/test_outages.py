"""Faults against real processes: ``causalwatch run all`` as a subprocess, a tansu broker
behind a tansu proxy, a redis-server, a webhook receiver (tests/faults/harness.py).

Each fault ends with the same checks (:func:`harness.check`): every sample in the state
exactly once, explanation ids unique, one webhook delivery per explanation, dead letters
once each, committed offsets equal to the true end of every topic, and the service never
restarted by hand (after ``kill -9`` the harness starts it again, as a supervisor would;
through the other faults the first process lives on and recovers by itself).
"""

from __future__ import annotations

import random
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import harness
from tests.faults.harness import (
    Broker,
    Receiver,
    Redis,
    ServiceProcess,
    Workload,
    settings_for,
    wait_until,
)

pytestmark = [pytest.mark.faults, pytest.mark.integration]

OUTAGE_S = 30.0


@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker()
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


def _redis(persistent: bool) -> Iterator[Redis]:
    r = Redis(persistent=persistent).start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def redis_aof() -> Iterator[Redis]:
    yield from _redis(True)


@pytest.fixture
def redis_volatile() -> Iterator[Redis]:
    yield from _redis(False)


def _setup(
    broker: Broker, redis: Redis, receiver: Receiver | None, tmp_path: Path, **overrides: object
) -> tuple[Workload, ServiceProcess]:
    uid = uuid.uuid4().hex[:8]
    workload = Workload(broker.bootstrap, uid, tmp_path)
    svc = ServiceProcess(
        settings_for(broker, redis, uid, workload, receiver, **overrides), tmp_path
    )
    return workload, svc


def _finish(
    svc: ServiceProcess, redis: Redis, workload: Workload, receiver: Receiver | None
) -> harness.Outcome:
    while not workload.done:
        workload.produce()
    harness.wait_caught_up(svc, redis, workload, receiver)
    assert svc.alive, svc.tail()
    out = harness.outcome(svc, redis, workload, receiver)
    assert svc.stop() == 0, svc.tail()
    workload.close()
    return out


def _ready(svc: ServiceProcess) -> bool:
    return svc.readyz()[0] == 200


def test_kill_9_at_random_moments(
    broker: Broker, redis_aof: Redis, receiver: Receiver, tmp_path: Path
) -> None:
    workload, svc = _setup(broker, redis_aof, receiver, tmp_path)
    rng = random.Random(11)
    for _ in range(4):
        svc.start()
        workload.produce(120)
        wait_until(lambda: svc.alive and _ready(svc), 60, "ready after a restart")
        time.sleep(rng.uniform(0.0, 2.0))  # the fault: a kill at a random moment
        svc.kill_9()
    svc.start()
    harness.check(_finish(svc, redis_aof, workload, receiver))


@pytest.mark.parametrize("pending_dead_letters", [False, True], ids=["idle", "dlq-pending"])
def test_broker_cut_30s(
    broker: Broker,
    redis_aof: Redis,
    receiver: Receiver,
    tmp_path: Path,
    pending_dead_letters: bool,
) -> None:
    # a long backlog, with bad records every 100 steps: the broker goes while the service
    # works through it, with dead letters still to be written
    uid = uuid.uuid4().hex[:8]
    n_points = 3000 if pending_dead_letters else 500
    workload = Workload(broker.bootstrap, uid, tmp_path, n_points=n_points, chunk=100)
    settings = settings_for(broker, redis_aof, uid, workload, receiver)
    if pending_dead_letters:
        # small polls, one per batch, so that the backlog outlasts the wait below however
        # fast the detector is (with 200 records per poll, or 10 with four polls merged
        # under a backlog, it was all consumed before the cut)
        settings["kafka"]["max_poll_records"] = 10
        settings["kafka"]["backlog_polls"] = 1
    svc = ServiceProcess(settings, tmp_path)
    svc.start()
    workload.produce(100)
    harness.wait_caught_up(svc, redis_aof, workload, receiver)
    if pending_dead_letters:
        first = (workload.topics[0], 0)
        caught_up = harness.checkpoint_of(redis_aof, svc.settings).offsets.get(first, 0)
        while not workload.done:
            workload.produce()
        # cut as soon as a checkpoint shows the backlog begun (a fixed offset, 400, was
        # reached only after the faster loop had written every dead letter)
        wait_until(
            lambda: (
                harness.checkpoint_of(redis_aof, svc.settings).offsets.get(first, 0) > caught_up
            ),
            60,
            "the backlog being worked through",
            every_s=0.02,
        )
    # the service's own count, read at the cut: reading the topic to its end took a second
    # or more, time enough for the loop to write the rest first
    dlq_at_cut = _dead_letters_written(svc)
    harness.broker_cut(svc, broker, OUTAGE_S)
    if pending_dead_letters:
        assert dlq_at_cut < workload.bad, "no dead letter was pending at the cut"
    harness.check(_finish(svc, redis_aof, workload, receiver))


def _dead_letters_written(svc: ServiceProcess) -> int:
    """``causalwatch_ingest_deadletter_total`` over every reason (counted once written)."""
    with urllib.request.urlopen(svc.metrics_url, timeout=2) as resp:
        text = resp.read().decode()
    prefix = "causalwatch_ingest_deadletter_total{"
    return int(
        sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(prefix))
    )


def test_redis_killed_30s_with_persistence(
    broker: Broker, redis_aof: Redis, receiver: Receiver, tmp_path: Path
) -> None:
    workload, svc = _setup(broker, redis_aof, receiver, tmp_path)
    svc.start()
    workload.produce(200)
    wait_until(lambda: _ready(svc), 60, "ready")
    # more records arrive while Redis is away: consumption must pause, not fail
    harness.redis_outage(svc, redis_aof, OUTAGE_S, lambda: workload.produce(200))
    harness.check(_finish(svc, redis_aof, workload, receiver))


def test_redis_restarted_without_persistence_rebuilds_loudly(
    broker: Broker, redis_volatile: Redis, receiver: Receiver, tmp_path: Path
) -> None:
    workload, svc = _setup(broker, redis_volatile, receiver, tmp_path)
    svc.start()
    workload.produce(300)
    harness.wait_caught_up(svc, redis_volatile, workload, receiver)
    before = set(receiver.counts())
    delivered = len(before)
    redis_volatile.kill()
    time.sleep(OUTAGE_S)
    assert svc.alive, svc.tail()
    # A restart during the outage rides it out too, and reports it.
    svc.kill_9()
    svc.start()
    wait_until(lambda: svc.readyz()[0] == 503, 30, "/readyz 503 while Redis is away")
    redis_volatile.start()  # empty: checkpoint, outbox, guards are gone
    wait_until(lambda: (svc.metric("causalwatch_checkpoint_lost_total") or 0) >= 1, 60, "loud")
    assert "checkpoint lost" in svc.tail(20_000)
    out = _finish(svc, redis_volatile, workload, receiver)
    # history re-learned without publishing: the state complete, and nothing the rebuild
    # re-learned delivered again. Without persistence the delivery guards went with Redis,
    # so an explanation published after the last commit before the loss may go out once
    # more (at least once), with the same X-Causalwatch-Delivery key for receivers to drop.
    assert out.samples_in_state == out.samples_expected, out
    repeated = {k for k, n in receiver.counts().items() if n > 1}
    assert repeated <= before, (repeated, out)
    assert out.deliveries >= delivered, out
    assert out.dlq_repeated == 0 and out.dlq == out.dlq_expected, out
    assert out.committed == out.ends == out.checkpoint, out


def test_webhook_receiver_down(
    broker: Broker, redis_aof: Redis, receiver: Receiver, tmp_path: Path
) -> None:
    # 10 minutes in bench/chaos.py; here 20 s against a give-up time of 10 s: give-up
    # counts from the entry's creation, so it must be longer than the outage.
    workload, svc = _setup(
        broker, redis_aof, receiver, tmp_path, publish={"webhook_give_up_s": 3600.0}
    )
    svc.start()
    workload.produce(300)
    wait_until(lambda: _ready(svc), 60, "ready")
    receiver.stop()
    while not workload.done:
        workload.produce()
    wait_until(
        lambda: (svc.metric("causalwatch_webhook_outbox_size") or 0) > 0, 60, "deliveries waiting"
    )
    time.sleep(20)
    receiver.start()
    harness.check(_finish(svc, redis_aof, workload, receiver))
