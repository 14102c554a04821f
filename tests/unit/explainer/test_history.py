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


def _filled(rng: np.random.Generator, n_rows: int, points: int, n: int, gap_p: float) -> History:
    """A history of ``n_rows`` series sampled near a 60 s step, with jitter, repeats within
    a bin, NaN values and (with probability ``gap_p`` per step) steps no series has."""
    h = History(points=points)
    t = 1_000.0
    for _ in range(n):
        t += 60.0 * (1 + int(rng.random() < gap_p) * int(rng.integers(1, 50)))
        rows = rng.choice(n_rows, size=int(rng.integers(1, n_rows + 1)), replace=False)
        rows = np.concatenate([rows, rows[: int(rng.integers(0, 3))]])  # repeats in a bin
        ts = t + rng.uniform(-25.0, 25.0, rows.size)
        x = rng.normal(size=rows.size)
        x[rng.random(rows.size) < 0.05] = np.nan
        order = np.lexsort((ts, rows))
        h.append(rows[order], ts[order], x[order])
    return h


@pytest.mark.parametrize("gap_p", [0.0, 0.02, 0.3])
def test_aligned_dense_path_equals_the_general_path_bit_for_bit(gap_p: float) -> None:
    """The fast path (every one of the n nearest bins occupied) must give exactly what the
    general path gives, and must step aside (None) whenever a bin among them is empty."""
    rng = np.random.default_rng(int(gap_p * 100) + 7)
    dense_used = general_only = 0
    for trial in range(60):
        h = _filled(rng, n_rows=int(rng.integers(1, 12)), points=32, n=80, gap_p=gap_p)
        rows = rng.integers(0, h.capacity + 3, size=int(rng.integers(1, 15)))  # some unknown
        hi = float(np.nanmax(h.ts))
        end = hi - 60.0 * float(rng.integers(0, 40)) + float(rng.uniform(-30.0, 30.0))
        n_points = int(rng.integers(1, 40))
        want_t, want_v = h._aligned_general(rows, end, 60.0, n_points)
        fast = h._aligned_dense(rows, end, 60.0, n_points)
        got_t, got_v = h.aligned(rows, end, 60.0, n_points)
        np.testing.assert_array_equal(got_t, want_t)
        np.testing.assert_array_equal(got_v, want_v)
        nearest = end - 60.0 * np.arange(n_points - 1, -1, -1)
        older = np.isfinite(h.ts) & (h.ts < end - 60.0 * n_points)  # beyond the n nearest
        beyond = bool(older[rows[rows < h.capacity]].any())
        # it steps aside exactly when a gap among the n nearest bins has data behind it
        assert (fast is None) == (beyond and not np.array_equal(want_t, nearest)), trial
        if fast is None:
            general_only += 1
        else:
            dense_used += 1
            np.testing.assert_array_equal(fast[0], want_t)
            np.testing.assert_array_equal(fast[1], want_v)
    # both paths were exercised where they should be
    if gap_p < 0.1:
        assert dense_used > 0
    if gap_p > 0.0:
        assert general_only > 0


def test_partition_order_holds_what_time_order_holds() -> None:
    """A backlog read partition by partition (each row's samples in order, rows far apart in
    time) fills the rings as time order does: each row's ring is its own, so the skew between
    rows cannot drop a sample (the learner's bins needed a watermark for this; the history
    does not)."""
    rng = np.random.default_rng(3)
    n_rows, T, K = 6, 300, 40
    X = rng.normal(size=(T, n_rows))
    a, b = History(points=256), History(points=256)
    for t in range(T):  # time order: one batch per step
        a.append(np.arange(n_rows), np.full(n_rows, 60.0 * t), X[t])
    for t0 in range(0, T, K):  # partitions {0,1,2} and {3,4,5}, K steps per poll each
        for part in (np.arange(3), np.arange(3, 6)):
            tt = np.arange(t0, min(t0 + K, T))
            b.append(
                np.tile(part, tt.size), np.repeat(60.0 * tt, part.size), X[tt][:, part].ravel()
            )
    for name in ("ts", "value", "head", "count"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name))
    want = a.aligned(np.arange(n_rows), 60.0 * (T - 1), 60.0, 130)
    got = b.aligned(np.arange(n_rows), 60.0 * (T - 1), 60.0, 130)
    np.testing.assert_array_equal(got[1], want[1])
