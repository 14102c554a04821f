"""Pure decode throughput: samples/s of :func:`ingest.decode.decode_batch` per format.

Workloads (seeded, realistic shapes; all samples valid unless noted):

- ``json-array``: native JSON, arrays of ``--per-message`` samples with 3 labels;
- ``json-object``: native JSON, one sample per message;
- ``prometheus``: prometheus-kafka-adapter JSON, one sample per message (as it writes),
  RFC 3339 timestamps and string values;
- ``influx``: Telegraf line protocol, ``--per-message`` / 5 lines of 5 fields each, ns
  timestamps, 2 tags;
- ``json-array-10pct-bad``: like ``json-array`` with 10 % NaN samples (dead-letter path).

Labels come from a fixed pool (about 2,400 JSON series, 750 Influx series), as in a real
fleet where the same series come back every scrape. Each workload is decoded ``--repeat``
times in polls of ``--poll`` records; ``samples/s`` is the best pass (series-key memo warm,
least disturbed by the other processes on the machine), ``cold`` the first pass (memo
empty); both per CPU-second of this process (``time.process_time``), so other work on a
shared machine inflates them less than wall time; ``wall`` is the best pass in wall time.
Samples/s counts every sample decoded, kept or dead-lettered. One core, no Kafka.

Run: ``python bench/ingest_decode.py`` (about 20 s) or ``--quick``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable

from causalwatch.models import RawRecord
from ingest import IngestLimits, decode_batch
from ingest.decode.keys import _key_cache

NOW = 1_700_000_000.0


def _labels(rng: random.Random) -> dict[str, str]:
    return {
        "service": f"svc-{rng.randrange(40)}",
        "instance": f"10.0.0.{rng.randrange(10)}:8080",
        "region": rng.choice(["eu-west-1", "us-east-1"]),
    }


def json_array(rng: random.Random, per: int, bad: float = 0.0) -> bytes:
    return json.dumps(
        [
            {
                "name": rng.choice(["http_latency_seconds", "http_requests_total", "cpu_usage"]),
                "labels": _labels(rng),
                "timestamp": NOW - rng.random() * 60,
                "value": float("nan") if rng.random() < bad else rng.random() * 100,
            }
            for _ in range(per)
        ]
    ).encode()


def json_object(rng: random.Random, _per: int) -> bytes:
    return json_array(rng, 1)[1:-1]


def prometheus(rng: random.Random, _per: int) -> bytes:
    name = rng.choice(["up", "node_cpu_seconds_total", "http_requests_total"])
    labels = {"__name__": name, "instance": f"node-{rng.randrange(50)}:9100", "job": "node"}
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - rng.randrange(60)))
    return json.dumps(
        {"timestamp": ts, "value": repr(rng.random() * 1000), "name": name, "labels": labels}
    ).encode()


def influx(rng: random.Random, per: int) -> bytes:
    lines = []
    for _ in range(max(1, per // 5)):
        m = rng.choice(["cpu", "mem", "disk", "net", "system"])
        fields = ",".join(
            f"f{k}={rng.random() * 100:.3f}" if k % 2 else f"f{k}={rng.randrange(10**6)}i"
            for k in range(5)
        )
        lines.append(
            f"{m},host=web-{rng.randrange(50)},dc=dc{rng.randrange(3)} {fields} "
            f"{int(NOW - rng.randrange(60)) * 1_000_000_000}"
        )
    return ("\n".join(lines) + "\n").encode()


WORKLOADS: dict[str, tuple[str, Callable[[random.Random, int], bytes]]] = {
    "json-array": ("json", json_array),
    "json-object": ("json", json_object),
    "prometheus": ("prometheus", prometheus),
    "influx": ("influx", influx),
    "json-array-10pct-bad": ("json", lambda rng, per: json_array(rng, per, bad=0.1)),
}


def run(name: str, n_samples: int, per: int, poll: int, repeat: int) -> dict[str, float]:
    fmt, make = WORKLOADS[name]
    rng = random.Random(42)
    per_record = 1 if name in ("json-object", "prometheus") else per
    n_records = -(-n_samples // per_record)
    records = [RawRecord("t", 0, i, make(rng, per)) for i in range(n_records)]
    polls = [records[i : i + poll] for i in range(0, len(records), poll)]
    limits = IngestLimits()
    _key_cache.clear()  # the first pass starts cold
    times, walls = [], []
    samples = errors = 0
    for _ in range(repeat):
        t0, w0 = time.process_time(), time.perf_counter()
        samples = errors = 0
        for p in polls:
            batch, errs = decode_batch(p, {"t": fmt}, limits, NOW)
            samples += len(batch)
            errors += len(errs)
        times.append(time.process_time() - t0)
        walls.append(time.perf_counter() - w0)
    best, cold = min(times), times[0]
    n_bytes = sum(len(r.value) for r in records)
    return {
        "records": len(records),
        "samples": samples,
        "errors": errors,
        "seconds": best,
        "samples_per_s": (samples + errors) / best,
        "cold_samples_per_s": (samples + errors) / cold,
        "wall_samples_per_s": (samples + errors) / min(walls),
        "records_per_s": len(records) / best,
        "mb_per_s": n_bytes / best / 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--per-message", type=int, default=100)
    ap.add_argument("--poll", type=int, default=500, help="records per decode_batch call")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.samples, args.repeat = 30_000, 1
    print(
        f"{'workload':<22} {'records':>8} {'samples':>8} {'dlq':>6} "
        f"{'samples/s':>11} {'cold':>9} {'wall':>9} {'records/s':>10} {'MB/s':>6}"
    )
    for name in WORKLOADS:
        r = run(name, args.samples, args.per_message, args.poll, args.repeat)
        print(
            f"{name:<22} {r['records']:>8.0f} {r['samples']:>8.0f} {r['errors']:>6.0f} "
            f"{r['samples_per_s']:>11,.0f} {r['cold_samples_per_s']:>9,.0f} "
            f"{r['wall_samples_per_s']:>9,.0f} "
            f"{r['records_per_s']:>10,.0f} {r['mb_per_s']:>6.1f}"
        )


if __name__ == "__main__":
    main()
