"""Data contracts shared by the stages: plain dataclasses, importable without pydantic.

The hot path is columnar: bytes become a :class:`SampleBatch` (parallel arrays, one entry
per sample) without building an object per record. The detector hands the explainer
:class:`AnomalyEvent` objects and the explainer returns :class:`Explanation` objects (one
per incident update, not per sample). Their pydantic mirrors for the edges (JSON in Redis,
webhook bodies, the HTTP API's schema) are in :mod:`causalwatch.schemas`, so the cores
import this module and never pydantic.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # the explainer imports this module: no import cycle at run time
    from explainer.results import Evidence, ExplanationResult, GrangerEvidence

__all__ = [
    "AnomalyEvent",
    "Explanation",
    "Opposing",
    "RawRecord",
    "RootCause",
    "SampleBatch",
    "Target",
    "TimeWindow",
    "raw_record",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class RawRecord(NamedTuple):
    """One Kafka record (or one replayed line) before decoding.

    ``error`` is set (and ``value`` empty) when the client could not read the record at all:
    a batch in a codec it cannot decompress, or a corrupt one. The source skips it and the
    decoder dead-letters it with that reason, so one bad batch never stops a partition.

    Immutable and hashable. A named tuple rather than a frozen dataclass: the Kafka sources
    build one per message, and a frozen dataclass's ``__init__`` (one ``object.__setattr__``
    per field) cost about 1 µs of it; :func:`raw_record` builds one in a single C call.
    """

    topic: str
    partition: int
    offset: int
    value: bytes
    timestamp_ms: int | None = None
    key: bytes | None = None
    error: str | None = None


#: ``raw_record((topic, partition, offset, value, timestamp_ms, key, error))``: a
#: :class:`RawRecord` from a tuple of all seven fields, without the Python-level ``__new__``
#: (for the sources' per-message loops)
raw_record: Callable[[tuple[str, int, int, bytes, int | None, bytes | None, str | None]], RawRecord]
raw_record = functools.partial(tuple.__new__, RawRecord)


@dataclass(slots=True)
class SampleBatch:
    """Decoded, validated samples of one poll, in columns.

    ``series_keys[i]`` is the canonical key (see :func:`causalwatch.series.series_key`),
    ``ts[i]`` unix seconds (float64), ``value[i]`` the float value. ``origin[i]`` is the
    index, in the poll's list of :class:`RawRecord`, of the record the sample came from
    (so a later stage can still dead-letter it with its raw bytes); -1 when unknown.
    Samples keep their order of arrival; the same series may appear several times.
    """

    series_keys: list[str] = field(default_factory=list)
    ts: FloatArray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    value: FloatArray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    origin: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.series_keys)

    @classmethod
    def from_lists(
        cls,
        keys: list[str],
        ts: list[float],
        value: list[float],
        origin: list[int] | None = None,
    ) -> SampleBatch:
        return cls(
            keys,
            np.asarray(ts, dtype=np.float64),
            np.asarray(value, dtype=np.float64),
            np.asarray(origin if origin is not None else [-1] * len(keys), dtype=np.int64),
        )

    def select(self, mask: BoolArray) -> SampleBatch:
        """The samples where ``mask`` is True, in order."""
        idx = np.flatnonzero(mask)
        return SampleBatch(
            [self.series_keys[i] for i in idx.tolist()],
            self.ts[idx],
            self.value[idx],
            self.origin[idx],
        )

    @classmethod
    def concat(cls, batches: list[SampleBatch]) -> SampleBatch:
        if not batches:
            return cls()
        keys: list[str] = []
        for b in batches:
            keys.extend(b.series_keys)
        return cls(
            keys,
            np.concatenate([b.ts for b in batches]),
            np.concatenate([b.value for b in batches]),
            np.concatenate([b.origin for b in batches]),
        )


@dataclass(frozen=True, slots=True)
class AnomalyEvent:
    """The detector opened (or re-confirmed) an alert on one series at one point."""

    row: int
    series_key: str
    node: str
    ts: float
    value: float
    expected: float
    score: float
    severity: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """The series an explanation explains, and its graph node."""

    node: str
    series: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeWindow:
    """``[start, end]`` in unix seconds."""

    start: float
    end: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RootCause:
    """One ranked candidate: ``score`` in [0, 1] (higher is more likely), ``share`` in
    [0, 1]: how much of the target's deviation this node explains (the listed causes'
    shares and the explanation's ``unexplained`` sum to 1), and the evidence behind both."""

    node: str
    series: str | None = None
    score: float
    share: float
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Opposing:
    """A node whose contribution pulled the target against its deviation, with its size
    on the root causes' share scale (it explains none of the deviation)."""

    node: str
    series: str | None = None
    share: float


