"""Data contracts shared by the stages: plain dataclasses, importable without pydantic.

The hot path is columnar: bytes become a :class:`SampleBatch` (parallel arrays, one entry
per sample) without building an object per record. The detector hands the explainer
:class:`AnomalyEvent` objects and the explainer returns :class:`Explanation` objects (one
per incident update, not per sample). Their pydantic mirrors for the edges (JSON in Redis,
webhook bodies, the HTTP API's schema) are in :mod:`causalwatch.schemas`, so the cores
import this module and never pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "AnomalyEvent",
    "Explanation",
    "RawRecord",
    "RootCause",
    "SampleBatch",
    "Target",
    "TimeWindow",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One Kafka record (or one replayed line) before decoding."""

    topic: str
    partition: int
    offset: int
    value: bytes
    timestamp_ms: int | None = None
    key: bytes | None = None


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
    """One ranked candidate: ``score`` in [0, 1] (higher is more likely), ``share`` of the
    target's deviation attributed to this node, and the evidence behind both."""

    node: str
    series: str | None = None
    score: float
    share: float
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    """One explanation of one anomalous target series (an incident has one per target).

    ``id`` is deterministic (incident, target, version) so a replay after a restart
    overwrites instead of duplicating. ``detected_at`` is unix seconds, ``severity`` 0-100.
    JSON in and out goes through :mod:`causalwatch.schemas` (validated, one format).
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
