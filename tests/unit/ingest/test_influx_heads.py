"""The memo of Influx line heads (measurement + tags) gives exactly the result of parsing
every line in full, on good and bad input.

Each message is decoded twice with the memo (the first pass fills it, the second reads it)
and once with the memo off; samples, columns and every error (class, reason, field, sample
index, message) must be identical. Hand-written edge cases plus seeded random mutations of
well-formed messages probe lines whose head is known but whose rest is broken.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from causalwatch.models import RawRecord
from ingest import IngestLimits, decode_batch
from ingest.decode import influx

NOW = 1_700_000_000.0
NS = "1700000000000000000"
LIMITS = IngestLimits(max_labels=3, max_label_value_bytes=16, max_samples_per_message=20)

GOOD = "\n".join(f"cpu,host=h{i % 3},az=b usage={i}.5,idle={i}i {NS}" for i in range(5)).encode()
CASES: list[bytes] = [
    GOOD,
    b"cpu,host=h0,az=b usage=1.5",
    b"cpu,host=h0,az=b usage=1.5 ",
    b"cpu,host=h0,az=b usage=1.5  " + NS.encode(),
    b"cpu,host=h0,az=b  usage=1.5 " + NS.encode(),
    b"cpu,host=h0,az=b usage=1.5 " + NS.encode() + b" 3",
    b"cpu,host=h0,az=b usage= " + NS.encode(),
    b"cpu,host=h0,az=b =1 " + NS.encode(),
    b"cpu,host=h0,az=b usage " + NS.encode(),
    b"cpu,host=h0,az=b usage=1,,idle=2 " + NS.encode(),
    b"cpu,host=h0,az=b usage=abc " + NS.encode(),
    b"cpu,host=h0,az=b usage=t,up=true " + NS.encode(),
    b'cpu,host=h0,az=b msg="hi" ' + NS.encode(),
    b"cpu,host=h0,az=b usage=1.5 notanumber",
    b"cpu,host=h0,az=b usage=1.5 99999999999999999999999999",
    b"cpu,host=h0,az=b usage=1.5 1",
    b"cpu,host=h0,az=b usage=NaN " + NS.encode(),
    b"cpu,host=h0,az=b usage=inf " + NS.encode(),
    b"cpu,host=h0,az=b usage=1.5 " + NS.encode() + b"\r",
    b"cpu,host=h0,az=b " + b",".join(b"f%d=1" % k for k in range(25)) + b" " + NS.encode(),
    b"cpu,host=h0\\,x,az=b usage=1.5 " + NS.encode(),
    b"cpu,host=" + b"x" * 40 + b" usage=1.5 " + NS.encode(),
    b"cpu,a=1,b=2,c=3,d=4 usage=1.5 " + NS.encode(),
    b"cpu,host=h0,host=h1 usage=1.5 " + NS.encode(),
    b"cpu,ho-st=h0 usage=1.5 " + NS.encode(),
    b"9cpu,host=h0 us-age=1.5 " + NS.encode(),
    b"c" * 300 + b",host=h0 usage=1.5 " + NS.encode(),
    b"cpu,host=h0,az=b " + b"u" * 300 + b"=1.5 " + NS.encode(),
    b"cpu,host=,az=b usage=1.5 " + NS.encode(),
    b"cpu,host=h0=x usage=1.5 " + NS.encode(),
    b",host=h0 usage=1.5 " + NS.encode(),
    b" cpu,host=h0 usage=1.5 " + NS.encode(),
    b"# comment\n\ncpu,host=h0,az=b usage=1.5 " + NS.encode(),
    b"cpu usage=1.5 " + NS.encode(),
    b"cpu,host=h\xc3\xa9 usage=1.5 " + NS.encode(),
    b"cpu,host=h0,az=b usage=1.5 " + NS.encode() + b"\ncpu,host=h0,az=b bad",
]


def _fingerprint(records: list[RawRecord], limits: IngestLimits) -> tuple[object, ...]:
    batch, errors = decode_batch(records, {"t": "influx"}, limits, NOW)
    return (
        batch.series_keys,
        batch.ts.tolist(),
        batch.value.tolist(),
        batch.origin.tolist(),
        [(type(e).__name__, e.reason, e.field, e.sample_index, str(e)) for e in errors],
    )


class _NoMemo(dict[Any, Any]):
    def get(self, key: Any, default: Any = None) -> Any:
        return None


def _both(records: list[RawRecord], monkeypatch: pytest.MonkeyPatch, limits: IngestLimits) -> None:
    # heads memoised by the good message first, then every case read through the memo
    warm = [RawRecord("t", 0, 0, GOOD, 1_700_000_000_000)]
    _fingerprint(warm + records, limits)
    memo = _fingerprint(warm + records, limits)
    with monkeypatch.context() as m:
        m.setattr(influx, "_heads", _NoMemo())
        full = _fingerprint(warm + records, limits)
    assert memo == full


@pytest.mark.parametrize("limits", [LIMITS, IngestLimits()], ids=["tight", "default"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_head_memo_equals_full_parse(
    case: int, limits: IngestLimits, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = RawRecord("t", 0, 3, CASES[case], 1_700_000_000_000)
    _both([rec, rec], monkeypatch, limits)


def test_head_memo_is_used() -> None:
    """The memo really is filled and read for plain lines (else this suite tests nothing)."""
    _fingerprint([RawRecord("t", 0, 0, GOOD)], LIMITS)
    assert influx._heads.get("cpu,host=h0,az=b") == ("cpu", '{az="b",host="h0"}')


def test_head_memo_follows_the_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """A head accepted under loose limits is refused again under tighter ones."""
    line = b"cpu,a=1,b=2,c=3,d=4 usage=1.5 " + NS.encode()
    rec = RawRecord("t", 0, 0, line)
    assert _fingerprint([rec], IngestLimits())[0] == ['cpu_usage{a="1",b="2",c="3",d="4"}']
    keys, *_, errors = _fingerprint([rec], LIMITS)
    assert keys == [] and [e[1] for e in errors] == ["too_many_labels"]  # type: ignore[index]


def test_head_memo_equals_full_parse_on_mutations(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    for trial in range(1_000):
        msg = bytearray(GOOD)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(msg))
            op = rng.randrange(3)
            if op == 0:
                del msg[pos]
            elif op == 1:
                msg.insert(pos, msg[rng.randrange(len(msg))])
            else:
                msg[pos] = rng.choice(b' ,=\\"\n\r#0123456789.eE-+itfaz\x00\xc3')
        rec = RawRecord("t", 0, trial, bytes(msg), 1_700_000_000_000)
        try:
            _both([rec], monkeypatch, LIMITS)
        except AssertionError:
            raise AssertionError(f"memo and full parse differ on {bytes(msg)!r}") from None
