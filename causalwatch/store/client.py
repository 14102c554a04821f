"""The Redis client of a process, and the one place that translates Redis errors.

Every Redis call in :mod:`causalwatch.store` runs inside :func:`map_redis_errors`, the way
httpx sends every transport call through ``map_httpcore_exceptions``: a
``redis.exceptions.RedisError`` leaves as :class:`~causalwatch.errors.BackendError` with
``backend="redis"``, a message naming what failed (``redis checkpoint save failed: ...``)
and ``retryable`` True for connection errors and timeouts (trying again can help), False
for the rest (a script or command error, a wrong password). No redis-py exception escapes
the package.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
import redis.exceptions

from causalwatch.errors import BackendError

__all__ = ["connect", "map_redis_errors", "ping"]


@contextmanager
def map_redis_errors(what: str) -> Iterator[None]:
    """Run a block of Redis calls; a Redis error becomes ``BackendError("redis <what>
    failed: ...")``, raised ``from`` the original."""
    try:
        yield
    except redis.exceptions.RedisError as exc:
        retryable = isinstance(
            exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError
        )
        raise BackendError(
            f"redis {what} failed: {exc}", backend="redis", retryable=retryable
        ) from exc


def connect(url: str) -> redis.Redis:
    """A redis-py client for ``url`` with sane timeouts (no I/O until first use)."""
    with map_redis_errors(f"client for {url}"):
        return redis.Redis.from_url(
            url, socket_timeout=5.0, socket_connect_timeout=5.0, health_check_interval=30
        )


def ping(client: redis.Redis, url: str) -> None:
    """Fail at start-up, naming the setting, when Redis cannot be reached."""
    with map_redis_errors(f"connect to {url} (setting redis.url, env CAUSALWATCH_REDIS__URL)"):
        client.ping()
