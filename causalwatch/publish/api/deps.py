"""What the API is given (small protocols, so tests and the service pass different
backends) and the one error body, ``{"detail": <reason>}``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from fastapi.responses import JSONResponse

from causalwatch.errors import StateError
from causalwatch.models import Explanation
from causalwatch.publish.webhooks import AlertEvent
from causalwatch.schemas import FalsePositive, Mute
from explainer.dag import DependencyGraph

__all__ = [
    "NOT_FOUND",
    "Dispatcher",
    "ExplainFn",
    "Feedback",
    "GraphCache",
    "IncidentStore",
    "error",
    "get_or_404",
]


class ExplainFn(Protocol):
    """``explain(node, series, at, since)``: ``since`` fixes the start of the anomaly
    window (None: found from the data); raises ``StateError`` outside the held data."""

    def __call__(
        self, node: str, series: str | None, at: float, since: float | None = None
    ) -> Explanation: ...


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "not found"}}


T = TypeVar("T")


def get_or_404(value: T | None, detail: str) -> T:
    """``value``, or a 404 ``{"detail": detail}`` when it is None or False (a store found
    nothing, or a delete/requeue had nothing to act on).

    Every route that looks something up goes through here: it raises ``StateError``, which
    the app maps to 404 in one place.

    >>> get_or_404({"a": 1}, "unknown thing")
    {'a': 1}
    >>> get_or_404(None, "unknown thing 'x'")
    Traceback (most recent call last):
    ...
    causalwatch.errors.StateError: unknown thing 'x'
    """
    if value is None or value is False:
        raise StateError(detail)
    return value


def error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """``{"detail": detail}``; the detail is made JSON-safe and cut to 2,000 characters (it
    often quotes the request: an id, a node name)."""
    from causalwatch.publish.api.guard import json_safe

    return JSONResponse({"detail": json_safe(detail, 2_000)}, status_code=status, headers=headers)


class IncidentStore(Protocol):
    def list_incidents(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        node: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]: ...
    def get_incident(self, incident_id: str) -> dict[str, Any] | None: ...
    def get_explanation(self, explanation_id: str) -> Explanation | None: ...
    def latest(self, node: str) -> Explanation | None: ...
    def recent(self, count: int = 100) -> list[Explanation]: ...
    def set_incident_status(self, incident_id: str, status: str) -> bool: ...


class GraphCache(Protocol):
    def get(self) -> DependencyGraph | None: ...
    def put(self, graph: DependencyGraph) -> int: ...
    def version(self) -> int: ...


class Feedback(Protocol):
    def mute(
        self, matchers: dict[str, str], until: float, *, now: float, reason: str | None = None
    ) -> Mute: ...
    def list_mutes(self, now: float | None = None) -> list[Mute]: ...
    def get_mute(self, mute_id_: str) -> Mute | None: ...
    def delete_mute(self, mute_id_: str) -> bool: ...
    def mark_false_positive(
        self,
        incident_id: str,
        *,
        marked_at: float,
        nodes: list[str] | None = None,
        series: list[str] | None = None,
        reason: str | None = None,
    ) -> FalsePositive: ...


class Dispatcher(Protocol):
    def enqueue_alerts(self, events: Sequence[AlertEvent], now: float | None = None) -> int: ...
    def counters(self) -> dict[tuple[str, str], int]: ...
    def outbox_size(self) -> int: ...
    def dead_entries(self) -> list[dict[str, Any]]: ...
    def requeue_dead(self, entry_id: str, now: float | None = None) -> bool: ...
