"""The JSON fast path gives exactly the general path's result, on good and bad input.

Each message is decoded twice: as the service does (fast path first) and with the fast path
turned off (``_decode_json_fast`` declines everything); samples, columns and every error
(class, reason, field, sample index, message) must be identical. Besides hand-written edge
cases, seeded random mutations of well-formed messages (bytes deleted, duplicated, replaced)
probe the boundary where the fast path must decline. Every test runs with both fast paths:
orjson's (when it is installed) and the regular expressions' (without it).
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

import ingest.decode as decode
from causalwatch.models import RawRecord
from ingest import IngestLimits, decode_batch
from ingest.decode import json_orjson

NOW = 1_700_000_000.0


@pytest.fixture(autouse=True, params=["orjson", "regex"])
def fast_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which fast path decodes: orjson's (skipped without orjson) or the regexes'."""
    if request.param == "orjson":
        if json_orjson.orjson is None:
            pytest.skip("orjson is not installed")
    else:
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
]


def _fingerprint(records: list[RawRecord]) -> tuple[object, ...]:
    batch, errors = decode_batch(records, {"m": "json", "p": "prometheus"}, LIMITS, NOW)
    return (
        batch.series_keys,
        batch.ts.tolist(),
        batch.value.tolist(),
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
