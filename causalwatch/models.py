"""Data contracts shared by the stages.

The hot path is columnar: bytes become a :class:`SampleBatch` (parallel arrays, one entry
per sample) without building an object per record. Pydantic models appear only at the edges
and for rare objects: an :class:`Explanation` is built per incident update, not per sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

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
    """One Kafka record (or one replayed line) before decoding.

    ``error`` is set (and ``value`` empty) when the client could not read the record at all:
    a batch in a codec it cannot decompress, or a corrupt one. The source skips it and the
    decoder dead-letters it with that reason, so one bad batch never stops a partition.
    """

    topic: str
    partition: int
    offset: int
    value: bytes
    timestamp_ms: int | None = None
    key: bytes | None = None
    error: str | None = None


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
    share: float = Field(description="share of the target's deviation attributed to this node")
    evidence: dict[str, Any] = Field(default_factory=dict)


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
