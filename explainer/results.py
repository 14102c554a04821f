"""Typed results of the explainer: plain frozen dataclasses, no pydantic.

The explainer's cores return these; the edge (:meth:`causalwatch.models.Explanation.from_result`)
turns them into the pydantic :class:`~causalwatch.models.Explanation` that is published as
JSON. Floats keep NaN here where a quantity is undefined (a flat series has no z); the
edge writes it as ``null``, so explanations stay strict JSON. The shape mirrors the JSON:
``ExplanationResult.root_causes[i].evidence.mechanism_change.p_value`` is
``root_causes[i].evidence.mechanism_change.p_value`` in the published document.

>>> r = ExplanationResult.build(
...     "inc-1", 1, TargetRef("api", 'lat{service="api"}'), 60.0, Span(0.0, 60.0), 120.0, (), 0
... )
>>> r.id, r.severity
('a6dd05aa012b032f', 100.0)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "CauseSummary",
    "Evidence",
    "ExplanationResult",
    "GrangerEvidence",
    "IncidentSummary",
    "MechanismEvidence",
    "PointCounts",
    "Ranking",
    "RootCauseResult",
    "Span",
    "TargetRef",
    "digest",
]


def digest(text: str, size: int = 8) -> str:
    """A short deterministic hex id of ``text`` (explanation and incident ids)."""
    return hashlib.blake2b(text.encode(), digest_size=size).hexdigest()


@dataclass(frozen=True, slots=True)
class MechanismEvidence:
    """Whether the node's own mechanism changed: the shift of its residual (its value given
    its parents) between the reference and the anomaly window."""

    score: float  # 1 - p_value
    p_value: float  # two-sided, of the robust z below
    z: float
    shift: float  # residual median shift, node units


@dataclass(frozen=True, slots=True)
class GrangerEvidence:
    """A Granger test that supports the candidate -> target link.

    Either the test of the candidate's series -> target series pair (``pair`` set), or,
    when that pair is not tested, a learned edge on the graph path (``edge`` set; its
    statistic is the edge strength and both p-values its FDR-adjusted p-value).
    """

    statistic: float | None
    p_value: float | None
    q_value: float | None
    lag: int | None
    pair: tuple[str, str] | None = None
    edge: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class PointCounts:
    """Finite points of the node's series in each window."""

    reference: int
    anomaly: int


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why a root cause ranks where it does (target units unless said otherwise)."""

    share: float  # of the target's deviation attributed to the node (NaN: undefined)
    contribution: float  # share x target deviation
    target_deviation: float
    mechanism_change: MechanismEvidence
    total_effect: float  # of the node's noise on the target
    path: tuple[str, ...]  # node -> ... -> target in the graph
    granger: GrangerEvidence | None
    ci: tuple[float, float]  # 95% interval of share
    series_choice: str  # why this series of the node was analysed
    points: PointCounts


@dataclass(frozen=True, slots=True)
class RootCauseResult:
    """One ranked candidate. ``score`` in [0, 1] ranks; ``share`` is the evidence's share
    with NaN read as 0 (a ranking needs a number)."""

    node: str
    series: str
    score: float
    share: float
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class TargetRef:
    """The explained series and its node."""

    node: str
    series: str


@dataclass(frozen=True, slots=True)
class Span:
    """A time window in unix seconds."""

    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Ranking:
    """What a ranker returns for one target: root causes best first, the analysed window
    (from the bin before the first anomalous bin to the asked time) and a severity in
    [0, 100] from the target's robust z."""

    root_causes: tuple[RootCauseResult, ...]
    window: Span
    severity: float


@dataclass(frozen=True, slots=True)
class ExplanationResult:
    """One explanation of one anomalous target series (an incident has one per target).

    ``id`` is deterministic (incident, target, version), so a replay after a restart
    overwrites instead of duplicating.
    """

    id: str
    incident_id: str
    version: int
    target: TargetRef
    detected_at: float
    window: Span
    severity: float
    root_causes: tuple[RootCauseResult, ...]
    graph_version: int

    @classmethod
    def build(
        cls,
        incident_id: str,
        version: int,
        target: TargetRef,
        detected_at: float,
        window: Span,
        severity: float,
        root_causes: tuple[RootCauseResult, ...],
        graph_version: int,
    ) -> ExplanationResult:
        """The result with its deterministic id and the severity clipped to [0, 100]."""
        return cls(
            id=digest(f"{incident_id}|{target.series}|{version}"),
            incident_id=incident_id,
            version=version,
            target=target,
            detected_at=float(detected_at),
            window=window,
            severity=max(0.0, min(100.0, severity)),
            root_causes=root_causes,
            graph_version=graph_version,
        )


class CauseSummary(NamedTuple):
    """A root cause as an open incident remembers it (a tuple: ``node, score, share``)."""

    node: str
    score: float
    share: float


@dataclass(frozen=True)
class IncidentSummary:
    """One open incident target, for metrics: root causes as ``(node, score, share)``, best
    first."""

    incident_id: str
    target_node: str
    target_series: str
    version: int
    root_causes: tuple[tuple[str, float, float], ...]
