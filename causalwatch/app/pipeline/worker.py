"""The explainer worker: explanations off the hot path, through a bounded, coalescing queue.

Why: ranking one target takes 15-40 ms, and an incident fires alerts on many series at
once; explained inline, the consume -> decode -> detect loop slows down exactly when it
must keep up. So the hot path only *groups* alerts into incidents (cheap,
:meth:`explainer.core.Explainer.group`) and submits one request per touched incident to
:class:`ExplainQueue`; :class:`ExplainWorker` ranks them (on its own thread in the live
service, inline and deterministic in replay and the benchmarks) and publishes.

The rule that decides what is explained and when (also in the README):

- **Onset first.** The first alert of an incident makes a request that is due at once;
  due first requests run before any update, oldest first.
- **Updates as evidence grows.** Later alerts of an incident coalesce into its pending
  request (one request per incident; its targets are the union of the touched series).
  An incident is re-explained at most once per ``interval_points`` steps of the data
  (data time, so replay is deterministic); a request is ranked when it runs, at each
  target's anchor as it is then (:mod:`explainer.incidents`): the newest evidence wins.
  With ``explainer.explain_window="now"`` (opt-in) new data is evidence too: targets of
  paging incidents whose window is still growing and whose newest sample still deviates
  are submitted as updates after every batch (:meth:`explainer.core.Explainer.growing`),
  and each is explained at its newest data with the window from its first alert.
- **Paged only on agreement**: every explanation is published (Redis, the incident page),
  but receivers (webhooks, Alertmanager) get an incident only once it pages: its alerts
  agreed (:mod:`explainer.incidents`). Until then its explanations are of kind ``watch``;
  the one published when it starts paging is its ``page`` (due at once, like an onset),
  later ones ``update`` (:meth:`ExplainQueue.pages_for`).
- **Published only when it changed**: a ranking whose content equals the last published
  one for that target is not published again (:func:`explainer.incidents.signature`).
- **Bounded.** At most ``max_pending`` requests wait; past that the oldest pending
  *updates* are dropped first (counted, ``reason="full"``); a first explanation is never
  dropped (past the bound, first requests are kept and counted as ``overflow``).

At-least-once: the pending requests and the explanations built but not yet published are
part of the checkpoint (:meth:`ExplainQueue.to_json`), so offsets committed after a
checkpoint never lose an explanation; a restored worker publishes what was in flight and
runs what was pending. Published explanations carry ids, so a replay overwrites.

The queue is plain state guarded by the caller's lock (``Cores.lock``); the worker
thread waits on a condition of the same lock.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from causalwatch.errors import BackendError
from causalwatch.models import Explanation
from causalwatch.publish.metrics import PipelineStats
from causalwatch.schemas import explanation_from_json, explanation_json
from explainer.incidents import Grouped

__all__ = ["ExplainQueue", "ExplainWorker", "Request"]

log = logging.getLogger(__name__)


@dataclass
class Request:
    """One incident waiting to be (re-)explained."""

    incident_id: str
    keys: list[str]
    is_first: bool
    due_ts: float  # data time from which it may run
    alert_wall_s: float  # wall time of the oldest alert coalesced into it (latency)
    seq: int


@dataclass
class ExplainQueue:
    """Pending explanation requests, one per incident, bounded (see the module docstring).

    >>> from explainer.incidents import Grouped
    >>> q = ExplainQueue(max_pending=10, interval_points=3)
    >>> q.submit(Grouped({"inc-a": {"lat"}}), lambda iid: False, 100.0, 60.0, 0.0)
    >>> r = q.pop_due(100.0)
    >>> (r.incident_id, r.is_first)
    ('inc-a', True)
    >>> q.done(r, 100.0)
    >>> q.submit(Grouped({"inc-a": {"lat"}}), lambda iid: True, 160.0, 60.0, 0.0)
    >>> q.pop_due(160.0) is None  # an update waits 3 steps after the last run
    True
    >>> q.pop_due(280.0).is_first
    False
    """

    max_pending: int = 1_000
    interval_points: float = 3.0
    pending: dict[str, Request] = field(default_factory=dict)
    last_run_ts: dict[str, float] = field(default_factory=dict)
    unpublished: list[Explanation] = field(default_factory=list)
    now_ts: float = -math.inf  # newest data time submitted
    now_wall_s: float = 0.0  # wall time when now_ts was submitted
    coalesced: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    #: incidents paged: id -> severity at the page (one page per incident; an incident
    #: pages once its alerts agree, explainer.incidents)
    paged: dict[str, float] = field(default_factory=dict)
    #: page kind of each explanation built but not yet published: id -> (kind, severity)
    page_of: dict[str, tuple[str, float]] = field(default_factory=dict)
    _seq: int = 0

    def submit(
        self,
        grouped: Grouped,
        is_explained: Callable[[str], bool],
        now_ts: float,
        step_s: float,
        wall_s: float,
    ) -> None:
        """Add one batch's grouped alerts (``O(touched incidents)``)."""
        if now_ts > self.now_ts:
            self.now_ts, self.now_wall_s = now_ts, wall_s
        for old, new in grouped.merged.items():
            req = self.pending.pop(old, None)
            if old in self.last_run_ts:
                self.last_run_ts[new] = max(
                    self.last_run_ts.pop(old), self.last_run_ts.get(new, -math.inf)
                )
            if req is not None:
                self._coalesce(new, req.keys, req.is_first, req.due_ts, req.alert_wall_s)
        interval_s = self.interval_points * max(step_s, 0.0)
        paged = set(grouped.paged)
        for iid in sorted(grouped.touched):
            keys = sorted(grouped.touched[iid])
            # an onset, or the incident's page (it started paging): due at once
            is_first = not is_explained(iid) or iid in paged
            due = now_ts if is_first else self.last_run_ts.get(iid, -math.inf) + interval_s
            self._coalesce(iid, keys, is_first, due, wall_s)
        self._bound()

    def _coalesce(
        self, iid: str, keys: Iterable[str], is_first: bool, due: float, wall_s: float
    ) -> None:
        req = self.pending.get(iid)
        if req is None:
            self._seq += 1
            self.pending[iid] = Request(iid, sorted(set(keys)), is_first, due, wall_s, self._seq)
            return
        self.coalesced += 1
        req.keys = sorted(set(req.keys) | set(keys))
        req.is_first = req.is_first or is_first
        req.due_ts = min(req.due_ts, due)
        req.alert_wall_s = min(req.alert_wall_s, wall_s)

    def _bound(self) -> None:
        excess = len(self.pending) - self.max_pending
        if excess <= 0:
            return
        updates = sorted((r for r in self.pending.values() if not r.is_first), key=_by_seq)
        for req in updates[:excess]:
            del self.pending[req.incident_id]
            self.dropped["full"] += 1
        left = len(self.pending) - self.max_pending
        if left > 0:
            self.dropped["overflow"] += left  # first explanations kept past the bound
            log.warning("explain queue over its bound with first explanations", extra={"n": left})

    def pop_due(self, now_ts: float) -> Request | None:
        """The next request due at data time ``now_ts``: first explanations before updates,
        oldest first; None when nothing is due (``O(pending)``)."""
        due = [r for r in self.pending.values() if r.due_ts <= now_ts]
        if not due:
            return None
        req = min(due, key=lambda r: (not r.is_first, r.seq))
        del self.pending[req.incident_id]
        return req

    def next_due_ts(self) -> float | None:
        return min((r.due_ts for r in self.pending.values()), default=None)

    def done(self, req: Request, now_ts: float) -> None:
        """Mark the request's incident as explained at data time ``now_ts``."""
        self.last_run_ts[req.incident_id] = now_ts

    def forget(self, closed: Iterable[str]) -> None:
        """Drop what is kept for closed incidents."""
        for iid in closed:
            self.last_run_ts.pop(iid, None)
            self.pending.pop(iid, None)
            self.paged.pop(iid, None)

    def pages_for(
        self, exps: Iterable[Explanation], is_paging: Callable[[str], bool] = lambda iid: True
    ) -> tuple[dict[str, tuple[str, float]], Counter[str]]:
        """Each explanation's page kind: ``watch`` while its incident is watching (its
        alerts have not agreed yet: :mod:`explainer.incidents`; published, never paged),
        then ``page`` for the first of the incident (whichever series or node), ``update``
        after; decided once per explanation id (a retried publish keeps its kind). Returns
        the kinds and how many were decided now."""
        new: Counter[str] = Counter()
        out: dict[str, tuple[str, float]] = {}
        for e in exps:
            got = self.page_of.get(e.id)
            if got is None:
                if not is_paging(e.incident_id):
                    got = ("watch", e.severity)
                elif e.incident_id in self.paged:
                    got = ("update", self.paged[e.incident_id])
                else:
                    self.paged[e.incident_id] = e.severity
                    got = ("page", e.severity)
                self.page_of[e.id] = got
                new[got[0]] += 1
            out[e.id] = got
        return out, new

    def published(self, ids: Iterable[str]) -> None:
        for i in ids:
            self.page_of.pop(i, None)

    def pending_ids(self) -> set[str]:
        return set(self.pending)

    # -- checkpoint ----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "pending": [asdict(r) for r in self.pending.values()],
            "last_run_ts": self.last_run_ts,
            "unpublished": [explanation_json(e) for e in self.unpublished],
            "now_ts": self.now_ts if math.isfinite(self.now_ts) else None,
            "seq": self._seq,
            "paged": self.paged,
            "page_of": {k: list(v) for k, v in self.page_of.items()},
        }

    def load_json(self, data: dict[str, Any]) -> None:
        """Restore :meth:`to_json`; alert wall times become the restore's time (a restart
        should not count its downtime as explanation latency twice)."""
        now = time.time()
        self.pending = {
            d["incident_id"]: Request(**{**d, "alert_wall_s": now}) for d in data["pending"]
        }
        self.last_run_ts = {k: float(v) for k, v in data["last_run_ts"].items()}
        self.unpublished = [explanation_from_json(s) for s in data["unpublished"]]
        self.now_ts = -math.inf if data["now_ts"] is None else float(data["now_ts"])
        self.now_wall_s = now
        self._seq = int(data["seq"])
        self.paged = {k: float(v) for k, v in data.get("paged", {}).items()}
        self.page_of = {k: (str(v[0]), float(v[1])) for k, v in data.get("page_of", {}).items()}