#: the verdicts an explanation can carry (see :func:`explainer.results.verdict_of`)
VERDICTS = ("root_cause", "inconclusive")


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    """One explanation of one anomalous target series (an incident has one per target).

    ``id`` is deterministic (incident, target, version) so a replay after a restart
    overwrites instead of duplicating. ``detected_at`` is unix seconds, ``severity`` 0-100.
    JSON in and out goes through :mod:`causalwatch.schemas` (validated, one format).
    ``verdict`` is ``root_cause`` when the top candidate clearly changed on its own, else
    ``inconclusive`` (``verdict_reason`` says why); ``unexplained`` in [0, 1] is the part
    of the deviation the listed causes do not explain; ``opposing`` lists the nodes that
    pulled the other way; ``method`` names the ranking method that answered (``scm``
    over the graph, ``star`` without one, or the ``robust_z`` fallback; ``none`` without
    candidates).
    """

    id: str
    incident_id: str
    version: int = 1
    target: Target
    detected_at: float
    window: TimeWindow
    severity: float
    root_causes: list[RootCause]
    graph_version: int
    verdict: str = "inconclusive"
    verdict_reason: str = ""
    unexplained: float = 1.0
    opposing: list[Opposing] = field(default_factory=list)
    method: str = "none"

    @classmethod
    def from_result(cls, result: ExplanationResult) -> Explanation:
        """The published form of an explainer result: the one converter from the
        explainer's dataclasses to the JSON users see (README "Outputs", webhooks, Redis,
        API). Non-finite floats in the evidence become ``null`` (strict JSON)."""
        return cls(
            id=result.id,
            incident_id=result.incident_id,
            version=result.version,
            target=Target(node=result.target.node, series=result.target.series),
            detected_at=result.detected_at,
            window=TimeWindow(start=result.window.start, end=result.window.end),
            severity=result.severity,
            root_causes=[
                RootCause(
                    node=rc.node,
                    series=rc.series,
                    score=rc.score,
                    share=rc.share,
                    evidence=_evidence_json(rc.evidence),
                )
                for rc in result.root_causes
            ],
            graph_version=result.graph_version,
            verdict=result.verdict,
            verdict_reason=result.verdict_reason,
            unexplained=_unit(result.unexplained),
            opposing=[
                Opposing(node=o.node, series=o.series, share=_unit(o.share))
                for o in result.opposing
            ],
            method=result.method,
        )


def _unit(x: float) -> float:
    """``x`` clipped to [0, 1] (0 when not finite)."""
    return min(max(x, 0.0), 1.0) if math.isfinite(x) else 0.0


def _num(x: float | int | None) -> float | int | None:
    """A JSON number: None for NaN/inf."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _evidence_json(ev: Evidence) -> dict[str, Any]:
    m = ev.mechanism_change
    return {
        "share": _num(ev.share),
        "contribution": _num(ev.contribution),
        "target_deviation": _num(ev.target_deviation),
        "mechanism_change": {
            "score": _num(m.score),
            "p_value": _num(m.p_value),
            "z": _num(m.z),
            "shift": _num(m.shift),
            "changed": m.changed,
        },
        "total_effect": _num(ev.total_effect),
        "path": list(ev.path),
        "granger": _granger_json(ev.granger),
        "ci": [_num(ev.ci[0]), _num(ev.ci[1])],
        "series_choice": ev.series_choice,
        "points": {"reference": ev.points.reference, "anomaly": ev.points.anomaly},
        "method": ev.method,
    }


def _granger_json(g: GrangerEvidence | None) -> dict[str, Any] | None:
    if g is None:
        return None
    out: dict[str, Any] = {
        "statistic": _num(g.statistic),
        "p_value": _num(g.p_value),
        "q_value": _num(g.q_value),
        "lag": g.lag,
    }
    if g.pair is not None:
        out["pair"] = list(g.pair)
    if g.edge is not None:
        out["edge"] = list(g.edge)
    return out
