"""kafka-python's source tells an unreadable batch from a bug by where the error was raised."""

from __future__ import annotations

import pytest
from kafka.record import MemoryRecords, MemoryRecordsBuilder

from ingest.kafka_source import _raised_reading_records


def corrupt_gzip_batch() -> bytes:
    builder = MemoryRecordsBuilder(magic=2, compression_type=1, batch_size=1_048_576)
    for i in range(50):
        builder.append(timestamp=None, key=None, value=b"value %d " % i * 20, headers=[])
    builder.close()
    raw = bytearray(builder.buffer())
    raw[-20:] = b"\x00" * 20  # damage the compressed payload (no CRC check on this path)
    return bytes(raw)


def test_a_codec_error_inside_the_record_reader_counts_as_unreadable() -> None:
    records = MemoryRecords(corrupt_gzip_batch())
    batch = records.next_batch()
    with pytest.raises(Exception) as info:  # whatever the codec raises
        list(batch)
    assert _raised_reading_records(info.value)


def test_an_error_raised_elsewhere_does_not() -> None:
    try:
        raise RuntimeError("a bug in the caller")
    except RuntimeError as exc:
        assert not _raised_reading_records(exc)
