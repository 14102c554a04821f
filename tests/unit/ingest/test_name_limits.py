"""Metric and label names are bounded in length, and the decoder's memos in bytes: hostile
names are dead-lettered and leave nothing behind (issue 11: 500 names of 100-900 kB grew
RSS by 210 MB through an unbounded lru_cache)."""

from __future__ import annotations

import gc
import json
import tracemalloc

from causalwatch.models import RawRecord
from causalwatch.settings import IngestSettings
from ingest.decode import decode_batch, keys
from ingest.validate import IngestLimits

NOW = 1_700_000_100.0
LIMITS = IngestLimits()


def sample(name: str, labels: dict[str, str] | None = None) -> bytes:
    return json.dumps(
        {"name": name, "labels": labels or {}, "timestamp": NOW, "value": 1.0}
    ).encode()


def reasons(values: list[bytes], fmt: str = "json", limits: IngestLimits = LIMITS) -> list[str]:
    recs = [RawRecord("t", 0, i, v) for i, v in enumerate(values)]
    _, errors = decode_batch(recs, {"t": fmt}, limits, NOW)
    return [e.reason for e in errors]


def test_default_limits_come_from_the_settings() -> None:
    limits = IngestLimits.from_settings(IngestSettings(max_name_bytes=100, max_label_name_bytes=9))
    assert (limits.max_name_bytes, limits.max_label_name_bytes) == (100, 9)
    assert (LIMITS.max_name_bytes, LIMITS.max_label_name_bytes) == (512, 128)


def test_names_at_the_limit_pass_and_one_byte_more_is_dead_lettered() -> None:
    ok = "a" * 512
    assert reasons([sample(ok)]) == []
    assert reasons([sample(ok + "b")]) == ["name_too_long"]
    # bytes, not characters: 200 two-byte characters are 400 bytes, within 512 ...
    assert reasons([sample("é" * 200)]) == ["bad_name"]  # ... but not a Prometheus name
    assert reasons([sample("x", {"l" * 128: "v"})]) == []
    assert reasons([sample("x", {"l" * 129: "v"})]) == ["label_name_too_long"]


def test_influx_names_and_tags_are_bounded_too() -> None:
    long_measurement = b"m" * 600 + b" v=1 1700000000"
    assert reasons([long_measurement], "influx") == ["name_too_long"]
    long_tag = b"m," + b"t" * 200 + b"=x v=1 1700000000"
    assert reasons([long_tag], "influx") == ["label_name_too_long"]


def test_the_message_names_the_setting_and_the_size_not_the_whole_name() -> None:
    recs = [RawRecord("t", 0, 0, sample("n" * 100_000))]
    _, errors = decode_batch(recs, {}, LIMITS, NOW)
    (err,) = errors
    assert "ingest.max_name_bytes=512" in str(err) and "100000 bytes" in str(err)
    assert len(str(err)) < 300


def test_label_values_with_a_lone_surrogate_are_checked_not_crashed() -> None:
    value = b'{"name": "x", "labels": {"a": "\\ud800' + b"z" * 2000 + b'"}, "timestamp": '
    value += str(NOW).encode() + b', "value": 1}'
    assert reasons([value]) == ["label_too_long"]


def test_hostile_names_leave_no_memory_behind() -> None:
    # 500 names of 100-900 kB (the case), in metric names and in label names.
    values = []
    for i in range(250):
        size = 100_000 + (i * 3_200)
        values.append(sample(f"n{i}" + "x" * size))
        values.append(sample("ok", {f"l{i}" + "y" * size: "v"}))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for start in range(0, len(values), 50):
            got = reasons(values[start : start + 50])
            assert set(got) == {"name_too_long", "label_name_too_long"}
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert retained < 1_000_000, retained  # the names themselves total 250 MB


def test_memos_stay_within_their_byte_budgets() -> None:
    # Many distinct valid names near the limits: the memos are cleared, never outgrow.
    for batch in range(40):
        values = [
            sample(f"m{batch}_{i}_" + "a" * 400, {f"l{batch}_{i}_" + "b" * 100: "v" * 200})
            for i in range(500)
        ]
        assert reasons(values) == []
        assert keys._names_bytes[0] <= keys._NAME_CACHE_BYTES
        assert keys._names_bytes[1] <= keys._NAME_CACHE_BYTES
        assert keys._key_cache_bytes[0] <= keys._KEY_CACHE_BYTES
    assert sum(len(k) for k in keys._names) <= keys._NAME_CACHE_BYTES
