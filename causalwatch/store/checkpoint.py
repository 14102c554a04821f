"""Checkpoints: stage state and the Kafka offsets it covers, written together to Redis.

A checkpoint is ``{schema_version, arrays, meta, offsets}`` serialised as one ``.npz`` blob
and written with a single ``SET``, so state and offsets can never disagree: either the
whole checkpoint is there or the previous one is. ``offsets`` holds the **next** offset to
read per ``(topic, partition)``. On restart the consumer seeks there, so records after the
checkpoint are processed again (at-least-once) and no sample is counted twice in the state.
Offsets are committed to Kafka only after the checkpoint is durable, for lag dashboards.

Arrays are plain NumPy (no pickle); a ``schema_version`` mismatch raises
:class:`~causalwatch.errors.StateError` naming both versions.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import redis

from causalwatch.errors import StateError
from causalwatch.store.client import map_redis_errors

__all__ = [
    "SCHEMA_VERSION",
    "Checkpoint",
    "CheckpointStore",
    "RedisCheckpointStore",
    "decode",
    "encode",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

Offsets = dict[tuple[str, int], int]


@dataclass
class Checkpoint:
    """State of one stage: named array groups (``detector``, ``explainer`` ...), JSON meta
    (series index, graph version ...) and the next offsets they cover."""

    arrays: dict[str, dict[str, npt.NDArray[Any]]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    offsets: Offsets = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION


def encode(cp: Checkpoint) -> bytes:
    flat: dict[str, npt.NDArray[Any]] = {}
    for group, arrays in cp.arrays.items():
        for name, arr in arrays.items():
            flat[f"{group}/{name}"] = np.asarray(arr)
    header = {
        "schema_version": cp.schema_version,
        "meta": cp.meta,
        "offsets": [[t, p, o] for (t, p), o in sorted(cp.offsets.items())],
    }
    flat["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **flat)
    return buf.getvalue()


def decode(blob: bytes, expected_version: int = SCHEMA_VERSION) -> Checkpoint:
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            header = json.loads(npz["__header__"].tobytes().decode())
            arrays: dict[str, dict[str, npt.NDArray[Any]]] = {}
            for key in npz.files:
                if key == "__header__":
                    continue
                group, _, name = key.partition("/")
                arrays.setdefault(group, {})[name] = npz[key]
    except (OSError, ValueError, KeyError) as exc:
        raise StateError(f"checkpoint is unreadable: {exc}") from exc
    version = int(header["schema_version"])
    if version != expected_version:
        raise StateError(
            f"checkpoint schema_version {version} does not match this build's "
            f"{expected_version}; delete the checkpoint key or run the matching version"
        )
    offsets = {(str(t), int(p)): int(o) for t, p, o in header["offsets"]}
    return Checkpoint(arrays=arrays, meta=header["meta"], offsets=offsets, schema_version=version)


class CheckpointStore(Protocol):
    """Where a stage's checkpoints go (Redis in the service; a fake in tests)."""

    def save(self, cp: Checkpoint) -> int: ...
    def load(self) -> Checkpoint | None: ...
    def for_partition(self, tp: tuple[str, int]) -> CheckpointStore: ...


class RedisCheckpointStore:
    """One checkpoint per stage and consumer group under ``{prefix}checkpoint:{name}``."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client: Any = client
        self.key = key

    def for_partition(self, tp: tuple[str, int]) -> RedisCheckpointStore:
        """The store of one input partition's checkpoint (scaled detectors)."""
        return RedisCheckpointStore(self.client, f"{self.key}:partition:{tp[0]}:{tp[1]}")

    def save(self, cp: Checkpoint) -> int:
        """Write the checkpoint atomically; returns its size in bytes."""
        blob = encode(cp)
        with map_redis_errors(f"checkpoint save ({self.key})"):
            self.client.set(self.key, blob)
        return len(blob)

    def load(self) -> Checkpoint | None:
        with map_redis_errors(f"checkpoint load ({self.key})"):
            blob = self.client.get(self.key)
        return None if blob is None else decode(blob)

    def exists(self) -> bool:
        with map_redis_errors(f"checkpoint exists ({self.key})"):
            return bool(self.client.exists(self.key))

    def delete(self) -> None:
        with map_redis_errors(f"checkpoint delete ({self.key})"):
            self.client.delete(self.key)
