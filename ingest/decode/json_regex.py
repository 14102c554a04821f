"""The JSON fast path without orjson: regular expressions over the message text.

Most JSON traffic is machine-written in one of two shapes: json.dumps-style sample objects
with the keys in the order ``name, labels, timestamp, value`` (the native format, alone or
in an array), or prometheus-kafka-adapter's ``timestamp, value, name, labels``. For those
the fast path reads the message with one regular expression (C speed) instead of
json.loads plus a Python walk of every dict: no dict per sample, and the name + labels
*text* of a sample is looked up in a memo of series keys, so label validation runs once
per distinct series, not once per sample. Strings with escapes, other key orders or extra
keys, null labels, NaN/Infinity literals, a value or timestamp outside the window, too
many samples, anything unusual: the fast path declines and the general path
(:mod:`ingest.decode.json_general`) decodes the record, so every error (reason, field,
sample index, message) is exactly the general path's. Numbers are converted with ``float``
on the JSON text, which is what ``json.loads`` does.

With orjson installed, messages over ``_ORJSON_MAX_BYTES`` (64 KiB) take this path too
(:mod:`ingest.decode.json_orjson`).
"""

from __future__ import annotations

import json
import re

from ingest.decode.context import _Ctx, _take_all
from ingest.decode.keys import _fast_key_of, _remember
from ingest.validate import IngestLimits, parse_rfc3339

# possessive quantifiers (Python 3.11+): no backtracking state kept, about a third faster;
# each is followed by a character its class excludes, so the matches are the same
_WS = rb"[ \t\n\r]*+"
_STR = rb'"[^"\\\x00-\x1f]*+"'
_NUM = rb"-?+(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][+-]?+[0-9]++)?+"
_LABELS = rb'\{[^{}"\\]*+(?:' + _STR + rb'[^{}"\\]*+)*+\}'


def _kv(key: bytes, value: bytes) -> bytes:
    return _WS + b'"' + key + b'"' + _WS + b":" + _WS + b"(" + value + b")" + _WS


_NATIVE_OBJ = (
    rb"\{"
    + _kv(b"name", _STR)
    + b","
    + _kv(b"labels", _LABELS)
    + b","
    + _kv(b"timestamp", _NUM + b"|" + _STR)
    + b","
    + _kv(b"value", _NUM + b"|" + _STR)
    + rb"\}"
)
_ADAPTER_OBJ = (
    rb"\{"
    + _kv(b"timestamp", _NUM + b"|" + _STR)
    + b","
    + _kv(b"value", _NUM + b"|" + _STR)
    + b","
    + _kv(b"name", _STR)
    + b","
    + _kv(b"labels", _LABELS)
    + rb"\}"
)
_NATIVE_ONE = re.compile(_WS + _NATIVE_OBJ + _WS)


def _array_element(item_sep: bytes, colon: bytes) -> re.Pattern[bytes]:
    """One element of an array as json.dumps writes it (``item_sep`` and ``colon`` are its
    separators), with the separator before it: ``[`` or ``item_sep``. Groups: separator,
    the name + labels text, timestamp, value."""
    return re.compile(
        rb"(\[|"
        + re.escape(item_sep)
        + rb')\{("name"'
        + colon
        + _STR
        + item_sep
        + b'"labels"'
        + colon
        + _LABELS
        + b")"
        + item_sep
        + b'"timestamp"'
        + colon
        + b"("
        + _NUM
        + b"|"
        + _STR
        + b")"
        + item_sep
        + b'"value"'
        + colon
        + b"("
        + _NUM
        + rb")\}"
    )


# (prefix the message starts with, element pattern, bytes of an element besides its groups)
_ARRAY_STYLES = [
    (
        b'[{"name"' + colon + b'"',
        _array_element(item_sep, colon),
        len(b"{}" + item_sep + b'"timestamp"' + colon + item_sep + b'"value"' + colon),
        len(item_sep),
    )
    for item_sep, colon in ((b", ", b": "), (b",", b":"))
]
_ADAPTER_ONE = re.compile(_WS + _ADAPTER_OBJ + _WS)

# name text + labels text -> series key; only fragments whose key the general rules accept
# are stored, bounded in bytes like the other memos.
_FRAG_CACHE_BYTES = 32 * 1_048_576
_frag_keys: dict[tuple[bytes, bytes] | bytes, str] = {}
_frag_state = [0]  # bytes used
_ts_memo: dict[bytes, float | None] = {}


def _forget_frag_keys() -> None:
    """Empty the memo (the limits changed: its keys may no longer be valid)."""
    _frag_keys.clear()
    _frag_state[0] = 0


def _frag_key(name_b: bytes, labels_b: bytes, limits: IngestLimits) -> str | None:
    """The series key of a name + labels text (the JSON string with its quotes and the
    labels object), or None when the general path must handle the sample."""
    try:
        name = name_b[1:-1].decode("utf-8")
        labels = json.loads(labels_b)
    except (ValueError, RecursionError):
        return None
    if type(labels) is not dict:
        return None
    key = _fast_key_of({"name": name, "labels": labels}, limits)
    if key is None:
        return None
    cost = 2 * (len(name_b) + len(labels_b)) + len(key) + 200
    return _remember(_frag_keys, _frag_state, 0, (name_b, labels_b), key, cost, _FRAG_CACHE_BYTES)


