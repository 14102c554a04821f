"""The general JSON decoder: native JSON and prometheus-kafka-adapter JSON.

``json.loads`` and a walk of every sample object, with a check (and a precise error) for
each field. It decodes whatever the fast paths decline, so it is the reference: their
results must equal its results, errors included.
"""

from __future__ import annotations

import json
from typing import Any

from causalwatch.models import RawRecord
from ingest.decode.context import _cache_ts, _Ctx
from ingest.decode.keys import _key_of


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
        if v - v != 0.0 or t - t != 0.0 or not lo <= t <= hi:  # (NaN or +/-Inf: x - x != 0)
            ctx.fail_sample(rec, key, v, t, j)
            continue
        keys.append(key)
        tss.append(t)
        vals.append(v)
        origin.append(idx)
    return len(items)
