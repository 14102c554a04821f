"""The incoming Alertmanager webhook: queued for enrichment, answered at once."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from causalwatch.publish.api.bodies import Accepted, AmWebhook
from causalwatch.publish.api.deps import error
from causalwatch.publish.api.enrich import AlertEnricher

__all__ = ["router"]


def router(enricher: AlertEnricher) -> APIRouter:
    r = APIRouter()

    @r.post(
        "/alertmanager",
        response_model=Accepted,
        status_code=202,
        tags=["webhooks"],
        responses={503: {"description": "enrichment queue full; Alertmanager retries"}},
    )
    def alertmanager(payload: AmWebhook) -> Any:
        """Alertmanager webhook receiver (``version: "4"``): enriches firing alerts with
        causalwatch's explanation and forwards them to the outgoing webhooks."""
        if not enricher.submit(payload):
            return error(503, "alert enrichment queue is full", {"Retry-After": "5"})
        return {"accepted": len(payload.alerts)}

    return r