def _frag_text_key(frag: bytes, limits: IngestLimits) -> str | None:
    """:func:`_frag_key` of the name + labels text of an array element, memoised under
    that text."""
    key = _frag_keys.get(frag)
    if key is None:
        # '"name": "X", "labels": {...}': the name string, then the labels object
        start = frag.index(b'"', 6)
        end = frag.index(b'"', start + 1)
        key = _frag_key(frag[start : end + 1], frag[frag.index(b"{", end) :], limits)
        if key is not None:
            _frag_keys[frag] = key
            _frag_state[0] += 2 * len(frag) + 100
    return key


def _fast_ts(raw: bytes) -> float | None:
    if raw[0] != 34:  # '"': a JSON number
        return float(raw)
    parsed = _ts_memo.get(raw)
    if parsed is None:
        try:
            parsed = parse_rfc3339(raw[1:-1].decode("utf-8"))
        except UnicodeDecodeError:
            return None
        if parsed is None:
            return None
        if len(_ts_memo) >= 4_096:
            _ts_memo.clear()
        _ts_memo[raw] = parsed
    return parsed


def _fast_value(raw: bytes, allow_str: bool) -> float | None:
    if raw[0] != 34:
        return float(raw)
    if not allow_str:
        return None
    try:  # float() reads ASCII bytes as it reads the str; anything else declines
        return float(raw[1:-1])
    except ValueError:
        return None


def _decode_regex_fast(ctx: _Ctx, value: bytes, idx: int, allow_str: bool) -> int:
    """Append the samples of a machine-written JSON record; -1 (nothing appended) when the
    general path must decode it."""
    limits = ctx.limits  # the memo is for these limits (decode_batch checked)
    if value[:1] == b"[":
        return _decode_array_fast(ctx, value, idx)
    # the adapter's key order when the message says so, else native first, then the adapter's
    m = None if value.startswith(b'{"timestamp"') else _NATIVE_ONE.fullmatch(value)
    if m is not None:
        name_b, labels_b, t_b, v_b = m.groups()
    else:
        m = _ADAPTER_ONE.fullmatch(value)
        if m is None:
            return -1
        t_b, v_b, name_b, labels_b = m.groups()
    key = _frag_keys.get((name_b, labels_b))
    if key is None:
        key = _frag_key(name_b, labels_b, limits)
        if key is None:
            return -1
    try:
        t = float(t_b) if t_b[0] != 34 else _fast_ts(t_b)  # 34: '"'
        v = float(v_b) if v_b[0] != 34 else _fast_value(v_b, allow_str)
    except (ValueError, OverflowError):
        return -1
    if t is None or v is None:
        return -1
    if (not v and v_b == b"-0") or (not t and t_b == b"-0"):
        return -1  # the integer -0: json.loads reads 0, float() -0.0
    # the one-sample case of context._take_all, inline: a call here was +2-4 % instructions
    # per one-sample message (callgrind, BENCHMARKS.md)
    now_s = ctx.now_s
    if v - v != 0.0 or t - t != 0.0:
        return -1
    if not now_s - limits.max_age_s <= t <= now_s + limits.max_future_s:
        return -1
    ctx.keys.append(key)
    ctx.ts.append(t)
    ctx.val.append(v)
    ctx.origin.append(idx)
    return 1


def _decode_array_fast(ctx: _Ctx, value: bytes, idx: int) -> int:
    """The fast path of a JSON array (see the module docstring): one ``findall`` and
    C-level maps, no Python loop per sample unless a series or an RFC 3339 timestamp is
    new."""
    limits = ctx.limits
    style = next((st for st in _ARRAY_STYLES if value.startswith(st[0])), None)
    if style is None or value[-1:] != b"]" or b"NaN" in value or b"Infinity" in value:
        return -1  # (NaN / Infinity literals: the general path says which samples)
    _, pattern, fixed, sep_len = style
    found = pattern.findall(value)
    n = len(found)
    if n == 0 or n > limits.max_samples_per_message:
        return -1
    seps, frags, ts_raw, val_raw = zip(*found, strict=True)
    # the matches tile the message exactly (nothing skipped between them): their lengths
    # add up to all of it but the closing ']', and only the first starts with '['
    covered = 1 + sep_len * (n - 1) + n * fixed
    covered += sum(map(len, frags)) + sum(map(len, ts_raw)) + sum(map(len, val_raw))
    if covered != len(value) - 1 or seps.count(b"[") != 1:
        return -1
    keys = list(map(_frag_keys.get, frags))
    if None in keys:
        for j, frag in enumerate(frags):
            if keys[j] is None:
                key = _frag_text_key(frag, limits)
                if key is None:
                    return -1
                keys[j] = key
    try:
        tss = list(map(float, ts_raw))
    except ValueError:  # RFC 3339 strings
        parsed = [float(t) if t[0] != 34 else _fast_ts(t) for t in ts_raw]
        if None in parsed:
            return -1
        tss = parsed  # type: ignore[assignment]
    vals = list(map(float, val_raw))
    if b"-0" in value and (b"-0" in val_raw or b"-0" in ts_raw):
        return -1  # the integer -0: json.loads reads 0, float() -0.0
    # vectorised: finite values, timestamps in the window (else the general path says why)
    return _take_all(ctx, idx, keys, tss, vals, limits)
