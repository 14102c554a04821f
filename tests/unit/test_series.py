from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from causalwatch.errors import StateError
from causalwatch.series import SeriesIndex, series_hash, series_key, split_series_key


def test_label_order_does_not_matter() -> None:
    assert series_key("m", {"b": "2", "a": "1"}) == series_key("m", {"a": "1", "b": "2"})


names = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,20}", fullmatch=True)
label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,10}", fullmatch=True)


@given(names, st.dictionaries(label_names, st.text(max_size=20), max_size=6))
def test_key_round_trip(name: str, labels: dict[str, str]) -> None:
    key = series_key(name, labels)
    assert split_series_key(key) == (name, labels)


def test_hash_is_stable() -> None:
    # blake2b, not the per-process salted hash(): this value must never change.
    assert series_hash("up") == series_hash("up")
    assert series_hash("up") != series_hash("down")
    assert 0 <= series_hash("x") < 2**64


def test_index_rows_dense_and_reused() -> None:
    idx = SeriesIndex()
    keys = [series_key("lat", {"service": s}) for s in "abc"]
    rows = idx.rows_for(keys + keys[:1])
    assert rows.tolist() == [0, 1, 2, 0]
    assert idx.node_of(1) == "b"
    idx.remove(np.array([1]))
    assert len(idx) == 2 and keys[1] not in idx
    with pytest.raises(StateError):
        idx.node_of(1)
    assert idx.add(series_key("lat", {"service": "d"})) == 1  # free row reused
    assert idx.capacity == 3


def test_node_falls_back_to_metric_name() -> None:
    idx = SeriesIndex(node_label="svc")
    row = idx.add(series_key("cpu", {"host": "a"}))
    assert idx.node_of(row) == "cpu"


def test_series_limit() -> None:
    idx = SeriesIndex(max_series=2)
    idx.rows_for(["a", "b"])
    with pytest.raises(StateError, match=r"ingest\.max_series"):
        idx.add("c")
    assert idx.rows_for(["a"]).tolist() == [0]  # known series still fine


def test_snapshot_round_trip() -> None:
    idx = SeriesIndex()
    idx.rows_for(['a{service="x"}', "b", "c"])
    idx.remove([1])
    back = SeriesIndex.from_snapshot(idx.to_snapshot())
    assert back.items() == idx.items()
    assert back.add("d") == 1
    assert back.node_of(0) == "x"


def test_node_for_key_matches_splitting_the_key() -> None:
    """The find-based node look-up agrees with parsing the whole key, escapes included."""
    import random

    from causalwatch.series import series_key, split_series_key

    rng = random.Random(4)
    alphabet = ["a", "b", "service", "=", '"', ",", "{", "}", "\\", "\n", "x", ""]
    for _ in range(3_000):
        labels = {}
        for _ in range(rng.randrange(4)):
            name = rng.choice(["service", "xservice", "service_x", "az", "a"])
            labels[name] = "".join(rng.choice(alphabet) for _ in range(rng.randrange(5)))
        key = series_key(rng.choice(["lat", "up"]), labels)
        for node_label in ("service", "az"):
            idx = SeriesIndex(node_label)
            name, parsed = split_series_key(key)
            assert idx.node_for_key(key) == (parsed.get(node_label) or name), key
