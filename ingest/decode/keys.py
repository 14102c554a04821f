"""Series keys of JSON samples, validated and memoised across calls.

Series come back every scrape, so the key of a sample's name and labels (and the regex
checks of metric and label names) is computed once and then looked up. Every memo of the
decoder (these, the fast paths' and the Influx heads') stores through :func:`_remember`:
bounded in bytes and emptied whole when its budget is used, so hostile input cannot grow
it. Influx lines share the series-key memo (:func:`_cache_key`).
"""

from __future__ import annotations

import sys
from typing import Any, TypeVar

from causalwatch.series import series_key
from ingest.decode.context import _never
from ingest.validate import (
    IngestLimits,
    Problem,
    check_labels,
    check_name,
    is_utf8_text,
    is_valid_label_name,
    is_valid_metric_name,
    label_count,
)

_K = TypeVar("_K")
_V = TypeVar("_V")


def _remember(
    memo: dict[_K, _V],
    used: list[int],
    slot: int,
    key: _K,
    value: _V,
    cost: int,
    budget: int,
    max_entries: int = sys.maxsize,
) -> _V:
    """Store ``key -> value`` in a memo bounded in bytes and entries: ``used[slot]`` counts
    the bytes held (``cost`` estimates this entry's), and when the entry would pass
    ``budget`` or ``max_entries`` the memo is emptied first. Returns ``value``."""
    if used[slot] + cost > budget or len(memo) >= max_entries:
        memo.clear()
        used[slot] = 0
    memo[key] = value
    used[slot] += cost
    return value


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
    return _remember(
        _key_cache, _key_cache_bytes, 0, ck, key, cost, _KEY_CACHE_BYTES, _KEY_CACHE_MAX
    )


# Metric and label names repeat a lot; memoising the regex checks of these pure functions
# is safe. Only names within the length limits get here, and the memo is bounded in bytes
# (cleared when full), so hostile input cannot grow it.
_NAME_CACHE_BYTES = 4 * 1_048_576
_names: dict[str, bool] = {}
_label_names: dict[str, bool] = {}
_names_bytes = [0, 0]


def _memo(cache: dict[str, bool], slot: int, name: str, ok: bool) -> bool:
    return _remember(cache, _names_bytes, slot, name, ok, len(name) + 100, _NAME_CACHE_BYTES)


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
