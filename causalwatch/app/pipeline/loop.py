"""The loop of a live role: poll, handle, checkpoint, commit.

At-least-once: a batch's outputs are published before its offsets can be committed, and
offsets are committed only after the checkpoint that covers them is durable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from causalwatch.app.pipeline.stages import Stage
from causalwatch.errors import BackendError
from causalwatch.models import RawRecord
from causalwatch.store.checkpoint import CheckpointStore

log = logging.getLogger(__name__)

Offsets = dict[tuple[str, int], int]


# --------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------
class Source(Protocol):
    def next_batch(self, max_records: int) -> list[RawRecord]: ...
    def commit(self, next_offsets: Mapping[tuple[str, int], int]) -> None: ...
    def lag(self) -> dict[tuple[str, int], int]: ...
    def close(self) -> None: ...


def run_stage(
    stage: Stage,
    make_source: Callable[..., Source],
    checkpoints: CheckpointStore | None,
    stop: threading.Event,
    *,
    checkpoint_interval_s: float = 5.0,
    max_records: int = 5_000,
    clock: Callable[[], float] = time.time,
    on_batch: Callable[[], None] | None = None,
) -> None:
    """Poll, handle, checkpoint and commit until ``stop`` is set.

    ``make_source(resume, on_revoke)`` builds the consumer. ``resume(partitions)`` returns
    the next offsets stored for newly assigned partitions; ``on_revoke(partitions)`` runs
    before a rebalance takes partitions away. With ``stage.partitions`` set, state is
    checkpointed and handed over per partition; otherwise one checkpoint holds it all.
    """
    offsets: Offsets = {}
    parts = stage.partitions
    if checkpoints is not None and parts is None:
        cp = checkpoints.load()
        if cp is not None and cp.meta.get("stage") == stage.name:
            stage.restore(cp)
            offsets = dict(cp.offsets)
            log.info(
                "resumed from checkpoint",
                extra={
                    "stage": stage.name,
                    "series": len(stage.cores.index),
                    "partitions": len(offsets),
                },
            )

    def resume(partitions: list[tuple[str, int]]) -> Mapping[tuple[str, int], int]:
        if parts is not None:
            got: dict[tuple[str, int], int] = parts.load(partitions)
            offsets.update(got)
            return got
        return {tp: offsets[tp] for tp in partitions if tp in offsets}

    def on_revoke(partitions: list[tuple[str, int]]) -> None:
        if parts is None:
            return
        parts.save(partitions, offsets)
        parts.drop(partitions)
        for tp in partitions:
            offsets.pop(tp, None)

    source = make_source(resume, on_revoke)
    last_cp = time.monotonic()
    next_lag = last_cp + checkpoint_interval_s
    dirty = False
    try:
        while not stop.is_set():
            records = source.next_batch(max_records)
            now = clock()
            if records:
                stage.handle(records, now)
                for r in records:
                    key = (r.topic, r.partition)
                    if offsets.get(key, -1) <= r.offset:
                        offsets[key] = r.offset + 1
                dirty = True
                stage.stats.last_batch_ts = now
                if on_batch is not None:
                    on_batch()
            stage.periodic(now)
            if dirty and time.monotonic() - last_cp >= checkpoint_interval_s:
                _checkpoint(stage, source, checkpoints, offsets, now)
                last_cp, dirty = time.monotonic(), False
                next_lag = last_cp + checkpoint_interval_s
            elif time.monotonic() >= next_lag:  # idle or stalled: the lag must not freeze
                _measure_lag(stage, source, now)
                next_lag = time.monotonic() + checkpoint_interval_s
        if dirty:
            _checkpoint(stage, source, checkpoints, offsets, clock())
    finally:
        source.close()


def _measure_lag(stage: Stage, source: Source, now: float) -> None:
    """Refresh the lag gauge; when the broker does not answer, keep the last values and
    let ``lag_last_success_ts`` (exported) show how stale they are."""
    try:
        stage.stats.lag = source.lag()
    except BackendError as exc:
        log.warning("consumer lag unavailable", extra={"stage": stage.name, "error": str(exc)})
        return
    stage.stats.lag_last_success_ts = now


def _checkpoint(
    stage: Stage,
    source: Source,
    checkpoints: CheckpointStore | None,
    offsets: Offsets,
    now: float,
) -> None:
    t0 = time.perf_counter()
    if stage.partitions is not None:
        stage.partitions.save(sorted(stage.partitions.owned), offsets)
    elif checkpoints is not None:
        with stage.cores.lock:
            cp = stage.snapshot()
        cp.offsets = dict(offsets)
        checkpoints.save(cp)
    try:
        source.commit(offsets)
    except BackendError as exc:
        # The checkpoint is durable; a failed commit only delays lag dashboards.
        log.warning("offset commit failed", extra={"stage": stage.name, "error": str(exc)})
    else:
        _measure_lag(stage, source, now)
    stage.stats.checkpoint_last_success_ts = now
    stage.timers.observe("checkpoint", time.perf_counter() - t0)
