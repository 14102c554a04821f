"""CPU of the ``all`` stage with the explainer on, in this process: the hot path alone and
with the explainer worker's ranking and publishing, at each alert rate; and a digest of
everything it published, to check that two checkouts explain the same.

No Kafka, no Redis: ``bench/throughput.py``'s workloads (fixed seeds, and a fixed clock so
that every run makes the same records) go through :class:`AllStage` in polls of ``--poll``
records, with the incident-page trail on, the worker inline (every due request ranked after
each poll, as replay does) and sinks that serialise what Redis would be sent (explanation
JSON, snapshot JSON, page kinds). Two figures per workload and alert rate, CPU seconds
(best of ``--repeats``):

- **hot path**: the worker's ranking switched off (alerts grouped and queued, nothing
  ranked): what the consuming loop itself pays per alert;
- **with the worker**: ranking, snapshots and publishing included, inline: the work the
  worker thread takes from the process (in ``run all`` it runs paced beside the loop,
  ``explainer.worker_busy_share``, so a backlog leaves part of it for later).

The digest is a hash of every published explanation, snapshot and page kind in order:
equal digests from two checkouts mean the same explanations. Compare checkouts with
``PYTHONPATH=/path/to/other python bench/worker_cost.py``.

Run: ``python bench/worker_cost.py`` (about 2 minutes; ``--quick`` for 30 s).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import throughput as T  # bench/throughput.py: the same workloads

import causalwatch
from causalwatch.app.pipeline.stages import AllStage, Sinks
from causalwatch.app.pipeline.steps import build_cores
from causalwatch.models import Explanation, RawRecord
from causalwatch.publish.metrics import PipelineStats
from causalwatch.schemas import explanation_json
from causalwatch.settings import load_settings

#: the workloads' last sample time (fixed, so every run builds the same records)
END_S = 1_800_000_000.0


class _Digest:
    """Sinks that serialise what they are given, as the Redis adapters would, into a hash."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()
        self.n = 0

    def _add(self, text: str) -> None:
        self.h.update(text.encode())
        self.n += 1

    def publish(self, explanations: Sequence[Explanation]) -> int:
        for e in explanations:
            body = explanation_json(e)
            self._add(body if isinstance(body, str) else json.dumps(body, sort_keys=True))
        return len(explanations)

    def write_batch(self, snapshots: Sequence[Mapping[str, Any]]) -> int:
        for s in snapshots:
            self._add(json.dumps(s, separators=(",", ":"), allow_nan=False, sort_keys=True))
        return len(snapshots)

    def enqueue(
        self,
        explanations: Sequence[Explanation],
        now: float | None = None,
        *,
        pages: Mapping[str, tuple[str, float]] | None = None,
    ) -> int:
        self._add(json.dumps(sorted((pages or {}).items())))
        return len(explanations)


def run(kind: str, records: list[RawRecord], poll: int, rank: bool) -> tuple[float, Any]:
    settings = load_settings(
        kafka={"topics": [{"name": "t", "format": T.FORMATS[kind]}]}, log_level="WARNING"
    )
    sink = _Digest()
    stats = PipelineStats()
    sinks = Sinks(results=sink, snapshots=sink, outbox=sink)
    stage = AllStage(settings, build_cores(settings, trail=True), sinks, stats)
    if not rank:
        stage.worker._explain = lambda touched: []  # grouped and queued, never ranked
    c0 = time.process_time()
    for j in range(0, len(records), poll):
        stage.handle(records[j : j + poll], END_S + 60.0)
    return time.process_time() - c0, (stats, sink)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workloads", default="prometheus,json-array,influx")
    ap.add_argument("--spikes", default="0.001,0.01,0.05")
    ap.add_argument("--samples-a", type=int, default=100_000, help="one sample per message")
    ap.add_argument("--samples", type=int, default=200_000, help="batched workloads")
    ap.add_argument(
        "--poll",
        type=int,
        default=0,
        help="records per poll (default: 5,000 one-sample messages, 50 batched ones)",
    )
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.quick:
        args.samples_a, args.samples, args.repeats = 20_000, 50_000, 1
    print(f"# bench/worker_cost.py, causalwatch from {causalwatch.__file__}")
    print(
        "| workload | spikes | samples | alerts | hot path CPU-s | with the worker CPU-s | "
        "samples per CPU-s (with the worker) | explanations | digest |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for kind in args.workloads.split(","):
        one = kind == "prometheus"
        n_series = 200 if one else 1_000
        n = args.samples_a if one else args.samples
        poll = args.poll or (5_000 if one else 50)
        for p in (float(s) for s in args.spikes.split(",")):
            keyed = T.make_workload(kind, n, n_series, p, seed=int(p * 1e4) + 1, end_s=END_S)
            records = [RawRecord("t", i % T.PARTITIONS, i, m) for i, (_, m) in enumerate(keyed)]
            hot = min(run(kind, records, poll, rank=False)[0] for _ in range(args.repeats))
            full = [run(kind, records, poll, rank=True) for _ in range(args.repeats)]
            cpu = min(c for c, _ in full)
            stats, sink = full[0][1]
            print(
                f"| {kind} | {p * 100:g} % | {stats.samples:,} | {stats.alerts_total} | "
                f"{hot:.2f} | {cpu:.2f} | {stats.samples / cpu:,.0f} | "
                f"{stats.explanations_total} | {sink.h.hexdigest()[:12]} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
