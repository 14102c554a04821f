"""The loop of a live role: poll, handle, checkpoint, commit, riding through outages.

At-least-once: a batch's outputs are published before its offsets can be committed, and
offsets are committed only after the checkpoint that covers them is durable.

Outages (:mod:`causalwatch.app.ridethrough`): a retryable ``BackendError`` from the source,
the checkpoint store or a sink (wrapped by the service) is retried with capped, jittered
backoff while the loop does not poll, so consumption pauses and resumes by itself; the
unreachable backend is recorded for the ``causalwatch_backend_*`` gauges and ``/readyz``.
When ``stop`` is set during such a wait the loop leaves *without* its final checkpoint: the
batch in hand changed the state but its outputs are not all out, and a restart reprocesses
it from the last checkpoint.

Lost checkpoint: a partition that no checkpoint covers but that has a committed offset in
Kafka means the checkpoint was lost (Redis restarted without persistence). The loop says so
(an error log, ``causalwatch_checkpoint_lost_total``, a ``/readyz`` reason while it
rebuilds), rewinds that partition by ``rebuild_records`` records before the committed
offset and re-learns them with every sink muted (nothing published twice), then goes on
publishing from the committed offset.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Protocol

from causalwatch.app.heap import release_free_heap
from causalwatch.app.pipeline.pacing import SourcePacing
from causalwatch.app.pipeline.stages import Sinks, Stage
from causalwatch.app.ridethrough import BackendHealth, Retry, Stopping
from causalwatch.errors import BackendError
from causalwatch.models import RawRecord
from causalwatch.store.checkpoint import CheckpointStore

log = logging.getLogger(__name__)

Offsets = dict[tuple[str, int], int]
TP = tuple[str, int]


# --------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------
class Source(Protocol):
    def next_batch(self, max_records: int) -> list[RawRecord]: ...
    def commit(self, next_offsets: Mapping[tuple[str, int], int]) -> None: ...
    def lag(self, *, fresh: bool = True) -> dict[tuple[str, int], int]: ...
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
    retry: Retry | None = None,
    rebuild_records: int = 0,
    backlog_polls: int = 1,
    pace_horizon_points: int = 0,
) -> None:
    """Poll, handle, checkpoint and commit until ``stop`` is set.

    ``make_source(resume, on_revoke)`` builds the consumer. ``resume(partitions)`` returns
    the next offsets stored for newly assigned partitions; ``on_revoke(partitions)`` runs
    before a rebalance takes partitions away. With ``stage.partitions`` set, state is
    checkpointed and handed over per partition; otherwise one checkpoint holds it all.
    ``retry`` repeats calls while a backend is unreachable (default: one of its own);
    ``rebuild_records`` is how far a partition whose checkpoint was lost is rewound.
    ``backlog_polls``: while polls come back full (a backlog), up to this many are handled
    as one batch (one checkpoint of the whole state only; see :func:`_more_backlog`).
    ``pace_horizon_points``: pace a backlog by data time, this many explainer steps of
    horizon (:mod:`~causalwatch.app.pipeline.pacing`; stages with ``paced`` and one
    checkpoint only); 0: off. Only what the pacer admitted is committed.
    """
    retry = retry or Retry(BackendHealth(stage.stats), stop)
    health = retry.health
    offsets: Offsets = {}
    rebuild: dict[TP, int] = {}  # partition -> committed offset where publishing resumes
    parts = stage.partitions
    try:
        if checkpoints is not None and parts is None:
            cp = retry.call("redis", checkpoints.load)
            if cp is not None and cp.meta.get("stage") == stage.name:
                stage.restore(cp)
                offsets = dict(cp.offsets)
                # a rebuild the last process did not finish: still nothing to publish there
                rebuild.update({(str(t), int(p)): int(o) for t, p, o in cp.meta.get("rebuild", [])})
                if rebuild:
                    health.rebuilding = "finishing a state rebuild after a lost checkpoint"
                log.info(
                    "resumed from checkpoint",
                    extra={
                        "stage": stage.name,
                        "series": len(stage.cores.index),
                        "partitions": len(offsets),
                    },
                )
            del cp  # the loaded arrays (and index JSON) must not live as long as the loop
    except Stopping:
        return

    def resume(partitions: list[tuple[str, int]]) -> Mapping[tuple[str, int], int]:
        if parts is not None:
            got: dict[tuple[str, int], int] = parts.load(partitions)
            offsets.update(got)
            return got
        return {tp: offsets[tp] for tp in partitions if tp in offsets}

    def on_revoke(partitions: list[tuple[str, int]]) -> None:
        if pacing is not None:
            pacing.drop(partitions)  # held records are not committed: the new owner reads them
        if parts is None:
            return
        parts.save(partitions, offsets)
        parts.drop(partitions)
        for tp in partitions:
            offsets.pop(tp, None)
            rebuild.pop(tp, None)
            checked.discard(tp)

    pacing: SourcePacing | None = None
    try:
        source = retry.call("kafka", make_source, resume, on_revoke)
    except Stopping:
        return
    if pace_horizon_points > 0 and stage.paced and parts is None:
        pacing = SourcePacing(source, stage.stats, partial(_horizon_s, stage, pace_horizon_points))
    checked: set[TP] = set()  # partitions already checked for a lost checkpoint
    last_cp = time.monotonic()
    next_lag = last_cp + checkpoint_interval_s
    dirty = False
    attempt = 0
    try:
        while not stop.is_set():
            health.beat()
            try:
                records = source.next_batch(max_records)
            except BackendError as exc:
                if not exc.retryable:
                    raise
                health.down(exc.backend, str(exc))
                attempt += 1
                retry.wait(attempt)
                continue
            if parts is None and backlog_polls > 1 and len(records) >= max_records:
                records = _more_backlog(source, records, max_records, backlog_polls)
            attempt = 0
            now = clock()
            # partitions this process has no position for yet (just assigned): a committed
            # offset there without a checkpoint means the checkpoint was lost
            fresh = _assigned(source, records) - checked - offsets.keys()
            if fresh:
                checked.update(fresh)
                records = _check_lost(
                    stage, source, records, fresh, rebuild, retry, rebuild_records
                )
            gate = pacing
            if pacing is not None and rebuild:
                # a rebuild mutes some records: no record may wait across it
                records, gate = pacing.release_all() + records, None
            if records or (gate is not None and gate.holding):
                _handle(stage, records, now, rebuild, health, gate)
                if gate is not None:
                    _advance(offsets, gate.pop_admitted())
                    gate.after_batch()
                else:
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
                _checkpoint(stage, source, checkpoints, offsets, now, retry, rebuild)
                last_cp, dirty = time.monotonic(), False
                next_lag = last_cp + checkpoint_interval_s
            elif time.monotonic() >= next_lag:  # idle or stalled: the lag must not freeze
                _measure_lag(stage, source, now, health)
                next_lag = time.monotonic() + checkpoint_interval_s
                if offsets and parts is None and _checkpoint_gone(stage, checkpoints, retry):
                    dirty = True  # written again from memory at the next round
        if dirty:
            _checkpoint(stage, source, checkpoints, offsets, clock(), retry, rebuild)
    except Stopping:
        log.warning(
            "stopped while a backend was unreachable; the last batch is not checkpointed",
            extra={"stage": stage.name},
        )
    finally:
        with contextlib.suppress(BackendError):
            source.close()


#: bytes of record values at most in one batch merged from several polls
BACKLOG_BATCH_BYTES = 64 * 2**20


def _more_backlog(
    source: Source, records: list[RawRecord], max_records: int, polls: int
) -> list[RawRecord]:
    """A full poll means a backlog: poll again into the same batch until it holds
    ``polls * max_records`` records, a poll comes back empty, or the values pass
    :data:`BACKLOG_BATCH_BYTES`.

    Why: both clients hand out one partition's buffered records before the next, so a poll
    of small messages holds the series of one partition, each many times, and the
    detector's cost per batch grows with the repeats of a series (one vectorised pass per
    repeat); a batch spanning the partitions costs up to 3x less per sample. Only where
    one checkpoint holds the whole state: with per-partition handover a rebalance inside
    the next poll could revoke a partition whose records are still in hand. An error of a
    further poll ends the batch (its records are already read; the next poll reports it).
    """
    size = sum(len(r.value) for r in records)
    limit = polls * max_records
    while len(records) < limit and size < BACKLOG_BATCH_BYTES:
        try:
            more = source.next_batch(min(max_records, limit - len(records)))
        except BackendError:
            break
        if not more:
            break
        records = records + more
        size += sum(len(r.value) for r in more)
    return records


def _checkpoint_gone(stage: Stage, checkpoints: CheckpointStore | None, retry: Retry) -> bool:
    """While idle: has the checkpoint vanished from Redis (restarted without persistence)?
    This process still holds the state, so it only has to write it again, loudly."""
    exists = getattr(checkpoints, "exists", None)
    if exists is None or retry.call("redis", exists):
        return False
    stage.stats.checkpoint_lost_total += 1
    log.error(
        "checkpoint lost: the checkpoint key is gone from Redis (restarted without "
        "persistence?); writing it again from this process's state",
        extra={"stage": stage.name},
    )
    return True


def _assigned(source: Source, records: list[RawRecord]) -> set[TP]:
    """The partitions the source holds now (or, for sources that do not say, those read)."""
    assignment = getattr(source, "assignment", None)
    got = {(r.topic, r.partition) for r in records}
    if assignment is None:
        return got
    try:
        return got | set(assignment())
    except BackendError:
        return got


def _check_lost(
    stage: Stage,
    source: Source,
    records: list[RawRecord],
    fresh: set[TP],
    rebuild: dict[TP, int],
    retry: Retry,
    rebuild_records: int,
) -> list[RawRecord]:
    """Partitions read for the first time without a checkpoint: if Kafka holds a committed
    offset for them, the checkpoint was lost; rewind them and drop their records of this
    poll (they are read again from the rewound position)."""
    committed_of = getattr(source, "committed", None)
    seek = getattr(source, "seek", None)
    if committed_of is None or seek is None:
        return records
    committed: dict[TP, int | None] = retry.call("kafka", committed_of, sorted(fresh))
    lost = {tp: c for tp, c in committed.items() if c is not None and c > 0}
    if not lost:
        return records
    starts = {tp: max(0, c - rebuild_records) for tp, c in lost.items()}
    seek(starts)
    rebuild.update(lost)
    stage.stats.checkpoint_lost_total += 1
    retry.health.rebuilding = (
        f"checkpoint lost (Redis without persistence?): rebuilding {len(lost)} partition(s) "
        f"from up to {rebuild_records} records before the committed offsets"
    )
    log.error(
        "checkpoint lost: Kafka has committed offsets but Redis has no checkpoint; "
        "rebuilding state from the history before the committed offsets without publishing",
        extra={
            "stage": stage.name,
            "committed": {f"{t}:{p}": o for (t, p), o in sorted(lost.items())},
            "rewound_to": {f"{t}:{p}": o for (t, p), o in sorted(starts.items())},
        },
    )
    return [r for r in records if (r.topic, r.partition) not in lost]


@contextlib.contextmanager
def _muted(stage: Stage) -> Iterator[None]:
    """Every sink off: records are learned, nothing is published or dead-lettered."""
    sinks = stage.sinks
    stage.sinks, stage.muted = Sinks(), True
    try:
        yield
    finally:
        stage.sinks, stage.muted = sinks, False


def _horizon_s(stage: Stage, points: int) -> float:
    """The pacing horizon in seconds: ``points`` of the explainer's step (0 until it is
    inferred, which paces the first batches in strict data-time order)."""
    exp = stage.cores.explainer
    return points * exp.step_s if exp is not None else 0.0


def _advance(offsets: Offsets, admitted: Mapping[TP, int]) -> None:
    for key, nxt in admitted.items():
        if offsets.get(key, -1) < nxt:
            offsets[key] = nxt


def _handle(
    stage: Stage,
    records: list[RawRecord],
    now: float,
    rebuild: dict[TP, int],
    health: BackendHealth,
    gate: SourcePacing | None = None,
) -> None:
    if not rebuild:
        stage.handle(records, now, gate=gate)
        return
    old = [r for r in records if r.offset < rebuild.get((r.topic, r.partition), -1)]
    if old:
        with _muted(stage):
            stage.handle(old, now)
    new = [r for r in records if r.offset >= rebuild.get((r.topic, r.partition), -1)]
    for r in new:
        rebuild.pop((r.topic, r.partition), None)
    if new:
        stage.handle(new, now)
    if not rebuild and health.rebuilding:
        log.warning("state rebuilt after a lost checkpoint", extra={"stage": stage.name})
        health.rebuilding = None


def _measure_lag(
    stage: Stage, source: Source, now: float, health: BackendHealth, *, fresh: bool = True
) -> None:
    """Refresh the lag gauge; when the broker does not answer, keep the last values and
    let ``lag_last_success_ts`` (exported) show how stale they are. The lag is also how an
    idle loop notices the broker is gone (polls do not fail, they return nothing), so the
    idle loop asks the broker (``fresh``); after a checkpoint's commit the partitions'
    ends from the last fetches are used where known (asking the broker waited behind the
    fetches in flight: 1.9 s of one checkpoint in a backlog, BENCHMARKS.md)."""
    try:
        stage.stats.lag = source.lag(fresh=fresh)
    except BackendError as exc:
        log.info("consumer lag unavailable", extra={"stage": stage.name, "error": str(exc)})
        if exc.retryable:
            health.down("kafka", str(exc))
        return
    health.up("kafka")
    stage.stats.lag_last_success_ts = now


def _checkpoint(
    stage: Stage,
    source: Source,
    checkpoints: CheckpointStore | None,
    offsets: Offsets,
    now: float,
    retry: Retry,
    rebuild: Mapping[TP, int],
) -> None:
    t0 = time.perf_counter()
    parts = stage.partitions
    if parts is not None:
        retry.call("redis", parts.save, sorted(parts.owned), offsets)
    elif checkpoints is not None:
        # Views of the detector's arrays and the explainer's history, not copies: this
        # thread is the only one that writes them (batches, eviction, hooks) and it saves
        # before the next batch, so they cannot change under the save. The rest of the
        # explainer's state is copied (the worker thread writes it).
        with stage.cores.lock:
            cp = stage.snapshot(views=True)
        cp.offsets = dict(offsets)
        if rebuild:
            cp.meta["rebuild"] = [[t, p, o] for (t, p), o in sorted(rebuild.items())]
        retry.call("redis", checkpoints.save, cp)
        del cp  # the views must not outlive the save
    try:
        source.commit(offsets)
    except BackendError as exc:
        # The checkpoint is durable; a failed commit only delays lag dashboards (the next
        # checkpoint commits again, and a restart resumes from the checkpoint).
        log.info("offset commit failed", extra={"stage": stage.name, "error": str(exc)})
        if exc.retryable:
            retry.health.down("kafka", str(exc))
    else:
        # the commit just reached the broker: the ends the last fetches brought will do
        _measure_lag(stage, source, now, retry.health, fresh=False)
    stage.stats.checkpoint_last_success_ts = now
    release_free_heap()  # what the batches since the last checkpoint freed (heap.py)
    stage.timers.observe("checkpoint", time.perf_counter() - t0)
