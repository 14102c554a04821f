"""Operator feedback: false-positive marks on incidents, and mutes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Response

from causalwatch.errors import SchemaError
from causalwatch.publish.api.bodies import FalsePositiveIn, MuteIn, MuteList
from causalwatch.publish.api.deps import NOT_FOUND, Feedback, IncidentStore, error, get_or_404
from causalwatch.schemas import FalsePositive, Mute
from causalwatch.series import split_series_key

__all__ = ["MAX_MUTE_S", "router"]

#: The longest mute, seconds (the same bound as ``duration_s``).
MAX_MUTE_S = 366 * 86_400.0


def _series_matchers(key: str) -> dict[str, str]:
    try:
        name, labels = split_series_key(key)
    except (ValueError, IndexError) as exc:
        raise SchemaError(
            f'series {key!r} is not a series key like name{{a="b"}}',
            reason="bad_series",
            field="series",
        ) from exc
    if not name and not labels:
        raise SchemaError(f"series {key!r} names no metric and no label", reason="bad_series")
    return {**({"__name__": name} if name else {}), **labels}


def router(
    store: IncidentStore, feedback: Feedback, clock: Callable[[], float] = time.time
) -> APIRouter:
    r = APIRouter()

    @r.post(
        "/incidents/{incident_id}/false-positive",
        response_model=FalsePositive,
        tags=["feedback"],
        responses=NOT_FOUND,
    )
    def false_positive(
        incident_id: str, body: Annotated[FalsePositiveIn | None, Body()] = None
    ) -> Any:
        """Mark an incident a false positive: its status changes and the detector becomes
        less sensitive on its target series."""
        inc = get_or_404(store.get_incident(incident_id), f"unknown incident {incident_id!r}")
        fp = feedback.mark_false_positive(
            incident_id,
            marked_at=clock(),
            nodes=list(inc.get("nodes") or []),
            series=list((inc.get("targets") or {}).keys()),
            reason=None if body is None else body.reason,
        )
        store.set_incident_status(incident_id, "false_positive")
        return fp

    @r.post("/mutes", response_model=Mute, status_code=201, tags=["feedback"])
    def create_mute(body: MuteIn) -> Any:
        """Mute a series or a label set until a time; the detector raises no alert there."""
        now = clock()
        until = body.until if body.until is not None else now + float(body.duration_s or 0)
        if until <= now:
            return error(422, f"until ({until}) is not in the future (now {now:.0f})")
        if until > now + MAX_MUTE_S:
            return error(422, f"until ({until}) is more than 366 days ahead (now {now:.0f})")
        if body.matchers is not None:
            matchers = body.matchers
        else:
            matchers = _series_matchers(str(body.series))
        return feedback.mute(matchers, until, now=now, reason=body.reason)

    @r.get("/mutes", response_model=MuteList, tags=["feedback"])
    def list_mutes() -> Any:
        return {"mutes": feedback.list_mutes(clock())}

    @r.delete("/mutes/{mute_id}", status_code=204, tags=["feedback"], responses=NOT_FOUND)
    def delete_mute(mute_id: Annotated[str, Path()]) -> Response:
        get_or_404(feedback.delete_mute(mute_id), f"unknown mute {mute_id!r}")
        return Response(status_code=204)

    return r
