"""Bytes to columns: decoders for the three input formats.

:func:`decode_batch` turns one poll's :class:`~causalwatch.models.RawRecord` list into one
columnar :class:`~causalwatch.models.SampleBatch` plus a list of
:class:`~causalwatch.errors.RecordError` to dead-letter. It builds no object per sample
beyond the series-key string and never raises for bad input: every problem becomes an error
in the list (see :mod:`ingest.validate` for the reason codes and for what happens when only
some samples of a record are bad).

Formats (set per topic, or ``auto``)
------------------------------------
``json``
    Native JSON: one sample object or an array of them per message,
    ``{"name": "latency_seconds", "labels": {"service": "api"}, "timestamp": 1700000000.5,
    "value": 0.25}``. ``timestamp`` is unix seconds (int or float) or an RFC 3339 string;
    ``labels`` is optional. ``value`` must be a JSON number.
``prometheus``
    The JSON of Telefonica/prometheus-kafka-adapter, one sample per message:
    ``{"timestamp": "2020-01-01T00:00:10Z", "value": "+Inf", "name": "up",
    "labels": {"__name__": "up", "instance": "h:9100", "job": "node"}}``. ``value`` is a
    string (Go ``FormatFloat``: may be ``NaN``/``+Inf``/``-Inf``), ``timestamp`` RFC 3339.
    ``__name__`` is the metric name, not a label of the series, and is removed.
``influx``
    InfluxDB line protocol as Telegraf's Kafka output writes it (``data_format = "influx"``),
    one or more lines per message:
    ``cpu,cpu=cpu0,host=a usage_idle=97.5,usage_user=1.2 1700000000000000000``.
    Each numeric field becomes one sample of series ``<measurement>_<field>`` with the tags
    as labels; characters outside the Prometheus name rules become ``_``. Integer (``1i``)
    and unsigned (``1u``) fields are numbers; string and boolean fields are not metrics and
    are dead-lettered (``non_numeric_field``; drop them in Telegraf with ``fieldexclude`` to
    avoid that). Escapes follow the line-protocol spec (``\\,`` ``\\=`` ``\\ `` in names and
    tags, ``\\"`` ``\\\\`` in string fields); ``#`` lines are comments. The timestamp's unit
    is read from its magnitude (Telegraf writes nanoseconds; seconds, milliseconds and
    microseconds are recognised for dates after 1973); a line without one takes the Kafka
    record timestamp.
``auto``
    A message starting with ``{`` or ``[`` is JSON, read with the union of the ``json`` and
    ``prometheus`` rules (a string value is parsed); anything else is line protocol.

In every JSON format a missing ``name`` falls back to ``labels.__name__``; labels with an
empty value are dropped (Prometheus treats them as absent), so both spellings are one series.

Cost: ``O(bytes)``, one ``json.loads`` per JSON record (one ``orjson.loads`` on the fast
path when orjson is installed, see below). Measured on one core (BENCHMARKS.md):
about 3.6 µs per sample in JSON arrays, 7 µs per one-sample JSON message, 2 µs per Influx
field. Series keys are memoised across calls (bounded), so a fleet whose series come back
every scrape pays the key-building cost once. Works poorly for many tiny one-sample
messages: the per-record cost (here and even more in kafka-python) then dominates; put many
samples in one message where the producer allows it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import numpy as np

try:  # optional (``causalwatch[fast]``): the JSON fast path parses with it when installed
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None  # type: ignore[assignment, unused-ignore]

from causalwatch.errors import ConfigError, RecordError
from causalwatch.models import RawRecord, SampleBatch
from causalwatch.series import series_key
from ingest.validate import (
    IngestDecodeError,
    IngestLimits,
    IngestSchemaError,
    Problem,
    check_labels,
    check_message,
    check_name,
    check_timestamp,
    check_value,
    is_utf8_text,
    is_valid_label_name,
    is_valid_metric_name,
    label_count,
    parse_rfc3339,
)

__all__ = ["FORMATS", "IngestLimits", "decode_batch", "decode_record"]

FORMATS: frozenset[str] = frozenset({"auto", "json", "prometheus", "influx"})

_DECODE_REASONS = frozenset({"empty", "oversized", "not_json", "not_format", "undecodable_batch"})
_BOOLS = frozenset({"t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"})
_NOT_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_NOT_LABEL = re.compile(r"[^a-zA-Z0-9_]")
_NON_SPACE = re.compile(rb"\S")


class _Ctx:
    """Mutable state of one decode_batch call (columns, errors, per-call caches)."""

    __slots__ = ("errors", "keys", "limits", "names", "now_s", "origin", "ts", "ts_cache", "val")

    def __init__(self, limits: IngestLimits, now_s: float) -> None:
        self.limits = limits
        self.now_s = now_s
        self.keys: list[str] = []
        self.ts: list[float] = []
        self.val: list[float] = []
        self.origin: list[int] = []
        self.errors: list[RecordError] = []
        self.ts_cache: dict[str, float | None] = {}
        self.names: dict[tuple[str, str], str] = {}

    def fail(self, rec: RawRecord, problem: Problem, sample_index: int | None) -> None:
        reason, field, message = problem
        cls = IngestDecodeError if reason in _DECODE_REASONS else IngestSchemaError
        where = f"{rec.topic}[{rec.partition}]@{rec.offset}"
        if sample_index is not None:
            where += f" sample {sample_index}"
        self.errors.append(
            cls(
                f"{where}: {message}",
                reason=reason,
                field=field,
                record=rec,
                sample_index=sample_index,
            )
        )

    def mark(self) -> tuple[int, int]:
        return len(self.keys), len(self.errors)

    def rollback(self, mark: tuple[int, int]) -> None:
        n, e = mark
        del self.keys[n:], self.ts[n:], self.val[n:], self.origin[n:], self.errors[e:]


def decode_batch(
    records: Sequence[RawRecord],
    formats: Mapping[str, str],
    limits: IngestLimits,
    now_s: float,
) -> tuple[SampleBatch, list[RecordError]]:
    """Decode and validate one poll of records into columns.

    Parameters
    ----------
    records
        The poll, in order. ``SampleBatch.origin[i]`` is the index into this sequence of the
        record sample ``i`` came from.
    formats
        Topic name -> ``auto`` | ``json`` | ``prometheus`` | ``influx``; a topic that is not
        listed is ``auto``.
    limits
        Size, cardinality and time-window limits (:class:`IngestLimits`).
    now_s
        Current time, unix seconds, for the future/age window (passed in: no clock here).

    Returns
    -------
    (SampleBatch, list of RecordError)
        Samples in arrival order; errors in record order, whole-record errors with
        ``sample_index`` None, per-sample ones with the sample's index.

    Raises
    ------
    ConfigError
        only when ``formats`` names an unknown format (a wiring bug, not bad input).

    Examples
    --------
    >>> recs = [
    ...     RawRecord("m", 0, 7, b'[{"name": "up", "timestamp": 1700000000, "value": 1},'
    ...                          b' {"name": "up", "timestamp": 1700000001, "value": NaN}]'),
    ...     RawRecord("t", 0, 3, b"cpu,host=a usage=2.5,idle=97i 1700000000000000000"),
    ... ]
    >>> now_s = 1_700_000_010.0
    >>> batch, errors = decode_batch(recs, {"t": "influx"}, IngestLimits(), now_s)
    >>> batch.series_keys, batch.value.tolist(), batch.origin.tolist()
    (['up', 'cpu_usage{host="a"}', 'cpu_idle{host="a"}'], [1.0, 2.5, 97.0], [0, 1, 1])
    >>> [(e.reason, e.offset, e.sample_index) for e in errors]
    [('nan_value', 7, 1)]
    """
    for topic, fmt in formats.items():
        if fmt not in FORMATS:
            raise ConfigError(
                f"unknown format {fmt!r} for topic {topic!r} (setting kafka.topics); "
                f"expected one of {sorted(FORMATS)}",
                setting="kafka.topics",
            )
    ctx = _Ctx(limits, now_s)
    if _frag_state[1] is not limits:  # the fast path's memo holds keys valid under limits
        if _frag_state[1] != limits:
            _frag_keys.clear()
            _frag_state[0] = 0
            _obj_keys.clear()
            _obj_state[0] = 0
            _heads.clear()
            _heads_bytes[0] = 0
        _frag_state[1] = limits
    get_format = formats.get
    for i, rec in enumerate(records):
        _decode_into(ctx, rec, i, get_format(rec.topic, "auto"))
    batch = SampleBatch(
        ctx.keys,
        np.array(ctx.ts, dtype=np.float64),
        np.array(ctx.val, dtype=np.float64),
        np.array(ctx.origin, dtype=np.int64),
    )
    return batch, ctx.errors


def decode_record(
    record: RawRecord, fmt: str, limits: IngestLimits, now_s: float
) -> tuple[SampleBatch, list[RecordError]]:
    """One record on its own (replay, tests); same result as a batch of one."""
    return decode_batch([record], {record.topic: fmt}, limits, now_s)


def _decode_into(ctx: _Ctx, rec: RawRecord, idx: int, fmt: str) -> None:
    if rec.error is not None:  # the client could not read its batch: nothing to decode
        ctx.fail(rec, ("undecodable_batch", "batch", f"record batch unreadable: {rec.error}"), None)
        return
    value = rec.value
    problem = check_message(value, ctx.limits)
    if problem is not None:
        ctx.fail(rec, problem, None)
        return
    if fmt == "auto":
        first = value[0]
        if first in b" \t\r\n":
            m = _NON_SPACE.search(value)
            first = value[m.start()] if m is not None else 0
        elif first == 0xEF and value.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark
            first = value[3] if len(value) > 3 else 0
        fmt = "auto-json" if first in b"{[" else "influx"
    if fmt != "influx" and _decode_json_fast(ctx, value, idx, fmt != "json") >= 0:
        return  # never more than max_samples_per_message: the fast path declines those
    mark = ctx.mark()
    if fmt == "influx":
        count = _decode_influx(ctx, rec, idx)
    else:
        count = _decode_json(ctx, rec, idx, allow_str_value=fmt != "json")
    if count > ctx.limits.max_samples_per_message:
        ctx.rollback(mark)
        ctx.fail(
            rec,
            (
                "too_many_samples",
                "message",
                f"{count} samples or more in one message, over "
                f"ingest.max_samples_per_message={ctx.limits.max_samples_per_message}",
            ),
            None,
        )


# --------------------------------------------------------------------------- JSON


def _decode_json(ctx: _Ctx, rec: RawRecord, idx: int, *, allow_str_value: bool) -> int:
    """Append the samples of one JSON record; returns the number of candidate samples."""
    try:
        doc = json.loads(rec.value)
    except (ValueError, RecursionError) as exc:
        ctx.fail(rec, ("not_json", "message", f"not JSON: {exc}"), None)
        return 0
    if isinstance(doc, dict):
        items: list[Any] = [doc]
    elif isinstance(doc, list):
        items = doc
        if not items:
            ctx.fail(rec, ("empty", "message", "message is an empty JSON array"), None)
            return 0
        if len(items) > ctx.limits.max_samples_per_message:
            return len(items)
    else:
        ctx.fail(
            rec,
            ("not_format", "message", f"JSON must be an object or array, got {type(doc).__name__}"),
            None,
        )
        return 0
    keys, tss, vals, origin = ctx.keys, ctx.ts, ctx.val, ctx.origin
    limits, now_s, ts_cache = ctx.limits, ctx.now_s, ctx.ts_cache
    lo, hi = now_s - limits.max_age_s, now_s + limits.max_future_s
    plain_chars = limits.max_label_value_bytes // 4  # a str this short fits in UTF-8 bytes
    label_chars = limits.max_label_name_bytes // 4
    name_chars = limits.max_name_bytes // 4
    for j, obj in enumerate(items):
        if not isinstance(obj, dict):
            ctx.fail(rec, ("bad_type", "sample", f"sample must be an object, got {obj!r:.40}"), j)
            continue
        # ---- name and labels
        key = _key_of(obj, limits, plain_chars, label_chars, name_chars)
        if isinstance(key, tuple):
            ctx.fail(rec, key, j)
            continue
        # ---- value
        if "value" not in obj:
            ctx.fail(rec, ("missing_field", "value", "field 'value' is missing"), j)
            continue
        raw_v = obj["value"]
        tv = type(raw_v)
        if tv is float:
            v = raw_v
        elif (tv is str and allow_str_value) or tv is int:
            try:
                v = float(raw_v)
            except (ValueError, OverflowError):
                ctx.fail(
                    rec, ("bad_value", "value", f"field 'value' {raw_v!r:.40} is no number"), j
                )
                continue
        else:
            ctx.fail(
                rec, ("bad_type", "value", f"field 'value' must be a number, got {raw_v!r:.40}"), j
            )
            continue
        # ---- timestamp
        if "timestamp" not in obj:
            ctx.fail(rec, ("missing_field", "timestamp", "field 'timestamp' is missing"), j)
            continue
        raw_t = obj["timestamp"]
        tt = type(raw_t)
        if tt is float or tt is int:
            try:
                t = float(raw_t)
            except OverflowError:
                t = float("inf") if raw_t > 0 else float("-inf")
        elif tt is str:
            parsed = ts_cache[raw_t] if raw_t in ts_cache else _cache_ts(ts_cache, raw_t)
            if parsed is None:
                ctx.fail(
                    rec,
                    ("bad_timestamp", "timestamp", f"timestamp {raw_t!r:.40} is not RFC 3339"),
                    j,
                )
                continue
            t = parsed
        else:
            ctx.fail(
                rec,
                (
                    "bad_type",
                    "timestamp",
                    f"field 'timestamp' must be a number or RFC 3339 string, got {raw_t!r:.40}",
                ),
                j,
            )
            continue
        if v - v != 0.0:  # NaN or +/-Inf in one comparison
            ctx.fail(rec, check_value(v, key) or _never(), j)
            continue
        if t - t != 0.0 or not lo <= t <= hi:
            ctx.fail(rec, check_timestamp(t, now_s, limits, key) or _never(), j)
            continue
        keys.append(key)
        tss.append(t)
        vals.append(v)
        origin.append(idx)
    return len(items)


def _key_of(
    obj: dict[str, Any], limits: IngestLimits, plain_chars: int, label_chars: int, name_chars: int
) -> str | Problem:
    """The series key of one sample object, or the problem with its name or labels."""
    labels = obj.get("labels")
    if labels is None:
        labels = {}
    elif type(labels) is not dict or not _labels_plain(labels, plain_chars, label_chars):
        problem = check_labels(labels, limits)
        if problem is not None:
            return problem
    elif label_count(labels) > limits.max_labels:  # __name__ is the name, not a label
        return check_labels(labels, limits) or _never()
    name = obj.get("name")
    if "__name__" in labels or "" in labels.values():
        if name is None:
            name = labels.get("__name__")
        labels = {k: v for k, v in labels.items() if v and k != "__name__"}
    if name is None:
        return ("missing_field", "name", "field 'name' is missing")
    if type(name) is not str or len(name) > name_chars or not _name_ok(name):
        problem = check_name(name, limits)
        if problem is not None:
            return problem
    ck = (name, *labels.items())
    key = _key_cache.get(ck)
    if key is None:
        key = _cache_key(ck, name, labels)
    return key


# Series keys repeat from poll to poll; memoising series_key (a pure function) saves about
# 1 µs per sample. The key tuple keeps label order, so a reordered label set only costs a
# second entry. Bounded in bytes (the names and values are bounded by the ingest limits,
# but 50,000 keys of 30 kB each would still be 1.5 GB): cleared when the budget is used.
_KEY_CACHE_MAX = 50_000
_KEY_CACHE_BYTES = 32 * 1_048_576
_key_cache: dict[tuple[Any, ...], str] = {}
_key_cache_bytes = [0]


def _cache_key(ck: tuple[Any, ...], name: str, labels: dict[str, str]) -> str:
    key = series_key(name, labels)
    cost = 2 * len(key) + 200  # the key, the tuple's strings (about the key's size), overhead
    if len(_key_cache) >= _KEY_CACHE_MAX or _key_cache_bytes[0] + cost > _KEY_CACHE_BYTES:
        _key_cache.clear()
        _key_cache_bytes[0] = 0
    _key_cache[ck] = key
    _key_cache_bytes[0] += cost
    return key


# Metric and label names repeat a lot; memoising the regex checks of these pure functions
# is safe. Only names within the length limits get here, and the memo is bounded in bytes
# (cleared when full), so hostile input cannot grow it.
_NAME_CACHE_BYTES = 4 * 1_048_576
_names: dict[str, bool] = {}
_label_names: dict[str, bool] = {}
_names_bytes = [0, 0]


def _memo(cache: dict[str, bool], slot: int, name: str, ok: bool) -> bool:
    cost = len(name) + 100
    if _names_bytes[slot] + cost > _NAME_CACHE_BYTES:
        cache.clear()
        _names_bytes[slot] = 0
    cache[name] = ok
    _names_bytes[slot] += cost
    return ok


def _name_ok(name: str) -> bool:
    ok = _names.get(name)
    return ok if ok is not None else _memo(_names, 0, name, is_valid_metric_name(name))


def _label_name_ok(name: str) -> bool:
    ok = _label_names.get(name)
    return ok if ok is not None else _memo(_label_names, 1, name, is_valid_label_name(name))


def _labels_plain(labels: dict[Any, Any], plain_chars: int, label_chars: int) -> bool:
    """Fast pre-check: short valid names and short string values, ASCII or valid UTF-8
    text (else the full check)."""
    for k, v in labels.items():
        if (
            type(v) is not str
            or len(v) > plain_chars
            or len(k) > label_chars
            or not _label_name_ok(k)
            or (not v.isascii() and not is_utf8_text(v))
        ):
            return False
    return True


def _cache_ts(cache: dict[str, float | None], text: str) -> float | None:
    parsed = parse_rfc3339(text)
    if len(cache) < 4_096 and len(text) <= 64:
        cache[text] = parsed
    return parsed


def _never() -> Problem:  # pragma: no cover - the guarded check always finds a problem
    return ("not_format", "message", "internal: check disagreed with fast path")


# --------------------------------------------------------------------------- JSON fast path
#
# Most JSON traffic is machine-written in one of two shapes: json.dumps-style sample objects
# with the keys in the order ``name, labels, timestamp, value`` (the native format, alone
# or in an array), or prometheus-kafka-adapter's ``timestamp, value, name, labels``. For
# those the fast path reads the message with one regular expression (C speed) instead of
# json.loads plus a Python walk of every dict: no dict per sample, and the name + labels
# *text* of a sample is looked up in a memo of series keys, so label validation runs once
# per distinct series, not once per sample. Strings with escapes, other key orders or
# extra keys, null labels, NaN/Infinity literals, a value or timestamp outside the window,
# too many samples, anything unusual: the fast path declines and the general path below
# decodes the record, so every error (reason, field, sample index, message) is exactly
# the general path's. Numbers are converted with ``float`` on the JSON text, which is
# what ``json.loads`` does.
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
_frag_state: list[Any] = [0, None]  # bytes used, the IngestLimits the memo was built under
_ts_memo: dict[bytes, float | None] = {}


def _fast_key_of(obj: dict[str, Any], limits: IngestLimits) -> str | None:
    """The fast paths' series key of a sample; None when its name or labels are not valid
    (the general path says why). Strings of at most a quarter of a byte limit in
    characters skip the byte checks (UTF-8 has at most 4 bytes a character)."""
    key = _key_of(
        obj,
        limits,
        limits.max_label_value_bytes // 4,
        limits.max_label_name_bytes // 4,
        limits.max_name_bytes // 4,
    )
    return None if isinstance(key, tuple) else key


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
    if _frag_state[0] + cost > _FRAG_CACHE_BYTES:
        _frag_keys.clear()
        _frag_state[0] = 0
    _frag_keys[(name_b, labels_b)] = key
    _frag_state[0] += cost
    return key


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


def _decode_json_fast(ctx: _Ctx, value: bytes, idx: int, allow_str: bool) -> int:
    """Append the samples of a machine-written JSON record; -1 (nothing appended) when the
    general path must decode it."""
    if _orjson_loads is not None and len(value) <= _ORJSON_MAX_BYTES:
        return _decode_parsed_fast(ctx, value, idx, allow_str)
    limits = ctx.limits  # the memo is for these limits (decode_batch checked)
    if value[:1] == b"[":
        return _decode_array_fast(ctx, value, idx)
    if value.startswith(b'{"timestamp"'):
        m = _ADAPTER_ONE.fullmatch(value)
        if m is None:
            return -1
        t_b, v_b, name_b, labels_b = m.groups()
    else:
        m = _NATIVE_ONE.fullmatch(value)
        if m is None:
            m = _ADAPTER_ONE.fullmatch(value)
            if m is None:
                return -1
            t_b, v_b, name_b, labels_b = m.groups()
        else:
            name_b, labels_b, t_b, v_b = m.groups()
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
    """The fast path of a JSON array (see above): one ``findall`` and C-level maps, no
    Python loop per sample unless a series or an RFC 3339 timestamp is new."""
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
    # vectorised: finite values, timestamps in the window (else the general path says why)
    return _take_all(ctx, idx, keys, tss, vals, limits)


def _take_all(
    ctx: _Ctx, idx: int, keys: list[Any], tss: list[float], vals: list[float], limits: IngestLimits
) -> int:
    """Append a fast path's samples when every one is finite and in the time window (else
    -1: the general path decides and says why). Vectorised past one sample."""
    now_s = ctx.now_s
    if len(vals) == 1:
        t, v = tss[0], vals[0]
        if (
            v - v != 0.0
            or t - t != 0.0
            or not now_s - limits.max_age_s <= t <= now_s + limits.max_future_s
        ):
            return -1
    else:
        t_arr = np.array(tss, dtype=np.float64)
        if not (
            np.isfinite(np.array(vals, dtype=np.float64)).all()
            and np.isfinite(t_arr).all()  # (the window may be infinite: replay)
            and (t_arr >= now_s - limits.max_age_s).all()
            and (t_arr <= now_s + limits.max_future_s).all()
        ):
            return -1
    ctx.keys.extend(keys)  # no None left
    ctx.ts.extend(tss)
    ctx.val.extend(vals)
    ctx.origin.extend([idx] * len(keys))
    return len(keys)


# --------------------------------------------------------------------------- orjson fast path
#
# With orjson installed, the fast path parses the message with it (about 3x json.loads and
# 2x the regular expressions above on arrays of 100) and reads the parsed samples with
# C-level maps: the name + labels of a sample are looked up in a memo of series keys under
# ``(name, tuple(labels.items()))``, so labels are validated once per distinct series. It
# appends nothing unless *every* sample of the message is well-formed and valid (fields
# present, a str name, a labels object, float/int value and timestamp, or a string value
# where the format allows, an RFC 3339 string timestamp; finite, in the time window);
# otherwise, and whenever orjson refuses the message (NaN / Infinity literals, numbers
# out of the float range, a byte-order mark, lone surrogates, other encodings...), it
# declines and the general path decodes the message with ``json.loads`` as before, so
# what is accepted and every error are exactly the general path's. Where orjson reads a
# document, it reads the same one as json.loads (duplicate keys: the last wins; floats
# correctly rounded), except integers beyond 64 bits, which it returns as floats: as a
# value or timestamp that is the general path's ``float(int)``; anywhere else (a name, a
# label) the sample is not valid and the fast path declines.
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


def _obj_key(obj: dict[str, Any], memo_key: tuple[Any, Any], limits: IngestLimits) -> str | None:
    """:func:`_key_of` of a parsed sample, memoised; None when the sample's name or labels
    are not valid (the general path says why)."""
    key = _fast_key_of(obj, limits)
    if key is None:
        return None
    # the key, about as many bytes of name and label strings, the tuples and the entry
    cost = 2 * len(key) + 170 * len(memo_key[1]) + 250
    if _obj_state[0] + cost > _FRAG_CACHE_BYTES:
        _obj_keys.clear()
        _obj_state[0] = 0
    _obj_keys[memo_key] = key
    _obj_state[0] += cost
    return key


def _decode_parsed_fast(ctx: _Ctx, value: bytes, idx: int, allow_str: bool) -> int:
    """The fast path with orjson (see above): append every sample of the record and return
    their number, or -1 (nothing appended) when the general path must decode it."""
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


# --------------------------------------------------------------------------- Influx


def _decode_influx(ctx: _Ctx, rec: RawRecord, idx: int) -> int:
    """Append the samples of one line-protocol record; returns the candidate count."""
    try:
        text = rec.value.decode("utf-8")
    except UnicodeDecodeError as exc:
        ctx.fail(rec, ("not_format", "message", f"line protocol is not UTF-8: {exc}"), None)
        return 0
    limits, now_s = ctx.limits, ctx.now_s
    max_samples = limits.max_samples_per_message
    lo, hi = now_s - limits.max_age_s, now_s + limits.max_future_s
    default_ts = rec.timestamp_ms / 1000.0 if rec.timestamp_ms is not None else now_s
    keys, tss, vals, origin = ctx.keys, ctx.ts, ctx.val, ctx.origin
    count = 0
    lines = 0
    for line_no, line in enumerate(text.split("\n")):
        if line.endswith("\r"):
            line = line[:-1]
        if not line or line[0] == "#" or line.isspace():
            continue
        lines += 1
        # a head (measurement and tags) seen before in a plain line: measurement and key
        # suffix from the memo, only the fields and timestamp left to read
        known = None
        if "\\" not in line and '"' not in line:
            sp = line.find(" ")
            if sp > 0:
                known = _heads.get(line[:sp])
        if known is not None:
            measurement, suffix = known
            parsed_rest = _parse_rest(line.split(" "))
            if isinstance(parsed_rest, str):
                ctx.fail(rec, ("not_format", "line", f"line {line_no}: {parsed_rest}"), line_no)
                continue
            fields, raw_ts = parsed_rest
            tags = None
        else:
            parsed = _parse_line(line)
            if isinstance(parsed, str):
                ctx.fail(rec, ("not_format", "line", f"line {line_no}: {parsed}"), line_no)
                continue
            measurement, tags, fields, raw_ts = parsed
        count += len(fields)
        if count > max_samples:
            return count
        if raw_ts is None:
            t = default_ts
        else:
            try:
                t = _influx_seconds(int(raw_ts))
            except (ValueError, OverflowError):
                ctx.fail(
                    rec,
                    ("bad_timestamp", "timestamp", f"line {line_no}: timestamp {raw_ts!r:.30}"),
                    line_no,
                )
                continue
        if tags is not None:
            labels = {_sanitize(k, _NOT_LABEL): v for k, v in tags} if tags else {}
            problem = check_labels(labels, limits, name_label=False)  # every tag is a label
            if problem is not None:
                reason, field, message = problem
                ctx.fail(rec, (reason, field, f"line {line_no}: {message}"), line_no)
                continue
            ck = ("_", *labels.items())
            full = _key_cache.get(ck)
            if full is None:
                full = _cache_key(ck, "_", labels)
            suffix = full[1:]
            if "\\" not in line and '"' not in line:
                _remember_head(line[: line.find(" ")], measurement, suffix)
        for field_key, raw_v in fields:
            name = ctx.names.get((measurement, field_key))
            if name is None:
                name = _sanitize(f"{measurement}_{field_key}", _NOT_NAME)
                ctx.names[(measurement, field_key)] = name
            if len(name) > limits.max_name_bytes:  # sanitized: ASCII, chars are bytes
                reason, field, message = check_name(name, limits) or _never()
                ctx.fail(rec, (reason, field, f"line {line_no}: {message}"), line_no)
                continue
            key = name + suffix
            v = _influx_number(raw_v)
            if v is None:
                kind = "string" if raw_v[:1] == '"' else "boolean"
                if kind == "boolean" and raw_v not in _BOOLS:
                    ctx.fail(
                        rec,
                        (
                            "bad_value",
                            field_key,
                            f"line {line_no}: field {field_key!r} value "
                            f"{raw_v!r:.30} is not a number",
                        ),
                        line_no,
                    )
                    continue
                ctx.fail(
                    rec,
                    (
                        "non_numeric_field",
                        field_key,
                        f"line {line_no}: {kind} field "
                        f"{field_key!r} of {measurement!r} is not a metric",
                    ),
                    line_no,
                )
                continue
            if v - v != 0.0:
                ctx.fail(rec, check_value(v, key) or _never(), line_no)
                continue
            if t - t != 0.0 or not lo <= t <= hi:
                ctx.fail(rec, check_timestamp(t, now_s, limits, key) or _never(), line_no)
                continue
            keys.append(key)
            tss.append(t)
            vals.append(v)
            origin.append(idx)
    if lines == 0:
        ctx.fail(rec, ("empty", "message", "no line-protocol lines (only blanks/comments)"), None)
    return count


def _sanitize(name: str, bad: re.Pattern[str]) -> str:
    name = bad.sub("_", name)
    if not name or name[0].isdigit():
        name = "_" + name
    return name


def _influx_seconds(ts: int) -> float:
    """Unit from magnitude: ns (Telegraf's default), µs, ms or s."""
    a = abs(ts)
    if a >= 10**17:
        return ts / 1e9
    if a >= 10**14:
        return ts / 1e6
    if a >= 10**11:
        return ts / 1e3
    return float(ts)


def _influx_number(raw: str) -> float | None:
    """Float of a numeric field value; None for strings and booleans (and junk)."""
    if not raw:
        return None
    last = raw[-1]
    try:
        if last == "i" or last == "u":
            return float(int(raw[:-1]))
        if raw[0] == '"' or raw in _BOOLS:
            return None
        return float(raw)
    except (ValueError, OverflowError):
        return None


_Line = tuple[str, list[tuple[str, str]], list[tuple[str, str]], str | None]


def _parse_line(line: str) -> _Line | str:
    """One line of line protocol, or a string saying why it is not one."""
    if "\\" in line or '"' in line:
        return _parse_line_escaped(line)
    parts = line.split(" ")
    if len(parts) not in (2, 3):
        return "expected 'measurement[,tags] fields [timestamp]'"
    head = parts[0].split(",")
    measurement = head[0]
    if not measurement:
        return "empty measurement"
    tags: list[tuple[str, str]] = []
    for item in head[1:]:
        k, eq, v = item.partition("=")
        if not eq or not k or not v or "=" in v:
            return f"bad tag {item!r:.40}"
        tags.append((k, v))
    rest = _parse_rest(parts)
    if isinstance(rest, str):
        return rest
    return measurement, tags, *rest


def _parse_rest(parts: list[str]) -> tuple[list[tuple[str, str]], str | None] | str:
    """Fields and timestamp of a plain line split at its spaces (the head is ``parts[0]``),
    or a string saying why the line is not line protocol."""
    if len(parts) not in (2, 3):
        return "expected 'measurement[,tags] fields [timestamp]'"
    fields: list[tuple[str, str]] = []
    for item in parts[1].split(","):
        k, eq, v = item.partition("=")
        if not eq or not k or not v:
            return f"bad field {item!r:.40}"
        fields.append((k, v))
    ts = parts[2] if len(parts) == 3 else None
    if ts is not None and not ts:
        return "empty timestamp"
    return fields, ts


# The head of a plain line (measurement and tags, before the first space) -> measurement
# and series-key suffix, for heads whose tags passed the label checks under the current
# limits (cleared when they change, see decode_batch): a fleet's heads repeat every scrape,
# and tag parsing, sanitising and the label checks were most of a line's cost. Only heads of
# at most _HEAD_MAX_CHARS (longer ones, rare and possibly hostile, are parsed every time),
# bounded in bytes like the other memos.
_HEAD_MAX_CHARS = 1_024
_HEADS_BYTES = 8 * 1_048_576
_heads: dict[str, tuple[str, str]] = {}
_heads_bytes = [0]


def _remember_head(head: str, measurement: str, suffix: str) -> None:
    if len(head) > _HEAD_MAX_CHARS:
        return
    cost = 2 * len(head) + len(suffix) + 200
    if _heads_bytes[0] + cost > _HEADS_BYTES:
        _heads.clear()
        _heads_bytes[0] = 0
    _heads[head] = (measurement, suffix)
    _heads_bytes[0] += cost


def _scan(line: str, pos: int, stops: str, escapable: str) -> tuple[str, int]:
    """Read up to the first unescaped char of ``stops``; resolve ``\\x`` for x in escapable."""
    out: list[str] = []
    n = len(line)
    while pos < n:
        c = line[pos]
        if c == "\\" and pos + 1 < n and line[pos + 1] in escapable:
            out.append(line[pos + 1])
            pos += 2
            continue
        if c in stops:
            break
        out.append(c)
        pos += 1
    return "".join(out), pos


def _parse_line_escaped(line: str) -> _Line | str:
    """The general scanner (escapes, quoted string fields); same result as the fast path."""
    n = len(line)
    measurement, pos = _scan(line, 0, ", ", ", ")
    if not measurement:
        return "empty measurement"
    tags: list[tuple[str, str]] = []
    while pos < n and line[pos] == ",":
        k, pos = _scan(line, pos + 1, ",= ", ",= ")
        if pos >= n or line[pos] != "=" or not k:
            return f"bad tag key {k!r:.40}"
        v, pos = _scan(line, pos + 1, ",= ", ",= ")
        if not v or (pos < n and line[pos] == "="):
            return f"bad tag value for {k!r:.40}"
        tags.append((k, v))
    if pos >= n or line[pos] != " ":
        return "missing fields"
    fields: list[tuple[str, str]] = []
    pos += 1
    while True:
        k, pos = _scan(line, pos, ",= ", ",= ")
        if pos >= n or line[pos] != "=" or not k:
            return f"bad field key {k!r:.40}"
        pos += 1
        if pos < n and line[pos] == '"':
            end = pos + 1
            while end < n and line[end] != '"':
                end += 2 if line[end] == "\\" else 1
            if end >= n:
                return f"unterminated string field {k!r:.40}"
            v = line[pos : end + 1]
            pos = end + 1
        else:
            v, pos = _scan(line, pos, ", ", "")
            if not v:
                return f"bad field value for {k!r:.40}"
        fields.append((k, v))
        if pos < n and line[pos] == ",":
            pos += 1
            continue
        break
    ts: str | None = None
    if pos < n:
        if line[pos] != " ":
            return f"unexpected {line[pos]!r} after fields"
        ts = line[pos + 1 :]
        if not ts or " " in ts:
            return "bad timestamp part"
    return measurement, tags, fields, ts
