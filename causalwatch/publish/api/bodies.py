"""Request and response bodies of the HTTP API (pydantic, validated at the edge)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from causalwatch import schemas
from causalwatch.schemas import Mute

__all__ = [
    "Accepted",
    "AmAlert",
    "AmWebhook",
    "DeadDelivery",
    "DeadList",
    "EdgeIn",
    "ExplainRequest",
    "ExplanationList",
    "FalsePositiveIn",
    "GraphOut",
    "GraphPatch",
    "GraphPut",
    "Incident",
    "IncidentList",
    "IncidentTarget",
    "MuteIn",
    "MuteList",
    "WebhookStatus",
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IncidentTarget(BaseModel):
    model_config = ConfigDict(extra="allow")
    node: str
    explanation_id: str
    version: int
    severity: float
    top_root_cause: str | None = None


class Incident(BaseModel):
    model_config = ConfigDict(extra="allow")
    incident_id: str
    status: str = Field(description="open | closed | false_positive")
    opened_at: float = Field(description="unix seconds")
    updated_at: float = Field(description="unix seconds")
    nodes: list[str]
    targets: dict[str, IncidentTarget] = Field(description="by target series key")
    version: int


class IncidentList(BaseModel):
    incidents: list[Incident]


class ExplanationList(BaseModel):
    explanations: list[schemas.Explanation]


class ExplainRequest(_Body):
    node: str = Field(min_length=1, description="graph node (value of the node label)")
    series: str | None = Field(
        default=None, description='series key, e.g. latency{service="api"}; None: the node'
    )
    at: float | None = Field(
        default=None, allow_inf_nan=False, description="unix seconds; default now"
    )
    since: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="unix seconds: start of the anomaly window (e.g. when the alert started); "
        "default: found from the data; outside the held data: 404",
    )


class EdgeIn(_Body):
    cause: str = Field(min_length=1)
    effect: str = Field(min_length=1)


class GraphOut(BaseModel):
    version: int
    nodes: list[str]
    edges: list[dict[str, Any]]


class GraphPut(_Body):
    edges: list[EdgeIn]
    nodes: list[str] = Field(default_factory=list, description="extra isolated nodes")
    version: int | None = Field(default=None, description="expected current version")


class GraphPatch(_Body):
    add: list[EdgeIn] = Field(default_factory=list)
    remove: list[EdgeIn] = Field(default_factory=list)
    version: int | None = Field(default=None, description="expected current version")


class FalsePositiveIn(_Body):
    reason: str | None = None


class MuteIn(_Body):
    matchers: dict[str, str] | None = Field(
        default=None, description='label equality; "__name__" is the metric name'
    )
    series: str | None = Field(default=None, description="a series key, muted exactly")
    until: float | None = Field(default=None, allow_inf_nan=False, description="unix seconds")
    duration_s: float | None = Field(default=None, gt=0, le=366 * 86_400)
    reason: str | None = None

    @model_validator(mode="after")
    def _one_of_each(self) -> MuteIn:
        if (self.matchers is None) == (self.series is None):
            raise ValueError("give exactly one of 'matchers' or 'series'")
        if self.matchers is not None and not self.matchers:
            raise ValueError("'matchers' must name at least one label")
        if (self.until is None) == (self.duration_s is None):
            raise ValueError("give exactly one of 'until' or 'duration_s'")
        return self


class MuteList(BaseModel):
    mutes: list[Mute]


class AmAlert(BaseModel):
    """One alert of an Alertmanager webhook (version 4)."""

    model_config = ConfigDict(extra="allow")
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str
    endsAt: str | None = None
    generatorURL: str | None = None
    fingerprint: str | None = None


class AmWebhook(BaseModel):
    """Alertmanager's webhook payload, version 4."""

    model_config = ConfigDict(extra="allow")
    version: Literal["4"]
    groupKey: str = ""
    truncatedAlerts: int = 0
    status: Literal["firing", "resolved"] = "firing"
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[AmAlert] = Field(max_length=10_000)


class WebhookStatus(BaseModel):
    outbox_size: int = Field(description="deliveries waiting or being retried")
    dead: int = Field(description="deliveries that gave up, kept for inspection")
    deliveries: dict[str, dict[str, int]] = Field(description="kind -> outcome -> count")


class DeadDelivery(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    url: str
    kind: str
    event: str
    attempts: int
    last_error: str | None = None
    dead_at: float = Field(description="unix seconds")


class DeadList(BaseModel):
    dead: list[DeadDelivery]


class Accepted(BaseModel):
    accepted: int = Field(description="alerts (or deliveries) queued")