def _by_seq(r: Request) -> int:
    return r.seq


#: ``explain(incident id -> series keys)`` -> the new or changed explanations (holds no lock)
ExplainFn = Callable[[dict[str, list[str]]], list[Explanation]]


class ExplainWorker:
    """Runs the :class:`ExplainQueue` of one process.

    Inline (the default: replay, benchmarks, tests): :meth:`kick` runs every due request
    and returns the explanations for the caller to publish. Threaded (:meth:`start`, the
    live ``all`` and ``explainer`` roles): :meth:`kick` only wakes the thread, which ranks
    under ``lock`` one request at a time and publishes through ``publish`` outside it.

    ``queue`` is read through a callable because a checkpoint restore replaces it.
    """

    def __init__(
        self,
        lock: threading.RLock,
        queue: Callable[[], ExplainQueue | None],
        explain: ExplainFn,
        publish: Callable[[list[Explanation]], None],
        stats: PipelineStats,
        *,
        clock: Callable[[], float] = time.time,
        retry_s: float = 1.0,
        observe_s: Callable[[float], None] = lambda s: None,
        busy_share: float = 1.0,
        is_busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self._lock = lock
        self._cond = threading.Condition(lock)
        self._queue = queue
        self._explain = explain
        self._publish = publish
        self.stats = stats
        self._clock = clock
        self._retry_s = retry_s
        self._observe_s = observe_s  # seconds ranking one request
        # while ``is_busy()`` (the hot path has a backlog), the thread works at most this
        # share of the wall clock (see _pace)
        self._busy_share = busy_share
        self._is_busy = is_busy
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def is_threaded(self) -> bool:
        return self._thread is not None

    # -- inline / wake-up ----------------------------------------------------------------
    def kick(self, now_ts: float) -> list[Explanation]:
        """After a batch was submitted (caller holds the lock): run what is due at data
        time ``now_ts`` inline, or wake the thread (then nothing is returned)."""
        q = self._queue()
        if q is None:
            return []
        if self._thread is not None:
            self._cond.notify()
            self._export(q)
            return []
        out: list[Explanation] = []
        while (req := q.pop_due(now_ts)) is not None:
            exps = self._run(q, req, now_ts)
            if exps:
                self._observe(req)
            out.extend(exps)
        self._export(q)
        return out

    def _run(self, q: ExplainQueue, req: Request, now_ts: float) -> list[Explanation]:
        t0 = time.perf_counter()
        try:
            exps = self._explain({req.incident_id: req.keys})
        except Exception:  # one bad incident must not stop the worker
            log.exception("explanation failed", extra={"incident_id": req.incident_id})
            self.stats.explainer_errors_total += 1
            exps = []
        self._observe_s(time.perf_counter() - t0)
        q.done(req, now_ts)
        return exps

    def _observe(self, req: Request) -> None:
        """Seconds from the request's oldest alert to its explanation (published, when
        threaded)."""
        kind = "first" if req.is_first else "update"
        self.stats.explain_latency[kind].observe(max(0.0, self._clock() - req.alert_wall_s))

    def _export(self, q: ExplainQueue) -> None:
        self.stats.explain_queue_depth = len(q.pending)
        self.stats.explain_coalesced_total = q.coalesced
        self.stats.explain_dropped = Counter(q.dropped)

    # -- threaded ------------------------------------------------------------------------
    def start(self) -> ExplainWorker:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="explainer-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (what is pending stays in the queue, hence in the checkpoint)."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread.join(timeout_s)
        self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                q = self._queue()
                if q is None:
                    self._cond.wait(0.5)
                    continue
                backlog = list(q.unpublished)
                req = None
                t_req = 0.0
                if not backlog:
                    # data time goes on with the wall clock while no batch arrives
                    now = q.now_ts + max(0.0, self._clock() - q.now_wall_s)
                    req = q.pop_due(now)
                    if req is None:
                        nxt = q.next_due_ts()
                        wait = 0.5 if nxt is None else min(0.5, max(0.001, nxt - now))
                        self._cond.wait(wait)
                        continue
                    t_req = time.perf_counter()
                    backlog = self._run(q, req, now)
                    q.unpublished.extend(backlog)
                    self._export(q)
            if backlog:
                if self._deliver(q, backlog):
                    if req is not None:
                        self._observe(req)
                else:
                    self._stop.wait(self._retry_s)
                    continue
            if req is not None:
                self._pace(time.perf_counter() - t_req)

    def _pace(self, spent_s: float) -> None:
        """Hold the thread to ``busy_share`` of the wall clock while the hot path is busy:
        after ``spent_s`` ranking and publishing one request, rest ``spent_s * (1 - share)
        / share`` (at most 2 s). It shares the process's GIL and ``Cores.lock`` with the
        consuming loop, so without this ingest slows down as the alert rate rises, which
        is when it must keep up. Alerts that arrive meanwhile coalesce into their pending
        requests (the queue's rules: bounded, drops counted, first explanations never
        dropped and run first); an idle or lightly loaded hot path never waits."""
        share = self._busy_share
        if share >= 1.0 or not self._is_busy():
            return
        self.stats.explain_paced_total += 1
        self._stop.wait(min(2.0, spent_s * (1.0 - share) / share))

    def _deliver(self, q: ExplainQueue, exps: list[Explanation]) -> bool:
        """Publish outside the lock; drop them from ``unpublished`` once durable."""
        try:
            self._publish(exps)
        except BackendError as exc:
            log.warning("publishing explanations failed; retrying", extra={"error": str(exc)})
            return False
        except Exception:  # the thread must survive; the explanations stay unpublished
            log.exception("publishing explanations failed; retrying")
            return False
        with self._lock:
            done = {e.id for e in exps}
            q.unpublished = [e for e in q.unpublished if e.id not in done]
        return True
