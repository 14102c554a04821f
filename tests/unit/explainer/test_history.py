from __future__ import annotations

import numpy as np
import pytest

from causalwatch.errors import StateError
from explainer.history import History, infer_step


def test_ring_keeps_last_points_per_row_even_within_one_batch() -> None:
    h = History(points=4)
    rows = np.array([0, 1, 0, 0, 0, 0, 0])
    ts = np.arange(7, dtype=float)
    h.append(rows, ts, ts * 10)
    t0 = np.sort(h.ts[0])
    assert t0.tolist() == [3.0, 4.0, 5.0, 6.0]
    assert h.latest(np.array([0, 1]))[1].tolist() == [60.0, 10.0]
    assert h.count.tolist()[:2] == [4, 1]


def test_batch_equals_one_by_one() -> None:
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 5, 200)
    ts = np.arange(200, dtype=float)
    x = rng.normal(size=200)
    a, b = History(points=16), History(points=16)
    a.append(rows, ts, x)
    for i in range(200):
        b.append(rows[i : i + 1], ts[i : i + 1], x[i : i + 1])
    np.testing.assert_array_equal(a.ts[:5], b.ts[:5])
    np.testing.assert_array_equal(a.value[:5], b.value[:5])
    np.testing.assert_array_equal(a.head[:5], b.head[:5])


def test_aligned_skips_gaps_and_averages_within_a_bin() -> None:
    h = History(points=16)
    # row 0: two samples in one bin, then a long gap (a day), then two more bins
    h.append(
        np.array([0, 0, 0, 0, 1]),
        np.array([10.0, 30.0, 86400.0, 86460.0, 86460.0]),
        np.array([1.0, 3.0, 5.0, 7.0, 9.0]),
    )
    t, v = h.aligned(np.array([0, 1]), end_ts=86460.0, step_s=60.0, n_points=10)
    assert t.tolist() == [60.0, 86400.0, 86460.0]
    assert v[0].tolist() == [2.0, 5.0, 7.0]
    assert np.isnan(v[1, :2]).all() and v[1, 2] == 9.0
    t2, v2 = h.aligned(np.array([0]), end_ts=86400.0, step_s=60.0, n_points=1)
    assert t2.tolist() == [86400.0] and v2.tolist() == [[5.0]]


def test_infer_step_and_errors() -> None:
    assert infer_step(np.array([300.0, 600.0, 900.0, 1500.0])) == 300.0
    assert infer_step(np.array([1.0])) == 0.0
    with pytest.raises(StateError, match="history_points"):
        History(points=1)
    with pytest.raises(StateError, match="step_s"):
        History(points=4).aligned(np.array([0]), 0.0, 0.0, 3)


def test_memory_is_fixed_per_row() -> None:
    h = History(points=32)
    h.append(np.arange(10), np.zeros(10), np.zeros(10))
    size = h.nbytes()
    for k in range(50):
        h.append(np.arange(10), np.full(10, float(k)), np.zeros(10))
    assert h.nbytes() == size
