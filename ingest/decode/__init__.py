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

The code follows a record's path: this module sniffs the format and picks the path that
decodes the record (the JSON fast path first, see :mod:`ingest.decode.json_msgspec`,
:mod:`ingest.decode.json_orjson` and :mod:`ingest.decode.json_regex`; else
:mod:`ingest.decode.json_general` or :mod:`ingest.decode.influx`, which parses lines with
:mod:`ingest.decode.influx_line`). Every path appends to the columns of
:mod:`ingest.decode.context` and builds series keys with the memos of
:mod:`ingest.decode.keys`.

Cost: ``O(bytes)``, one ``json.loads`` per JSON record (one ``orjson.loads`` on the fast
path when orjson is installed, see :mod:`ingest.decode.json_orjson`; one msgspec decode
into structs when msgspec is installed, :mod:`ingest.decode.json_msgspec`).
Measured on one core (BENCHMARKS.md, 2026-12-03, per CPU-second): about 0.8 µs per sample
in JSON arrays of 100 and 1.1 µs per one-sample JSON message with msgspec (1.4 and 1.8 µs
with orjson alone), 1 µs per Influx field. Series keys are memoised across calls
(bounded), so a fleet whose series come back every scrape pays the key-building cost once.
Works poorly for many tiny one-sample messages: the per-record cost (here and even more in
kafka-python) then dominates; put many samples in one message where the producer allows it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from causalwatch.errors import ConfigError, RecordError
from causalwatch.models import RawRecord, SampleBatch
from ingest.decode.context import _Ctx
from ingest.decode.influx import _decode_influx, _forget_heads
from ingest.decode.json_general import _decode_json
from ingest.decode.json_msgspec import (
    _decode_msgspec_fast,
    _decode_msgspec_one,
    _forget_raw_keys,
    _msgspec_decode,
)
from ingest.decode.json_orjson import (
    _ORJSON_MAX_BYTES,
    _decode_parsed_fast,
    _forget_obj_keys,
    _orjson_loads,
)
from ingest.decode.json_regex import _decode_regex_fast, _forget_frag_keys
from ingest.validate import IngestLimits, check_message

__all__ = ["FORMATS", "IngestLimits", "decode_batch", "decode_record"]

FORMATS: frozenset[str] = frozenset({"auto", "json", "prometheus", "influx"})

_NON_SPACE = re.compile(rb"\S")
# the IngestLimits the fast paths' and the Influx heads' memos were built under
_memo_limits: list[IngestLimits | None] = [None]


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
    if _memo_limits[0] is not limits:  # the memos hold keys valid under their limits
        if _memo_limits[0] != limits:
            _forget_frag_keys()
            _forget_obj_keys()
            _forget_raw_keys()
            _forget_heads()
        _memo_limits[0] = limits
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


def _decode_json_fast(ctx: _Ctx, value: bytes, idx: int, allow_str: bool) -> int:
    """Append the samples of a machine-written JSON record; -1 (nothing appended) when the
    general path must decode it. For a message that is not large: msgspec's fast path when
    it is installed and the message starts with ``[`` or ``{`` (orjson's after it when
    msgspec cannot represent the message), orjson's when it is installed; else the
    regular expressions'."""
    if len(value) <= _ORJSON_MAX_BYTES:
        if _msgspec_decode is not None:
            first = value[0]  # (not empty: checked)
            if first == 0x5B:  # "["
                count = _decode_msgspec_fast(ctx, value, idx, allow_str)
            elif first == 0x7B:  # "{"
                count = _decode_msgspec_one(ctx, value, idx, allow_str)
            else:
                count = -2
            if count != -2:
                return count
        if _orjson_loads is not None:
            return _decode_parsed_fast(ctx, value, idx, allow_str)
    return _decode_regex_fast(ctx, value, idx, allow_str)
