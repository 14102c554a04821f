"""Tune CPython's cyclic garbage collector for a process that runs one role.

Why: a role allocates several short-lived container objects per Kafka record (the client's
record, our :class:`~causalwatch.models.RawRecord`, decode scratch), and a backlog batch
keeps tens of thousands of them alive while it is processed. With CPython's default
thresholds (700, 10, 10) a generation-0 collection runs every 700 allocations, finds most
of the batch still alive and promotes it; promoted objects then trigger full collections,
each of which walks every tracked object in the process (the ~100,000 objects of the
imported libraries included). Measured on ``bench/throughput.py --workloads prometheus
--samples-a 600000`` (one sample per message, kafka-python): 27 full collections took
4.3 s of a 12 s run (BENCHMARKS.md, "Throughput").

What this does, once, after the role is built and before it consumes:

- ``gc.freeze()``: everything allocated at start-up (modules, classes, functions, the
  settings, the restored state) moves to the permanent generation, which no collection
  walks again;
- generation 0 collects every :data:`GEN0_THRESHOLD` allocations instead of 700, so a
  batch's records are mostly freed by reference counting before a collection sees them;
  older generations keep CPython's ratios (10, 10).

Reference counting still frees every acyclic object at once, so memory is unchanged for
them; only cyclic garbage waits longer (at most one generation-0 interval, then the usual
promotions). Only the process entry (``serve(..., block=True)``) calls this: a role run in
a thread of another program (tests, embedding) leaves that program's collector alone.

Why 5,000 and not more: 50,000 (with the freeze) cut the collector's time from 4.3 s to
about 1.1 s of that run, but the hostile stream's RSS growth (tests/faults/test_hostile.py)
then ranged 21.6-50.2 MB. Measured 2026-12-04, same-run A/B against no tuning (bench above,
kafka-python, 1 % spikes): the freeze alone 0.79 of the raw client's rate against 0.70;
freeze + 5,000 0.81 against 0.66; hostile RSS growth (processed less warm-up) 21.3-34.4 MB
with the freeze alone, 17.2-37.9 MB with 5,000, 20.1-37.9 MB untuned (3 runs each).
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

__all__ = ["GEN0_THRESHOLD", "tune_collector"]

#: allocations between generation-0 collections (CPython's default is 700)
GEN0_THRESHOLD = 5_000


def tune_collector() -> None:
    """Freeze start-up objects and widen generation 0 (see the module docstring)."""
    gc.collect()  # what start-up left as garbage is not frozen with the rest
    gc.freeze()
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, g1, g2)
    log.info(
        "garbage collector tuned",
        extra={"frozen_objects": gc.get_freeze_count(), "thresholds": gc.get_threshold()},
    )
