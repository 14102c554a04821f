"""assign_rows (series limit, order) and the dead-letter envelope and counters."""

from __future__ import annotations

import numpy as np
import pytest

from causalwatch.errors import BackendError, RecordError
from causalwatch.models import RawRecord, SampleBatch
from causalwatch.series import SeriesIndex
from ingest.batch import assign_rows, next_offsets
from ingest.deadletter import DeadLetterSink, dead_letter_item
from ingest.decode import decode_batch
from ingest.validate import IngestLimits, IngestSchemaError

NOW = 1_700_000_100.0


def test_assign_rows_keeps_known_series_and_refuses_new_ones_past_the_limit() -> None:
    index = SeriesIndex(max_series=2)
    index.add("old")
    records = [RawRecord("m", 0, 10, b"r0"), RawRecord("m", 1, 20, b"r1", key=b"k1")]
    batch = SampleBatch.from_lists(
        ["old", "new1", "new2", "old", "new3", "new1"],
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
        [0, 0, 1, 1, 1, 1],
    )
    rows, kept, errors = assign_rows(batch, index, records)
    assert kept.series_keys == ["old", "new1", "old", "new1"]
    assert rows.tolist() == [index.get(k) for k in kept.series_keys]
    assert kept.ts.tolist() == [1.0, 2.0, 4.0, 6.0]
    assert kept.value.tolist() == [10.0, 20.0, 40.0, 60.0]
    assert kept.origin.tolist() == [0, 0, 1, 1]
    assert [(e.reason, e.offset, e.partition, e.raw, e.field) for e in errors] == [
        ("series_limit", 20, 1, b"r1", "series")
    ]
    assert "new2" in str(errors[0]) and "new3" in str(errors[0])
    assert "ingest.max_series=2" in str(errors[0])
    assert dead_letter_item(errors[0])[1][0] == b"k1"


def test_assign_rows_without_limit_is_one_lookup_per_sample_in_order() -> None:
    index = SeriesIndex()
    batch = SampleBatch.from_lists(["a", "b", "a", "c"], [0.0] * 4, [0.0] * 4, [0] * 4)
    rows, kept, errors = assign_rows(batch, index, [])
    assert rows.dtype == np.int64 and rows.tolist() == [0, 1, 0, 2]
    assert kept is batch and errors == []


def test_next_offsets_is_last_plus_one_per_partition() -> None:
    recs = [RawRecord("a", 0, 5, b""), RawRecord("a", 0, 3, b""), RawRecord("b", 2, 0, b"")]
    assert next_offsets(recs) == {("a", 0): 6, ("b", 2): 1}


def test_dead_letter_item_headers_for_whole_record_and_per_sample_errors() -> None:
    value = b'[{"name": "x", "timestamp": 1700000000, "value": NaN}]'
    rec = RawRecord("metrics", 3, 99, value, key=b"key")
    _, errors = decode_batch([rec, RawRecord("metrics", 3, 100, b"{")], {}, IngestLimits(), NOW)
    assert [e.reason for e in errors] == ["nan_value", "not_json"]
    topic, (key, raw, headers) = dead_letter_item(errors[0])
    h = dict(headers)
    assert (topic, key, raw) == ("metrics.dlq", b"key", value)
    assert h["x-causalwatch-reason"] == b"nan_value"
    assert h["x-causalwatch-field"] == b"value"
    assert h["x-causalwatch-source-topic"] == b"metrics"
    assert h["x-causalwatch-source-partition"] == b"3"
    assert h["x-causalwatch-source-offset"] == b"99"
    assert h["x-causalwatch-sample-index"] == b"0"
    assert b"NaN" in h["x-causalwatch-message"]
    _, (key, raw, headers) = dead_letter_item(errors[1])
    assert key is None and raw == b"{"
    assert "x-causalwatch-sample-index" not in dict(headers)


def test_dead_letter_item_truncates_huge_values_and_handles_sourceless_errors() -> None:
    err = IngestSchemaError("big", reason="oversized", record=RawRecord("t", 0, 1, b"x" * 50))
    _, (_, raw, headers) = dead_letter_item(err, max_value_bytes=10)
    assert raw == b"x" * 10 and dict(headers)["x-causalwatch-truncated"] == b"50"
    plain = RecordError("from elsewhere", reason="bad_type")
    topic, (key, raw, headers) = dead_letter_item(plain, default_topic="fallback.dlq")
    assert (topic, key, raw) == ("fallback.dlq", None, b"")
    assert plain.sample_index is None
    assert dict(headers)["x-causalwatch-reason"] == b"bad_type"


class ListSink:
    """A sink built from plain lists: records what it was given, can be told to fail."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.written: list[tuple[str, int]] = []
        self.ensured: list[str] = []

    def write_batch(self, topic: str, items: list[object]) -> None:
        if self.fail:
            raise BackendError("broker down", backend="kafka")
        self.written.append((topic, len(items)))

    def ensure_topics(self, partitions: dict[str, int]) -> None:
        self.ensured.extend(partitions)


def _errors() -> list[RecordError]:
    recs = [RawRecord("a", 0, 0, b"{"), RawRecord("b", 0, 0, b""), RawRecord("a", 0, 1, b"[]")]
    return decode_batch(recs, {}, IngestLimits(), NOW)[1]


def test_dead_letter_sink_groups_by_topic_and_counts_after_success() -> None:
    sink = ListSink()
    dlq = DeadLetterSink(sink, suffix="-dead")
    dlq.write_batch(_errors())
    assert sorted(sink.written) == [("a-dead", 2), ("b-dead", 1)]
    assert dlq.counts == {"not_json": 1, "empty": 2} and dlq.total == 3
    assert sorted(sink.ensured) == ["a-dead", "b-dead"]
    dlq.write_batch(_errors())
    assert sorted(sink.ensured) == ["a-dead", "b-dead"]  # ensured once per topic
    assert dlq.counts == {"not_json": 2, "empty": 4}
    dlq.write_batch([])
    assert dlq.total == 6


def test_dead_letter_sink_failure_raises_and_counts_nothing() -> None:
    dlq = DeadLetterSink(ListSink(fail=True))
    with pytest.raises(BackendError, match="broker down"):
        dlq.write_batch(_errors())
    assert dlq.counts == {} and dlq.total == 0
