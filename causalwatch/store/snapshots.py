"""Redis adapter for the incident page's snapshots (series, expected value and band, graph).

Layout (``p`` is the prefix): ``{p}snapshot:{explanation_id}`` holds one snapshot's JSON
(built by :mod:`causalwatch.app.pipeline.snapshot`), with the same time to live as the
explanation's own key, so a page never outlives its data by much and Redis stays bounded.
A batch is written in one pipeline. A replayed explanation rewrites its snapshot (same key).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from causalwatch.store.client import map_redis_errors

__all__ = ["SnapshotStore"]


class SnapshotStore:
    """Writes and reads snapshots keyed by explanation id, over one Redis client."""

    def __init__(
        self, client: redis.Redis, *, prefix: str = "causalwatch:", ttl_s: int = 7 * 86_400
    ) -> None:
        self.client: Any = client
        self.prefix = prefix
        self.ttl_s = ttl_s

    def key(self, explanation_id: str) -> str:
        return f"{self.prefix}snapshot:{explanation_id}"

    def write_batch(self, snapshots: Sequence[Mapping[str, Any]]) -> int:
        """Store snapshots (each names its ``explanation_id``); returns how many."""
        if not snapshots:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for snap in snapshots:
            body = json.dumps(snap, separators=(",", ":"), allow_nan=False)
            pipe.set(self.key(str(snap["explanation_id"])), body, ex=self.ttl_s)
        with map_redis_errors("write snapshots"):
            pipe.execute()
        return len(snapshots)

    def get(self, explanation_id: str) -> dict[str, Any] | None:
        with map_redis_errors("read snapshot"):
            raw = self.client.get(self.key(explanation_id))
        if not raw:
            return None
        out: dict[str, Any] = json.loads(raw)
        return out
