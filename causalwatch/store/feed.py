"""Redis pub/sub adapter: the explanation notifications the incident list follows live.

:class:`~causalwatch.store.results.ResultStore` publishes each new explanation's JSON on the
channel ``{p}explanations``. :meth:`ExplanationFeed.listen` subscribes one connection per
listener and yields the messages, or None after ``poll_s`` without one (the caller sends a
keep-alive then, and notices a gone client). Messages sent while nobody listens are lost,
as pub/sub is: a page loads the current list first and the feed only adds to it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import redis

from causalwatch.store.client import map_redis_errors

__all__ = ["ExplanationFeed"]


class ExplanationFeed:
    """Subscriptions to the explanation channel, at most ``max_listeners`` at once."""

    def __init__(
        self, client: redis.Redis, *, prefix: str = "causalwatch:", max_listeners: int = 32
    ) -> None:
        self.client: Any = client
        self.channel = f"{prefix}explanations"
        self.max_listeners = max_listeners
        self._listeners = 0
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        """Reserve a listener slot; False when ``max_listeners`` are already listening."""
        with self._lock:
            if self._listeners >= self.max_listeners:
                return False
            self._listeners += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._listeners = max(0, self._listeners - 1)

    def listen(self, poll_s: float = 1.0) -> Iterator[bytes | None]:
        """Messages of the channel as they come; None after each ``poll_s`` without one.
        The subscription ends when the generator is closed."""
        with map_redis_errors(f"subscribe to {self.channel}"):
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(self.channel)
        try:
            while True:
                with map_redis_errors(f"read {self.channel}"):
                    msg = pubsub.get_message(timeout=poll_s)
                if msg is None:
                    yield None
                elif msg.get("type") == "message":
                    data = msg.get("data")
                    yield data if isinstance(data, bytes) else str(data).encode()
        finally:
            with contextlib.suppress(redis.exceptions.RedisError):  # a broken connection
                pubsub.close()
