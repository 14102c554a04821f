"""Checks on incoming records and samples, and the errors that dead-letter them.

Every check answers with a :class:`~causalwatch.errors.RecordError` subclass carrying a
stable short ``reason`` code (the dead-letter header ``x-causalwatch-reason`` and the
``reason`` label of the dead-letter counter), the ``field`` at fault and the record's source
(topic, partition, offset, key, raw bytes). Checks never raise anything else, so a bad
record can never crash the consumer.

Whole-record versus per-sample errors
-------------------------------------
Some problems spoil the whole record: it is empty, oversized, not JSON / not line protocol
at all, or carries more than ``max_samples_per_message`` samples. The record is then
dead-lettered once, with ``sample_index`` None, and yields no samples.

Other problems spoil one sample inside an otherwise good record (a NaN value in an array of
ten, one unparsable line among many, a string field in Telegraf output). Then the good
samples are kept and *each* bad sample is dead-lettered on its own: the dead-letter record
carries the original raw bytes of the whole message plus ``sample_index`` (the position of
the bad sample: array index for JSON arrays, 0 for a single JSON object, the 0-based line
number for Influx line protocol) and the reason. A record can therefore both feed samples
and appear on the dead-letter topic, once per bad sample.

Reason codes (stable; dashboards and alerts key on them)
--------------------------------------------------------
=====================  ==============  ======================================================
reason                 error class     meaning
=====================  ==============  ======================================================
``empty``              DecodeError     zero bytes / only whitespace / ``[]`` / only comments
``oversized``          DecodeError     more than ``max_message_bytes``
``not_json``           DecodeError     not valid (UTF-8) JSON where JSON was expected
``not_format``         DecodeError     JSON of the wrong shape, or a line that is not line
                                       protocol, or an unknown format name
``too_many_samples``   SchemaError     more than ``max_samples_per_message`` samples
``missing_field``      SchemaError     ``name`` / ``value`` / ``timestamp`` absent
``bad_type``           SchemaError     a field has the wrong JSON type (``value: true``)
``bad_value``          SchemaError     a value string that is not a number (``"abc"``)
``bad_timestamp``      SchemaError     a timestamp string that is not RFC 3339
``bad_name``           SchemaError     metric name breaks Prometheus rules
``bad_label_name``     SchemaError     label name breaks Prometheus rules
``name_too_long``      SchemaError     metric name longer than ``max_name_bytes``
``label_name_too_long``  SchemaError   label name longer than ``max_label_name_bytes``
``bad_unicode``        SchemaError     a label value holds a lone UTF-16 surrogate (a JSON
                                       ``\\udXXX`` escape without its pair): not text, and
                                       it cannot be exported or stored as UTF-8
``nan_value``          SchemaError     value is NaN (incl. Prometheus staleness markers)
``inf_value``          SchemaError     value is +/-Inf
``ts_future``          SchemaError     timestamp more than ``max_future_s`` ahead of now
``ts_too_old``         SchemaError     timestamp more than ``max_age_s`` behind now
``too_many_labels``    SchemaError     more than ``max_labels`` labels besides the metric
                                       name (a ``__name__`` label in JSON is not counted)
``label_too_long``     SchemaError     a label value longer than ``max_label_value_bytes``
``non_numeric_field``  SchemaError     an Influx string or boolean field (not a metric)
``series_limit``       SchemaError     a new series beyond ``ingest.max_series``
``undecodable_batch``  DecodeError     the Kafka client could not read the record's batch
                                       (unknown or unavailable codec, corrupt payload or
                                       CRC); the dead letter has no value, only the
                                       source topic, partition and offset and the error
=====================  ==============  ======================================================
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

from causalwatch.errors import DecodeError, RecordError, SchemaError
from causalwatch.models import RawRecord

__all__ = [
    "REASONS",
    "IngestDecodeError",
    "IngestLimits",
    "IngestSchemaError",
    "check_labels",
    "check_message",
    "check_name",
    "check_timestamp",
    "check_value",
    "is_utf8_text",
    "is_valid_label_name",
    "is_valid_metric_name",
    "label_count",
    "parse_rfc3339",
]

REASONS: frozenset[str] = frozenset(
    {
        "empty",
        "oversized",
        "not_json",
        "not_format",
        "too_many_samples",
        "missing_field",
        "bad_type",
        "bad_value",
        "bad_timestamp",
        "bad_name",
        "bad_label_name",
        "name_too_long",
        "label_name_too_long",
        "bad_unicode",
        "nan_value",
        "inf_value",
        "ts_future",
        "ts_too_old",
        "too_many_labels",
        "label_too_long",
        "non_numeric_field",
        "series_limit",
        "undecodable_batch",
    }
)

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)?",
    re.ASCII,
)


class _IngestSettingsLike(Protocol):
    @property
    def max_message_bytes(self) -> int: ...
    @property
    def max_samples_per_message(self) -> int: ...
    @property
    def max_labels(self) -> int: ...
    @property
    def max_label_value_bytes(self) -> int: ...
    @property
    def max_name_bytes(self) -> int: ...
    @property
    def max_label_name_bytes(self) -> int: ...
    @property
    def max_future_s(self) -> float: ...
    @property
    def max_age_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class IngestLimits:
    """The limits one record must respect; plain values so the decoder stays a pure core.

    Build it once from ``Settings.ingest`` with :meth:`from_settings`. Defaults equal the
    ``IngestSettings`` defaults.

    Parameters
    ----------
    max_message_bytes
        Larger records are dead-lettered unread (``oversized``): bounds parse time/memory.
    max_samples_per_message
        More samples in one record dead-letters the whole record (``too_many_samples``).
    max_labels, max_label_value_bytes
        Per-sample cardinality guards (``too_many_labels``, ``label_too_long``, UTF-8 bytes).
        ``max_labels`` counts the labels other than the metric name in every format: a
        ``labels.__name__`` (prometheus-kafka-adapter, or the JSON name fallback) is the
        name, not a label, so ``{"__name__": "up", "job": "x"}`` is one label.
    max_name_bytes, max_label_name_bytes
        Longest metric name and label name, UTF-8 bytes (``name_too_long``,
        ``label_name_too_long``): names are kept in the series index and exported.
    max_future_s, max_age_s
        Accepted timestamp window around the ``now_s`` passed to the decoder, in seconds.
    """

    max_message_bytes: int = 1_048_576
    max_samples_per_message: int = 10_000
    max_labels: int = 32
    max_label_value_bytes: int = 1_024
    max_name_bytes: int = 512
    max_label_name_bytes: int = 128
    max_future_s: float = 300.0
    max_age_s: float = 7 * 86_400.0

    @classmethod
    def from_settings(cls, ingest: _IngestSettingsLike) -> IngestLimits:
        """Copy the limits out of an ``IngestSettings`` (or anything with those attributes)."""
        return cls(
            max_message_bytes=int(ingest.max_message_bytes),
            max_samples_per_message=int(ingest.max_samples_per_message),
            max_labels=int(ingest.max_labels),
            max_label_value_bytes=int(ingest.max_label_value_bytes),
            max_name_bytes=int(ingest.max_name_bytes),
            max_label_name_bytes=int(ingest.max_label_name_bytes),
            max_future_s=float(ingest.max_future_s),
            max_age_s=float(ingest.max_age_s),
        )


def _origin(record: RawRecord | None) -> dict[str, Any]:
    """The error fields that point back at the source record (all None when unknown)."""
    if record is None:
        return {}
    return {
        "raw": record.value,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key,
    }


class _FromRecord(RecordError):
    """Builds a :class:`RecordError` from the record it came from (and the bad sample)."""

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        field: str | None = None,
        record: RawRecord | None = None,
        sample_index: int | None = None,
    ) -> None:
        super().__init__(
            message, reason=reason, field=field, sample_index=sample_index, **_origin(record)
        )


class IngestDecodeError(_FromRecord, DecodeError):
    """A :class:`DecodeError` built from the record it came from (and the bad sample)."""


class IngestSchemaError(_FromRecord, SchemaError):
    """A :class:`SchemaError` built from the record it came from (and the bad sample)."""


# A check returns None when fine, else (reason, field, message); the decoder turns that
# into an error carrying the record. Tuples keep the good path free of object creation.
Problem = tuple[str, str, str]


def is_valid_metric_name(name: str) -> bool:
    """Prometheus metric-name rule ``[a-zA-Z_:][a-zA-Z0-9_:]*``.

    >>> is_valid_metric_name("http_requests_total"), is_valid_metric_name("1x")
    (True, False)
    """
    return _METRIC_NAME.fullmatch(name) is not None


def is_valid_label_name(name: str) -> bool:
    """Prometheus label-name rule ``[a-zA-Z_][a-zA-Z0-9_]*``.

    >>> is_valid_label_name("service"), is_valid_label_name("a-b")
    (True, False)
    """
    return _LABEL_NAME.fullmatch(name) is not None


def is_utf8_text(text: str) -> bool:
    """False when ``text`` holds a lone surrogate (``json.loads`` keeps ``"\\ud800"`` as
    one), which UTF-8 cannot encode: such a string would break ``/metrics``, Redis and the
    dead-letter headers downstream.

    >>> is_utf8_text("caf\u00e9"), is_utf8_text("a" + chr(0xD800))
    (True, False)
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_message(value: bytes, limits: IngestLimits) -> Problem | None:
    """Whole-record checks done before parsing: ``empty`` and ``oversized``.

    >>> check_message(b"  ", IngestLimits())[0]
    'empty'
    >>> check_message(b"x" * 20, IngestLimits(max_message_bytes=16))[0]
    'oversized'
    """
    if len(value) > limits.max_message_bytes:
        return (
            "oversized",
            "message",
            f"message is {len(value)} bytes, over ingest.max_message_bytes="
            f"{limits.max_message_bytes}",
        )
    if not value or value.isspace():
        return ("empty", "message", "message is empty")
    return None


