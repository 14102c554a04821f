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
    "INCONCLUSIVE",
    "ROOT_CAUSE",
    "CauseSummary",
    "Evidence",
    "ExplanationResult",
    "GrangerEvidence",
    "IncidentSummary",
    "MechanismEvidence",
    "Opposing",
    "PointCounts",
    "Ranking",
    "RootCauseResult",
    "Span",
    "TargetRef",
    "digest",
    "verdict_of",
]

#: the verdict of an explanation whose top candidate clearly changed on its own
ROOT_CAUSE = "root_cause"
#: no candidate's own mechanism changed, or the top two cannot be told apart
INCONCLUSIVE = "inconclusive"


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
    #: the node's own change is significant in the target's direction after correcting
    #: for every judged candidate (Bonferroni, 5 %): what the verdict reads
    changed: bool = False


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

    share: float  # signed Shapley share phi / sum(phi) (NaN: undefined); diagnostics
    contribution: float  # signed Shapley value, target units (sums to the deviation)
    target_deviation: float
    mechanism_change: MechanismEvidence
    total_effect: float  # of the node's noise on the target
    path: tuple[str, ...]  # node -> ... -> target in the graph
    granger: GrangerEvidence | None
    ci: tuple[float, float]  # 95% interval of the root cause's (non-negative) share
    series_choice: str  # why this series of the node was analysed
    points: PointCounts
    method: str = "scm"  # which ranking method answered (explainer.ranking.METHODS)


@dataclass(frozen=True, slots=True)
class RootCauseResult:
    """One ranked candidate. ``score`` in [0, 1] ranks; ``share`` in [0, 1] is how much of
    the target's deviation the node explains: its contribution in the deviation's direction
    over all such contributions (0 for a node that pulled the other way, see
    :class:`Opposing`). Over the listed causes the shares and the explanation's
    ``unexplained`` sum to 1."""

    node: str
    series: str
    score: float
    share: float
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class Opposing:
    """A node whose contribution pulled the target against its deviation (a cache that
    got faster while the database got slower): ``share`` is its size on the same scale as
    the root causes' shares, listed apart because it explains none of the deviation."""

    node: str
    series: str
    share: float


def verdict_of(root_causes: tuple[RootCauseResult, ...]) -> tuple[str, str]:
    """``(verdict, reason)`` of a ranking, best first.

    ``root_cause`` when the top candidate's own mechanism changed and the second cannot
    claim the same: either the second did not change on its own, or (with a given graph,
    method ``scm``) the 95 % intervals of their shares do not overlap. Otherwise
    ``inconclusive``: no candidate changed, or the top two changed and cannot be told
    apart. Without a graph (methods ``star`` and ``robust_z``) every moved node is a root
    of the star and the shares say which node *predicts* the target, not which caused it,
    so two changed candidates are never separable there.

    >>> verdict_of(())
    ('inconclusive', 'no candidate')
    """
    if not root_causes:
        return INCONCLUSIVE, "no candidate"
    top = root_causes[0]
    if not top.evidence.mechanism_change.changed:
        others = any(rc.evidence.mechanism_change.changed for rc in root_causes[1:])
        why = "top candidate's own mechanism did not change" if others else "no own change"
        return INCONCLUSIVE, why
    if len(root_causes) < 2 or not root_causes[1].evidence.mechanism_change.changed:
        return ROOT_CAUSE, "only the top candidate changed on its own"
    if top.evidence.method != "scm":
        return INCONCLUSIVE, "several candidates changed and no graph orders them"
    lo1 = top.evidence.ci[0]
    hi2 = root_causes[1].evidence.ci[1]
    if not (lo1 > hi2):  # NaN intervals count as overlapping
        return INCONCLUSIVE, "top two changed and their share intervals overlap"
    return ROOT_CAUSE, "top share interval above the second's"


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
    opposing: tuple[Opposing, ...] = ()
    method: str = "scm"


@dataclass(frozen=True, slots=True)
class ExplanationResult:
    """One explanation of one anomalous target series (an incident has one per target).

    ``id`` is deterministic (incident, target, version), so a replay after a restart
    overwrites instead of duplicating. ``verdict`` (:func:`verdict_of`) says whether the
    top candidate stands out; ``unexplained`` is the part of the deviation the listed
    causes do not explain (1 - their shares); ``opposing`` the nodes that pulled the other
    way; ``method`` which ranking method answered.
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
    verdict: str = INCONCLUSIVE
    verdict_reason: str = "no candidate"
    unexplained: float = 1.0
    opposing: tuple[Opposing, ...] = ()
    method: str = "none"

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
        *,
        opposing: tuple[Opposing, ...] = (),
    ) -> ExplanationResult:
        """The result with its deterministic id, the severity clipped to [0, 100], and the
        verdict, the unexplained part and the answering method derived from
        ``root_causes``."""
        verdict, why = verdict_of(root_causes)
        explained = sum(rc.share for rc in root_causes)
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
            verdict=verdict,
            verdict_reason=why,
            unexplained=max(0.0, 1.0 - explained),
            opposing=opposing,
            method=root_causes[0].evidence.method if root_causes else "none",
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
