"""The one exception hierarchy of causalwatch.

::

    CausalwatchError
    ├── ConfigError          a setting is wrong; names the setting and its env var
    ├── RecordError          bad input: dead-lettered, never crashes; carries raw bytes,
    │   │                    topic, partition, offset, key, sample index, field and a
    │   │                    short ``reason`` code
    │   ├── DecodeError      not JSON / not the declared format
    │   └── SchemaError      decoded, but a field is missing, mistyped or out of range
    ├── StateError           snapshot schema_version mismatch, capacity, unknown row
    ├── GraphError           a dependency-graph file or edit is invalid (names the line/edge)
    └── BackendError         Kafka / Redis / HTTP failure, raised ``from`` the library error;
                             ``.retryable`` says whether trying again can help

Adapters translate library errors (``kafka.errors``, ``redis.exceptions``, ``httpx``) into
``BackendError`` at the boundary; no library exception escapes an adapter. Redis errors are
translated in one place, :func:`causalwatch.store.client.map_redis_errors`.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "CausalwatchError",
    "ConfigError",
    "DecodeError",
    "GraphError",
    "RecordError",
    "SchemaError",
    "StateError",
]


class CausalwatchError(Exception):
    """Base of every error causalwatch raises on purpose."""


class ConfigError(CausalwatchError):
    """A setting is invalid. The message names the setting and its environment variable."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class RecordError(CausalwatchError):
    """One input record (or one sample inside it) is unusable.

    ``reason`` is a short stable code (``not_json``, ``missing_field``, ``nan_value`` ...)
    used as the dead-letter header and as the ``reason`` label of the dead-letter counter.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        field: str | None = None,
        raw: bytes | None = None,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        key: bytes | None = None,
        sample_index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field
        self.raw = raw
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key  # the source record's Kafka key, kept on its dead letter
        self.sample_index = sample_index  # the bad sample inside its record; None: whole record


class DecodeError(RecordError):
    """The bytes are not in the expected format (not JSON, not Influx line protocol ...)."""


class SchemaError(RecordError):
    """The record decoded, but a field is missing, has the wrong type or an invalid value."""


class StateError(CausalwatchError):
    """Detector/explainer state cannot be used: version mismatch, bad shape, unknown row."""


class GraphError(CausalwatchError):
    """A dependency graph (file, API edit) is invalid. The message names the edge or line."""


class BackendError(CausalwatchError):
    """An external system (Kafka, Redis, HTTP receiver) failed.

    ``retryable`` is True for timeouts and connection errors, False for misuse
    (unknown topic with auto-create off, authentication, bad request).
    """

    def __init__(self, message: str, *, backend: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.backend = backend
        self.retryable = retryable
