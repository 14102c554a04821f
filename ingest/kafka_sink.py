"""Kafka producer adapter and topic set-up, for internal and dead-letter topics.

:class:`KafkaSink` sends a batch and waits for every acknowledgement (``acks=all``) before
returning, so a caller that commits offsets afterwards never commits past a lost write.
:func:`ensure_topics` creates missing topics with an explicit partition count (brokers that
auto-create pick their own count, or refuse). ``kafka.errors`` never escape: they become
:class:`~causalwatch.errors.BackendError` with ``retryable`` set from the library's
``retriable`` flag, timeouts and missing brokers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from causalwatch.errors import BackendError
from causalwatch.settings import KafkaSettings

__all__ = ["KafkaSink", "ensure_topics"]

log = logging.getLogger(__name__)

Header = tuple[str, bytes]


def _backend_error(what: str, exc: BaseException) -> BackendError:
    retryable = bool(getattr(exc, "retriable", False)) or "Timeout" in type(exc).__name__
    return BackendError(
        f"kafka {what} failed: {type(exc).__name__}: {exc}",
        backend="kafka",
        retryable=retryable or type(exc).__name__ == "NoBrokersAvailable",
    )


class KafkaSink:
    """A producer for internal and dead-letter topics; one flush per batch.

    ``flush_timeout_s`` bounds both the wait for metadata of a new topic and the flush;
    past it :meth:`write_batch` raises a retryable ``BackendError``.
    """

    def __init__(self, settings: KafkaSettings, *, flush_timeout_s: float = 30.0) -> None:
        self.settings = settings
        self.flush_timeout_s = flush_timeout_s
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=settings.bootstrap_servers.split(","),
                client_id=settings.client_id,
                acks="all",
                linger_ms=5,
                batch_size=262_144,  # DLQ values can be large; default 16 KiB sends one by one
                max_request_size=4 * 1_048_576,
                max_block_ms=int(flush_timeout_s * 1000),
            )
        except KafkaError as exc:
            raise _backend_error("producer start", exc) from exc

    def write_batch(
        self, topic: str, items: Sequence[tuple[bytes | None, bytes, list[Header]]]
    ) -> None:
        """Send ``(key, value, headers)`` items and wait until all are acknowledged."""
        try:
            futures = [
                self._producer.send(topic, value=value, key=key, headers=headers)
                for key, value, headers in items
            ]
            self._producer.flush(timeout=self.flush_timeout_s)
            for fut in futures:
                fut.get(timeout=0)
        except KafkaError as exc:
            raise _backend_error(f"produce to {topic!r}", exc) from exc

    def ensure_topics(self, partitions: Mapping[str, int]) -> None:
        ensure_topics(self.settings.bootstrap_servers, partitions, self.settings.client_id)

    def close(self) -> None:
        """Flush and close; never raises.

        Records still unsent after ``flush_timeout_s`` (broker gone) are dropped with a
        warning. That is safe for at-least-once: a failed :meth:`write_batch` already raised,
        so the offsets that produced them were never committed and will be read again.
        """
        try:
            self._producer.close(timeout=self.flush_timeout_s)
        except KafkaError as exc:
            log.warning("producer closed with unsent records", extra={"error": str(exc)})
            sender = getattr(self._producer, "_sender", None)
            if sender is not None:  # close() gives up before stopping its I/O thread
                sender.force_close()
            self._producer._closed = True


def ensure_topics(
    bootstrap_servers: str, partitions: Mapping[str, int], client_id: str = "causalwatch"
) -> None:
    """Create the missing topics with the given partition counts (existing ones untouched)."""
    admin: Any = None
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers.split(","), client_id=client_id
        )
        existing = set(admin.list_topics())
        new = [
            NewTopic(name, num_partitions=n, replication_factor=1)
            for name, n in partitions.items()
            if name not in existing
        ]
        if new:
            admin.create_topics(new, raise_errors=False)
    except TopicAlreadyExistsError:
        pass
    except KafkaError as exc:
        raise _backend_error("topic creation", exc) from exc
    finally:
        if admin is not None:
            admin.close()
