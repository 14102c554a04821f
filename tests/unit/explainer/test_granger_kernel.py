"""The compiled Granger update (explainer/granger_kernel.py) and the numpy reference agree:
on gappy data, with forgetting, over batches of any length, and the tests read from them."""

from __future__ import annotations

import numpy as np
import pytest

from explainer import granger
from explainer.granger import GrangerState

pytest.importorskip("numba")


def _feed(X: np.ndarray, pairs: np.ndarray, chunks: list[int], compiled: bool) -> GrangerState:
    st = GrangerState.empty(X.shape[1], pairs, max_lag=2, forgetting=0.99)
    kernel = granger._kernel()
    assert kernel is not None
    at = 0
    for size in chunks:
        step = X[at : at + size]
        if compiled:
            st.update_many(step)
        else:
            hist = np.concatenate([st.lags[::-1], step], axis=0)
            st._update_numpy(hist, step)
            st.lags = hist[-st.max_lag :][::-1].copy()
            st.steps += size
        at += size
    return st


@pytest.mark.parametrize("seed", range(6))
def test_the_compiled_update_equals_the_numpy_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, T = 12, 300
    X = rng.normal(size=(T, n)).cumsum(axis=0) * rng.uniform(0.1, 50, size=n)
    X[rng.random(X.shape) < 0.08] = np.nan  # gaps: a pair's step is skipped, not the decay
    X[100:104, 3] = np.nan
    pairs = np.array([(a, e) for a in range(n) for e in range(n) if a != e and rng.random() < 0.5])
    sizes = rng.integers(1, 40, size=T)
    chunks = np.diff(np.r_[0, np.minimum(np.cumsum(sizes), T)]).tolist()
    chunks = [c for c in chunks if c]
    a = _feed(X, pairs, chunks, compiled=True)
    b = _feed(X, pairs, chunks, compiled=False)
    for name in ("A", "b", "c", "n"):
        got, want = getattr(a, name), getattr(b, name)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())
    assert np.array_equal(a.lags, b.lags, equal_nan=True)
    ra, rb = a.test(min_n=10.0), b.test(min_n=10.0)
    np.testing.assert_allclose(ra.f, rb.f, rtol=1e-6, atol=1e-9)
    assert np.array_equal(ra.lag, rb.lag)
    assert np.array_equal(ra.q_value <= 0.01, rb.q_value <= 0.01)


def test_the_compiled_update_leaves_a_symmetric_matrix_and_counts_only_usable_steps() -> None:
    X = np.array([[1.0, 2.0], [2.0, np.nan], [3.0, 1.0], [5.0, 4.0], [4.0, 3.0]])
    st = GrangerState.empty(2, np.array([[0, 1]]), max_lag=1, forgetting=1.0)
    st.update_many(X)
    # usable steps (y_t, y_{t-1}, x_{t-1} all finite): t = 3 and t = 4 (t = 1, 2 touch the gap)
    assert st.n.tolist() == [2.0]
    assert np.array_equal(st.A[0], st.A[0].T)
    # phi(t=3) = [1, y2=1, x2=3], phi(t=4) = [1, y3=4, x3=5]
    assert st.A[0].tolist() == [[2.0, 5.0, 8.0], [5.0, 17.0, 23.0], [8.0, 23.0, 34.0]]
    assert st.b[0].tolist() == [4.0 + 3.0, 1 * 4.0 + 4 * 3.0, 3 * 4.0 + 5 * 3.0]
    assert st.c.tolist() == [16.0 + 9.0]