def check_name(name: Any, limits: IngestLimits | None = None) -> Problem | None:
    """The metric name is a string following Prometheus rules, within the length limit
    (``bad_type``, ``name_too_long``, ``bad_name``).

    >>> check_name("x" * 600, IngestLimits())[0]
    'name_too_long'
    """
    if not isinstance(name, str):
        return ("bad_type", "name", f"field 'name' must be a string, got {_short(name)}")
    max_bytes = (limits or _DEFAULT_LIMITS).max_name_bytes
    if len(name) > max_bytes // 4 and len(name.encode("utf-8", "replace")) > max_bytes:
        return (
            "name_too_long",
            "name",
            f"metric name {_short(name)} is {len(name.encode('utf-8', 'replace'))} bytes, "
            f"over ingest.max_name_bytes={max_bytes}",
        )
    if _METRIC_NAME.fullmatch(name) is None:
        return ("bad_name", "name", f"field 'name' {_short(name)} is not a valid metric name")
    return None


def label_count(labels: dict[Any, Any], name_label: bool = True) -> int:
    """How many labels count toward ``max_labels``: all but ``__name__`` where that key
    holds the metric name (``name_label``, the JSON formats).

    >>> label_count({"__name__": "up", "job": "node"})
    1
    """
    return len(labels) - (name_label and "__name__" in labels)


