"""The webhook outbox in Redis (adapter): durable entries, due times, dead letters.

This is the storage half of outgoing webhooks; :mod:`causalwatch.publish.webhooks` renders
the bodies, POSTs them and decides each outcome. Redis layout (prefix ``p``):

- ``{p}webhooks:outbox``: hash, entry id -> entry JSON (url, kind, body, attempts ...)
- ``{p}webhooks:due``: sorted set, entry id scored by the next attempt time (unix s)
- ``{p}webhooks:dead``: hash, entry id -> entry JSON with ``last_error``, kept for inspection
  (at most ``keep_max``, oldest dropped; ``{p}webhooks:dead:ts`` orders them)
- ``{p}webhooks:sent:{id}``: marker with a TTL: a delivered entry is not added again

:meth:`WebhookOutbox.add` skips an id that is pending, dead or recently sent, in one Lua
step per entry, so the same event enqueued twice (a replay after a restart) is sent once.
:meth:`WebhookOutbox.claim` moves due entries' next attempt to a lease time, so a
dispatcher that crashes mid-delivery leaves them to be retried after the lease.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis

from causalwatch.store.client import map_redis_errors

__all__ = ["WebhookOutbox"]

Entry = dict[str, Any]

_ENQUEUE = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then return 0 end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""
_TRIM_DEAD = """
local n = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[1])
if n <= 0 then return 0 end
local ids = redis.call('ZRANGE', KEYS[2], 0, n - 1)
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - 1)
redis.call('HDEL', KEYS[1], unpack(ids))
return n
"""
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[3], id) end
return ids
"""


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class WebhookOutbox:
    """Outbox entries under ``prefix`` in one Redis. Thread-safe (redis-py pool).

    An entry is a JSON-able dict with at least ``id``; the dispatcher owns its other fields.
    """

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client: Any = client
        self.prefix = prefix
        self.k_outbox = f"{prefix}webhooks:outbox"
        self.k_due = f"{prefix}webhooks:due"
        self.k_dead = f"{prefix}webhooks:dead"
        self.k_dead_ts = f"{prefix}webhooks:dead:ts"
        self._enqueue = client.register_script(_ENQUEUE)
        self._claim = client.register_script(_CLAIM)
        self._trim_dead = client.register_script(_TRIM_DEAD)

    def sent_key(self, entry_id: str) -> str:
        return f"{self.prefix}webhooks:sent:{entry_id}"

    def add(self, entries: Sequence[Entry], due: float) -> list[bool]:
        """Add entries due at ``due`` (unix s), in one round trip; True where new."""
        if not entries:
            return []
        with map_redis_errors(f"webhook outbox enqueue ({self.k_outbox})"):
            pipe = self.client.pipeline(transaction=False)
            for entry in entries:
                eid = entry["id"]
                keys = [self.k_outbox, self.k_due, self.sent_key(eid), self.k_dead]
                self._enqueue(keys=keys, args=[eid, json.dumps(entry), due], client=pipe)
            added = pipe.execute()
        return [bool(int(ok)) for ok in added]

    def claim(self, now: float, limit: int, lease_until: float) -> list[Entry]:
        """Up to ``limit`` entries due at ``now``; their next attempt moves to the lease."""
        with map_redis_errors(f"webhook outbox claim ({self.k_due})"):
            ids = [_text(i) for i in self._claim(keys=[self.k_due], args=[now, limit, lease_until])]
            raws = self.client.hmget(self.k_outbox, ids) if ids else []
            orphans = [eid for eid, raw in zip(ids, raws, strict=True) if raw is None]
            if orphans:
                self.client.zrem(self.k_due, *orphans)
        return [json.loads(raw) for raw in raws if raw is not None]

    def delivered(self, entry_id: str, remember_s: int) -> None:
        """Remove a delivered entry and remember it for ``remember_s`` (de-duplication)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self.k_outbox, entry_id)
        pipe.zrem(self.k_due, entry_id)
        pipe.set(self.sent_key(entry_id), "1", ex=remember_s)
        with map_redis_errors(f"webhook outbox delivered ({self.k_outbox})"):
            pipe.execute()

    def retry_at(self, entry: Entry, due: float) -> None:
        """Store the updated entry (attempts, last error) and its next attempt time."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.k_outbox, entry["id"], json.dumps(entry))
        pipe.zadd(self.k_due, {entry["id"]: due})
        with map_redis_errors(f"webhook outbox retry ({self.k_outbox})"):
            pipe.execute()

    def dead(self, entry: Entry, now: float, keep_max: int) -> None:
        """Move an entry to the dead hash; the oldest dead entries past ``keep_max`` go."""
        eid = entry["id"]
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self.k_outbox, eid)
        pipe.zrem(self.k_due, eid)
        pipe.hset(self.k_dead, eid, json.dumps(entry))
        pipe.zadd(self.k_dead_ts, {eid: now})
        self._trim_dead(keys=[self.k_dead, self.k_dead_ts], args=[keep_max], client=pipe)
        with map_redis_errors(f"webhook outbox dead ({self.k_dead})"):
            pipe.execute()

    def size(self) -> int:
        """Entries waiting (pending or retrying)."""
        with map_redis_errors(f"webhook outbox size ({self.k_outbox})"):
            return int(self.client.hlen(self.k_outbox))

    def dead_entries(self) -> list[Entry]:
        """Dead entries, oldest first."""
        with map_redis_errors(f"webhook outbox dead entries ({self.k_dead})"):
            raw: dict[Any, Any] = self.client.hgetall(self.k_dead)
        return sorted((json.loads(v) for v in raw.values()), key=lambda e: e["dead_at"])

    def requeue_dead(self, entry_id: str, now: float) -> bool:
        """Move a dead entry back, due at ``now``, with a fresh attempt budget."""
        with map_redis_errors(f"webhook outbox requeue ({self.k_dead})"):
            raw = self.client.hget(self.k_dead, entry_id)
            if raw is None:
                return False
            entry = json.loads(raw)
            entry.update(attempts=0, last_error=None)
            entry.pop("dead_at", None)
            pipe = self.client.pipeline(transaction=True)
            pipe.hdel(self.k_dead, entry_id)
            pipe.zrem(self.k_dead_ts, entry_id)
            pipe.hset(self.k_outbox, entry_id, json.dumps(entry))
            pipe.zadd(self.k_due, {entry_id: now})
            pipe.execute()
        return True
