"""On-demand explanation of a node (or one series) at a time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from causalwatch import schemas
from causalwatch.publish.api.bodies import ExplainRequest
from causalwatch.publish.api.deps import ExplainFn, error

__all__ = ["router"]


def router(explain: ExplainFn | None, clock: Callable[[], float] = time.time) -> APIRouter:
    r = APIRouter()

    @r.post(
        "/explain",
        response_model=schemas.Explanation,
        tags=["explanations"],
        responses={404: {"description": "unknown node or series"}, 422: {"description": "no data"}},
    )
    def explain_now(req: ExplainRequest) -> Any:
        """Explain a node's (or one series') behaviour at a time, on demand."""
        if explain is None:
            return error(503, "on-demand explanation is not configured in this process")
        at = clock() if req.at is None else req.at
        return schemas.Explanation.from_result(explain(req.node, req.series, at, req.since))

    return r
