"""Operator feedback in Redis: mutes and false-positive marks (adapter).

Why Redis: the API process writes feedback and every detector process reads it, so it has
to live where all of them look. The pipeline polls :meth:`FeedbackStore.active_mutes` and
:meth:`FeedbackStore.false_positives_since` every few seconds and applies them to the
detector (``mute(rows, until_ts)`` and ``set_sensitivity(rows, factor)``); nothing here
knows about detector rows.

Layout (prefix ``p``, default ``causalwatch:``):

- ``{p}mutes``: hash, mute id -> Mute JSON. The id is a stable hash of the sorted matchers,
  so muting the same label set again replaces its ``until`` instead of adding a second mute.
  Expired mutes are dropped lazily when read.
- ``{p}false_positives``: hash, incident id -> FalsePositive JSON; ``{p}false_positives:ts``:
  sorted set of incident ids scored by the time of the mark (unix seconds).

A matcher set selects series by label equality; the key ``__name__`` matches the metric
name. ``{"service": "db"}`` mutes every series of node ``db``;
``{"__name__": "latency", "service": "db"}`` only its latency series.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

import redis

from causalwatch.schemas import FalsePositive, Mute
from causalwatch.store.client import map_redis_errors

__all__ = ["FeedbackStore", "mute_id"]

log = logging.getLogger(__name__)


def mute_id(matchers: Mapping[str, str]) -> str:
    """Stable id of a matcher set (order-independent).

    >>> mute_id({"a": "1", "b": "2"}) == mute_id({"b": "2", "a": "1"})
    True
    """
    canon = json.dumps(dict(sorted(matchers.items())), separators=(",", ":"))
    return hashlib.blake2b(canon.encode(), digest_size=8).hexdigest()


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class FeedbackStore:
    """Mutes and false positives under ``prefix`` in one Redis. Thread-safe (redis-py pool)."""

    def __init__(self, client: redis.Redis, prefix: str = "causalwatch:") -> None:
        self.client = client
        self.prefix = prefix
        self._mutes = f"{prefix}mutes"
        self._fp = f"{prefix}false_positives"
        self._fp_ts = f"{prefix}false_positives:ts"

    def mute(
        self,
        matchers: Mapping[str, str],
        until: float,
        *,
        now: float,
        reason: str | None = None,
    ) -> Mute:
        """Create or extend the mute of ``matchers``; returns it with its id."""
        m = Mute(
            id=mute_id(matchers),
            matchers=dict(matchers),
            until=until,
            reason=reason,
            created_at=now,
        )
        self._call(lambda: self.client.hset(self._mutes, m.id, m.model_dump_json()))
        log.info("mute set", extra={"mute_id": m.id, "until": until})
        return m

    def list_mutes(self, now: float | None = None) -> list[Mute]:
        """Every stored mute, or only those still active at ``now``; expired ones are dropped."""
        raw: dict[Any, Any] = self._call(lambda: self.client.hgetall(self._mutes))
        mutes = [Mute.model_validate_json(v) for v in raw.values()]
        if now is None:
            return sorted(mutes, key=lambda m: m.id)
        expired = [m.id for m in mutes if m.until <= now]
        if expired:
            self._call(lambda: self.client.hdel(self._mutes, *expired))
        return sorted((m for m in mutes if m.until > now), key=lambda m: m.id)

    def active_mutes(self, now: float) -> list[Mute]:
        """Mutes in force at ``now`` (unix s): what the pipeline applies to the detector."""
        return self.list_mutes(now)

    def get_mute(self, mute_id_: str) -> Mute | None:
        raw = self._call(lambda: self.client.hget(self._mutes, mute_id_))
        return None if raw is None else Mute.model_validate_json(raw)

    def delete_mute(self, mute_id_: str) -> bool:
        """Remove a mute; False when there was none with that id."""
        return bool(self._call(lambda: self.client.hdel(self._mutes, mute_id_)))

    def mark_false_positive(
        self,
        incident_id: str,
        *,
        marked_at: float,
        nodes: list[str] | None = None,
        series: list[str] | None = None,
        reason: str | None = None,
    ) -> FalsePositive:
        """Record the mark (marking again moves its time, so the pipeline sees it again)."""
        fp = FalsePositive(
            incident_id=incident_id,
            marked_at=marked_at,
            nodes=list(nodes or []),
            series=list(series or []),
            reason=reason,
        )

        def write() -> Any:
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(self._fp, incident_id, fp.model_dump_json())
            pipe.zadd(self._fp_ts, {incident_id: marked_at})
            return pipe.execute()

        self._call(write)
        log.info("incident marked false positive", extra={"incident_id": incident_id})
        return fp

    def false_positives_since(self, ts: float) -> list[FalsePositive]:
        """Marks made strictly after ``ts`` (unix s), oldest first."""
        ids = self._call(lambda: self.client.zrangebyscore(self._fp_ts, f"({ts}", "+inf"))
        if not ids:
            return []
        raws = self._call(lambda: self.client.hmget(self._fp, [_text(i) for i in ids]))
        out = [FalsePositive.model_validate_json(r) for r in raws if r is not None]
        return sorted(out, key=lambda f: f.marked_at)

    def _call(self, fn: Any) -> Any:
        with map_redis_errors(f"feedback store ({self.prefix}mutes)"):
            return fn()
