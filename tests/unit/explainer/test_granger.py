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


def _select_pairs_by_sorting(
    X: np.ndarray,
    per_effect: int,
    groups: np.ndarray | None,
    forced: np.ndarray | None,
    exclude_same_group: np.ndarray | None,
) -> np.ndarray:
    """select_pairs as it was written before the partition (a stable argsort of the whole
    correlation matrix and Python sets): the reference the fast one must equal."""
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[1]
    out: set[tuple[int, int]] = set()
    if X.shape[0] >= 4 and n > 1 and per_effect > 0:
        D = np.diff(X, axis=0)
        D = np.where(np.isfinite(D), D, np.nan)
        finite = np.isfinite(D)
        count = finite.sum(axis=0)
        mu = np.where(finite, D, 0.0).sum(axis=0) / np.maximum(count, 1)
        Z = np.where(np.isfinite(D), D - mu, 0.0)
        sd = np.sqrt((Z**2).sum(axis=0))
        sd = np.where(sd > 0, sd, np.inf)
        Z = Z / sd
        C = np.maximum(np.abs(Z.T @ Z), np.abs(Z[:-1].T @ Z[1:]))
        np.fill_diagonal(C, -1.0)
        if exclude_same_group is not None:
            g = np.asarray(exclude_same_group)
            C[g[:, None] == g[None, :]] = -1.0
        kk = min(per_effect, n - 1)
        top = np.argsort(-C, axis=0, kind="stable")[:kk]
        for e in range(n):
            for ca in top[:, e].tolist():
                if C[ca, e] > 0:
                    out.add((int(ca), e))
    if groups is not None:
        g = np.asarray(groups)
        for gid in np.unique(g).tolist():
            members = np.flatnonzero(g == gid).tolist()
            out.update((a, b) for a in members for b in members if a != b)
    if forced is not None:
        for a, b in np.asarray(forced, dtype=np.int64).reshape(-1, 2).tolist():
            if a != b:
                out.add((a, b))
    if exclude_same_group is not None:
        g = np.asarray(exclude_same_group)
        out = {(a, b) for a, b in out if g[a] != g[b]}
    return np.array(sorted(out, key=lambda t: (t[1], t[0])), dtype=np.int64).reshape(-1, 2)


def test_select_pairs_equals_the_sorting_reference() -> None:
    """Random windows with ties (duplicated and constant columns), NaN gaps, groups, forced
    pairs and same-node exclusion: the partition gives exactly the pairs the full stable
    sort gave."""
    rng = np.random.default_rng(12)
    for trial in range(200):
        n = int(rng.integers(1, 30))
        T = int(rng.integers(2, 40))
        X = rng.normal(size=(T, n)).cumsum(axis=0)
        if n > 2 and rng.random() < 0.5:
            X[:, 1] = X[:, 0]  # identical columns: tied correlations
        if n > 3 and rng.random() < 0.3:
            X[:, 2] = 5.0  # constant: correlation 0 with everything
        X[rng.random(X.shape) < 0.1] = np.nan
        if rng.random() < 0.2:
            X[:, 0] = np.nan  # a series with no data in the window
        if rng.random() < 0.2:
            # most of them (a backlog read partition by partition)
            X[:, rng.random(n) < 0.7] = np.nan
        per_effect = int(rng.integers(0, 7))
        groups = rng.integers(0, 4, n) if rng.random() < 0.3 else None
        n_forced = int(rng.integers(0, 6))
        forced = rng.integers(0, n, size=(n_forced, 2)) if rng.random() < 0.5 else None
        excl = rng.integers(0, max(1, n // 2), n) if rng.random() < 0.6 else None
        want = _select_pairs_by_sorting(X, per_effect, groups, forced, excl)
        got = select_pairs(
            X, per_effect=per_effect, groups=groups, forced=forced, exclude_same_group=excl
        )
        assert got.dtype == np.int64 and got.shape == want.shape, trial
        np.testing.assert_array_equal(got, want, err_msg=f"trial {trial}")
