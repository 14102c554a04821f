"""Influx line protocol (Telegraf's Kafka output) to samples.

Each numeric field of a line is one sample of series ``<measurement>_<field>`` with the
tags as labels. Lines are parsed by :mod:`ingest.decode.influx_line`; the head of a plain
line (measurement and tags) is memoised with its series-key suffix, so a fleet's lines
only cost their fields and timestamp after the first scrape.
"""

from __future__ import annotations

import re

from causalwatch.models import RawRecord
from ingest.decode.context import _Ctx, _never
from ingest.decode.influx_line import (
    _BOOLS,
    _influx_number,
    _influx_seconds,
    _parse_line,
    _parse_rest,
)
from ingest.decode.keys import _cache_key, _key_cache, _remember
from ingest.validate import check_labels, check_name

_NOT_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_NOT_LABEL = re.compile(r"[^a-zA-Z0-9_]")


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
            if v - v != 0.0 or t - t != 0.0 or not lo <= t <= hi:
                ctx.fail_sample(rec, key, v, t, line_no)
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
    _remember(_heads, _heads_bytes, 0, head, (measurement, suffix), cost, _HEADS_BYTES)


def _forget_heads() -> None:
    """Empty the memo (the limits changed: its heads' tags may no longer be valid)."""
    _heads.clear()
    _heads_bytes[0] = 0
