"""Incoming Alertmanager alerts, enriched with causalwatch's explanation.

Alertmanager's webhook payloads (``POST /api/v1/alertmanager``) are put on a bounded queue
and answered at once; :class:`AlertEnricher` workers explain each firing alert's series over
the window from its ``startsAt`` to now and forward the enriched alert through the outgoing
webhooks.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime

from causalwatch.errors import CausalwatchError, SchemaError, StateError
from causalwatch.publish.api.bodies import AmAlert, AmWebhook
from causalwatch.publish.api.deps import Dispatcher, ExplainFn
from causalwatch.publish.webhooks import AlertEvent
from causalwatch.series import series_key

__all__ = ["AlertEnricher", "alert_target", "parse_rfc3339"]

log = logging.getLogger(__name__)


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_rfc3339(value: str) -> float:
    """Unix seconds of an RFC 3339 time (Go's nanoseconds are cut to microseconds)."""
    try:
        text = _FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00")
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise SchemaError(
            f"startsAt {value!r} is not an RFC 3339 time", reason="bad_time", field="startsAt"
        ) from exc
    if dt.tzinfo is None:
        raise SchemaError(
            f"startsAt {value!r} has no time zone", reason="bad_time", field="startsAt"
        )
    return dt.timestamp()


_DROP_LABELS = ("alertname", "severity")


def alert_target(labels: dict[str, str], node_label: str) -> tuple[str, str | None]:
    """(node, series key or None) that an alert's labels point at.

    The series is the alert's labels minus ``alertname``/``severity``; its metric name is
    ``__name__`` when the rule kept it, else empty (``{service="api",...}`` selects by labels).
    """
    node = labels.get(node_label)
    if not node:
        raise SchemaError(
            f"alert has no {node_label!r} label to name its node: {labels}",
            reason="missing_label",
            field=node_label,
        )
    rest = {k: v for k, v in labels.items() if k not in _DROP_LABELS and k != "__name__"}
    name = labels.get("__name__", "")
    series = series_key(name, rest) if name or len(rest) > 1 else None
    return node, series


class AlertEnricher:
    """A bounded queue of Alertmanager payloads and the threads that enrich them."""

    def __init__(
        self,
        explain: ExplainFn | None,
        dispatcher: Dispatcher | None,
        *,
        queue_size: int = 256,
        workers: int = 2,
        node_label: str = "service",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.explain = explain
        self.dispatcher = dispatcher
        self.node_label = node_label
        self.workers = workers
        self._clock = clock
        self._queue: queue.Queue[AmWebhook | None] = queue.Queue(maxsize=queue_size)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.stats: Counter[str] = Counter()

    def submit(self, payload: AmWebhook) -> bool:
        """Queue a payload; False when the queue is full (the caller answers 503)."""
        self.start()
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            self.stats["rejected"] += 1
            return False
        self.stats["accepted"] += 1
        return True

    def start(self) -> None:
        with self._lock:
            if self._threads:
                return
            for i in range(self.workers):
                t = threading.Thread(target=self._run, name=f"cw-alerts-{i}", daemon=True)
                t.start()
                self._threads.append(t)

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(None)
        for t in threads:
            t.join(timeout_s)

    def drain(self) -> None:
        """Block until every queued payload was handled (tests, shutdown)."""
        self._queue.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._handle(item)
            except Exception:  # a worker must survive any one payload
                self.stats["failed"] += 1
                log.exception("alert enrichment failed")
            finally:
                self._queue.task_done()

    def enrich(self, alert: AmAlert) -> AlertEvent:
        explanation, error = None, None
        if alert.status == "firing" and self.explain is not None:
            try:
                node, series = alert_target(alert.labels, self.node_label)
                # the window the alert has been firing: from its startsAt to now (the
                # explainer bounds both by the data it holds: StateError outside)
                since = parse_rfc3339(alert.startsAt)
                at = max(self._clock(), since)
                try:
                    explanation = self.explain(node, series, at, since)
                except StateError:
                    if series is None:
                        raise
                    explanation = self.explain(node, None, at, since)  # unknown series
            except CausalwatchError as exc:
                error = str(exc)
        elif self.explain is None:
            error = "on-demand explanation is not configured"
        return AlertEvent(alert.model_dump(exclude_none=True), explanation, error)

    def _handle(self, payload: AmWebhook) -> None:
        events = []
        for alert in payload.alerts:
            ours = alert.labels.get("source") == "causalwatch"
            if ours or "causalwatch_explanation_id" in alert.annotations:
                self.stats["skipped"] += 1  # already enriched by us: do not loop
                continue
            ev = self.enrich(alert)
            events.append(
                AlertEvent(ev.alert, ev.explanation, ev.error, payload.receiver, payload.groupKey)
            )
            self.stats["enriched" if ev.explanation is not None else "unexplained"] += 1
        if events and self.dispatcher is not None:
            self.dispatcher.enqueue_alerts(events, self._clock())
