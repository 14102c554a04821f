"""Alert -> explanation latency through the real service (``causalwatch run all``).

On the embedded broker and Redis (real servers on this machine): ``--nodes`` services x 2
metrics, one JSON message per step (all series' samples). A clean backlog of
``--history`` steps is consumed first (warm-up and reference windows); then ``--live``
steps are produced at ``--rate`` steps per wall second, with a spike (+20 sigma) in
``--alert-rate`` of the points (1 % by default) so that alerts fire.

The figure: for every explanation published to Redis (pub/sub ``<prefix>explanations``),
the wall time from producing the step that holds its alert (``detected_at``) to its arrival;
p50 and p99 for first explanations of an incident (the target: p99 <= 1 s) and for updates
apart (updates wait for the coalescing interval on purpose). Beside it, the service's own
histogram ``causalwatch_explainer_latency_seconds`` (from the batch that raised the alert
to the explanation in Redis), the queue's drops, and the hot path's throughput.

Run: ``nice -n 10 python bench/explain_latency.py`` (about 3 minutes; ``--quick`` for 40 s).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any

import numpy as np
import redis

from causalwatch.app.service import serve
from causalwatch.publish.metrics import LatencyHistogram
from causalwatch.settings import load_settings
from causalwatch.tooling.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from ingest.kafka_sink import KafkaSink, ensure_topics


def _settings(broker: Any, redis_srv: Any, tag: str) -> Any:
    return load_settings(
        kafka={
            "bootstrap_servers": broker.bootstrap,
            "group_id": f"bench-{tag}",
            "topics": [{"name": f"m-{tag}", "format": "json"}],
            "session_timeout_ms": 6_000,
            "heartbeat_interval_ms": 1_000,
            "max_poll_interval_ms": 120_000,
            "poll_timeout_ms": 20,
        },
        redis={"url": redis_srv.url, "prefix": f"{tag}:", "checkpoint_interval_s": 5.0},
        publish={"metrics_port": free_port()},
        api={"port": free_port()},
        log_level="WARNING",
    )


def _step_body(keys: list[tuple[str, str]], t: float, values: np.ndarray) -> bytes:
    body = [
        {"name": m, "labels": {"service": n}, "timestamp": t, "value": float(v)}
        for (n, m), v in zip(keys, values, strict=True)
    ]
    return json.dumps(body).encode()


def _quantiles(xs: list[float]) -> tuple[float, float, float]:
    if not xs:
        return (float("nan"),) * 3
    a = np.asarray(xs)
    return float(np.median(a)), float(np.quantile(a, 0.99)), float(a.max())


def _hist_quantile(h: LatencyHistogram, q: float) -> float:
    """Upper bucket bound holding quantile ``q`` (what Prometheus' histogram_quantile
    would bracket)."""
    total = sum(h.counts)
    if total == 0:
        return float("nan")
    acc = 0
    for b, n in zip((*h.buckets, float("inf")), h.counts, strict=True):
        acc += n
        if acc >= q * total:
            return b
    return float("inf")


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    keys = [(f"svc{i:03d}", m) for i in range(args.nodes) for m in ("latency_ms", "errors")]
    n_series = len(keys)
    n_steps = args.history + args.live
    step_s = 1.0
    start = float(int(time.time())) - n_steps * step_s - 5
    base = rng.uniform(10, 100, n_series)
    noise = rng.normal(0, 1, (n_steps, n_series)) * base * 0.05 + base
    spikes = np.zeros((n_steps, n_series), dtype=bool)
    spikes[args.history :] = rng.random((args.live, n_series)) < args.alert_rate
    values = np.where(spikes, noise + 20 * base * 0.05, noise)
    with EmbeddedBroker() as broker, EmbeddedRedis() as redis_srv:
        settings = _settings(broker, redis_srv, "lat")
        topic = settings.kafka.topics[0].name
        ensure_topics(broker.bootstrap, {topic: 1})
        sink = KafkaSink(settings.kafka)
        sink.write_batch(
            topic,
            [
                (None, _step_body(keys, start + k * step_s, values[k]), [])
                for k in range(args.history)
            ],
        )
        stop = threading.Event()
        svc = serve(settings, "all", stop=stop, block=False)
        client = redis.Redis.from_url(redis_srv.url)
        pubsub = client.pubsub()
        pubsub.subscribe(f"{settings.redis.prefix}explanations")
        deadline = time.monotonic() + 300
        while svc.stats.samples < args.history * n_series and time.monotonic() < deadline:
            if svc.error is not None:
                raise svc.error
            time.sleep(0.05)
        produced: dict[float, float] = {}  # data ts -> wall time produced
        first: list[float] = []
        update: list[float] = []
        unmatched = 0

        def drain(timeout: float) -> None:
            nonlocal unmatched
            msg = pubsub.get_message(timeout=timeout)
            while msg is not None:
                if msg["type"] == "message":
                    now = time.monotonic()
                    body = json.loads(msg["data"])
                    t_prod = produced.get(float(body["detected_at"]))
                    if t_prod is None:
                        unmatched += 1  # an explanation of the backlog
                    else:
                        (first if body["version"] == 1 else update).append(now - t_prod)
                msg = pubsub.get_message(timeout=0)

        drain(0.5)
        samples0, t_live = svc.stats.samples, time.monotonic()
        period = 1.0 / args.rate
        for k in range(args.history, n_steps):
            t_send = t_live + (k - args.history) * period
            while (left := t_send - time.monotonic()) > 0:
                drain(min(left, 0.02))
            ts = start + k * step_s
            sink.write_batch(topic, [(None, _step_body(keys, ts, values[k]), [])])
            produced[ts] = time.monotonic()
        end = time.monotonic() + 10
        while time.monotonic() < end and svc.stats.explain_queue_depth > 0:
            drain(0.05)
        drain(1.0)
        live_s = time.monotonic() - t_live
        stats = svc.stats
        import httpx

        text = httpx.get(svc.metrics_url).text
        sums = {
            line.split()[0]: float(line.split()[1])
            for line in text.splitlines()
            if line.startswith("causalwatch_explainer_explain_seconds_")
        }
        out = {
            "series": n_series,
            "live_steps": args.live,
            "spikes": int(spikes.sum()),
            "alerts": stats.alerts_total,
            "first": _quantiles(first),
            "n_first": len(first),
            "update": _quantiles(update),
            "n_update": len(update),
            "unmatched": unmatched,
            "hist_first_p50": _hist_quantile(stats.explain_latency["first"], 0.5),
            "hist_first_p99": _hist_quantile(stats.explain_latency["first"], 0.99),
            "dropped": dict(stats.explain_dropped),
            "coalesced": stats.explain_coalesced_total,
            "samples_per_s_live": (stats.samples - samples0) / live_s,
            "rank_s_mean": sums.get("causalwatch_explainer_explain_seconds_sum", 0.0)
            / max(sums.get("causalwatch_explainer_explain_seconds_count", 0.0), 1.0),
            "rank_n": sums.get("causalwatch_explainer_explain_seconds_count", 0.0),
        }
        stop.set()
        for close in svc.closers:
            close()
        sink.close()
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--history", type=int, default=300)
    ap.add_argument("--live", type=int, default=900)
    ap.add_argument("--rate", type=float, default=5.0, help="live steps per wall second")
    ap.add_argument("--alert-rate", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="30 nodes, 150 live steps")
    args = ap.parse_args()
    if args.quick:
        args.nodes, args.history, args.live = 30, 200, 150
    r = run(args)
    print(
        f"explain latency through `run all`: {r['series']} series, {r['live_steps']} live steps "
        f"at {args.rate:g}/s, {args.alert_rate:.1%} of points spiked ({r['spikes']} spikes, "
        f"{r['alerts']} alerts fired)"
    )
    print(f"{'':>8} {'n':>5} {'p50 s':>7} {'p99 s':>7} {'max s':>7}")
    for kind in ("first", "update"):
        p50, p99, mx = r[kind]
        print(f"{kind:>8} {r['n_' + kind]:>5} {p50:>7.3f} {p99:>7.3f} {mx:>7.3f}")
    print(
        f"service histogram (first): p50 <= {r['hist_first_p50']:g} s, "
        f"p99 <= {r['hist_first_p99']:g} s (bucket bounds)"
    )
    print(
        f"worker: {r['rank_n']:.0f} requests ranked, {r['rank_s_mean'] * 1000:.1f} ms each "
        f"(mean wall time, lock held)"
    )
    print(
        f"coalesced alerts {r['coalesced']}, dropped {r['dropped'] or 0}, "
        f"backlog explanations {r['unmatched']}, live samples/s {r['samples_per_s_live']:.0f}"
    )


if __name__ == "__main__":
    main()
