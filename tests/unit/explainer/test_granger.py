from __future__ import annotations

import numpy as np
import pytest
from statsmodels.tsa.stattools import grangercausalitytests

from causalwatch.errors import StateError
from explainer.granger import GrangerState, benjamini_hochberg, select_pairs


def _pair(seed: int, T: int = 300, coef: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=T)
    y = np.zeros(T)
    for t in range(2, T):
        y[t] = 0.4 * y[t - 1] + coef * x[t - 1] + 0.5 * coef * x[t - 2] + rng.normal()
    return x, y


@pytest.mark.parametrize("lag", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_f_statistic_equals_statsmodels_ssr_ftest(lag: int, seed: int) -> None:
    x, y = _pair(seed, T=180, coef=0.15)
    ref = grangercausalitytests(np.c_[y, x], maxlag=[lag])[lag][0]["ssr_ftest"]
    st = GrangerState.empty(2, np.array([[0, 1]]), max_lag=lag, forgetting=1.0)
    st.update_many(np.c_[x, y])
    f, p = st.f_test(lag)
    assert f[0] == pytest.approx(ref[0], rel=1e-8)
    assert p[0] == pytest.approx(ref[1], rel=1e-6)
    assert st.n[0] == ref[2] + 2 * lag + 1  # nobs = df_resid + k


def test_information_form_matches_batch_weighted_least_squares() -> None:
    x, y = _pair(3, T=120)
    lam, p = 0.97, 2
    st = GrangerState.empty(2, np.array([[0, 1]]), max_lag=p, forgetting=lam)
    for t in range(120):  # one step at a time
        st.update_many(np.c_[x, y][t])
    T = 120
    rows = np.arange(p, T)
    phi = np.c_[np.ones(rows.size), y[rows - 1], y[rows - 2], x[rows - 1], x[rows - 2]]
    w = lam ** (T - 1 - rows)
    beta = np.linalg.solve(phi.T @ (phi * w[:, None]), phi.T @ (w * y[rows]))
    ssr_batch = float(w @ (y[rows] - phi @ beta) ** 2)
    assert st._ssr(np.arange(5))[0] == pytest.approx(ssr_batch, rel=1e-8)
    assert st.n[0] == pytest.approx(w.sum())


def test_batch_update_equals_one_by_one_with_nan() -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(80, 3))
    X[10, 1] = np.nan
    X[40:43, 2] = np.nan
    pairs = np.array([[0, 1], [1, 0], [2, 0], [0, 2]])
    a = GrangerState.empty(3, pairs, max_lag=2, forgetting=0.99)
    b = GrangerState.empty(3, pairs, max_lag=2, forgetting=0.99)
    a.update_many(X)
    for t in range(0, 80, 7):
        b.update_many(X[t : t + 7])
    np.testing.assert_allclose(a.A, b.A, rtol=1e-10)
    np.testing.assert_allclose(a.c, b.c, rtol=1e-10)
    assert a.steps == b.steps == 80


def test_detects_direction_and_lag() -> None:
    rng = np.random.default_rng(9)
    T = 500
    x = rng.normal(size=T)
    y = np.r_[0.0, 0.0, 0.9 * x[:-2]] + 0.3 * rng.normal(size=T)
    st = GrangerState.empty(2, np.array([[0, 1], [1, 0]]), max_lag=3)
    st.update_many(np.c_[x, y])
    r = st.test()
    assert r.q_value[0] < 1e-10 and r.lag[0] == 2 and r.strength[0] > 0.5
    assert r.q_value[1] > 0.05


def test_benjamini_hochberg_matches_definition() -> None:
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, np.nan])
    q = benjamini_hochberg(p)
    m = 8
    order = np.argsort(p[:m])
    expect = np.minimum.accumulate((p[:m][order] * m / np.arange(1, m + 1))[::-1])[::-1]
    np.testing.assert_allclose(q[:m][order], expect)
    assert np.isnan(q[-1])


def test_set_pairs_keeps_statistics_of_kept_pairs() -> None:
    x, y = _pair(1)
    st = GrangerState.empty(3, np.array([[0, 1], [1, 0]]), max_lag=2)
    st.update_many(np.c_[x, y, np.zeros_like(x)])
    before = st.A[0].copy()
    st.set_pairs(np.array([[2, 1], [0, 1]]))
    np.testing.assert_array_equal(st.A[1], before)
    assert not st.A[0].any()


def test_select_pairs_is_bounded_and_excludes_same_group() -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(100, 40)).cumsum(axis=0)
    groups = np.arange(40) // 2
    pairs = select_pairs(X, per_effect=3, exclude_same_group=groups)
    assert len(pairs) <= 40 * 3
    assert not (groups[pairs[:, 0]] == groups[pairs[:, 1]]).any()


def test_bad_arguments_raise_state_error() -> None:
    with pytest.raises(StateError, match="max_lag"):
        GrangerState.empty(2, np.array([[0, 1]]), max_lag=0)
    with pytest.raises(StateError, match="forgetting"):
        GrangerState.empty(2, np.array([[0, 1]]), forgetting=1.5)
    with pytest.raises(StateError, match="out of range"):
        GrangerState.empty(2, np.array([[0, 5]]))
