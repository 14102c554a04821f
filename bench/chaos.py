"""Fault injection, the long form of tests/faults: real processes, real faults, the same checks.

Every fault runs against its own ``causalwatch run all`` subprocess, a tansu broker behind a
tansu proxy, a redis-server and a webhook receiver (tests/faults/harness.py), on the demo
shop's stream (30 series, JSON + Influx + prometheus-kafka-adapter records, three bad
records per chunk):

1. ``kill -9`` at random moments, ``--kills`` times (50), the service started again after
   each kill (as a supervisor would) while the stream goes on;
2. the broker cut for ``--outage-s`` (30 s) through the proxy while a 3,000-step backlog is
   worked through, dead letters still to be written;
3. Redis killed for ``--outage-s`` with persistence (append-only file, fsync always), the
   stream going on meanwhile;
4. Redis restarted without persistence (checkpoint lost): detection and rebuild;
5. the webhook receiver down for ``--receiver-down-s`` (600 s) while explanations are made
   (``publish.webhook_backoff_cap_s`` 30 s, so deliveries resume within 30 s).

Each prints: samples in state vs produced, explanation ids repeated, deliveries (and
repeats), dead letters (and repeats) vs bad records, committed offsets vs the true end of
every topic, restarts by hand, and seconds to ``/readyz`` 200 after the backend's return.

Run: ``python bench/chaos.py`` (about 20 minutes), ``--quick`` (5 kills, 10 s outages, a
30 s receiver outage: about 4 minutes).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def _run(
    name: str,
    fault: Callable[[Broker, Redis, Receiver, Workload, ServiceProcess], dict[str, Any]],
    *,
    persistent: bool = True,
    n_points: int = 500,
    chunk: int = 50,
    publish: dict[str, Any] | None = None,
) -> dict[str, Any]:
    broker, redis, receiver = Broker(), Redis(persistent=persistent), Receiver()
    broker.start()
    redis.start()
    receiver.start()
    folder = Path(tempfile.mkdtemp(prefix=f"chaos-{name}-"))
    uid = uuid.uuid4().hex[:8]
    workload = Workload(broker.bootstrap, uid, folder, n_points=n_points, chunk=chunk)
    overrides: dict[str, Any] = {}
    if publish:
        overrides["publish"] = publish
    svc = ServiceProcess(settings_for(broker, redis, uid, workload, receiver, **overrides), folder)
    t0 = time.monotonic()
    try:
        extra = fault(broker, redis, receiver, workload, svc)
        while not workload.done:
            workload.produce()
        harness.wait_caught_up(svc, redis, workload, receiver, timeout_s=300)
        alive = svc.alive
        out = harness.outcome(svc, redis, workload, receiver)
        rc = svc.stop()
        row: dict[str, Any] = {"fault": name, **out.as_dict(), **extra}
        row.update(
            alive_at_end=alive,
            exit_code=rc,
            starts=svc.starts,
            seconds=round(time.monotonic() - t0, 1),
        )
        try:
            harness.check(out, webhooks=name != "redis-lost")
            row["checks"] = "pass"
        except AssertionError as exc:
            row["checks"] = f"FAIL {str(exc)[:300]}"
        return row
    finally:
        if svc.alive:
            svc.stop()
        workload.close()
        receiver.stop()
        redis.stop()
        broker.stop()


def kills(n: int, seed: int) -> Callable[..., dict[str, Any]]:
    def fault(
        broker: Broker, redis: Redis, receiver: Receiver, wl: Workload, svc: ServiceProcess
    ) -> dict[str, Any]:
        rng = random.Random(seed)
        moments = []
        for _ in range(n):
            svc.start()
            wl.produce()
            moment = rng.uniform(0.0, 6.0)  # anywhere from start-up to mid-stream
            time.sleep(moment)
            moments.append(moment)
            svc.kill_9()
        svc.start()
        return {"kills": n, "kill_moment_s_mean": round(sum(moments) / max(1, n), 2)}

    return fault


def broker_cut(outage_s: float) -> Callable[..., dict[str, Any]]:
    def fault(
        broker: Broker, redis: Redis, receiver: Receiver, wl: Workload, svc: ServiceProcess
    ) -> dict[str, Any]:
        svc.start()
        wl.produce(100)
        harness.wait_caught_up(svc, redis, wl, receiver)
        while not wl.done:
            wl.produce()
        first = (wl.topics[0], 0)
        wait_until(
            lambda: harness.checkpoint_of(redis, svc.settings).offsets[first] > 400,
            60,
            "backlog being worked through",
            every_s=0.02,
        )
        dlq_at_cut = len(harness.read_to_end(broker.bootstrap, f"{wl.topics[0]}.dlq"))
        back = harness.broker_cut(svc, broker, outage_s)
        return {
            "outage_s": outage_s,
            "dlq_at_cut": dlq_at_cut,
            "bad_produced": wl.bad,
            "ready_after_return_s": round(back, 2),
        }

    return fault


def redis_outage(outage_s: float) -> Callable[..., dict[str, Any]]:
    def fault(
        broker: Broker, redis: Redis, receiver: Receiver, wl: Workload, svc: ServiceProcess
    ) -> dict[str, Any]:
        svc.start()
        wl.produce(200)
        wait_until(lambda: svc.readyz()[0] == 200, 60, "ready")
        back = harness.redis_outage(svc, redis, outage_s, lambda: wl.produce(200))
        return {"outage_s": outage_s, "ready_after_return_s": round(back, 2)}

    return fault


def redis_lost(outage_s: float) -> Callable[..., dict[str, Any]]:
    def fault(
        broker: Broker, redis: Redis, receiver: Receiver, wl: Workload, svc: ServiceProcess
    ) -> dict[str, Any]:
        svc.start()
        wl.produce(300)
        harness.wait_caught_up(svc, redis, wl, receiver)
        redis.kill()
        time.sleep(outage_s)
        redis.start()  # empty
        took = wait_until(
            lambda: (svc.metric("causalwatch_checkpoint_lost_total") or 0) >= 1, 60, "loud"
        )
        return {"outage_s": outage_s, "lost_detected_after_s": round(took, 2)}

    return fault


def receiver_down(down_s: float) -> Callable[..., dict[str, Any]]:
    def fault(
        broker: Broker, redis: Redis, receiver: Receiver, wl: Workload, svc: ServiceProcess
    ) -> dict[str, Any]:
        svc.start()
        wl.produce(300)
        wait_until(lambda: svc.readyz()[0] == 200, 60, "ready")
        receiver.stop()
        t0 = time.monotonic()
        while not wl.done:
            wl.produce()
        wait_until(lambda: (svc.metric("causalwatch_webhook_outbox_size") or 0) > 0, 120, "waiting")
        waiting = svc.metric("causalwatch_webhook_outbox_size")
        time.sleep(max(0.0, down_s - (time.monotonic() - t0)))
        receiver.start()
        t1 = time.monotonic()
        prefix = svc.settings["redis"]["prefix"]
        wait_until(
            lambda: int(redis.client().hlen(f"{prefix}webhooks:outbox")) == 0, 120, "drained"
        )
        return {
            "down_s": down_s,
            "waiting_in_outbox": waiting,
            "drained_after_return_s": round(time.monotonic() - t1, 1),
        }

    return fault


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 kills, 10 s outages, 30 s receiver")
    ap.add_argument("--kills", type=int, default=None)
    ap.add_argument("--outage-s", type=float, default=None)
    ap.add_argument("--receiver-down-s", type=float, default=None)
    ap.add_argument(
        "--only", default=None, help="comma-separated: kills,broker,redis,lost,receiver"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n_kills = args.kills or (5 if args.quick else 50)
    outage = args.outage_s or (10.0 if args.quick else 30.0)
    down = args.receiver_down_s or (30.0 if args.quick else 600.0)
    only = (
        set(args.only.split(",")) if args.only else {"kills", "broker", "redis", "lost", "receiver"}
    )
    rows = []
    if "kills" in only:
        rows.append(
            _run("kill-9", kills(n_kills, args.seed), n_points=max(500, 20 * n_kills), chunk=20)
        )
    if "broker" in only:
        rows.append(_run("broker-cut", broker_cut(outage), n_points=3000, chunk=100))
    if "redis" in only:
        rows.append(_run("redis-outage", redis_outage(outage)))
    if "lost" in only:
        rows.append(_run("redis-lost", redis_lost(outage), persistent=False))
    if "receiver" in only:
        rows.append(
            _run("receiver-down", receiver_down(down), publish={"webhook_backoff_cap_s": 30.0})
        )
    for row in rows:
        print(json.dumps(row), flush=True)
    print()
    print(
        "| fault | samples in state / produced | explanations (ids repeated) | deliveries "
        "(repeated) | dead letters / bad (repeated) | committed = end | restarts by hand "
        "| checks |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['fault']} | {r['samples_in_state']:,} / {r['samples_expected']:,} "
            f"| {r['explanations']} ({r['explanation_ids_repeated']}) "
            f"| {r['deliveries']} ({r['deliveries_repeated']}) "
            f"| {r['dlq']} / {r['dlq_expected']} ({r['dlq_repeated']}) "
            f"| {'yes' if r['committed'] == r['ends'] else 'NO'} | {r['restarts_by_hand']} "
            f"| {r['checks']} |"
        )


if __name__ == "__main__":
    main()
