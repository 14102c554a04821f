"""ingest stage of causalwatch: Kafka records in, validated columnar samples out.

Pure cores: :mod:`ingest.decode` (three formats to a :class:`~causalwatch.models.SampleBatch`),
:mod:`ingest.validate` (checks and reason codes), :mod:`ingest.batch` (series rows, series
limit). Adapters: :mod:`ingest.kafka_source` / :mod:`ingest.kafka_sink` (kafka-python:
consumer group, manual commits, resume from a checkpoint; producer for internal topics),
:mod:`ingest.confluent_backend` (the same on confluent-kafka), :mod:`ingest.kafka_backend`
(picks one from ``kafka.backend``), :mod:`ingest.kafka_config` (client options, security),
:mod:`ingest.kafka_errors` (the one Kafka error map) and :mod:`ingest.deadletter`
(``<topic>.dlq``).

Usage, as the pipeline wires it (``settings`` from :func:`causalwatch.settings.load_settings`)::

    limits = IngestLimits.from_settings(settings.ingest)
    formats = {t.name: t.format for t in settings.kafka.topics}
    source = make_source(settings.kafka, resume_offsets=checkpoint.offsets_for)
    sink = make_sink(settings.kafka)
    dlq = DeadLetterSink(sink, suffix=settings.kafka.dlq_suffix)
    index = SeriesIndex(settings.ingest.node_label, max_series=settings.ingest.max_series)
    while running:
        records = source.next_batch(settings.kafka.max_poll_records)
        batch, errors = decode_batch(records, formats, limits, now_s=time.time())
        rows, batch, refused = assign_rows(batch, index, records)
        dlq.write_batch(errors + refused)      # raises BackendError: do not commit
        ...                                    # detect, explain, publish, checkpoint
        source.commit(next_offsets(records))   # the NEXT offset to read per partition
    source.close()

``dlq.counts`` (reason -> records dead-lettered) is read by the metrics collector at scrape
time.
"""

from typing import TYPE_CHECKING, Any

from ingest.batch import assign_rows, next_offsets
from ingest.decode import FORMATS, decode_batch, decode_record
from ingest.validate import (
    REASONS,
    IngestDecodeError,
    IngestLimits,
    IngestSchemaError,
)

if TYPE_CHECKING:
    from ingest.deadletter import DeadLetterSink
    from ingest.kafka_backend import make_sink, make_source
    from ingest.kafka_sink import KafkaSink, ensure_topics
    from ingest.kafka_source import KafkaSource

__all__ = [
    "FORMATS",
    "REASONS",
    "DeadLetterSink",
    "IngestDecodeError",
    "IngestLimits",
    "IngestSchemaError",
    "KafkaSink",
    "KafkaSource",
    "assign_rows",
    "decode_batch",
    "decode_record",
    "ensure_topics",
    "make_sink",
    "make_source",
    "next_offsets",
]

_ADAPTERS = {
    "DeadLetterSink": "ingest.deadletter",
    "KafkaSink": "ingest.kafka_sink",
    "KafkaSource": "ingest.kafka_source",
    "ensure_topics": "ingest.kafka_sink",
    "make_sink": "ingest.kafka_backend",
    "make_source": "ingest.kafka_backend",
}


def __getattr__(name: str) -> Any:
    # Adapters load on first use so importing a pure core never imports kafka-python.
    module = _ADAPTERS.get(name)
    if module is None:
        raise AttributeError(f"module 'ingest' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
