"""Pydantic models for the edges: what crosses a process boundary as JSON.

The stages hand each other plain dataclasses (:mod:`causalwatch.models`), so the cores never
import pydantic. Where a result leaves the process (the Redis result store, webhook bodies,
``replay --explanations-out``, the HTTP API and its OpenAPI schema) or comes back in, it goes
through the models here: they validate (``extra="forbid"``, ``severity`` in [0, 100]) and
fix the one JSON format. The classes carry the contract's names (``Explanation``,
``RootCause`` ...), so the OpenAPI components are named as users know them.

Also here: operator feedback (:class:`Mute`, :class:`FalsePositive`), written by the API and
read by every detector process through the Redis feedback store.

>>> from causalwatch import models
>>> exp = models.Explanation(
...     id="e1", incident_id="inc-1", target=models.Target(node="api", series="lat"),
...     detected_at=60.0, window=models.TimeWindow(start=0.0, end=60.0), severity=50.0,
...     root_causes=[models.RootCause(node="db", score=0.9, share=0.8)], graph_version=1)
>>> explanation_from_json(explanation_json(exp)) == exp
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from causalwatch import models
from causalwatch.series import labels_match

__all__ = [
    "Explanation",
    "FalsePositive",
    "Mute",
    "Opposing",
    "RootCause",
    "Target",
    "TimeWindow",
    "explanation_dict",
    "explanation_from_dict",
    "explanation_from_json",
    "explanation_json",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Target(_Model):
    node: str
    series: str


class TimeWindow(_Model):
    start: float = Field(description="unix seconds")
    end: float = Field(description="unix seconds")


class RootCause(_Model):
    node: str
    series: str | None = None
    score: float = Field(description="ranking score in [0, 1], higher is more likely")
    share: float = Field(
        description="how much of the target's deviation this node explains, in [0, 1]; the"
        " listed causes' shares and `unexplained` sum to 1",
    )
    evidence: dict[str, Any] = Field(default_factory=dict)


class Opposing(_Model):
    node: str
    series: str | None = None
    share: float = Field(
        ge=0, le=1, description="size of a contribution that pulled the other way, same scale"
    )


class Explanation(_Model):
    """One explanation of one anomalous target series (an incident has one per target).

    ``id`` is deterministic (incident, target, version) so a replay after a restart
    overwrites instead of duplicating.
    """

    id: str
    incident_id: str
    version: int = 1
    target: Target
    detected_at: float = Field(description="unix seconds")
    window: TimeWindow
    severity: float = Field(ge=0, le=100)
    root_causes: list[RootCause]
    graph_version: int
    verdict: Literal["root_cause", "inconclusive"] = Field(
        default="inconclusive",
        description="root_cause: the top candidate clearly changed on its own; inconclusive:"
        " no candidate's own mechanism changed, or the top two are not separable",
    )
    verdict_reason: str = ""
    unexplained: float = Field(
        default=1.0, ge=0, le=1, description="part of the deviation the listed causes leave"
    )
    opposing: list[Opposing] = Field(
        default_factory=list, description="nodes whose contribution pulled the other way"
    )
    method: str = Field(default="none", description="ranking method that answered")

    @classmethod
    def from_result(cls, exp: models.Explanation) -> Explanation:
        """Validate a stage result (a :class:`causalwatch.models.Explanation`)."""
        return cls.model_validate(exp, from_attributes=True)

    def to_result(self) -> models.Explanation:
        """The plain dataclass the stages pass around."""
        return models.Explanation(
            id=self.id,
            incident_id=self.incident_id,
            version=self.version,
            target=models.Target(node=self.target.node, series=self.target.series),
            detected_at=self.detected_at,
            window=models.TimeWindow(start=self.window.start, end=self.window.end),
            severity=self.severity,
            root_causes=[
                models.RootCause(
                    node=rc.node,
                    series=rc.series,
                    score=rc.score,
                    share=rc.share,
                    evidence=rc.evidence,
                )
                for rc in self.root_causes
            ],
            graph_version=self.graph_version,
            verdict=self.verdict,
            verdict_reason=self.verdict_reason,
            unexplained=self.unexplained,
            opposing=[
                models.Opposing(node=o.node, series=o.series, share=o.share) for o in self.opposing
            ],
            method=self.method,
        )


def explanation_json(exp: models.Explanation) -> str:
    """The one JSON form of an explanation (Redis, webhooks, replay output)."""
    return Explanation.from_result(exp).model_dump_json()


def explanation_dict(exp: models.Explanation) -> dict[str, Any]:
    """The explanation as JSON-ready Python objects."""
    return Explanation.from_result(exp).model_dump()


def explanation_from_json(raw: str | bytes) -> models.Explanation:
    """Parse and validate stored JSON back into the stage dataclass."""
    return Explanation.model_validate_json(raw).to_result()


def explanation_from_dict(data: Mapping[str, Any]) -> models.Explanation:
    """Validate decoded JSON (an API response, say) into the stage dataclass."""
    return Explanation.model_validate(data).to_result()


class Mute(BaseModel):
    """Silence every series whose labels include ``matchers`` until ``until`` (unix s)."""

    model_config = ConfigDict(extra="forbid")

    id: str = ""
    matchers: dict[str, str] = Field(min_length=1)
    until: float = Field(description="unix seconds; the mute ends then")
    reason: str | None = None
    created_at: float = Field(default=0.0, description="unix seconds")

    def matches(self, series_key: str) -> bool:
        """True when the series (canonical key) carries every matcher's label and value.

        >>> Mute(matchers={"service": "db"}, until=1.0).matches('lat{service="db"}')
        True
        >>> Mute(matchers={"__name__": "up"}, until=1.0).matches('lat{service="db"}')
        False
        """
        return labels_match(series_key, self.matchers)


class FalsePositive(BaseModel):
    """An incident an operator marked as a false positive, with what it alerted on."""

    model_config = ConfigDict(extra="forbid")

    incident_id: str
    marked_at: float = Field(description="unix seconds of the mark")
    nodes: list[str] = Field(default_factory=list)
    series: list[str] = Field(default_factory=list, description="target series keys")
    reason: str | None = None
