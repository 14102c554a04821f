"""End-to-end benchmark: Kafka in, explanations in Redis out, through ``causalwatch run all``.

Two figures, on the embedded broker and Redis (real servers on this machine):

1. **Throughput**: a backlog of ``--nodes`` services x 3 metrics x ``--points`` steps in native
   JSON (one message per step: a batch of samples, as exporters send them) is consumed,
   decoded, scored, explained and published; samples per second from the first record to
   the last.
2. **Time to explanation**: with the service caught up on two days of the demo shop, steps are
   produced live (``--live-step-s`` wall seconds apart) and a fault starts; the figure is the
   wall time from producing the first faulty step to the explanation of the paged target in
   Redis (pub/sub), and how many steps that took.

Run: ``python bench/e2e.py`` (about a minute). Prints a table.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any

import redis

from causalwatch.app.demo import produce_scenario
from causalwatch.app.service import serve
from causalwatch.settings import load_settings
from causalwatch.tooling.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from causalwatch.tooling.simulate import microservice_demo_scenario, simulate
from ingest.kafka_sink import KafkaSink, ensure_topics


def _settings(broker: Any, redis_srv: Any, tag: str, graph: str | None) -> Any:
    return load_settings(
        kafka={
            "bootstrap_servers": broker.bootstrap,
            "group_id": f"bench-{tag}",
            "topics": [
                {"name": f"m-{tag}", "format": "json"},
                {"name": f"t-{tag}", "format": "influx"},
                {"name": f"p-{tag}", "format": "prometheus"},
            ],
            "session_timeout_ms": 6_000,
            "heartbeat_interval_ms": 1_000,
            "max_poll_interval_ms": 120_000,
            "poll_timeout_ms": 50,
        },
        redis={"url": redis_srv.url, "prefix": f"{tag}:", "checkpoint_interval_s": 5.0},
        publish={"metrics_port": free_port()},
        api={"port": free_port()},
        explainer={"graph_file": graph} if graph else {},
        log_level="WARNING",
    )


def throughput(broker: Any, redis_srv: Any, nodes: int, points: int, tmp: str) -> dict[str, Any]:
    sc = simulate(
        nodes,
        n_points=points,
        step_s=60.0,
        start_ts=time.time() - points * 60.0,
        seed=1,
        metrics=("latency_ms", "error_rate", "requests_per_s"),
        fault_start=points - 60,
        fault_len=40,
    )
    graph = f"{tmp}/graph-{nodes}.csv"
    with open(graph, "w") as fh:
        fh.write(sc.graph.to_csv())
    settings = _settings(broker, redis_srv, f"tp{nodes}", graph)
    topics = tuple(t.name for t in settings.kafka.topics)
    ensure_topics(broker.bootstrap, {t: 1 for t in topics})
    sink = KafkaSink(settings.kafka)
    items = []
    n_samples = 0
    for k in range(points):
        t = float(sc.ts[k])
        body = [
            {"name": m, "labels": {"service": n}, "timestamp": t, "value": float(sc.values[i, k])}
            for i, (n, m) in enumerate(zip(sc.series_nodes, sc.series_metrics, strict=True))
        ]
        n_samples += len(body)
        items.append((None, json.dumps(body).encode(), []))
    sink.write_batch(topics[0], items)
    sink.close()
    stop = threading.Event()
    svc = serve(settings, "all", stop=stop, block=False)
    t_first: float | None = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and svc.stats.samples < n_samples:
        if t_first is None and sum(svc.stats.records_by_topic.values()) > 0:
            t_first = time.monotonic()  # the first poll returned (group joined)
        if svc.error is not None:
            raise svc.error
        time.sleep(0.01)
    if svc.stats.samples < n_samples:
        raise RuntimeError(f"only {svc.stats.samples} of {n_samples} samples in 600 s")
    t_end = time.monotonic()
    n_expl = svc.stats.explanations_total
    stop.set()
    for close in svc.closers:
        close()
    assert t_first is not None
    secs = t_end - t_first
    return {
        "series": len(sc.series_keys),
        "samples": n_samples,
        "seconds": secs,
        "samples_per_s": n_samples / secs,
        "explanations": n_expl,
    }


def time_to_explanation(
    broker: Any, redis_srv: Any, live_step_s: float, tmp: str
) -> dict[str, Any]:
    n_points = 2 * 1440
    fault_start = n_points - 40
    sc = microservice_demo_scenario(
        7,
        n_points=n_points,
        step_s=60.0,
        # the last step is now: live steps replay the last 40 minutes faster than real
        # time, so no timestamp is in the future (ingest refuses those)
        start_ts=float(int(time.time() // 60) * 60 - (n_points - 1) * 60),
        fault_start=fault_start,
        fault_len=40,
    )
    graph = f"{tmp}/shop.csv"
    with open(graph, "w") as fh:
        fh.write(sc.graph.to_csv())
    settings = _settings(broker, redis_srv, "lat", graph)
    topics = tuple(t.name for t in settings.kafka.topics)
    ensure_topics(broker.bootstrap, {t: 1 for t in topics})
    sink = KafkaSink(settings.kafka)
    produce_scenario(sink, sc, 0, fault_start, topics=topics, bad_records=False)  # type: ignore[arg-type]
    stop = threading.Event()
    svc = serve(settings, "all", stop=stop, block=False)
    client = redis.Redis.from_url(redis_srv.url)
    pubsub = client.pubsub()
    pubsub.subscribe(f"{settings.redis.prefix}explanations")
    backlog = 3 * 10 * fault_start  # close enough: wait for the backlog to drain
    while svc.stats.samples < backlog * 0.99 and svc.error is None:
        time.sleep(0.1)
    time.sleep(1.0)
    while pubsub.get_message(timeout=0.01) is not None:  # explanations of old noise
        pass
    downstream = sc.graph.descendants(sc.roots[0])
    t0 = time.monotonic()
    got: dict[str, Any] | None = None
    steps = 0
    for k in range(fault_start, n_points):
        produce_scenario(sink, sc, k, k + 1, topics=topics, bad_records=False)  # type: ignore[arg-type]
        steps += 1
        t_step = time.monotonic()
        while time.monotonic() - t_step < live_step_s:
            msg = pubsub.get_message(timeout=0.05)
            if msg is None or msg["type"] != "message":
                continue
            body = json.loads(msg["data"])
            # the fault's explanation: a series of the fault's metric on a node downstream
            # of the root (other alerts in the same minutes are noise, not the answer)
            if (
                body["target"]["node"] in downstream
                and body["target"]["series"].startswith(sc.fault_metric)
                and body["detected_at"] >= sc.fault_start_ts
            ):
                got = body
                break
        if got is not None:
            break
    elapsed = time.monotonic() - t0
    stop.set()
    for close in svc.closers:
        close()
    sink.close()
    return {
        "seconds": elapsed,
        "steps": steps,
        "target": got["target"]["series"] if got else None,
        "top_root_cause": got["root_causes"][0]["node"] if got and got["root_causes"] else None,
        "truth": sc.roots[0],
    }


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--points", type=int, default=1440)
    ap.add_argument("--live-step-s", type=float, default=1.0)
    args = ap.parse_args()
    with (
        EmbeddedBroker() as broker,
        EmbeddedRedis() as redis_srv,
        tempfile.TemporaryDirectory() as tmp,
    ):
        print("throughput (run all: decode, detect, explain, publish)")
        head = ("nodes", "series", "samples", "seconds", "samples/s", "explanations")
        print("{:>6} {:>7} {:>9} {:>8} {:>10} {:>12}".format(*head))
        for n in args.nodes:
            r = throughput(broker, redis_srv, n, args.points, tmp)
            print(
                f"{n:>6} {r['series']:>7} {r['samples']:>9} {r['seconds']:>8.2f} "
                f"{r['samples_per_s']:>10.0f} {r['explanations']:>12}"
            )
        r = time_to_explanation(broker, redis_srv, args.live_step_s, tmp)
        print(
            "\ntime to explanation (demo shop, live steps every "
            f"{args.live_step_s:g} s after two days of history)"
        )
        print(
            f"  first faulty step -> explanation in Redis: {r['seconds']:.2f} s "
            f"({r['steps']} steps); target {r['target']}; top root cause "
            f"{r['top_root_cause']} (truth {r['truth']})"
        )


if __name__ == "__main__":
    main()
