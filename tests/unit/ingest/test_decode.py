"""decode_batch: the three formats, auto-detection, per-sample vs whole-record errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from causalwatch.errors import ConfigError, DecodeError, SchemaError
from causalwatch.models import RawRecord, SampleBatch
from causalwatch.series import series_key
from ingest.decode import decode_batch, decode_record
from ingest.decode.influx_line import _parse_line, _parse_line_escaped
from ingest.validate import IngestLimits

NOW = 1_700_000_100.0
LIMITS = IngestLimits()


def rec(value: bytes | str, topic: str = "m", offset: int = 0, **kw: object) -> RawRecord:
    if isinstance(value, str):
        value = value.encode()
    return RawRecord(topic, 0, offset, value, **kw)  # type: ignore[arg-type]


def one(value: bytes | str, fmt: str = "auto", limits: IngestLimits = LIMITS, **kw: object):
    return decode_record(rec(value, **kw), fmt, limits, NOW)


# ----------------------------------------------------------------- native JSON


def test_native_object_with_labels() -> None:
    msg = {
        "name": "latency_seconds",
        "labels": {"service": "api", "az": "b"},
        "timestamp": 1_700_000_000.5,
        "value": 0.25,
    }
    batch, errors = one(json.dumps(msg), "json")
    assert errors == []
    assert batch.series_keys == ['latency_seconds{az="b",service="api"}']
    assert batch.ts.tolist() == [1_700_000_000.5]
    assert batch.value.tolist() == [0.25]
    assert batch.origin.tolist() == [0]


def test_native_array_int_ts_and_no_labels() -> None:
    msg = [
        {"name": "up", "timestamp": 1_700_000_000, "value": 1},
        {"name": "up", "labels": {}, "timestamp": 1_700_000_010, "value": 0},
    ]
    batch, errors = one(json.dumps(msg), "json")
    assert errors == []
    assert batch.series_keys == ["up", "up"]
    assert batch.ts.tolist() == [1_700_000_000.0, 1_700_000_010.0]
    assert batch.value.dtype == np.float64 and batch.value.tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-11-14T22:13:20Z", 1_700_000_000.0),
        ("2023-11-14T23:13:20+01:00", 1_700_000_000.0),
        ("2023-11-14T20:13:20.250-02:00", 1_700_000_000.25),
        ("2023-11-14t22:13:20.123456789z", 1_700_000_000.123456),
        ("2023-11-14 22:13:20", 1_700_000_000.0),  # no zone: UTC
    ],
)
def test_rfc3339_timestamps(text: str, expected: float) -> None:
    msg = {"name": "x", "timestamp": text, "value": 1.5}
    batch, errors = one(json.dumps(msg), "json")
    assert errors == []
    assert batch.ts[0] == pytest.approx(expected, abs=1e-6)


def test_label_order_and_empty_values_give_one_series() -> None:
    a = {"name": "m", "labels": {"b": "2", "a": "1"}, "timestamp": NOW, "value": 1}
    b = {"name": "m", "labels": {"a": "1", "b": "2", "c": ""}, "timestamp": NOW, "value": 2}
    batch, errors = one(json.dumps([a, b]), "json")
    assert errors == []
    assert batch.series_keys == [series_key("m", {"a": "1", "b": "2"})] * 2


def test_native_rejects_string_value_but_auto_accepts_it() -> None:
    msg = json.dumps({"name": "x", "timestamp": NOW, "value": "1.5"})
    _, errors = one(msg, "json")
    assert [(e.reason, e.field) for e in errors] == [("bad_type", "value")]
    batch, errors = one(msg, "auto")
    assert errors == [] and batch.value.tolist() == [1.5]


def test_mixed_good_and_bad_samples_keep_good_and_index_bad() -> None:
    good = {"name": "ok", "timestamp": NOW, "value": 1.0}
    msg = (
        "["
        + ",".join(
            [
                json.dumps(good),
                '{"name": "x", "timestamp": 1700000000, "value": NaN}',
                json.dumps({"name": "x", "timestamp": NOW, "value": True}),
                json.dumps(good),
                json.dumps({"timestamp": NOW, "value": 1}),
                '{"name": "x", "timestamp": 1700000000, "value": -Infinity}',
                "3",
            ]
        )
        + "]"
    )
    batch, errors = one(msg, "json", offset=42)
    assert batch.series_keys == ["ok", "ok"]
    got = [(e.reason, e.sample_index, e.offset, e.raw) for e in errors]
    assert got == [
        ("nan_value", 1, 42, msg.encode()),
        ("bad_type", 2, 42, msg.encode()),
        ("missing_field", 4, 42, msg.encode()),
        ("inf_value", 5, 42, msg.encode()),
        ("bad_type", 6, 42, msg.encode()),
    ]
    assert all(isinstance(e, SchemaError) for e in errors)


# ----------------------------------------------------------------- prometheus-kafka-adapter

# The adapter's own test vectors (Telefonica/prometheus-kafka-adapter serializers_test.go),
# with the timestamps moved to 2023 so they fall inside the accepted window.
PKA = [
    '{"value":"456","timestamp":"2023-11-14T22:13:20Z","name":"foo",'
    '"labels":{"__name__":"foo","labelfoo":"label-bar"}}',
    '{"value":"+Inf","timestamp":"2023-11-14T22:13:30Z","name":"foo",'
    '"labels":{"__name__":"foo","labelfoo":"label-bar"}}',
    '{"timestamp":"2023-11-14T22:13:20Z","value":"9876.5","name":"up",'
    '"labels":{"__name__":"up","instance":"node:9100","job":"node"}}',
    '{"timestamp":"2023-11-14T22:13:20Z","value":"NaN","name":"up",'
    '"labels":{"__name__":"up","instance":"node:9100","job":"node"}}',
]


@pytest.mark.parametrize("fmt", ["prometheus", "auto"])
def test_prometheus_kafka_adapter_format(fmt: str) -> None:
    records = [rec(m, topic="prom", offset=i) for i, m in enumerate(PKA)]
    batch, errors = decode_batch(records, {"prom": fmt}, LIMITS, NOW)
    assert batch.series_keys == [
        'foo{labelfoo="label-bar"}',
        'up{instance="node:9100",job="node"}',
    ]
    assert batch.value.tolist() == [456.0, 9876.5]
    assert batch.ts.tolist() == [1_700_000_000.0, 1_700_000_000.0]
    assert batch.origin.tolist() == [0, 2]
    assert [(e.reason, e.offset) for e in errors] == [("inf_value", 1), ("nan_value", 3)]


def test_prometheus_name_from_labels_when_top_level_missing() -> None:
    msg = '{"timestamp":"2023-11-14T22:13:20Z","value":"1","labels":{"__name__":"up","a":"b"}}'
    batch, errors = one(msg, "prometheus")
    assert errors == [] and batch.series_keys == ['up{a="b"}']


def _labelled(n: int, name_label: bool, top_name: bool = True) -> dict[str, object]:
    labels: dict[str, str] = {f"l{i}": "v" for i in range(n)}
    if name_label:
        labels["__name__"] = "up"
    sample: dict[str, object] = {"timestamp": NOW, "value": 1.0, "labels": labels}
    if top_name:
        sample["name"] = "up"
    return sample


@pytest.mark.parametrize("fmt", ["json", "prometheus", "auto"])
@pytest.mark.parametrize("name_label", [True, False], ids=["__name__", "no-__name__"])
@pytest.mark.parametrize("top_name", [True, False], ids=["name", "no-name"])
@pytest.mark.parametrize("array", [False, True], ids=["object", "array"])
def test_max_labels_counts_the_labels_besides_the_metric_name(
    fmt: str, name_label: bool, top_name: bool, array: bool
) -> None:
    """Exactly ``max_labels`` real labels pass and one more is dead-lettered, whether or not
    the metric name also sits in ``labels.__name__`` (prometheus-kafka-adapter), on the
    object path and the array fast path alike."""
    if not (top_name or name_label):
        pytest.skip("no name at all is a missing_field case")
    limits = IngestLimits(max_labels=3)
    for n, ok in ((3, True), (4, False)):
        sample = _labelled(n, name_label, top_name)
        text = json.dumps([sample, sample] if array else sample)
        if fmt == "prometheus":
            text = text.replace('"value": 1.0', '"value": "1"')
        batch, errors = one(text, fmt, limits)
        if ok:
            assert errors == [], errors
            assert set(batch.series_keys) == {'up{l0="v",l1="v",l2="v"}'}
        else:
            assert len(batch) == 0
            assert {e.reason for e in errors} == {"too_many_labels"}
            assert "4 labels besides the metric name" in str(errors[0])


def test_max_labels_counts_every_influx_tag() -> None:
    """Line protocol has no name label: a ``__name__`` tag is a tag like any other."""
    limits = IngestLimits(max_labels=2)
    batch, errors = one("m,a=1,b=2 v=1 1700000000", "influx", limits)
    assert errors == [] and len(batch) == 1
    _, errors = one("m,a=1,__name__=2 v=1 1700000000", "influx", limits)
    assert errors == []
    _, errors = one("m,a=1,b=2,__name__=x v=1 1700000000", "influx", limits)
    assert [e.reason for e in errors] == ["too_many_labels"]


def test_prometheus_bad_value_string() -> None:
    msg = '{"timestamp":"2023-11-14T22:13:20Z","value":"lots","name":"up"}'
    _, errors = one(msg, "prometheus")
    assert [e.reason for e in errors] == ["bad_value"]


# ----------------------------------------------------------------- Influx line protocol

TELEGRAF = (
    "cpu,cpu=cpu-total,host=web-1 usage_idle=97.5,usage_user=1.25,usage_system=0.75 "
    "1700000000000000000\n"
    "mem,host=web-1 used_percent=41.2,available=8123456789i,total=17179869184u "
    "1700000000000000000\n"
)


def test_telegraf_lines_become_measurement_field_series() -> None:
    batch, errors = one(TELEGRAF, "influx")
    assert errors == []
    assert batch.series_keys == [
        'cpu_usage_idle{cpu="cpu-total",host="web-1"}',
        'cpu_usage_user{cpu="cpu-total",host="web-1"}',
        'cpu_usage_system{cpu="cpu-total",host="web-1"}',
        'mem_used_percent{host="web-1"}',
        'mem_available{host="web-1"}',
        'mem_total{host="web-1"}',
    ]
    assert batch.value.tolist() == [97.5, 1.25, 0.75, 41.2, 8123456789.0, 17179869184.0]
    assert batch.ts.tolist() == [1_700_000_000.0] * 6


def test_influx_escaping() -> None:
    line = (
        r"disk\ io\,x,path=C:\\data,mount\ point=/mnt/a\ b,eq\=k=v\=1 "
        r'read\ bytes=5i,note="a \"quoted\", str",w\,x=2 1700000000000000000'
    )
    batch, errors = one(line, "influx")
    assert batch.series_keys == [
        'disk_io_x_read_bytes{eq_k="v=1",mount_point="/mnt/a b",path="C:\\\\\\\\data"}',
        'disk_io_x_w_x{eq_k="v=1",mount_point="/mnt/a b",path="C:\\\\\\\\data"}',
    ]
    assert batch.value.tolist() == [5.0, 2.0]
    assert [(e.reason, e.field, e.sample_index) for e in errors] == [
        ("non_numeric_field", "note", 0)
    ]


def test_influx_booleans_and_strings_are_dead_lettered_numbers_kept() -> None:
    msg = 'svc,host=a up=true,status="ok",latency=0.2 1700000000000000000\n'
    batch, errors = one(msg, "influx")
    assert batch.series_keys == ['svc_latency{host="a"}']
    assert [(e.reason, e.field) for e in errors] == [
        ("non_numeric_field", "up"),
        ("non_numeric_field", "status"),
    ]


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("1700000000000000000", 1_700_000_000.0),  # ns (Telegraf default)
        ("1700000000000000", 1_700_000_000.0),  # µs
        ("1700000000000", 1_700_000_000.0),  # ms
        ("1700000000", 1_700_000_000.0),  # s
    ],
)
def test_influx_timestamp_units(ts: str, expected: float) -> None:
    batch, errors = one(f"m v=1 {ts}", "influx")
    assert errors == [] and batch.ts.tolist() == [expected]


def test_influx_missing_timestamp_uses_record_time() -> None:
    batch, errors = one("m v=1", "influx", timestamp_ms=1_700_000_050_000)
    assert errors == [] and batch.ts.tolist() == [1_700_000_050.0]


def test_influx_comments_blank_lines_crlf_and_bad_line() -> None:
    msg = "# comment\n\nm,a=1 v=1 1700000000000000000\r\nthis is not line protocol\nm v=2\n"
    batch, errors = one(msg, "influx")
    assert batch.value.tolist() == [1.0, 2.0]
    assert [(e.reason, e.sample_index) for e in errors] == [("not_format", 3)]
    assert isinstance(errors[0], DecodeError)


def test_influx_name_sanitised() -> None:
    batch, errors = one("net.if-stats,iface=eth0 bytes.recv=1 1700000000000000000", "influx")
    assert errors == [] and batch.series_keys == ['net_if_stats_bytes_recv{iface="eth0"}']


@pytest.mark.parametrize(
    "line",
    [
        "m,a=1,b=x y v=1,w=2i 17",
        "m v=1",
        "m,a=b v=1 1",
        "m v=1,",
        "m, v=1",
        "m,a= v=1",
        "m,a=b=c v=1",
        "m v=",
        "m =1",
        "m  v=1",
        ",a=b v=1",
        "m v=1=2 5",
        "m,a=b",
        "m v=1 ",
    ],
)
def test_fast_and_escaped_line_parsers_agree(line: str) -> None:
    fast, general = _parse_line(line), _parse_line_escaped(line)
    if isinstance(fast, str) or isinstance(general, str):  # both refuse, maybe in other words
        assert isinstance(fast, str) and isinstance(general, str), (fast, general)
    else:
        assert fast == general


# ----------------------------------------------------------------- whole-record problems


@pytest.mark.parametrize(
    ("value", "fmt", "reason"),
    [
        (b"", "auto", "empty"),
        (b"   \n", "json", "empty"),
        (b"[]", "json", "empty"),
        (b"# only a comment\n", "influx", "empty"),
        (b"{not json", "json", "not_json"),
        (b"{not json", "auto", "not_json"),
        (b"\xff\xfe\x00garbage", "json", "not_json"),
        (b"\xff\xfe\x00garbage", "influx", "not_format"),
        (b'"a string"', "json", "not_format"),
        (b"12", "prometheus", "not_format"),
        (b"[" * 100_000, "json", "not_json"),
    ],
)
def test_whole_record_errors(value: bytes, fmt: str, reason: str) -> None:
    batch, errors = one(value, fmt)
    assert len(batch) == 0
    assert [(e.reason, e.sample_index) for e in errors] == [(reason, None)]
    assert errors[0].raw == value and errors[0].topic == "m"


def test_oversized_is_not_parsed() -> None:
    limits = IngestLimits(max_message_bytes=64)
    value = json.dumps([{"name": "x", "timestamp": NOW, "value": 1}] * 5).encode()
    batch, errors = one(value, "json", limits)
    assert len(batch) == 0 and [e.reason for e in errors] == ["oversized"]


def test_too_many_samples_dead_letters_whole_record() -> None:
    limits = IngestLimits(max_samples_per_message=3)
    arr = json.dumps([{"name": "x", "timestamp": NOW, "value": 1}] * 4)
    batch, errors = one(arr, "json", limits)
    assert len(batch) == 0 and [e.reason for e in errors] == ["too_many_samples"]
    lines = "\n".join(f"m a={i},b={i} 1700000000" for i in range(2))
    batch, errors = one(lines, "influx", limits)
    assert len(batch) == 0 and [e.reason for e in errors] == ["too_many_samples"]
    batch, errors = one(arr, "json", IngestLimits(max_samples_per_message=4))
    assert len(batch) == 4 and errors == []


# ----------------------------------------------------------------- per-sample checks


@pytest.mark.parametrize(
    ("sample", "reason", "field"),
    [
        ({"timestamp": NOW, "value": 1}, "missing_field", "name"),
        ({"name": "x", "timestamp": NOW}, "missing_field", "value"),
        ({"name": "x", "value": 1}, "missing_field", "timestamp"),
        ({"name": 5, "timestamp": NOW, "value": 1}, "bad_type", "name"),
        ({"name": "x", "timestamp": NOW, "value": None}, "bad_type", "value"),
        ({"name": "x", "timestamp": NOW, "value": [1]}, "bad_type", "value"),
        ({"name": "x", "timestamp": [NOW], "value": 1}, "bad_type", "timestamp"),
        ({"name": "x", "timestamp": "yesterday", "value": 1}, "bad_timestamp", "timestamp"),
        (
            {"name": "x", "timestamp": "2023-13-01T00:00:00Z", "value": 1},
            "bad_timestamp",
            "timestamp",
        ),
        ({"name": "1x", "timestamp": NOW, "value": 1}, "bad_name", "name"),
        ({"name": "a b", "timestamp": NOW, "value": 1}, "bad_name", "name"),
        ({"name": "x", "labels": [1], "timestamp": NOW, "value": 1}, "bad_type", "labels"),
        ({"name": "x", "labels": {"a": 1}, "timestamp": NOW, "value": 1}, "bad_type", "labels.a"),
        (
            {"name": "x", "labels": {"a-b": "1"}, "timestamp": NOW, "value": 1},
            "bad_label_name",
            "labels.a-b",
        ),
        ({"name": "x", "timestamp": NOW + 301, "value": 1}, "ts_future", "timestamp"),
        ({"name": "x", "timestamp": NOW - 8 * 86_400, "value": 1}, "ts_too_old", "timestamp"),
        ({"name": "x", "timestamp": 10**400, "value": 1}, "bad_timestamp", "timestamp"),
        ({"name": "x", "timestamp": NOW, "value": 10**400}, "bad_value", "value"),
        (
            {
                "name": "x",
                "labels": {f"l{i}": "v" for i in range(33)},
                "timestamp": NOW,
                "value": 1,
            },
            "too_many_labels",
            "labels",
        ),
        (
            {"name": "x", "labels": {"a": "é" * 600}, "timestamp": NOW, "value": 1},
            "label_too_long",
            "labels.a",
        ),
    ],
)
def test_per_sample_reasons(sample: dict[str, object], reason: str, field: str) -> None:
    batch, errors = one(json.dumps(sample), "json")
    assert len(batch) == 0
    assert [(e.reason, e.field, e.sample_index) for e in errors] == [(reason, field, 0)]
    assert field.split(".")[-1] in str(errors[0])  # the message names the field


def test_influx_label_limits() -> None:
    limits = IngestLimits(max_labels=1, max_label_value_bytes=4)
    _, errors = one("m,a=1,b=2 v=1 1700000000", "influx", limits)
    assert [e.reason for e in errors] == ["too_many_labels"]
    _, errors = one("m,a=12345 v=1 1700000000", "influx", limits)
    assert [e.reason for e in errors] == ["label_too_long"]


def test_unknown_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.topics"):
        decode_batch([], {"m": "xml"}, LIMITS, NOW)


# ----------------------------------------------------------------- batch == one by one


def test_batch_equals_one_by_one() -> None:
    values = [
        json.dumps([{"name": "a", "timestamp": NOW, "value": 1}, {"name": "a", "value": 2}]),
        PKA[0],
        TELEGRAF,
        "{oops",
        PKA[3],
        "m,host=x v=3i 1700000000000000000",
    ]
    records = [rec(v, offset=i) for i, v in enumerate(values)]
    whole, whole_errors = decode_batch(records, {}, LIMITS, NOW)
    parts = []
    part_errors = []
    for i, r in enumerate(records):
        b, e = decode_record(r, "auto", LIMITS, NOW)
        b.origin[:] = i
        parts.append(b)
        part_errors.extend(e)
    joined = SampleBatch.concat(parts)
    assert whole.series_keys == joined.series_keys
    assert np.array_equal(whole.ts, joined.ts)
    assert np.array_equal(whole.value, joined.value)
    assert np.array_equal(whole.origin, joined.origin)
    assert [(e.reason, e.offset, e.sample_index) for e in whole_errors] == [
        (e.reason, e.offset, e.sample_index) for e in part_errors
    ]
    assert len(whole) == 1 + 1 + 6 + 1
    assert not np.isnan(whole.value).any()


def test_infinite_window_still_refuses_non_finite_timestamps() -> None:
    replay = IngestLimits(max_future_s=math.inf, max_age_s=math.inf)
    msg = json.dumps(
        [
            {"name": "x", "timestamp": 10**400, "value": 1},
            {"name": "x", "timestamp": 1.0, "value": 2},
        ]
    )
    batch, errors = one(msg, "json", replay)
    assert batch.ts.tolist() == [1.0]
    assert [e.reason for e in errors] == ["bad_timestamp"]
    batch, errors = one("m v=1 " + "9" * 320, "influx", replay)
    assert len(batch) == 0 and [e.reason for e in errors] == ["bad_timestamp"]


def test_utf8_bom_json_is_detected_in_auto() -> None:
    msg = b"\xef\xbb\xbf" + json.dumps({"name": "x", "timestamp": NOW, "value": 1}).encode()
    batch, errors = one(msg, "auto")
    assert errors == [] and batch.series_keys == ["x"]


def test_limits_from_settings_match_the_settings_defaults() -> None:
    from causalwatch.settings import IngestSettings

    assert IngestLimits.from_settings(IngestSettings()) == IngestLimits()
    custom = IngestSettings(max_labels=3, max_future_s=10)
    limits = IngestLimits.from_settings(custom)
    assert (limits.max_labels, limits.max_future_s) == (3, 10.0)
