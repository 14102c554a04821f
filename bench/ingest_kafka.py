"""End-to-end ingest throughput: consume from a real broker in a consumer group + decode.

Starts the embedded tansu broker (memory storage) on a free port, produces the workload to
a topic with ``--partitions`` partitions, then runs :class:`ingest.KafkaSource` in a fresh
consumer group with :func:`ingest.decode_batch` on each poll (no detector, no commit per
poll; one commit at the end) until every record is read. Reported rates exclude the group
join (the consumer joins, then seeks back to offset 0 and the clock starts) and the
produce phase.

Workloads (from ``bench/ingest_decode.py``):

- ``json-array``: native JSON arrays of ``--per-message`` samples;
- ``prometheus``: prometheus-kafka-adapter JSON, one sample per message;
- ``influx``: Telegraf line protocol, ``--per-message`` samples per message.

``--backend kafka-python|confluent|both`` picks the client library of the source
(``kafka.backend``); with ``both`` the two run interleaved on the same topic, and each is
preceded by the *raw* client alone (partitions assigned, poll in a loop, no conversion,
no decode), the ceiling our source is measured against.

The broker, producer and consumer share the machine's cores, so this is a floor, not the
consumer's ceiling.

Run: ``python bench/ingest_kafka.py`` (about a minute) or ``--quick``; add
``--backend both`` for the side-by-side.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_decode import NOW, influx, json_array, prometheus

from causalwatch.settings import KafkaSettings, TopicSettings
from causalwatch.tooling.embedded import EmbeddedBroker
from ingest import IngestLimits, decode_batch, ensure_topics, next_offsets
from ingest.kafka_backend import make_sink, make_source

MAKERS = {"json-array": json_array, "prometheus": prometheus, "influx": influx}
FORMATS = {"json-array": "json", "prometheus": "prometheus", "influx": "influx"}


def produce(broker: EmbeddedBroker, workload: str, n_records: int, per: int, partitions: int):
    uid = uuid.uuid4().hex[:8]
    topic = f"bench-{workload}-{uid}"
    settings = KafkaSettings(bootstrap_servers=broker.bootstrap)
    ensure_topics(broker.bootstrap, {topic: partitions})
    rng = random.Random(7)
    values = [MAKERS[workload](rng, per) for _ in range(n_records)]
    sink = make_sink(settings)
    t0 = time.perf_counter()
    for i in range(0, len(values), 2_000):
        sink.write_batch(topic, [(None, v, []) for v in values[i : i + 2_000]])
    produce_s = time.perf_counter() - t0
    sink.close()
    return topic, n_records / produce_s


def raw_rate(broker: EmbeddedBroker, backend: str, topic: str, n_records: int, partitions: int):
    """Records/s of the bare client: assign all partitions, poll until all are read."""
    got = 0
    if backend == "confluent":
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": f"raw-{uuid.uuid4().hex[:6]}",
                "enable.auto.commit": False,
            }
        )
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        t0 = time.perf_counter()
        while got < n_records and time.perf_counter() - t0 < 300:
            got += sum(1 for m in c.consume(5_000, 0.1) if m.error() is None)
        span = time.perf_counter() - t0
        c.close()
    else:
        from kafka import KafkaConsumer
        from kafka.structs import TopicPartition as KTP

        k = KafkaConsumer(bootstrap_servers=[broker.bootstrap], enable_auto_commit=False)
        tps = [KTP(topic, p) for p in range(partitions)]
        k.assign(tps)
        k.seek_to_beginning(*tps)
        t0 = time.perf_counter()
        while got < n_records and time.perf_counter() - t0 < 300:
            got += sum(len(v) for v in k.poll(timeout_ms=100, max_records=5_000).values())
        span = time.perf_counter() - t0
        k.close()
    return got / span


def run(broker: EmbeddedBroker, backend: str, workload: str, topic: str, n_records: int):
    uid = uuid.uuid4().hex[:8]
    settings = KafkaSettings(
        backend=backend,  # type: ignore[arg-type]
        bootstrap_servers=broker.bootstrap,
        group_id=f"bench-{uid}",
        topics=[TopicSettings(name=topic, format=FORMATS[workload])],  # type: ignore[arg-type]
        session_timeout_ms=6_000,
        heartbeat_interval_ms=1_000,
        max_poll_interval_ms=30_000,
        poll_timeout_ms=100,
    )
    source = make_source(settings)
    join_t0 = time.perf_counter()
    while not source.assignment():  # join the group, then rewind: time fetch + decode only
        source.next_batch(1)
    join_s = time.perf_counter() - join_t0
    source.seek({tp: 0 for tp in source.assignment()})
    limits = IngestLimits(max_age_s=1e12, max_future_s=1e12)
    formats = {topic: FORMATS[workload]}
    got = samples = errors = 0
    last = 0.0
    decode_s = 0.0
    start = first = time.perf_counter()
    offsets: dict[tuple[str, int], int] = {}
    seen: set[tuple[int, int]] = set()
    try:
        while len(seen) < n_records and time.perf_counter() - start < 300:
            records = source.next_batch(5_000)
            if not records:
                continue
            t1 = time.perf_counter()
            batch, errs = decode_batch(records, formats, limits, NOW)
            decode_s += time.perf_counter() - t1
            offsets.update(next_offsets(records))
            seen.update((r.partition, r.offset) for r in records)
            got += len(records)
            samples += len(batch)
            errors += len(errs)
            last = time.perf_counter()
        source.commit(offsets)
    finally:
        source.close()
    span = max(last - first, 1e-9)
    return {
        "records": got,
        "samples": samples,
        "errors": errors,
        "join_s": join_s,
        "records_per_s": got / span,
        "samples_per_s": samples / span,
        "decode_share": decode_s / span,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-message", type=int, default=100)
    ap.add_argument("--array-records", type=int, default=2_000)
    ap.add_argument("--single-records", type=int, default=50_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument(
        "--backend", choices=["kafka-python", "confluent", "both"], default="kafka-python"
    )
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.array_records, args.single_records = 300, 5_000
    backends = ["kafka-python", "confluent"] if args.backend == "both" else [args.backend]
    print(
        f"{'workload':<12} {'backend':<12} {'records':>8} {'samples':>8} {'dlq':>5} "
        f"{'join s':>7} {'raw rec/s':>10} {'records/s':>10} {'samples/s':>10} {'decode %':>8} "
        f"{'produce rec/s':>13}"
    )
    with EmbeddedBroker() as broker:
        for workload in MAKERS:
            n = args.single_records if workload == "prometheus" else args.array_records
            topic, produce_rate = produce(broker, workload, n, args.per_message, args.partitions)
            for backend in backends:
                raw = raw_rate(broker, backend, topic, n, args.partitions)
                r = run(broker, backend, workload, topic, n)
                print(
                    f"{workload:<12} {backend:<12} {r['records']:>8} {r['samples']:>8} "
                    f"{r['errors']:>5} {r['join_s']:>7.1f} {raw:>10,.0f} "
                    f"{r['records_per_s']:>10,.0f} {r['samples_per_s']:>10,.0f} "
                    f"{100 * r['decode_share']:>8.0f} {produce_rate:>13,.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
