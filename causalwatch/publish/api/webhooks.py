"""Outgoing webhook deliveries: status, dead entries, and retrying them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from causalwatch.errors import BackendError
from causalwatch.publish.api.bodies import Accepted, DeadList, WebhookStatus
from causalwatch.publish.api.deps import NOT_FOUND, Dispatcher, get_or_404

__all__ = ["router"]


def router(dispatcher: Dispatcher | None) -> APIRouter:
    """``dispatcher`` None makes every route answer 503."""
    r = APIRouter()

    def _dispatcher() -> Dispatcher:
        if dispatcher is None:
            raise BackendError("no webhook dispatcher in this process", backend="webhooks")
        return dispatcher

    @r.get("/webhooks", response_model=WebhookStatus, tags=["webhooks"])
    def webhook_status() -> Any:
        """Outgoing deliveries: outbox size, dead entries and outcome counts since start."""
        d = _dispatcher()
        by_kind: dict[str, dict[str, int]] = {}
        for (kind, outcome), n in sorted(d.counters().items()):
            by_kind.setdefault(kind, {})[outcome] = n
        return {
            "outbox_size": d.outbox_size(),
            "dead": len(d.dead_entries()),
            "deliveries": by_kind,
        }

    @r.get("/webhooks/dead", response_model=DeadList, tags=["webhooks"])
    def dead_deliveries() -> Any:
        """Deliveries that gave up (last error, attempts), oldest first; bodies left out."""
        return {
            "dead": [
                {k: v for k, v in e.items() if k != "body"} for e in _dispatcher().dead_entries()
            ]
        }

    @r.post(
        "/webhooks/dead/{entry_id}/retry",
        status_code=202,
        response_model=Accepted,
        tags=["webhooks"],
        responses=NOT_FOUND,
    )
    def retry_dead(entry_id: str) -> Any:
        """Put a dead delivery back into the outbox with a fresh attempt budget."""
        get_or_404(_dispatcher().requeue_dead(entry_id), f"no dead delivery {entry_id!r}")
        return {"accepted": 1}

    return r