def check_labels(labels: Any, limits: IngestLimits, *, name_label: bool = True) -> Problem | None:
    """Labels are a string->string mapping within the count and length limits.

    ``name_label``: a ``__name__`` key is the metric name and does not count toward
    ``max_labels`` (see :func:`label_count`).

    >>> check_labels({"a-b": "x"}, IngestLimits())[0]
    'bad_label_name'
    >>> check_labels({"a": "x" * 9}, IngestLimits(max_label_value_bytes=8))[0]
    'label_too_long'
    >>> check_labels({"__name__": "up", "job": "x"}, IngestLimits(max_labels=1)) is None
    True
    """
    if not isinstance(labels, dict):
        return ("bad_type", "labels", f"field 'labels' must be an object, got {_short(labels)}")
    n = label_count(labels, name_label)
    if n > limits.max_labels:
        return (
            "too_many_labels",
            "labels",
            f"{n} labels besides the metric name, over ingest.max_labels={limits.max_labels}",
        )
    max_bytes = limits.max_label_value_bytes
    max_name = limits.max_label_name_bytes
    for k, v in labels.items():
        if len(k) > max_name // 4 and len(k.encode("utf-8", "replace")) > max_name:
            return (
                "label_name_too_long",
                f"labels.{_short(k, 40)}",
                f"label name {_short(k)} is {len(k.encode('utf-8', 'replace'))} bytes, over "
                f"ingest.max_label_name_bytes={max_name}",
            )
        if not isinstance(v, str):
            return (
                "bad_type",
                f"labels.{k}",
                f"label {k!r} must be a string, got {_short(v)}",
            )
        if _LABEL_NAME.fullmatch(k) is None:
            return ("bad_label_name", f"labels.{k}", f"label name {_short(k)} is not valid")
        if len(v) > max_bytes // 4 and len(v.encode("utf-8", "replace")) > max_bytes:
            return (
                "label_too_long",
                f"labels.{k}",
                f"label {k!r} is {len(v.encode('utf-8', 'replace'))} bytes, over "
                f"ingest.max_label_value_bytes={max_bytes}",
            )
        if not v.isascii() and not is_utf8_text(v):
            return (
                "bad_unicode",
                f"labels.{k}",
                f"label {k!r} value {_short(v)} holds a lone surrogate (not Unicode text)",
            )
    return None


