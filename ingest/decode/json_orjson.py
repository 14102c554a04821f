"""The JSON fast path with orjson (``causalwatch[fast]``): parse, then C-level maps.

With orjson installed, the fast path parses the message with it (about 3x json.loads and
2x the regular expressions of :mod:`ingest.decode.json_regex` on arrays of 100) and reads
the parsed samples with C-level maps: the name + labels of a sample are looked up in a
memo of series keys under ``(name, tuple(labels.items()))``, so labels are validated once
per distinct series. It appends nothing unless *every* sample of the message is
well-formed and valid (fields present, a str name, a labels object, float/int value and
timestamp, or a string value where the format allows, an RFC 3339 string timestamp;
finite, in the time window); otherwise, and whenever orjson refuses the message (NaN /
Infinity literals, numbers out of the float range, a byte-order mark, lone surrogates,
other encodings...), it declines and the general path (:mod:`ingest.decode.json_general`)
decodes the message with ``json.loads`` as before, so what is accepted and every error are
exactly the general path's. Where orjson reads a document, it reads the same one as
json.loads (duplicate keys: the last wins; floats correctly rounded), except integers
beyond 64 bits, which it returns as floats: as a value or timestamp that is the general
path's ``float(int)``; anywhere else (a name, a label) the sample is not valid and the
fast path declines.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any

try:  # optional (``causalwatch[fast]``): the JSON fast path parses with it when installed
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None  # type: ignore[assignment, unused-ignore]

from ingest.decode.context import _cache_ts, _Ctx, _take_all
from ingest.decode.json_regex import _FRAG_CACHE_BYTES
from ingest.decode.keys import _fast_key_of, _remember
from ingest.validate import IngestLimits

_orjson_loads: Callable[[bytes], Any] | None = orjson.loads if orjson is not None else None
# Larger messages take the regular-expression fast path: parsing (and, when the message is
# refused, parsing again with json.loads) large hostile documents with orjson left the
# process's RSS 15-20 MB higher in tests/faults/test_hostile.py; 64 KiB is ~450 samples.
_ORJSON_MAX_BYTES = 65_536
_ORJSON_ERROR: type[Exception] = orjson.JSONDecodeError if orjson is not None else ValueError
_get_name = itemgetter("name")
_get_labels = itemgetter("labels")
_get_ts = itemgetter("timestamp")
_get_value = itemgetter("value")
_DICTS = frozenset({dict})
_FLOATS = frozenset({float})
_NUMBERS = frozenset({float, int})
_NUMBERS_OR_STR = frozenset({float, int, str})

# (name, tuple(labels.items())) -> series key; only entries whose key the general rules
# accept (str name, str label values), bounded in bytes like the other memos
_obj_keys: dict[tuple[Any, tuple[tuple[Any, Any], ...]], str] = {}
_obj_state = [0]


def _forget_obj_keys() -> None:
    """Empty the memo (the limits changed: its keys may no longer be valid)."""
    _obj_keys.clear()
    _obj_state[0] = 0


def _obj_key(obj: dict[str, Any], memo_key: tuple[Any, Any], limits: IngestLimits) -> str | None:
    """:func:`_key_of` of a parsed sample, memoised; None when the sample's name or labels
    are not valid (the general path says why)."""
    key = _fast_key_of(obj, limits)
    if key is None:
        return None
    # the key, about as many bytes of name and label strings, the tuples and the entry
    cost = 2 * len(key) + 170 * len(memo_key[1]) + 250
    return _remember(_obj_keys, _obj_state, 0, memo_key, key, cost, _FRAG_CACHE_BYTES)


def _decode_parsed_fast(ctx: _Ctx, value: bytes, idx: int, allow_str: bool) -> int:
    """The fast path with orjson (see the module docstring): append every sample of the
    record and return their number, or -1 (nothing appended) when the general path must
    decode it."""
    assert _orjson_loads is not None
    try:
        doc = _orjson_loads(value)
    except _ORJSON_ERROR:
        return -1
    td = type(doc)
    if td is dict:
        return _decode_parsed_one(ctx, doc, idx, allow_str)
    limits = ctx.limits  # the memo is for these limits (decode_batch checked)
    if td is not list:
        return -1
    items: list[Any] = doc
    if not 0 < len(items) <= limits.max_samples_per_message or set(map(type, items)) != _DICTS:
        return -1
    try:
        names = list(map(_get_name, items))
        labels = list(map(_get_labels, items))
        raw_t = list(map(_get_ts, items))
        raw_v = list(map(_get_value, items))
    except KeyError:
        return -1
    if set(map(type, labels)) != _DICTS:
        return -1
    memo_keys = list(zip(names, map(tuple, map(dict.items, labels)), strict=True))
    try:
        keys = list(map(_obj_keys.get, memo_keys))
    except TypeError:  # an unhashable label value: not valid
        return -1
    if None in keys:
        for j, key in enumerate(keys):
            if key is None:
                key = _obj_key(items[j], memo_keys[j], limits)
                if key is None:
                    return -1
                keys[j] = key
    # values: a JSON number, or (prometheus, auto) a string float() reads
    kinds = set(map(type, raw_v))
    if kinds == _FLOATS:
        vals = raw_v
    elif kinds <= _NUMBERS:
        vals = list(map(float, raw_v))
    elif allow_str and kinds <= _NUMBERS_OR_STR:
        try:
            vals = list(map(float, raw_v))
        except ValueError:
            return -1
    else:
        return -1
    # timestamps: a JSON number or an RFC 3339 string
    kinds = set(map(type, raw_t))
    if kinds == _FLOATS:
        tss = raw_t
    elif kinds <= _NUMBERS:
        tss = list(map(float, raw_t))
    elif kinds <= _NUMBERS_OR_STR:
        cache = ctx.ts_cache
        tss = []
        for t in raw_t:
            if type(t) is str:
                t = cache[t] if t in cache else _cache_ts(cache, t)
                if t is None:
                    return -1
            tss.append(float(t))
    else:
        return -1
    return _take_all(ctx, idx, keys, tss, vals, limits)


def _decode_parsed_one(ctx: _Ctx, obj: dict[str, Any], idx: int, allow_str: bool) -> int:
    """:func:`_decode_parsed_fast` of a message that is one sample object (the
    prometheus-kafka-adapter's shape): 1, or -1 when the general path must decode it."""
    try:
        name, labels, t, v = obj["name"], obj["labels"], obj["timestamp"], obj["value"]
    except KeyError:
        return -1
    if type(labels) is not dict:
        return -1
    limits = ctx.limits
    memo_key = (name, tuple(labels.items()))
    try:
        key = _obj_keys.get(memo_key)
    except TypeError:  # an unhashable label value: not valid
        return -1
    if key is None:
        key = _obj_key(obj, memo_key, limits)
        if key is None:
            return -1
    tv = type(v)
    if tv is not float:
        if tv is int or (tv is str and allow_str):
            try:
                v = float(v)
            except ValueError:
                return -1
        else:
            return -1
    tt = type(t)
    if tt is str:
        cache = ctx.ts_cache
        t = cache[t] if t in cache else _cache_ts(cache, t)
        if t is None:
            return -1
    elif tt is int:
        t = float(t)
    elif tt is not float:
        return -1
    # the one-sample case of context._take_all, inline: a call here was +2-4 % instructions
    # per one-sample message (callgrind, BENCHMARKS.md)
    now_s = ctx.now_s
    if (
        v - v != 0.0
        or t - t != 0.0
        or not now_s - limits.max_age_s <= t <= now_s + limits.max_future_s
    ):
        return -1
    ctx.keys.append(key)
    ctx.ts.append(t)
    ctx.val.append(v)
    ctx.origin.append(idx)
    return 1
