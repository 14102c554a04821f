from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from explainer.attribution import attribute, fit_linear_scm, shapley_values, total_effects


def _linear_scm(rng: np.random.Generator, n: int, shift_node: int | None, shift: float):
    """Chain-with-branches SCM: 0 -> 1 -> 3 -> 4, 0 -> 2 -> 3; node 4 is the target."""
    parents = [[], [0], [0], [1, 2], [3]]
    coef = {(1, 0): 1.5, (2, 0): -0.8, (3, 1): 0.7, (3, 2): 0.9, (4, 3): 1.2}
    X = np.zeros((5, n))
    for j in range(5):
        X[j] = rng.normal(size=n) + (shift if j == shift_node else 0.0)
        for k in parents[j]:
            X[j] += coef[(j, k)] * X[k]
    return parents, X


@pytest.mark.parametrize("culprit", [0, 1, 2, 3, 4])
def test_mechanism_change_finds_the_changed_node(culprit: int) -> None:
    rng = np.random.default_rng(culprit)
    parents, ref = _linear_scm(rng, 400, None, 0.0)
    _, anom = _linear_scm(rng, 6, culprit, 5.0)
    res = attribute(parents, [0, 1, 2, 3, 4], ref, anom, target=4)
    assert int(res.ranking()[0]) == culprit
    assert res.p_value[culprit] < 1e-3
    others = [j for j in range(5) if j != culprit]
    assert np.median(res.p_value[others]) > 0.01


def test_shares_sum_to_one_and_contributions_to_the_deviation() -> None:
    rng = np.random.default_rng(11)
    parents, ref = _linear_scm(rng, 300, None, 0.0)
    _, anom = _linear_scm(rng, 5, 1, 4.0)
    res = attribute(parents, [0, 1, 2, 3, 4], ref, anom, target=4)
    assert res.share.sum() == pytest.approx(1.0, abs=1e-9)
    assert res.contribution.sum() == pytest.approx(res.deviation, abs=1e-9)
    assert res.deviation > 0
    assert np.all((res.score >= 0) & (res.score <= 1))
    assert np.all(res.ci_low <= res.share) and np.all(res.share <= res.ci_high)


def test_fit_recovers_coefficients_and_total_effects() -> None:
    rng = np.random.default_rng(4)
    parents, X = _linear_scm(rng, 2000, None, 0.0)
    _, B_nonneg, _ = fit_linear_scm(parents, X)
    assert B_nonneg.shape == (1, 5, 5)
    assert B_nonneg[0, 2, 0] == 0.0  # the default keeps slopes >= 0 (monotone propagation)
    _, Bl, _ = fit_linear_scm(parents, X, lags=1, nonnegative=False)
    assert Bl.shape == (2, 5, 5) and abs(Bl[1, 1, 0]) < 0.1  # no lagged effect in this SCM
    B = Bl.sum(axis=0)
    assert B[1, 0] == pytest.approx(1.5, abs=0.1)
    assert B[2, 0] == pytest.approx(-0.8, abs=0.1)
    assert B[3, 2] == pytest.approx(0.9, abs=0.1)
    c = total_effects(B, [0, 1, 2, 3, 4], 4)
    # node 0 reaches 4 through 1 and 2: 1.2 * (0.7 * 1.5 + 0.9 * -0.8) = 0.396
    assert c[0] == pytest.approx(0.396, abs=0.05)
    assert c[4] == 1.0


def test_nan_in_data_is_tolerated() -> None:
    rng = np.random.default_rng(8)
    parents, ref = _linear_scm(rng, 300, None, 0.0)
    ref[2, ::3] = np.nan
    _, anom = _linear_scm(rng, 4, 3, 6.0)
    anom[0, :] = np.nan
    res = attribute(parents, [0, 1, 2, 3, 4], ref, anom, target=4)
    assert int(res.ranking()[0]) == 3
    assert res.n_anomaly[0] == 0 and res.p_value[0] == 1.0
    assert np.isfinite(res.score).all()


def _brute_force_shapley(v, n: int) -> np.ndarray:
    phi = np.zeros(n)
    for perm in itertools.permutations(range(n)):
        m = np.zeros(n, dtype=bool)
        prev = v(m[None, :])[0]
        for j in perm:
            m[j] = True
            cur = v(m[None, :])[0]
            phi[j] += cur - prev
            prev = cur
    return phi / math.factorial(n)


def _game(weights: np.ndarray):
    def v(masks: np.ndarray) -> np.ndarray:
        s = masks.astype(float) @ weights
        return np.log1p(s**2) + 0.3 * masks[:, 0] * masks[:, -1]

    return v


def test_exact_shapley_matches_brute_force_and_is_efficient() -> None:
    w = np.array([1.0, -2.0, 0.5, 3.0, 0.1])
    v = _game(w)
    phi = shapley_values(v, 5, np.random.default_rng(0), exact_max=10)
    np.testing.assert_allclose(phi, _brute_force_shapley(v, 5), atol=1e-12)
    full, empty = v(np.ones((1, 5), bool))[0], v(np.zeros((1, 5), bool))[0]
    assert phi.sum() == pytest.approx(full - empty)


def test_sampled_shapley_is_efficient_and_close_to_exact() -> None:
    w = np.linspace(-1.0, 2.0, 9)
    v = _game(w)
    exact = shapley_values(v, 9, np.random.default_rng(0), exact_max=10)
    sampled = shapley_values(v, 9, np.random.default_rng(1), exact_max=0, n_permutations=2000)
    full, empty = v(np.ones((1, 9), bool))[0], v(np.zeros((1, 9), bool))[0]
    assert sampled.sum() == pytest.approx(full - empty, abs=1e-9)
    np.testing.assert_allclose(sampled, exact, atol=0.05)
    assert np.argmax(sampled) == np.argmax(exact)


def test_attribution_is_seeded_deterministic() -> None:
    rng = np.random.default_rng(3)
    parents, ref = _linear_scm(rng, 200, None, 0.0)
    _, anom = _linear_scm(rng, 3, 2, 5.0)
    a = attribute(parents, [0, 1, 2, 3, 4], ref, anom, 4, seed=7, exact_max=0)
    b = attribute(parents, [0, 1, 2, 3, 4], ref, anom, 4, seed=7, exact_max=0)
    np.testing.assert_array_equal(a.share, b.share)
    np.testing.assert_array_equal(a.score, b.score)


@pytest.mark.xfail(
    strict=True,
    reason=(
        "known limitation: with a parent's slope unlearnable (flat reference) the target's"
        " own residual absorbs the parent's move; the one-to-one propagation room (and the"
        " 'moved against the target' rule) that handled it helped PetShop only when each"
        " system was left out in turn and was removed (issue 9, BENCHMARKS.md)"
    ),
)
def test_moved_parent_with_unlearnable_slope_beats_the_target_own_residual() -> None:
    # availability-like: both parents sit at 100 in the reference (slopes cannot be learned,
    # the flat prior gives 1/2 each); parent 0 drops by 4 points, the target by 3
    rng = np.random.default_rng(3)
    ref = np.vstack([np.full(120, 100.0), np.full(120, 100.0), 100 - rng.exponential(0.05, 120)])
    anom = np.array([[96.0, 95.5], [100.0, 100.0], [97.0, 96.6]])
    parents = [[], [], [0, 1]]
    res = attribute(parents, [0, 1, 2], ref, anom, target=2)
    assert abs(res.contribution.sum() - res.deviation) < 1e-9  # shares add up either way
    assert int(res.ranking()[0]) == 0
