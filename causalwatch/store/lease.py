"""A Redis lease: one active holder among replicas, the others standing by.

The explainer ranks root causes across all nodes, so it needs every series; two explainers
splitting the scores topic would each see half the graph. With ``--scale explainer=N`` the
replicas therefore compete for one lease: the holder consumes and explains, the others wait
and take over within ``ttl_s`` when it stops renewing (crash, network cut, shutdown). The
new holder resumes from the stage checkpoint.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from causalwatch.errors import BackendError
from causalwatch.store.client import map_redis_errors

__all__ = ["RedisLease"]

log = logging.getLogger(__name__)

# Renew only while we still hold it; release only our own lease.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLease:
    def __init__(self, client: Any, key: str, ttl_s: float = 15.0) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = int(ttl_s * 1000)
        self.token = uuid.uuid4().hex
        self.held = False
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        """Take the lease if it is free (or already ours); True when held."""
        with map_redis_errors(f"lease acquire ({self.key})"):
            if self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
                self.held = True
            else:
                self.held = bool(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))
        return self.held

    def renew(self) -> bool:
        """Extend the lease; False means another replica holds it now (stop working)."""
        with map_redis_errors(f"lease renew ({self.key})"):
            self.held = bool(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))
        return self.held

    def release(self) -> None:
        try:
            with map_redis_errors(f"lease release ({self.key})"):
                self._release(keys=[self.key], args=[self.token])
        except BackendError as exc:  # best effort: the lease expires after ttl_s anyway
            log.warning("lease release failed", extra={"key": self.key, "error": str(exc)})
        self.held = False
