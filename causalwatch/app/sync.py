"""Hooks that keep a process's cores in step with what other processes share through Redis.

The pipeline builder (:func:`causalwatch.app.pipeline.build_pipeline`) creates these from
the stores it is given and passes them to the stage's constructor; the stage calls each one
between batches with the time (``hook(now_s)``). Each polls at its own interval, so one call
per batch costs a clock comparison, and a failing store is logged and retried, never fatal,
except the lease: losing it must stop the loop.

- :class:`GraphSync`: the given graph cached in Redis (by version) -> the explainer;
- :class:`LearnedGraphPublisher`: the explainer's learned edges -> Redis (``graph show``);
- :class:`FeedbackSync`: mutes and false-positive marks -> the detector
  (policy: :func:`detector.feedback.sensitivity_after_marks`);
- :class:`DeliveryStats`: webhook delivery counters -> the metrics' stats;
- :class:`LeaseKeeper`: renews the explainer lease, raising when another replica took it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from causalwatch.errors import BackendError
from causalwatch.publish.metrics import PipelineStats
from causalwatch.schemas import FalsePositive, Mute
from detector.feedback import sensitivity_after_marks
from explainer.dag import DependencyGraph, Edge, load_graph

if TYPE_CHECKING:
    from causalwatch.app.pipeline.steps import Cores

__all__ = [
    "DeliveryStats",
    "FeedbackSync",
    "GraphSync",
    "LearnedGraphPublisher",
    "LeaseKeeper",
]

log = logging.getLogger(__name__)

LEARNED_EVERY_S = 30.0


class GraphCache(Protocol):
    def get(self) -> DependencyGraph | None: ...
    def put(self, graph: DependencyGraph) -> int: ...
    def version(self) -> int: ...
    def put_learned(self, edges: Sequence[Edge], updated_at: float) -> None: ...


class FeedbackSource(Protocol):
    def active_mutes(self, now: float) -> list[Mute]: ...
    def false_positives_since(self, ts: float) -> list[FalsePositive]: ...


class Deliveries(Protocol):
    def counters(self) -> dict[tuple[str, str], int]: ...
    def outbox_size(self) -> int: ...


class Lease(Protocol):
    ttl_ms: int

    def acquire(self) -> bool: ...
    def renew(self) -> bool: ...
    def release(self) -> None: ...


def _edge_set(graph: DependencyGraph) -> set[tuple[str, str]]:
    return {(e.cause, e.effect) for e in graph.edges if e.provenance == "given"}


class GraphSync:
    """Keeps the explainer's given graph equal to the one cached in Redis (by version)."""

    def __init__(self, cache: GraphCache, cores: Cores, interval_s: float = 2.0) -> None:
        self.cache = cache
        self.cores = cores
        self.interval_s = interval_s
        self.version = -1
        self._next = 0.0

    def start(self, graph_file: Path | None) -> DependencyGraph:
        """The graph to start with: ``graph_file`` replaces the cached given graph when its
        edges differ; otherwise the cached one (or an empty graph)."""
        if graph_file is not None:
            given = load_graph(graph_file)
            current = self.cache.get()
            if current is None or _edge_set(current) != _edge_set(given):
                self.cache.put(given)
        graph = self.cache.get() or DependencyGraph()
        self.version = self.cache.version()
        return graph

    def __call__(self, now: float) -> None:
        if now < self._next:
            return
        self._next = now + self.interval_s
        try:
            version = self.cache.version()
            if version != self.version:
                graph = self.cache.get()
                if graph is not None and self.cores.explainer is not None:
                    with self.cores.lock:
                        self.cores.explainer.set_graph(graph)
                    log.info("graph reloaded", extra={"graph_version": version})
                self.version = version
        except BackendError as exc:
            log.warning("graph poll failed", extra={"error": str(exc)})


