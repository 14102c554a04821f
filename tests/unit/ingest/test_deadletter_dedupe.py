"""Dead letters are written once per source position, across a crash (the DLQ tail read
back at the first write) and across a failed write that landed anyway (read back again)."""

from __future__ import annotations

import pytest

from causalwatch.errors import BackendError
from causalwatch.models import RawRecord
from ingest.deadletter import DeadLetterSink
from ingest.validate import IngestSchemaError


def _err(offset: int, sample: int | None = None) -> IngestSchemaError:
    rec = RawRecord("metrics", 0, offset, b"bad", key=None)
    return IngestSchemaError(
        "bad", reason="missing_field", field="value", record=rec, sample_index=sample
    )


class Topic:
    """A topic as plain lists: what was written, and a switch to fail after landing."""

    def __init__(self) -> None:
        self.records: dict[str, list[list[tuple[str, bytes]]]] = {}
        self.fail_after_landing = False

    def write_batch(self, topic: str, items: list) -> None:
        self.records.setdefault(topic, []).extend(h for _k, _v, h in items)
        if self.fail_after_landing:
            self.fail_after_landing = False
            raise BackendError("ack lost", backend="kafka")

    def tail(self, topic: str) -> list[list[tuple[str, bytes]]]:
        return list(self.records.get(topic, []))


def test_a_restart_does_not_write_again_what_the_dlq_holds() -> None:
    topic = Topic()
    DeadLetterSink(topic, read_back=topic.tail).write_batch([_err(1), _err(2)])
    again = DeadLetterSink(topic, read_back=topic.tail)  # after kill -9: same batch again
    again.write_batch([_err(1), _err(2), _err(3)])
    assert len(topic.records["metrics.dlq"]) == 3
    assert again.duplicates_skipped == 2


def test_a_failed_write_that_landed_is_not_written_twice() -> None:
    topic = Topic()
    sink = DeadLetterSink(topic, read_back=topic.tail)
    sink.write_batch([_err(1)])
    topic.fail_after_landing = True
    with pytest.raises(BackendError):
        sink.write_batch([_err(5), _err(6)])
    sink.write_batch([_err(5), _err(6)])  # the retry
    assert len(topic.records["metrics.dlq"]) == 3


def test_several_errors_at_one_position_are_all_kept() -> None:
    topic = Topic()
    sink = DeadLetterSink(topic, read_back=topic.tail)
    sink.write_batch([_err(7), _err(7), _err(7, sample=2)])
    assert len(topic.records["metrics.dlq"]) == 3
    DeadLetterSink(topic, read_back=topic.tail).write_batch([_err(7), _err(7), _err(7, sample=2)])
    assert len(topic.records["metrics.dlq"]) == 3
