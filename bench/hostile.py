"""Hostile records streamed to a real service process: the long form of
tests/faults/test_hostile.py (100,000 records instead of 20,000).

Starts an embedded tansu broker and redis-server, then ``causalwatch run all`` as a
subprocess (tests/faults/harness.py), streams ``--records`` seeded hostile records
(tests/faults/hostile.py: three formats, five codecs, a third good, a third bad, a third
mixed) after a warm-up that touches every valid series once, and prints the outcome as
JSON: records consumed and accounted for, dead letters (topic, counter, expected), samples
(state, counter, expected), RSS at start / after the warm-up / when the last record is
counted in / once every record is processed (the end checkpoint) / peak (MB), seconds and
records/s. Exit code 1 when an invariant or the 50 MB RSS-growth target (processed less
warm-up) fails.

Run: ``nice -n 10 python bench/hostile.py --hostile`` (100,000 records, a few minutes) or
``--records 5000`` for a quick look.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.faults

from causalwatch.tooling.embedded import EmbeddedBroker, EmbeddedRedis
from tests.faults.hostile import run_hostile


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hostile", action="store_true", help="the full 100,000 records")
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    n = 100_000 if args.hostile else args.records
    with EmbeddedBroker() as broker, EmbeddedRedis() as redis, tempfile.TemporaryDirectory() as d:
        o = run_hostile(
            broker.bootstrap,
            redis.url,
            Path(d),
            uuid.uuid4().hex[:8],
            n=n,
            seed=args.seed,
            timeout_s=3_600,
        )
        out = {**o.as_dict(), "rss_growth_mb": round(o.rss_growth_mb, 1)}
        print(json.dumps(out, indent=1))
        if not o.alive:
            print((Path(d) / "service.log").read_text(errors="replace")[-4000:], file=sys.stderr)
    ok = (
        o.alive
        and o.records_consumed == o.records
        and o.records_unaccounted == 0
        and o.records_wrongly_dead == 0
        and o.dead_letters == o.dead_expected == o.deadletter_metric
        and o.dead_letters_repeated == 0
        and o.samples_in_state == o.samples_expected == o.samples_metric
        and o.series_wrong == 0
        and o.rss_growth_mb < 50
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