class LearnedGraphPublisher:
    """Shares what this explainer learned, so ``graph show`` and other processes see it."""

    def __init__(self, cache: GraphCache, cores: Cores, interval_s: float = LEARNED_EVERY_S):
        self.cache = cache
        self.cores = cores
        self.interval_s = interval_s
        self._next = 0.0

    def __call__(self, now: float) -> None:
        if self.cores.explainer is None or now < self._next:
            return
        self._next = now + self.interval_s
        with self.cores.lock:
            learned = self.cores.explainer.learned_edges()
        try:
            self.cache.put_learned(learned, now)
        except BackendError as exc:
            log.warning("learned-graph publish failed", extra={"error": str(exc)})


class FeedbackSync:
    """Applies mutes and false-positive marks from the feedback store to the detector.

    ``configured(series_key)`` is the series' configured sensitivity (the
    ``detector.sensitivity`` rules); each false-positive mark halves it
    (:func:`detector.feedback.sensitivity_after_marks`).
    """

    def __init__(
        self,
        feedback: FeedbackSource,
        cores: Cores,
        configured: Callable[[str], float],
        interval_s: float = 2.0,
    ) -> None:
        self.feedback = feedback
        self.cores = cores
        self.configured = configured
        self.interval_s = interval_s
        self._next = 0.0
        self._fp_since = 0.0
        self._fp_count: dict[str, int] = {}
        self._applied: tuple[object, int] | None = None

    def __call__(self, now: float) -> None:
        if now < self._next or self.cores.detector is None:
            return
        self._next = now + self.interval_s
        try:
            mutes = self.feedback.active_mutes(now)
            fps = self.feedback.false_positives_since(self._fp_since)
        except BackendError as exc:
            log.warning("feedback poll failed", extra={"error": str(exc)})
            return
        with self.cores.lock:
            self._apply_mutes(mutes)
            self._apply_false_positives(fps)

    def _apply_mutes(self, mutes: list[Mute]) -> None:
        det, index = self.cores.detector, self.cores.index
        assert det is not None
        state = (tuple(sorted((m.id, m.until) for m in mutes)), len(index))
        if not mutes or state == self._applied:
            return
        for m in mutes:
            rows = [r for k, r in index.items() if m.matches(k)]
            if rows:
                idx = np.asarray(rows, dtype=np.int64)
                det.mute(idx, np.full(len(idx), float(m.until)))
        self._applied = state

    def _apply_false_positives(self, fps: list[FalsePositive]) -> None:
        det, index = self.cores.detector, self.cores.index
        assert det is not None
        for fp in fps:
            self._fp_since = max(self._fp_since, float(fp.marked_at) + 1e-6)
            for key in fp.series:
                self._fp_count[key] = self._fp_count.get(key, 0) + 1
        if not fps:
            return
        keys = [k for k in self._fp_count if index.get(k) is not None]
        if not keys:
            return
        rows = np.asarray([index.get(k) for k in keys], dtype=np.int64)
        factor = sensitivity_after_marks(
            np.asarray([self.configured(k) for k in keys], dtype=np.float64),
            np.asarray([self._fp_count[k] for k in keys], dtype=np.int64),
        )
        det.set_sensitivity(rows, factor)


class DeliveryStats:
    """Copies the webhook dispatcher's counters into the stats read by the metrics."""

    def __init__(self, deliveries: Deliveries, stats: PipelineStats) -> None:
        self.deliveries = deliveries
        self.stats = stats

    def __call__(self, now: float) -> None:
        self.stats.webhook_deliveries.clear()
        self.stats.webhook_deliveries.update(self.deliveries.counters())
        self.stats.webhook_outbox_size = self.deliveries.outbox_size()


class LeaseKeeper:
    """Renews the lease every third of its TTL; raises when another replica holds it."""

    def __init__(self, lease: Lease, clock: Callable[[], float] = time.monotonic) -> None:
        self.lease = lease
        self.clock = clock
        self.every_s = lease.ttl_ms / 3000.0
        self._next = 0.0

    def __call__(self, now: float) -> None:
        if self.clock() < self._next:
            return
        self._next = self.clock() + self.every_s
        if not self.lease.renew():
            raise BackendError(
                "lost the explainer lease to another replica; stopping to stand by",
                backend="redis",
            )
