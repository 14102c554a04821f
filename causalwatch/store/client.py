"""The Redis client of a process, and the one place that translates Redis errors.

Every Redis call in :mod:`causalwatch.store` runs inside :func:`map_redis_errors`, the way
httpx sends every transport call through ``map_httpcore_exceptions``: a
``redis.exceptions.RedisError`` leaves as :class:`~causalwatch.errors.BackendError` with
``backend="redis"``, a message naming what failed (``redis checkpoint save failed: ...``)
and ``retryable`` True for connection errors and timeouts (trying again can help), False
for the rest (a script or command error, a wrong password). No redis-py exception escapes
the package.

:func:`connect` takes the ``redis`` settings: an ACL user and password, TLS with a CA and a
client certificate. Secrets stay out of every message: the password is passed to redis-py
only, never put in a URL, and a URL is shown with its password masked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import redis
import redis.exceptions

from causalwatch.errors import BackendError
from causalwatch.settings import redact_url

if TYPE_CHECKING:
    from causalwatch.settings import RedisSettings

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
            f"redis {what} failed: {_message(exc)}", backend="redis", retryable=retryable
        ) from exc


def _message(exc: BaseException) -> str:
    """redis-py's message, with any URL in it masked (it can quote the one it was given)."""
    text = str(exc)
    return " ".join(redact_url(w) if "://" in w else w for w in text.split(" "))


def connect(redis_settings: RedisSettings | str) -> redis.Redis:
    """A redis-py client for the ``redis`` settings (or a bare URL), with sane timeouts
    (no I/O until first use)."""
    from causalwatch.settings import RedisSettings

    r = redis_settings if isinstance(redis_settings, RedisSettings) else None
    url = redis_settings if isinstance(redis_settings, str) else redis_settings.url
    kwargs: dict[str, Any] = {
        "socket_timeout": 5.0,
        "socket_connect_timeout": 5.0,
        "health_check_interval": 30,
    }
    if r is not None:
        if r.username is not None:
            kwargs["username"] = r.username
        if r.password is not None:
            kwargs["password"] = r.password.get_secret_value()
        if r.uses_tls:
            if url.startswith("redis://"):
                url = "rediss://" + url[len("redis://") :]
            kwargs.update(
                ssl_cert_reqs="required",
                ssl_check_hostname=r.ssl_check_hostname,
                ssl_ca_certs=None if r.ssl_ca_certs is None else str(r.ssl_ca_certs),
                ssl_certfile=None if r.ssl_certfile is None else str(r.ssl_certfile),
                ssl_keyfile=None if r.ssl_keyfile is None else str(r.ssl_keyfile),
            )
            if r.ssl_key_password is not None:
                kwargs["ssl_password"] = r.ssl_key_password.get_secret_value()
    with map_redis_errors(f"client for {redact_url(url)}"):
        return redis.Redis.from_url(url, **kwargs)


def ping(client: redis.Redis, url: str) -> None:
    """Fail at start-up, naming the setting, when Redis cannot be reached (or refuses the
    credentials: redis.username / redis.password)."""
    with map_redis_errors(
        f"connect to {redact_url(url)} (setting redis.url, env CAUSALWATCH_REDIS__URL)"
    ):
        client.ping()
