"""How long each backend takes to step over one unreadable batch (corrupt gzip payload).

Produces one CRC-valid gzip batch of ``--records`` records whose payload is not gzip (the
same producer as tests/integration/test_kafka_codecs.py) and 5 good records after it, to a
one-partition topic of the embedded tansu broker; then times each backend's source from
its first poll to the last good record. Every bad offset must come back once as a record
with ``error`` set (the dead letter), and the good records after it must all be read.

Run: ``python bench/kafka_undecodable.py`` (about 20 s) or ``--records 100``.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.integration


from causalwatch.tooling.embedded import EmbeddedBroker
from ingest import ensure_topics
from ingest.kafka_backend import make_source
from tests.integration.test_kafka_codecs import (
    produce_raw,
    producing_corrupt_gzip,
    sample,
    settings_for,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000)
    args = ap.parse_args()
    n = args.records
    print(
        f"{'backend':<13} {'bad offsets':>11} {'dead letters':>12} {'good':>5} {'s':>7} "
        f"{'offsets/s':>9}"
    )
    with EmbeddedBroker() as broker:
        for backend in ("kafka-python", "confluent"):
            uid = uuid.uuid4().hex[:6]
            topic = f"bad-{uid}"
            ensure_topics(broker.bootstrap, {topic: 1})
            with producing_corrupt_gzip():
                produce_raw(
                    broker,
                    topic,
                    0,
                    [sample(i) for i in range(n)],
                    compression_type="gzip",
                    batch_size=16 * 1_048_576,
                )
            produce_raw(broker, topic, 0, [sample(i) for i in range(5)])
            source = make_source(settings_for(broker, uid, [topic], backend))
            got: list = []
            t0 = time.perf_counter()
            while sum(r.error is None for r in got) < 5 and time.perf_counter() - t0 < 600:
                got += source.next_batch(1_000)
            dt = time.perf_counter() - t0
            source.close()
            dead = sorted(r.offset for r in got if r.error is not None)
            assert dead == list(range(n)), (backend, len(dead))
            good = sum(r.error is None for r in got)
            print(f"{backend:<13} {n:>11} {len(dead):>12} {good:>5} {dt:>7.2f} {n / dt:>9,.0f}")


if __name__ == "__main__":
    main()
