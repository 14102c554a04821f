"""Incidents and the explanations published for them (read from the result store)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from causalwatch import schemas
from causalwatch.publish.api.bodies import ExplanationList, Incident, IncidentList
from causalwatch.publish.api.deps import NOT_FOUND, IncidentStore, error, get_or_404

__all__ = ["router"]


def router(store: IncidentStore) -> APIRouter:
    r = APIRouter()

    @r.get("/incidents", response_model=IncidentList, tags=["incidents"])
    def list_incidents(
        node: str | None = None,
        status: Literal["open", "closed", "false_positive"] | None = None,
        since: Annotated[
            float | None, Query(allow_inf_nan=False, description="updated at or after, unix s")
        ] = None,
        until: Annotated[
            float | None, Query(allow_inf_nan=False, description="updated at or before, unix s")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        if since is not None and until is not None and since > until:
            return error(422, f"since ({since}) is after until ({until})")
        rows = store.list_incidents(since=since, until=until, node=node, status=status, limit=limit)
        return {"incidents": rows}

    @r.get(
        "/incidents/{incident_id}", response_model=Incident, tags=["incidents"], responses=NOT_FOUND
    )
    def get_incident(incident_id: str) -> Any:
        return get_or_404(store.get_incident(incident_id), f"unknown incident {incident_id!r}")

    @r.get(
        "/incidents/{incident_id}/explanations",
        response_model=ExplanationList,
        tags=["explanations"],
        responses=NOT_FOUND,
    )
    def incident_explanations(incident_id: str) -> Any:
        """The latest explanation of each target series of the incident."""
        inc = get_or_404(store.get_incident(incident_id), f"unknown incident {incident_id!r}")
        out = []
        for target in (inc.get("targets") or {}).values():
            exp = store.get_explanation(str(target.get("explanation_id")))
            if exp is not None:
                out.append(schemas.Explanation.from_result(exp))
        return {"explanations": out}

    @r.get("/explanations", response_model=ExplanationList, tags=["explanations"])
    def recent_explanations(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> Any:
        """The newest explanations from the stream, newest first."""
        return {"explanations": [schemas.Explanation.from_result(e) for e in store.recent(limit)]}

    @r.get(
        "/explanations/latest/{node}",
        response_model=schemas.Explanation,
        tags=["explanations"],
        responses=NOT_FOUND,
    )
    def latest_explanation(node: str) -> Any:
        exp = get_or_404(store.latest(node), f"no recent explanation for node {node!r}")
        return schemas.Explanation.from_result(exp)

    @r.get(
        "/explanations/{explanation_id}",
        response_model=schemas.Explanation,
        tags=["explanations"],
        responses=NOT_FOUND,
    )
    def get_explanation(explanation_id: str) -> Any:
        exp = get_or_404(
            store.get_explanation(explanation_id), f"unknown explanation {explanation_id!r}"
        )
        return schemas.Explanation.from_result(exp)

    return r
