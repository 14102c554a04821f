"""Pick the Kafka client library: one place builds sources and sinks from the settings.

``kafka.backend`` is ``kafka-python`` (the default, pure Python) or ``confluent``
(librdkafka through confluent-kafka, ``pip install causalwatch[fast]``). Both give the same
interface (:class:`ingest.kafka_source.KafkaSource`, :class:`ingest.kafka_sink.KafkaSink`)
and the same semantics; the pipeline never sees which one runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from causalwatch.settings import KafkaSettings

__all__ = ["make_sink", "make_source"]

TP = tuple[str, int]


def make_source(
    settings: KafkaSettings,
    *,
    resume_offsets: Callable[[list[TP]], Mapping[TP, int]] | None = None,
    topics: Sequence[str] | None = None,
    group_id: str | None = None,
    on_revoke: Callable[[list[TP]], None] | None = None,
    **kwargs: Any,
) -> Any:
    """A consumer-group source of the configured backend."""
    if settings.backend == "confluent":
        from ingest.confluent_backend import ConfluentSource

        return ConfluentSource(
            settings,
            resume_offsets=resume_offsets,
            topics=topics,
            group_id=group_id,
            on_revoke=on_revoke,
            **kwargs,
        )
    from ingest.kafka_source import KafkaSource

    return KafkaSource(
        settings,
        resume_offsets=resume_offsets,
        topics=topics,
        group_id=group_id,
        on_revoke=on_revoke,
        **kwargs,
    )


def make_sink(settings: KafkaSettings, **kwargs: Any) -> Any:
    """A producer of the configured backend (acks=all, one flush per batch)."""
    if settings.backend == "confluent":
        from ingest.confluent_backend import ConfluentSink

        return ConfluentSink(settings, **kwargs)
    from ingest.kafka_sink import KafkaSink

    return KafkaSink(settings, **kwargs)
