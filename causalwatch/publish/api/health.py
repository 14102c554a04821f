"""Liveness and readiness (no authentication: orchestrators probe them).

``/readyz`` answers 503 with the reasons while the process cannot do its work: a backend
(Kafka, Redis) unreachable, the pipeline stalled or starting, the state being rebuilt
after a lost checkpoint. The probe returns either a bool or ``(ready, reasons)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from fastapi import APIRouter
from fastapi.responses import JSONResponse

__all__ = ["Readiness", "router"]

log = logging.getLogger(__name__)

#: ``() -> ready`` or ``() -> (ready, reasons)``
Readiness = Callable[[], bool | tuple[bool, Sequence[str]]]


def router(ready: Readiness) -> APIRouter:
    r = APIRouter(tags=["health"])

    @r.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @r.get("/readyz", responses={503: {"description": "not ready, with the reasons"}})
    def readyz() -> JSONResponse:
        """Readiness: dependencies (Redis, consumer) are usable and the pipeline runs."""
        reasons: list[str] = []
        try:
            got = ready()
            if isinstance(got, tuple):
                is_ready, reasons = bool(got[0]), [str(x) for x in got[1]]
            else:
                is_ready = bool(got)
        except Exception as exc:  # a failing probe means "not ready", never a 500
            log.warning("readiness probe failed", exc_info=True)
            is_ready, reasons = False, [f"readiness probe failed: {type(exc).__name__}"]
        body: dict[str, object] = {"ready": is_ready}
        if reasons:
            body["reasons"] = reasons
        return JSONResponse(body, status_code=200 if is_ready else 503)

    return r
