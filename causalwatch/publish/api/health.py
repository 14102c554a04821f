"""Liveness and readiness (no authentication: orchestrators probe them)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse

__all__ = ["router"]

log = logging.getLogger(__name__)


def router(ready: Callable[[], bool]) -> APIRouter:
    r = APIRouter(tags=["health"])

    @r.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @r.get("/readyz", responses={503: {"description": "not ready"}})
    def readyz() -> JSONResponse:
        """Readiness: dependencies (Redis, consumer) are usable."""
        try:
            is_ready = bool(ready())
        except Exception:  # a failing probe means "not ready", never a 500
            log.warning("readiness probe failed", exc_info=True)
            is_ready = False
        return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)

    return r
