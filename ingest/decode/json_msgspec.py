"""The JSON fast path with msgspec (``causalwatch[fast]``): typed decoding into structs.

With msgspec installed, a message that is a JSON array is decoded with one
``msgspec.json.Decoder`` straight into structs of the four known fields (``name``: str,
``labels``: kept as its raw JSON text, ``timestamp`` and ``value``: a number or a string);
no dict per sample and no dict per label set. The series key of a sample is looked up in a
memo under ``(name, labels text)``; on a miss the labels text is read with ``json.loads``
(what the general path reads) and the key built with the general rules, so labels are
validated once per distinct series and text. Then, as on orjson's path
(:mod:`ingest.decode.json_orjson`), it appends nothing unless *every* sample is valid and
returns -1 otherwise, and the general path (:mod:`ingest.decode.json_general`) decodes the
message as before: what is accepted and every error are exactly the general path's.

What msgspec reads differently from ``json.loads``, and how the path stays exact:

- unknown fields are refused (``forbid_unknown_fields``): msgspec skips them without
  checking them as strictly as json.loads, so a message with extra fields goes to orjson's
  path (msgspec's ``ValidationError``) and from there, if need be, to the general path;
- the labels text is not checked by msgspec beyond its structure: it is read with
  ``json.loads`` on a memo miss, and a memo hit is the same bytes as a text that was read;
- invalid UTF-8 inside the labels text passes msgspec: a message that is not ASCII is
  declined unless it decodes as strict UTF-8 (json.loads would fail on it);
- numbers out of the float range, ``NaN``/``Infinity`` literals, lone surrogates, a
  byte-order mark, other encodings, nesting beyond msgspec's depth: msgspec refuses the
  message and the general path decides;
- integers: msgspec reads them into the float fields correctly rounded, as ``float(int)``
  of the general path (``-0`` is ``0.0`` in both); duplicate keys: the last wins in both.

A message that is one sample object (``{``, the prometheus-kafka-adapter's shape) is
decoded the same way into one struct (:func:`_decode_msgspec_one`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from operator import attrgetter
from typing import Any

try:  # optional (``causalwatch[fast]``): the JSON fast path decodes with it when installed
    import msgspec
except ImportError:  # pragma: no cover - depends on the environment
    msgspec = None  # type: ignore[assignment, unused-ignore]

from ingest.decode.context import _cache_ts, _Ctx, _take_all
from ingest.decode.json_regex import _FRAG_CACHE_BYTES
from ingest.decode.keys import _fast_key_of, _remember
from ingest.validate import IngestLimits

_get_name = attrgetter("name")
_get_labels = attrgetter("labels")
_get_ts = attrgetter("timestamp")
_get_value = attrgetter("value")
_FLOATS = frozenset({float})
_FLOATS_OR_STR = frozenset({float, str})

_msgspec_decode: Callable[[bytes], Any] | None = None
_msgspec_decode_one: Callable[[bytes], Any] | None = None
_MSGSPEC_ERROR: type[Exception] = ValueError
_MSGSPEC_INVALID: type[Exception] = ValueError
if msgspec is not None:

    class _Sample(msgspec.Struct, forbid_unknown_fields=True, gc=False):
        """One sample object of the native format; ``labels`` missing reads as null, which
        the general path treats as no labels."""

        name: str
        timestamp: float | str
        value: float | str
        labels: msgspec.Raw = msgspec.Raw(b"null")

    _msgspec_decode = msgspec.json.Decoder(list[_Sample]).decode
    _msgspec_decode_one = msgspec.json.Decoder(_Sample).decode
    _MSGSPEC_ERROR = msgspec.DecodeError
    _MSGSPEC_INVALID = msgspec.ValidationError

# (name, labels text) -> series key; only entries whose key the general rules accept,
# bounded in bytes like the other memos
_raw_keys: dict[tuple[str, bytes], str] = {}
_raw_state = [0]


def _forget_raw_keys() -> None:
    """Empty the memo (the limits changed: its keys may no longer be valid)."""
    _raw_keys.clear()
    _raw_state[0] = 0


def _raw_key(memo_key: tuple[str, bytes], limits: IngestLimits) -> str | None:
    """The series key of a name and labels text, memoised; None when they are not valid
    (the general path says why)."""
    try:
        labels = json.loads(memo_key[1])
    except (ValueError, RecursionError):
        return None
    key = _fast_key_of({"name": memo_key[0], "labels": labels}, limits)
    if key is None:
        return None
    # the key, the name and the labels text, the tuple and the entry
    cost = 2 * len(key) + len(memo_key[1]) + 250
    return _remember(_raw_keys, _raw_state, 0, memo_key, key, cost, _FRAG_CACHE_BYTES)


def _decode_msgspec_fast(ctx: _Ctx, value: bytes, idx: int, allow_str: bool) -> int:
    """The fast path with msgspec for a message that starts with ``[`` (see the module
    docstring): append every sample and return their number; -1 (nothing appended) when
    the general path must decode it; -2 when msgspec cannot represent the message in its
    structs (extra fields...) and orjson's path may still take it."""
    assert _msgspec_decode is not None
    if not value.isascii():
        try:
            value.decode()
        except UnicodeDecodeError:
            return -1
    try:
        items = _msgspec_decode(value)
    except _MSGSPEC_INVALID:
        return -2
    except (_MSGSPEC_ERROR, RecursionError):
        return -1
    limits = ctx.limits  # the memo is for these limits (decode_batch checked)
    if not 0 < len(items) <= limits.max_samples_per_message:
        return -1
    memo_keys = list(zip(map(_get_name, items), map(bytes, map(_get_labels, items))))
    keys = list(map(_raw_keys.get, memo_keys))
    if None in keys:
        for j, key in enumerate(keys):
            if key is None:
                key = _raw_key(memo_keys[j], limits)
                if key is None:
                    return -1
                keys[j] = key
    # values: a JSON number (a float here), or (prometheus, auto) a string float() reads
    vals = list(map(_get_value, items))
    kinds = set(map(type, vals))
    if kinds != _FLOATS:
        if not allow_str or not kinds <= _FLOATS_OR_STR:
            return -1
        try:
            vals = list(map(float, vals))
        except ValueError:
            return -1
    # timestamps: a JSON number or an RFC 3339 string
    tss = list(map(_get_ts, items))
    if set(map(type, tss)) != _FLOATS:
        cache = ctx.ts_cache
        for j, t in enumerate(tss):
            if type(t) is str:
                t = cache[t] if t in cache else _cache_ts(cache, t)
                if t is None:
                    return -1
                tss[j] = t
    return _take_all(ctx, idx, keys, tss, vals, limits)


def _decode_msgspec_one(ctx: _Ctx, value: bytes, idx: int, allow_str: bool) -> int:
    """:func:`_decode_msgspec_fast` of a message that starts with ``{`` (one sample object,
    the prometheus-kafka-adapter's shape): 1, -1 (the general path decodes it) or -2
    (orjson's path may take it)."""
    assert _msgspec_decode_one is not None
    if not value.isascii():
        try:
            value.decode()
        except UnicodeDecodeError:
            return -1
    try:
        obj = _msgspec_decode_one(value)
    except _MSGSPEC_INVALID:
        return -2
    except (_MSGSPEC_ERROR, RecursionError):
        return -1
    limits = ctx.limits
    memo_key = (obj.name, bytes(obj.labels))
    key = _raw_keys.get(memo_key)
    if key is None:
        key = _raw_key(memo_key, limits)
        if key is None:
            return -1
    v = obj.value
    if type(v) is str:
        if not allow_str:
            return -1
        try:
            v = float(v)
        except ValueError:
            return -1
    t = obj.timestamp
    if type(t) is str:
        cache = ctx.ts_cache
        t = cache[t] if t in cache else _cache_ts(cache, t)
        if t is None:
            return -1
    # the one-sample case of context._take_all, inline (as in json_orjson)
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
