"""The JSON fast path gives exactly the general path's result, on good and bad input.

Each message is decoded twice: as the service does (fast path first) and with the fast path
turned off (``_decode_json_fast`` declines everything); samples, columns and every error
(class, reason, field, sample index, message) must be identical. Besides hand-written edge
cases, seeded random mutations of well-formed messages (bytes deleted, duplicated, replaced)
probe the boundary where the fast path must decline. Every test runs with each fast path:
msgspec's for arrays (when it is installed; orjson's after it), orjson's alone (when it is
installed) and the regular expressions' (without either). Columns are compared bit for bit
(``0.0`` and ``-0.0`` differ).
"""

from __future__ import annotations

import json
import random
import struct

import numpy as np
import pytest

import ingest.decode as decode
from causalwatch.models import RawRecord
from ingest import IngestLimits, decode_batch
from ingest.decode import json_msgspec, json_orjson

NOW = 1_700_000_000.0


@pytest.fixture(autouse=True, params=["msgspec", "orjson", "regex"])
def fast_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which fast path decodes: msgspec's for arrays then orjson's (skipped without
    msgspec), orjson's alone (skipped without orjson) or the regexes'."""
    if request.param == "msgspec":
        if json_msgspec.msgspec is None:
            pytest.skip("msgspec is not installed")
    else:
        monkeypatch.setattr(decode, "_msgspec_decode", None)
    if request.param == "orjson":
        if json_orjson.orjson is None:
            pytest.skip("orjson is not installed")
    elif request.param == "regex":
        monkeypatch.setattr(decode, "_orjson_loads", None)
    return str(request.param)


LIMITS = IngestLimits(max_labels=4, max_label_value_bytes=16, max_samples_per_message=50)


def _sample(i: int, **over: object) -> dict[str, object]:
    s: dict[str, object] = {
        "name": "latency_ms",
        "labels": {"service": f"svc-{i % 3}", "az": "b"},
        "timestamp": NOW - 10 + i,
        "value": 0.5 + i,
    }
    s.update(over)
    return s


def _adapter(i: int, **over: object) -> dict[str, object]:
    s: dict[str, object] = {
        "timestamp": "2023-11-14T22:13:1" + str(i % 10) + "Z",
        "value": repr(1.5 + i),
        "name": "up",
        "labels": {"__name__": "up", "instance": f"h{i}:9100", "job": "node"},
    }
    s.update(over)
    return s


def _arr(*samples: object, **dumps: object) -> bytes:
    return json.dumps(list(samples), **dumps).encode()  # type: ignore[arg-type]


CASES: list[bytes] = [
    _arr(*(_sample(i) for i in range(5))),
    _arr(*(_sample(i) for i in range(5)), separators=(",", ":")),
    json.dumps(_sample(1)).encode(),
    json.dumps(_adapter(2)).encode(),
    json.dumps(_adapter(2, value="NaN")).encode(),
    json.dumps(_adapter(2, value="+Inf")).encode(),
    json.dumps(_adapter(2, value="abc")).encode(),
    json.dumps(_adapter(2, value=" 7 ")).encode(),
    json.dumps(_adapter(2, timestamp="yesterday")).encode(),
    json.dumps(_adapter(2, labels={"__name__": "up", "job": ""})).encode(),
    json.dumps(_adapter(2, name="1bad")).encode(),
    _arr(_sample(0), _sample(1, value=float("nan")), _sample(2)),
    _arr(_sample(0), _sample(1, value=float("inf"))),
    _arr(_sample(0), _sample(1, timestamp=NOW + 10_000)),
    _arr(_sample(0), _sample(1, timestamp=NOW - 1e9)),
    _arr(_sample(0), _sample(1, timestamp="2023-11-14T22:13:10Z")),
    _arr(_sample(0), _sample(1, timestamp="2023-11-14T22:13:10")),
    _arr(_sample(0), _sample(1, timestamp="not a time")),
    _arr(_sample(0), _sample(1, value=10**400)),
    _arr(_sample(0), _sample(1, timestamp=10**400)),
    _arr(_sample(0), _sample(1, value="1.5")),
    _arr(_sample(0), _sample(1, value=True)),
    _arr(_sample(0), _sample(1, labels={"a-b": "x"})),
    _arr(_sample(0), _sample(1, labels={"a": "x" * 40})),
    _arr(_sample(0), _sample(1, labels={f"l{k}": "v" for k in range(6)})),
    _arr(_sample(0), _sample(1, labels={"service": 3})),
    _arr(_sample(0), _sample(1, labels={"service": 'a"b'})),
    _arr(_sample(0), _sample(1, labels={"service": "a{b}"})),
    _arr(_sample(0), _sample(1, labels={"service": "é"})),
    _arr(_sample(0), _sample(1, labels={"service": "é"}), ensure_ascii=False),
    _arr(_sample(0), _sample(1, labels={"__name__": "other", "service": "x"})),
    _arr(_sample(0), _sample(1, labels={"service": ""})),
    _arr(_sample(0), _sample(1, labels=None)),
    _arr(_sample(0), _sample(1, name="")),
    _arr(_sample(0), _sample(1, name="a" * 600)),
    _arr(*(_sample(i) for i in range(51))),
    b"[]",
    b"[1, 2]",
    b"  " + _arr(_sample(0)),
    _arr(_sample(0)) + b"  ",
    _arr(_sample(0), _sample(1))[:-1] + b", 3]",
    _arr(_sample(0)) + _arr(_sample(1)),
    _arr(_sample(0))[:-1] + b", " + _arr(_sample(1))[1:],
    _arr(_sample(0))[:-1] + b"[" + _arr(_sample(1))[1:],
    _arr(_sample(0)).replace(b'"value": 0.5', b'"value": 01'),
    _arr(_sample(0)).replace(b'"value": 0.5', b'"value": .5'),
    _arr(_sample(0)).replace(b'"value": 0.5', b'"value": NaN'),
    _arr(_sample(0)).replace(b'"value": 0.5', b'"value": 0.5, "value": 2'),
    _arr(_sample(0)).replace(b'"az": "b"', b'"az": "b", "az": "c"'),
    _arr(_sample(0)).replace(b'"az": "b"', b'"az": "\x01"'),
    _arr(_sample(0)).replace(b'"az": "b"', b'"az": "\xff"'),
    _arr(_sample(0)).replace(b'"latency_ms"', b'"lat\\u0065ncy_ms"'),
    b"\xef\xbb\xbf" + _arr(_sample(0)),
    # where orjson and json.loads differ: big integers (floats in orjson), out-of-range
    # floats (inf in json.loads, refused by orjson), lone surrogates, other encodings
    _arr(_sample(0), _sample(1, value=10**30)),
    _arr(_sample(0), _sample(1, value=-(2**63) - 1)),
    _arr(_sample(0), _sample(1, value=2**64)),
    _arr(_sample(0), _sample(1, timestamp=10**30)),
    _arr(_sample(0), _sample(1, timestamp=int(NOW))),
    _arr(_sample(0), _sample(1, labels={"service": 10**30})),
    _arr(_sample(0), _sample(1, name=10**30)),
    _arr(_sample(0)).replace(b'"value": 0.5', b'"value": 1e400'),
    _arr(_sample(0)).replace(b'"value": 0.5', b'"value": -1e400'),
    _arr(_sample(0)).replace(b'"value": 0.5', b'"value": 1.7976931348623159e308'),
    _arr(_sample(0)).replace(b'"timestamp": ', b'"timestamp": 1e400, "x": '),
    _arr(_sample(0)).replace(b'"az": "b"', b'"az": "\\ud800"'),
    _arr(_sample(0)).replace(b'"az": "b"', b'"az": ["b"]'),
    _arr(_sample(0)).replace(b'"az": "b"', b'"az": {"b": 1}'),
    _arr(_sample(0)).replace(b'"az": "b"', b'"az": null'),
    _arr(_sample(0)).replace(b'"az": "b"', b'"az": true'),
    _arr(_sample(0), _sample(1)).replace(b'"value": 1.5', b'"value": "1.5"'),
    _arr(_sample(0), _sample(1, value="NaN")),
    _arr(_sample(0), _sample(1, value="1_000")),
    _arr(_sample(0), _sample(1, value=None)),
    _arr(_sample(0), _sample(1, timestamp=None)),
    _arr(_sample(0), _sample(1, timestamp=True)),
    _arr(_sample(0), _sample(1, extra={"nested": [1, 2]})),
    _arr({"labels": {"__name__": "up", "job": "x"}, "timestamp": NOW, "value": 1.0}),
    _arr({"name": None, "labels": {"__name__": "up"}, "timestamp": NOW, "value": 1.0}),
    _arr({"name": "up", "timestamp": NOW, "value": 1.0}),
    _arr(_sample(0), [_sample(1)]),
    _arr(_sample(0), "x"),
    json.dumps(_adapter(2, timestamp=NOW)).encode(),
    json.dumps(_adapter(2, timestamp=int(NOW))).encode(),
    json.dumps(_adapter(2, value=3)).encode(),
    json.dumps(_adapter(2, value=1.25)).encode(),
    json.dumps(_adapter(2, value="1e999")).encode(),
    json.dumps(_adapter(2, labels={"__name__": "up", "job": 10**30})).encode(),
    json.dumps(_adapter(2, labels=[])).encode(),
    json.dumps(_adapter(2)).encode().replace(b'"job"', b'"job": "a", "job"'),
    json.dumps(_adapter(2)).encode("utf-16"),
    json.dumps(_adapter(2)).encode() + b"\n",
    json.dumps([_adapter(i) for i in range(3)]).encode(),
    # what msgspec reads differently from json.loads: fields it skips or keeps as text
    # (unknown fields, the labels), numbers, encodings, depth
    _arr(_sample(0), _sample(1, extra="\x01")).replace(b"\\u0001", b"\x01"),
    _arr(_sample(0), _sample(1, extra="a")).replace(b'"a"', b'"\xff"'),
    _arr(_sample(0), _sample(1, extra="a")).replace(b'"a"', b'"\\x"'),
    _arr(_sample(0), _sample(1, extra="a")).replace(b'"a"', b"01"),
    _arr(_sample(0), _sample(1, extra="a")).replace(b'"a"', b"1e400"),
    _arr(_sample(0), _sample(1, extra="a")).replace(b'"a"', b"[" * 3_000 + b"]" * 3_000),
    _arr(_sample(0)).replace(b'"az": "b"', b'"az": "b\x01"'),
    _arr(_sample(0)).replace(b'"az": "b"', b'"az": "\\x"'),
    _arr(_sample(0)).replace(b'"az": "b"', b'"az": 01'),
    _arr(_sample(0)).replace(b'"az": "b"', b'"az": 1e400'),
    _arr(_sample(0)).replace(b'"az": "b"', b'"az": "\xed\xa0\x80"'),
    _arr(_sample(0)).replace(b'"az": "b"', b'"az": "\\udc00\\ud800"'),
    _arr(_sample(0)).replace(b'"az": "b"', b'"az": "\\ud83d\\ude00"'),
    _arr(_sample(0)).replace(b'"az": "b"', b'"az": ' + b"[" * 3_000 + b"]" * 3_000),
    _arr(_sample(0), _sample(1)).replace(b'"az": "b"', b'"az" :"b" '),
    _arr(_sample(0), _sample(1)).replace(b'"labels": {', b'"labels": {"az": "q", '),
    _arr(_sample(0)).replace(b'"labels": {', b'"labels": {}, "labels": {'),
    _arr(_sample(0)).replace(b'"name": "latency_ms"', b'"name": "x", "name": "latency_ms"'),
    _arr(_sample(0)).replace(b'"latency_ms"', b'"lat\\ud800ms"'),
    _arr(_sample(0)).replace(b'"latency_ms"', b'"latency_\xc3\xa9"'),
    _arr(_sample(0), _sample(1)).replace(b"\n", b"").replace(b", ", b",\n\t\r "),
    _arr(_sample(0), _sample(1, value=-0)),
    _arr(_sample(0), _sample(1, value=-0.0)),
    _arr(_sample(0)).replace(b'"value": 0.5', b'"value": -0'),
    _arr(_sample(0)).replace(b'"value": 0.5', b'"value": 0.5e-400'),
    _arr(_sample(0)).replace(b'"value": 0.5', b'"value": 2.4703282292062328e-324'),
    _arr(_sample(0)).replace(b'"value": 0.5', b'"value": 123456789012345678901234567890.5e-9'),
    _arr(_sample(0)).replace(b'"value": 0.5', b'"value": 1E+2'),
    _arr(_sample(0)).replace(b'"value": 0.5', b'"value": 1.'),
    _arr(_sample(0)).replace(b'"value": 0.5', b'"value": -'),
    _arr(_sample(0)).replace(b'"value": 0.5', b'"value": ' + b"9" * 400),
    _arr(_sample(0), _sample(1, value=2**53 + 1), _sample(2, value=-(2**64) - 3)),
    _arr(_sample(0), _sample(1, timestamp=int(NOW), value=7)),
    _arr(_sample(0), _sample(1, timestamp="2023-11-14T22:13:10Z", value="1.5")),
    _arr(
        _sample(0, timestamp="2023-11-14T22:13:10Z"), _sample(1, timestamp="2023-11-14T22:13:11Z")
    ),
    _arr(_sample(0), _sample(1, value=" 7 "), _sample(2, value="1_000")),
    _arr(_sample(0), _sample(1, value="+Inf")),
    _arr(_sample(0), _sample(1, timestamp=[])),
    _arr(_sample(0), _sample(1, name=["x"])),
    _arr(_sample(0), None),
    _arr(_sample(0), {}),
    _arr({"name": "up", "labels": None, "timestamp": NOW, "value": 1.0}),
    _arr(
        {"name": "up", "labels": {}, "timestamp": NOW, "value": 1},
        {"name": "up", "value": 2, "timestamp": NOW},
    ),
    _arr({"value": 1.0, "timestamp": NOW, "labels": {"job": "x"}, "name": "up"}),
    _arr(_adapter(0), _adapter(1, labels={"__name__": "other", "job": "x"})),
    b"[" + json.dumps(_sample(0)).encode() + b"] x",
    b"[" + json.dumps(_sample(0)).encode() + b",]",
    b"[" + json.dumps(_sample(0)).encode() + b"]\x00",
    b"[" + json.dumps(_sample(0)).encode() + b"][",
    b"[" + json.dumps(_sample(0)).encode()[:-1] + b",}]",
    b"[" + json.dumps(_sample(0)).encode(),
    b"[1]",
    b"[null]",
    b'["a"]',
    b"[[]]",
]


def _fingerprint(records: list[RawRecord]) -> tuple[object, ...]:
    batch, errors = decode_batch(records, {"m": "json", "p": "prometheus"}, LIMITS, NOW)
    return (
        batch.series_keys,
        batch.ts.tolist(),
        batch.value.tolist(),
        batch.ts.tobytes(),
        batch.value.tobytes(),
        batch.origin.tolist(),
        [(type(e).__name__, e.reason, e.field, e.sample_index, str(e)) for e in errors],
    )


def _both(records: list[RawRecord], monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _fingerprint(records)
    with monkeypatch.context() as m:
        m.setattr(decode, "_decode_json_fast", lambda *a: -1)
        general = _fingerprint(records)
    assert fast == general


@pytest.mark.parametrize("topic", ["m", "p", "auto"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_fast_path_equals_general_path(
    case: int, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _both([RawRecord(topic, 0, 3, CASES[case]), RawRecord(topic, 0, 4, CASES[0])], monkeypatch)


def test_fast_path_takes_well_formed_arrays() -> None:
    """The fast path really is taken for json.dumps output (else this suite tests nothing)."""
    decode_batch([], {}, LIMITS, NOW)  # the key memo is kept for these limits
    ctx = decode._Ctx(LIMITS, NOW)
    assert decode._decode_json_fast(ctx, CASES[0], 0, False) == 5
    assert decode._decode_json_fast(ctx, CASES[1], 1, False) == 5
    assert decode._decode_json_fast(ctx, CASES[3], 2, True) == 1
    assert ctx.origin == [0] * 5 + [1] * 5 + [2]
    assert np.isfinite(ctx.val).all() and not ctx.errors


def test_fast_path_equals_general_path_on_mutations(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(12)
    bases = [
        CASES[0],
        CASES[1],
        CASES[3],
        _arr(_sample(0), _sample(1, timestamp="2023-11-14T22:13:10Z")),
    ]
    for trial in range(1_500):
        msg = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(msg))
            op = rng.randrange(3)
            if op == 0:
                del msg[pos]
            elif op == 1:
                msg.insert(pos, msg[rng.randrange(len(msg))])
            else:
                msg[pos] = rng.choice(b'[]{},:" \\0123456789.eE-+abnNI\x00\xc3')
        topic = rng.choice(["m", "p", "auto"])
        try:
            _both([RawRecord(topic, 0, trial, bytes(msg))], monkeypatch)
        except AssertionError:
            raise AssertionError(f"fast and general paths differ on {bytes(msg)!r}") from None


def test_msgspec_path_takes_arrays_and_objects_and_passes_on_what_it_cannot_represent(
    fast_path: str,
) -> None:
    """msgspec's path decodes json.dumps arrays and objects itself (else the msgspec runs
    test nothing) and passes a message with fields its structs do not have to orjson's
    path (-2)."""
    if fast_path != "msgspec":
        pytest.skip("msgspec's path only")
    decode_batch([], {}, LIMITS, NOW)  # the key memo is kept for these limits
    ctx = decode._Ctx(LIMITS, NOW)
    assert json_msgspec._decode_msgspec_fast(ctx, CASES[0], 0, False) == 5
    assert json_msgspec._decode_msgspec_fast(ctx, CASES[1], 1, True) == 5
    extra = _arr(_sample(0), _sample(1, extra=1))
    assert json_msgspec._decode_msgspec_fast(ctx, extra, 2, False) == -2
    assert decode._decode_json_fast(ctx, extra, 2, False) == 2  # orjson's path took it
    nan = _arr(_sample(0), _sample(1, value=float("nan")))
    assert json_msgspec._decode_msgspec_fast(ctx, nan, 3, False) == -1
    assert json_msgspec._decode_msgspec_one(ctx, CASES[2], 4, False) == 1  # one object
    assert json_msgspec._decode_msgspec_one(ctx, CASES[3], 5, True) == 1  # the adapter's
    assert json_msgspec._decode_msgspec_one(ctx, CASES[3], 6, False) == -1  # str value
    one_extra = json.dumps(_sample(1, extra=1)).encode()
    assert json_msgspec._decode_msgspec_one(ctx, one_extra, 7, False) == -2
    assert ctx.origin == [0] * 5 + [1] * 5 + [2] * 2 + [4, 5]
    assert np.isfinite(ctx.val).all() and not ctx.errors


def _number_text(rng: random.Random) -> bytes:
    """A JSON number (or a near miss) as a producer might write it, bounds included."""
    kind = rng.randrange(6)
    sign = rng.choice(["", "", "-"])
    if kind == 0:  # integers of any size: 0, -0, around 2**53 and 2**64, hundreds of digits
        digits = rng.choice([1, 2, 16, 17, 19, 20, 21, 40, 309, 310, 400])
        text = str(rng.randrange(10 ** (digits - 1), 10**digits)) if digits > 1 else "0"
        if rng.random() < 0.3:
            text = str(rng.choice([2**53, 2**63, 2**64]) + rng.randrange(-3, 4))
    elif kind == 1:  # decimals with many digits
        whole, frac = (rng.randrange(10 ** rng.randrange(1, 25)) for _ in range(2))
        text = f"{whole}.{frac}"
    elif kind == 2:  # exponents around the float range: subnormals, overflow
        mant = f"{rng.randrange(1, 10)}.{rng.randrange(10**16):016d}"
        text = f"{mant}{rng.choice('eE')}{rng.choice(['', '+', '-'])}{rng.randrange(280, 330)}"
    elif kind == 3:  # repr of a random double, bit patterns included
        text = repr(abs(struct.unpack("<d", rng.randbytes(8))[0]))
        if text in ("nan", "inf"):
            text = "1e400"
    elif kind == 4:  # near misses that are not JSON numbers
        text = rng.choice(["01", "1.", ".5", "-", "1e", "+1", "0x10", "1e+", "--1", "1.5.2"])
    else:
        text = repr(rng.uniform(-1e6, 1e6))
    return (sign + text).encode()


@pytest.mark.parametrize("field", ["value", "timestamp"])
def test_fast_path_equals_general_path_on_number_text(
    field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Numbers as text in every form (see _number_text) read bit for bit as json.loads
    reads them, or are left to the general path; an infinite time window lets every
    timestamp through."""
    limits = IngestLimits(max_future_s=float("inf"), max_age_s=float("inf"))
    rng = random.Random(7)
    records = []
    for i in range(400):
        texts = [_number_text(rng) for _ in range(rng.choice([1, 1, 3]))]
        samples = [_sample(j, **{field: 1.5}) for j in range(len(texts))]
        msg = _arr(*samples, separators=(",", ":"))
        parts = msg.split(f'"{field}":1.5'.encode())
        msg = parts[0] + b"".join(f'"{field}":'.encode() + t + p for t, p in zip(texts, parts[1:]))
        records.append(RawRecord("m", 0, i, msg))
        if len(texts) == 1:  # and the same sample alone, as an object
            records.append(RawRecord("p", 0, i, msg[1:-1]))

    def fingerprint() -> tuple[object, ...]:
        batch, errors = decode_batch(records, {"m": "json", "p": "prometheus"}, limits, NOW)
        return (
            batch.series_keys,
            batch.ts.tobytes(),
            batch.value.tobytes(),
            batch.origin.tolist(),
            [(type(e).__name__, e.reason, e.field, e.sample_index, str(e)) for e in errors],
        )

    fast = fingerprint()
    with monkeypatch.context() as m:
        m.setattr(decode, "_decode_json_fast", lambda *a: -1)
        general = fingerprint()
    assert fast == general
    assert len(fast[3]) > 300 and len(fast[4]) > 50  # both accepted and refused numbers
