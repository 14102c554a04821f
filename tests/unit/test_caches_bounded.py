"""Every memo over names or series keys is bounded in bytes, not only in entries: hostile
input within the ingest limits (keys of ~37 kB) must not grow memory without bound."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

import ingest.decode as decode
from causalwatch.models import RawRecord
from explainer import view
from ingest.decode import decode_batch, influx, json_msgspec, json_orjson, keys
from ingest.validate import IngestLimits

NOW = 1_700_000_100.0


def _big_labels(i: int) -> dict[str, str]:
    # 32 labels of 1,000 bytes: the largest label set the default limits accept
    return {f"l{j}": f"{i:08d}" + "v" * 992 for j in range(32)}


def _size(obj: Any) -> int:
    """Bytes of an object and the strings/tuples inside it (what a memo really holds)."""
    if isinstance(obj, tuple):
        return sys.getsizeof(obj) + sum(_size(x) for x in obj)
    return sys.getsizeof(obj)


def test_identity_memo_is_bounded_in_bytes() -> None:
    keys = [
        "m{" + ",".join(f'{k}="{v}"' for k, v in _big_labels(i).items()) + "}" for i in range(600)
    ]  # 600 x 33 kB = 20 MB of keys, over the 16 MiB budget

    for k in keys:
        assert view.identity(k, "service")[0] == "m"
    assert view._identity_bytes[0] <= view._IDENTITY_BYTES
    held = sum(_size(k) + _size(v) for k, v in view._identities.items())
    assert held < view._IDENTITY_BYTES * 1.2, held  # was every key ever seen (65,536 of them)
    assert len(view._identities) < 600


def test_decode_series_key_memo_is_bounded_in_bytes() -> None:
    def run() -> None:
        for start in range(0, 1_200, 100):  # 1,200 distinct 33 kB series: 40 MB of keys
            recs = [
                RawRecord(
                    "t",
                    0,
                    i,
                    json.dumps(
                        {"name": "m", "labels": _big_labels(i), "timestamp": NOW, "value": 1}
                    ).encode(),
                )
                for i in range(start, start + 100)
            ]
            batch, errors = decode_batch(recs, {"t": "json"}, IngestLimits(), NOW)
            assert len(batch) == 100 and not errors

    run()
    assert keys._key_cache_bytes[0] <= keys._KEY_CACHE_BYTES
    held = sum(_size(k) + _size(v) for k, v in keys._key_cache.items())
    assert held < keys._KEY_CACHE_BYTES * 1.2, held
    assert len(keys._key_cache) < 1_200


def _decode_big_arrays() -> None:
    for start in range(0, 1_200, 100):  # 1,200 distinct 33 kB series: 40 MB of labels
        recs = [
            RawRecord(
                "t",
                0,
                i,
                json.dumps(
                    [{"name": "m", "labels": _big_labels(i), "timestamp": NOW, "value": 1}]
                ).encode(),
            )
            for i in range(start, start + 100)
        ]
        batch, errors = decode_batch(recs, {"t": "json"}, IngestLimits(), NOW)
        assert len(batch) == 100 and not errors


def test_decode_parsed_key_memo_is_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The orjson fast path's memo (name + label items -> key) keeps to its byte budget."""
    if json_orjson.orjson is None:
        pytest.skip("orjson is not installed")
    monkeypatch.setattr(decode, "_msgspec_decode", None)  # arrays take orjson's path
    _decode_big_arrays()
    assert json_orjson._obj_keys  # the fast path took them
    assert json_orjson._obj_state[0] <= json_orjson._FRAG_CACHE_BYTES
    held = sum(_size(k) + _size(v) for k, v in json_orjson._obj_keys.items())
    assert held < json_orjson._FRAG_CACHE_BYTES * 1.2, held
    assert len(json_orjson._obj_keys) < 1_200


def test_decode_raw_key_memo_is_bounded_in_bytes() -> None:
    """The msgspec fast path's memo (name + labels text -> key) keeps to its byte budget."""
    if json_msgspec.msgspec is None:
        pytest.skip("msgspec is not installed")
    _decode_big_arrays()
    assert json_msgspec._raw_keys  # the fast path took them
    assert json_msgspec._raw_state[0] <= json_msgspec._FRAG_CACHE_BYTES
    held = sum(_size(k) + _size(v) for k, v in json_msgspec._raw_keys.items())
    assert held < json_msgspec._FRAG_CACHE_BYTES * 1.2, held
    assert len(json_msgspec._raw_keys) < 1_200


def test_influx_head_memo_is_bounded_in_bytes() -> None:
    """Influx line heads (measurement + tags) memoised within their byte budget; heads over
    the memo's length cap are not memoised at all."""
    tags = ",".join(f"l{j}=" + "v" * 90 for j in range(9))  # a head of about 880 chars
    for start in range(0, 12_000, 1_000):  # 12,000 distinct heads: ~22 MB at ~1.9 kB each
        lines = "\n".join(
            f"m{i},{tags} f=1 {int(NOW)}000000000" for i in range(start, start + 1_000)
        )
        batch, errors = decode_batch(
            [RawRecord("t", 0, start, lines.encode())],
            {"t": "influx"},
            IngestLimits(max_samples_per_message=1_000),
            NOW,
        )
        assert len(batch) == 1_000 and not errors
    assert influx._heads
    assert influx._heads_bytes[0] <= influx._HEADS_BYTES
    held = sum(_size(k) + _size(v) for k, v in influx._heads.items())
    assert held < influx._HEADS_BYTES * 1.2, held
    assert len(influx._heads) < 12_000
    long_head = "m," + ",".join(f"l{j}=" + "v" * 200 for j in range(8))
    assert len(long_head) > influx._HEAD_MAX_CHARS
    batch, _ = decode_batch(
        [RawRecord("t", 0, 0, f"{long_head} f=1 {int(NOW)}000000000".encode())],
        {"t": "influx"},
        IngestLimits(max_samples_per_message=1_000),
        NOW,
    )
    assert len(batch) == 1 and long_head not in influx._heads