def check_value(value: float, where: str) -> Problem | None:
    """The value is finite (``nan_value``, ``inf_value``)."""
    if value != value:
        return ("nan_value", "value", f"field 'value' is NaN in series {where}")
    if value in (math.inf, -math.inf):
        return ("inf_value", "value", f"field 'value' is {value} in series {where}")
    return None


def check_timestamp(ts: float, now_s: float, limits: IngestLimits, where: str) -> Problem | None:
    """The timestamp (unix seconds) lies in ``[now - max_age_s, now + max_future_s]``."""
    if ts - ts != 0.0:  # NaN or +/-Inf: no window, however wide, should accept it
        return ("bad_timestamp", "timestamp", f"timestamp {ts} is not finite in series {where}")
    if ts > now_s + limits.max_future_s:
        return (
            "ts_future",
            "timestamp",
            f"timestamp {ts} is {ts - now_s:.0f} s in the future (ingest.max_future_s="
            f"{limits.max_future_s}) in series {where}",
        )
    if ts < now_s - limits.max_age_s:
        return (
            "ts_too_old",
            "timestamp",
            f"timestamp {ts} is {now_s - ts:.0f} s old (ingest.max_age_s="
            f"{limits.max_age_s}) in series {where}",
        )
    return None


def parse_rfc3339(text: str) -> float | None:
    """RFC 3339 date-time to unix seconds, or None when it is not one.

    Accepts ``T``/``t``/space as separator, any number of fractional digits (nanoseconds
    are truncated to microseconds) and ``Z``/``z``/``+hh:mm``. A string without a zone is
    read as UTC (the same rule as ``causalwatch replay`` CSV input), although strict
    RFC 3339 requires one.

    >>> parse_rfc3339("2020-01-01T00:00:10Z"), parse_rfc3339("2020-01-01T01:00:10+01:00")
    (1577836810.0, 1577836810.0)
    >>> parse_rfc3339("2020-01-01T00:00:00.123456789Z")
    1577836800.123456
    >>> parse_rfc3339("yesterday") is None
    True
    """
    m = _RFC3339.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, zone = m.groups()
    tz: timezone = UTC
    try:
        if zone and zone not in ("Z", "z"):
            sign = -1 if zone[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
        dt = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            min(int(second), 59),  # a leap second :60 folds onto :59
            int(frac[1:7].ljust(6, "0")) if frac else 0,
            tzinfo=tz,
        )
    except ValueError:
        return None
    return dt.timestamp()


_DEFAULT_LIMITS = IngestLimits()


def _short(v: object, limit: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."
