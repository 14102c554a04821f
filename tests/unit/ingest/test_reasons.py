"""Every reason code in REASONS has a record that produces it (a guard for new codes)."""

from __future__ import annotations

import json

from causalwatch.models import RawRecord
from causalwatch.series import SeriesIndex
from ingest.batch import assign_rows
from ingest.decode import decode_batch
from ingest.validate import REASONS, IngestLimits

NOW = 1_700_000_100.0
S = {"name": "x", "timestamp": NOW, "value": 1.0}

_short_names = IngestLimits(max_name_bytes=64, max_label_name_bytes=4)
# reason -> (message, format, limits)
EXAMPLES: dict[str, tuple[bytes, str, IngestLimits]] = {
    "empty": (b"", "auto", IngestLimits()),
    "oversized": (b"x" * 100, "auto", IngestLimits(max_message_bytes=50)),
    "not_json": (b"{", "json", IngestLimits()),
    "not_format": (b"cpu", "influx", IngestLimits()),
    "too_many_samples": (
        json.dumps([S, S]).encode(),
        "json",
        IngestLimits(max_samples_per_message=1),
    ),
    "missing_field": (json.dumps({"name": "x", "value": 1}).encode(), "json", IngestLimits()),
    "bad_type": (json.dumps({**S, "value": "1"}).encode(), "json", IngestLimits()),
    "bad_value": (json.dumps({**S, "value": "one"}).encode(), "prometheus", IngestLimits()),
    "bad_timestamp": (json.dumps({**S, "timestamp": "now"}).encode(), "json", IngestLimits()),
    "bad_name": (json.dumps({**S, "name": "a.b"}).encode(), "json", IngestLimits()),
    "bad_label_name": (json.dumps({**S, "labels": {"a.b": "1"}}).encode(), "json", IngestLimits()),
    "nan_value": (b"m v=nan 1700000000", "influx", IngestLimits()),
    "inf_value": (json.dumps({**S, "value": "-Inf"}).encode(), "prometheus", IngestLimits()),
    "ts_future": (json.dumps({**S, "timestamp": NOW + 3600}).encode(), "json", IngestLimits()),
    "ts_too_old": (b"m v=1 1600000000000000000", "influx", IngestLimits()),
    "too_many_labels": (
        json.dumps({**S, "labels": {"a": "1", "b": "2"}}).encode(),
        "json",
        IngestLimits(max_labels=1),
    ),
    "label_too_long": (
        b"m,host=abcdefgh v=1 1700000000",
        "influx",
        IngestLimits(max_label_value_bytes=4),
    ),
    "non_numeric_field": (b'm v="text" 1700000000', "influx", IngestLimits()),
    "name_too_long": (json.dumps({**S, "name": "n" * 65}).encode(), "json", _short_names),
    "label_name_too_long": (b"m,hostname=a v=1 1700000000", "influx", _short_names),
    "bad_unicode": (
        b'{"name": "x", "timestamp": %d, "value": 1, "labels": {"a": "\\ud800"}}' % NOW,
        "json",
        IngestLimits(),
    ),
}


def test_every_reason_has_an_example_that_produces_it() -> None:
    seen = set()
    for reason, (value, fmt, limits) in EXAMPLES.items():
        _, errors = decode_batch([RawRecord("t", 0, 0, value)], {"t": fmt}, limits, NOW)
        assert [e.reason for e in errors] == [reason], (reason, errors)
        seen.add(reason)
    records = [RawRecord("t", 0, 0, json.dumps([S, {**S, "name": "y"}]).encode())]
    batch, _ = decode_batch(records, {}, IngestLimits(), NOW)
    _, _, errors = assign_rows(batch, SeriesIndex(max_series=1), records)
    assert [e.reason for e in errors] == ["series_limit"]
    seen.add("series_limit")
    unreadable = RawRecord("t", 0, 0, b"", error="UnsupportedCodecError: codec 7")
    _, errors = decode_batch([unreadable], {}, IngestLimits(), NOW)
    assert [e.reason for e in errors] == ["undecodable_batch"]
    seen.add("undecodable_batch")
    assert seen == REASONS
