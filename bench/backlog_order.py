"""The demo shop's data with its fault as a backlog on a 4-partition topic, read by the real
service (``serve(settings, "all")``: the same build as ``causalwatch run all``) three ways:

* ``off``: 4 partitions, pacing off (``kafka.pace_horizon_points=0``): the clients hand
  over one partition's fetched chunk after another;
* ``on``: 4 partitions, pacing at the default horizon;
* ``ordered``: the same records on a 1-partition topic in time order (minute by minute,
  every service), the reference a time-ordered replay gives.

Data: :func:`~causalwatch.tooling.simulate.microservice_demo_scenario` (10 services, 30
series, one-minute steps, ``--points`` of them, a 45-minute latency shift at catalog-db an
hour before the end), one JSON array per service and minute, keyed by service (the
client's partitioner spreads the ten keys over the partitions), everything produced
before the service starts. Printed per mode: the explanations whose detection time is in
the fault, how many rank the true root cause first, and the largest data-time skew across
partitions seen at the pipeline (after each batch handed to the detector: the latest
sample time of the partition furthest ahead minus that of the one furthest behind, a
partition not read yet counting as the data's start). Seeds with ``--seeds``.

Run: ``nice -n 5 python bench/backlog_order.py`` (about a minute a mode and seed here).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from causalwatch.app.service import serve
from causalwatch.models import Explanation
from causalwatch.schemas import explanation_from_json
from causalwatch.settings import load_settings
from causalwatch.tooling.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from causalwatch.tooling.simulate import Scenario, microservice_demo_scenario
from ingest.kafka_sink import KafkaSink, ensure_topics

Item = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


def scenario_of(seed: int, points: int) -> Scenario:
    start = float(int(time.time() // 60) * 60 - points * 60)
    return microservice_demo_scenario(
        seed, n_points=points, step_s=60.0, start_ts=start, fault_start=points - 60, fault_len=45
    )


def records_of(sc: Scenario) -> tuple[list[Item], list[int]]:
    """One JSON array per (minute, service), minute by minute, keyed by service, and the
    partition of each: service ``i`` (sorted by name) on partition ``i % 4``, so every
    partition holds data (the client's partitioner left one of four empty here)."""
    nodes = sorted(set(sc.series_nodes))
    by_node = {n: [i for i, m in enumerate(sc.series_nodes) if m == n] for n in nodes}
    items: list[Item] = []
    parts: list[int] = []
    for k in range(len(sc.ts)):
        t = float(sc.ts[k])
        for node in nodes:
            samples = [
                {
                    "name": sc.series_metrics[i],
                    "labels": {"service": node},
                    "timestamp": t,
                    "value": float(sc.values[i, k]),
                }
                for i in by_node[node]
            ]
            items.append((node.encode(), json.dumps(samples).encode(), []))
            parts.append(nodes.index(node) % 4)
    return items, parts


class SkewProbe:
    """Follows each partition's data time at the pipeline: wraps the stage's kick of the
    explainer (bench only), which sees every batch the detector handled."""

    def __init__(self, start_ts: float, part_of: dict[str, int]) -> None:
        self.start_ts = start_ts
        self.part_of = part_of  # service -> partition
        self.done: dict[int, float] = {}
        self.history: list[dict[int, float]] = []
        self.batches = 0

    def max_skew_s(self) -> float:
        """Over the partitions that held data: a partition not read yet is at the start."""
        parts = list(self.done)
        skew = 0.0
        for done in self.history:
            cur = [done.get(p, self.start_ts) for p in parts]
            skew = max(skew, max(cur) - min(cur))
        return skew

    def attach(self, svc: Any) -> None:
        stage = svc.pipeline.stage
        inner = stage._kick

        def kick(batch: Any) -> Any:
            if len(batch):
                parts = np.fromiter(
                    (self.part_of[_SERVICE.search(k).group(1)] for k in batch.series_keys),  # type: ignore[union-attr]
                    dtype=np.int64,
                )
                for p in np.unique(parts).tolist():
                    t = float(batch.ts[parts == p].max())
                    self.done[p] = max(self.done.get(p, -np.inf), t)
                self.history.append(dict(self.done))
                self.batches += 1
            return inner(batch)

        stage._kick = kick


_SERVICE = re.compile(r'service="([^"]+)"')


def run_mode(
    mode: str,
    sc: Scenario,
    data: tuple[list[Item], list[int]],
    broker: Any,
    redis_url: str,
    tmp: Path,
    tag: str,
    backend: str = "kafka-python",
) -> dict[str, Any]:
    items, parts = data
    topic = f"shop-{tag}-{mode}"
    n_parts = 1 if mode == "ordered" else 4
    graph_file = tmp / "graph.csv"
    graph_file.write_text(sc.graph.to_csv())
    kafka = {
        "backend": backend,
        "bootstrap_servers": broker.bootstrap,
        "group_id": f"backlog-{tag}-{mode}",
        "topics": [{"name": topic, "format": "json"}],
        "session_timeout_ms": 6_000,
        "heartbeat_interval_ms": 1_000,
        "max_poll_interval_ms": 60_000,
    }
    if mode == "off":
        kafka["pace_horizon_points"] = 0
    settings = load_settings(
        kafka=kafka,
        redis={"url": redis_url, "checkpoint_interval_s": 2.0, "prefix": f"bo:{tag}:{mode}:"},
        publish={"metrics_port": free_port()},
        api={"port": free_port()},
        explainer={"graph_file": graph_file},
    )
    ensure_topics(broker.bootstrap, {topic: n_parts})
    sink = KafkaSink(settings.kafka)
    sink.write_batch(topic, items, [0] * len(items) if n_parts == 1 else parts)
    sink.close()
    nodes = sorted(set(sc.series_nodes))
    probe = SkewProbe(
        float(sc.ts[0]), {n: 0 if n_parts == 1 else i % 4 for i, n in enumerate(nodes)}
    )
    total = sum(len(json.loads(v)) for _, v, _ in items)
    stop = threading.Event()
    t0 = time.monotonic()
    svc = serve(settings, "all", stop=stop, block=False, on_ready=probe.attach)
    try:
        seen, since = -1, time.monotonic()
        while svc.stats.samples < total and svc.healthy and time.monotonic() - since < 20:
            if svc.stats.samples != seen:
                seen, since = svc.stats.samples, time.monotonic()
            time.sleep(0.2)
        elapsed = time.monotonic() - t0
        # the worker drains its queue (a request can wait for more data: at most 15 s)
        drained = time.monotonic() + 15.0
        while svc.stats.explain_queue_depth > 0 and time.monotonic() < drained:
            time.sleep(0.2)
        time.sleep(2.0)  # the worker publishes what it ranked last
        got: list[Explanation] = svc.results.recent(100_000)
        paced = svc.stats.paced_records_total
        queued = svc.stats.explain_queue_depth
    finally:
        stop.set()
        for close in svc.closers:
            close()
    root = sc.roots[0]
    fault = [
        e for e in got if e.root_causes and sc.fault_start_ts <= e.detected_at <= sc.fault_end_ts
    ]
    first = sum(e.root_causes[0].node == root for e in fault)
    return {
        "mode": mode,
        "samples": svc.stats.samples,
        "of": total,
        "seconds": round(elapsed, 1),
        "fault_explanations": len(fault),
        "root_first": first,
        "max_skew_min": round(probe.max_skew_s() / 60.0, 1),
        "batches": probe.batches,
        "partitions": sorted(probe.done),
        "paced_records": paced,
        "queue_left": queued,
    }


def run_replay(sc: Scenario, data: tuple[list[Item], list[int]], tmp: Path) -> dict[str, Any]:
    """The same samples in time order through ``causalwatch replay`` (one JSONL file)."""
    from causalwatch.app.replay import replay_file

    src, out = tmp / "shop.jsonl", tmp / "explanations.jsonl"
    with src.open("w") as fh:
        for _key, value, _h in data[0]:
            for sample in json.loads(value):
                fh.write(json.dumps(sample) + "\n")
    graph_file = tmp / "graph.csv"
    graph_file.write_text(sc.graph.to_csv())
    t0 = time.monotonic()
    summary = replay_file(
        src,
        settings=load_settings(),
        graph_file=graph_file,
        explanations_out=out,
        show_progress=False,
    )
    got = [explanation_from_json(line) for line in out.read_text().splitlines()]
    fault = [
        e for e in got if e.root_causes and sc.fault_start_ts <= e.detected_at <= sc.fault_end_ts
    ]
    return {
        "mode": "replay",
        "samples": summary.samples,
        "seconds": round(time.monotonic() - t0, 1),
        "fault_explanations": len(fault),
        "root_first": sum(e.root_causes[0].node == sc.roots[0] for e in fault),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[7])
    ap.add_argument("--points", type=int, default=2 * 1440)
    ap.add_argument("--backend", default="kafka-python", choices=["kafka-python", "confluent"])
    ap.add_argument("--modes", nargs="+", default=["off", "on", "ordered", "replay"])
    args = ap.parse_args()
    with (
        EmbeddedBroker() as broker,
        EmbeddedRedis() as redis_srv,
        tempfile.TemporaryDirectory(prefix="backlog-order-") as tmp,
    ):
        for seed in args.seeds:
            sc = scenario_of(seed, args.points)
            data = records_of(sc)
            for mode in args.modes:
                if mode == "replay":
                    print(json.dumps({"seed": seed, **run_replay(sc, data, Path(tmp))}), flush=True)
                    continue
                res = run_mode(
                    mode, sc, data, broker, redis_srv.url, Path(tmp), f"s{seed}", args.backend
                )
                print(json.dumps({"seed": seed, "backend": args.backend, **res}), flush=True)


if __name__ == "__main__":
    main()
