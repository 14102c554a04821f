"""Incremental Granger causality over many candidate pairs at once.

For each candidate pair ``x -> y`` we keep two least-squares fits of ``y_t``: the restricted
one on ``[1, y_{t-1..t-p}]`` and the unrestricted one on ``[1, y_{t-1..t-p}, x_{t-1..t-p}]``.
Both live in one *information-form* recursive least squares state: the exponentially
forgotten sums ``A = Σ λ^{age} φφᵀ``, ``b = Σ λ^{age} φ y``, ``c = Σ λ^{age} y²`` and the
effective sample count ``n = Σ λ^{age}``. Why this form and not the covariance form
(``P = A⁻¹`` updated with Sherman–Morrison):

* an update is one rank-one add per pair, ``O(pairs · k²)`` with ``k = 2p + 1``, vectorised
  over pairs and over the steps of a batch (so a batch equals its steps one by one);
* the restricted model and every smaller lag ``L <= p`` are sub-blocks of the same ``A``, so
  one state tests every lag;
* it is exact from the first sample (no ``P0 = δ⁻¹I`` prior), so with ``λ = 1`` the F
  statistic is *identical* to ``statsmodels.tsa.stattools.grangercausalitytests``'
  ``ssr_ftest`` on the same window (tested);
* the residual sums of squares ``SSR = c - bᵀA⁻¹b`` are solved only when a test is read
  (``O(pairs · k³)``, batched), not at every step.

``λ < 1`` forgets with a half-life of ``ln 2 / -ln λ`` steps, so a test follows a changing
system; the F test then uses the effective count ``n``. Missing values (NaN) in a step skip
that pair's update for the step (the forgetting still applies: it is per step of time).

Works poorly when: series are not on a common step (align them first, see
:mod:`explainer.history`), when effects are instantaneous within one step (Granger sees
only lagged influence), under strong common drivers that are not in the candidate set
(spurious edges), and on integrated (random-walk) series: feed differences.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np
import numpy.typing as npt
from scipy import special

from causalwatch.errors import StateError

__all__ = [
    "GrangerResult",
    "GrangerState",
    "benjamini_hochberg",
    "f_sf",
    "select_pairs",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_KERNEL: ModuleType | None = None
_KERNEL_TRIED = False


def _kernel() -> ModuleType | None:
    """:mod:`explainer.granger_kernel` at first use; None when numba is not importable (the
    numpy path then, :meth:`GrangerState._update_numpy`)."""
    global _KERNEL, _KERNEL_TRIED
    if not _KERNEL_TRIED:
        _KERNEL_TRIED = True
        try:
            _KERNEL = importlib.import_module("explainer.granger_kernel")
        except (ImportError, OSError):  # no numba, one built for another numpy, no llvmlite
            _KERNEL = None
    return _KERNEL


def f_sf(f: FloatArray, d1: FloatArray | float, d2: FloatArray | float) -> FloatArray:
    """Survival function of the F distribution, vectorised (``scipy.special.fdtrc``)."""
    out = np.asarray(special.fdtrc(d1, d2, np.maximum(f, 0.0)), dtype=np.float64)
    return np.where(np.isfinite(out), out, 1.0)


def benjamini_hochberg(p: FloatArray) -> FloatArray:
    """Benjamini–Hochberg adjusted p-values (q-values); NaN stays NaN.

    Controls the false discovery rate across all candidate pairs: declare ``q <= alpha``.

    >>> benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.5])).round(3).tolist()
    [0.04, 0.053, 0.053, 0.5]
    """
    p = np.asarray(p, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    ranked = p[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out[order] = np.minimum(ranked, 1.0)
    return out


@dataclass(frozen=True, slots=True)
class GrangerResult:
    """Per-pair test read-out (arrays of length ``pairs``).

    ``f`` and ``p_value`` are for the lag chosen by BIC (``lag``, 1..p); ``p_value`` is
    Bonferroni-corrected over the lags tried; ``q_value`` is the BH-adjusted p-value across
    pairs; ``strength`` is the partial R² ``(SSR_r - SSR_u) / SSR_r`` at that lag; ``n`` the
    effective number of observations.
    """

    f: FloatArray
    p_value: FloatArray
    q_value: FloatArray
    lag: IntArray
    strength: FloatArray
    n: FloatArray


@dataclass
class GrangerState:
    """Information-form RLS state of all candidate pairs.

    Parameters
    ----------
    n_series
        Length of the aligned value vector a step carries.
    pairs
        ``(pairs, 2)`` int array of ``(cause, effect)`` column indices.
    max_lag
        ``p``, lags of both series in the models.
    forgetting
        ``λ`` in (0, 1]; 1 keeps everything (batch least squares).

    Memory: ``pairs · (k² + k + 3)`` float64 with ``k = 2p + 1`` plus ``p · n_series``.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=400); y = np.r_[0, 0.8 * x[:-1]] + 0.3 * rng.normal(size=400)
    >>> st = GrangerState.empty(2, np.array([[0, 1], [1, 0]]), max_lag=2)
    >>> st.update_many(np.c_[x, y])
    >>> r = st.test()
    >>> bool(r.q_value[0] < 1e-6), bool(r.q_value[1] > 0.01), int(r.lag[0])
    (True, True, 1)
    """

    n_series: int
    pairs: IntArray
    max_lag: int = 2
    forgetting: float = 1.0
    A: FloatArray = field(default_factory=lambda: np.zeros((0, 0, 0)))
    b: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    c: FloatArray = field(default_factory=lambda: np.zeros(0))
    n: FloatArray = field(default_factory=lambda: np.zeros(0))
    lags: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))  # (p, n_series), [0]=t-1
    steps: int = 0

    @classmethod
    def empty(
        cls, n_series: int, pairs: IntArray, max_lag: int = 2, forgetting: float = 1.0
    ) -> GrangerState:
        if max_lag < 1:
            raise StateError(f"granger max_lag must be >= 1 (got {max_lag})")
        if not 0.0 < forgetting <= 1.0:
            raise StateError(f"granger forgetting must be in (0, 1] (got {forgetting})")
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        if pairs.size and (pairs.min() < 0 or pairs.max() >= n_series):
            raise StateError(f"granger pair index out of range 0..{n_series - 1}")
        k = 2 * max_lag + 1
        m = len(pairs)
        return cls(
            n_series=n_series,
            pairs=pairs,
            max_lag=max_lag,
            forgetting=forgetting,
            A=np.zeros((m, k, k)),
            b=np.zeros((m, k)),
            c=np.zeros(m),
            n=np.zeros(m),
            lags=np.full((max_lag, n_series), np.nan),
            steps=0,
        )

    @property
    def k(self) -> int:
        return 2 * self.max_lag + 1

    def resize(self, n_series: int) -> None:
        """Grow the aligned vector length (new series start with unknown lags)."""
        if n_series < self.n_series:
            raise StateError(f"granger cannot shrink from {self.n_series} to {n_series} series")
        if n_series > self.n_series:
            extra = np.full((self.max_lag, n_series - self.n_series), np.nan)
            self.lags = np.concatenate([self.lags, extra], axis=1)
            self.n_series = n_series

    def set_pairs(self, pairs: IntArray) -> None:
        """Replace the candidate set; pairs present before keep their statistics."""
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        if pairs.size and (pairs.min() < 0 or pairs.max() >= self.n_series):
            raise StateError(f"granger pair index out of range 0..{self.n_series - 1}")
        k, m = self.k, len(pairs)
        A, b, c, n = np.zeros((m, k, k)), np.zeros((m, k)), np.zeros(m), np.zeros(m)
        src = _positions(self.pairs, pairs, self.n_series)
        hit = src >= 0
        A[hit], b[hit], c[hit], n[hit] = (
            self.A[src[hit]],
            self.b[src[hit]],
            self.c[src[hit]],
            self.n[src[hit]],
        )
        self.pairs, self.A, self.b, self.c, self.n = pairs, A, b, c, n

    # -- learning ------------------------------------------------------------------------
    def update_many(self, X: FloatArray) -> None:
        """Learn from ``T`` consecutive aligned steps ``X`` of shape ``(T, n_series)``.

        Cost ``O(T · pairs · k²)``, vectorised; the result equals ``T`` single-step updates.
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[None, :]
        if X.shape[1] != self.n_series:
            raise StateError(f"granger step has {X.shape[1]} series, state has {self.n_series}")
        T, p = X.shape[0], self.max_lag
        if T == 0:
            return
        # Full history for lag construction: previous p steps (newest first in self.lags).
        hist = np.concatenate([self.lags[::-1], X], axis=0)  # (p + T, n_series), time order
        lam = self.forgetting
        if len(self.pairs):
            kernel = _kernel()
            if kernel is not None:
                kernel.update(self.A, self.b, self.c, self.n, hist, self.pairs, p, lam)
            else:
                self._update_numpy(hist, X)
        self.lags = hist[-p:][::-1].copy()
        self.steps += T

    def _update_numpy(self, hist: FloatArray, X: FloatArray) -> None:
        """The reference of :func:`explainer.granger_kernel.update`, batched over steps."""
        T, p, lam = X.shape[0], self.max_lag, self.forgetting
        cause, effect = self.pairs[:, 0], self.pairs[:, 1]
        # phi[t, pair] = [1, y_{t-1..t-p}, x_{t-1..t-p}]
        idx = np.arange(T)[:, None] + p - np.arange(1, p + 1)[None, :]  # (T, p)
        lagged = hist[idx]  # (T, p, n_series)
        ylag = lagged[:, :, effect]  # (T, p, pairs)
        xlag = lagged[:, :, cause]
        ones = np.ones((T, 1, len(effect)))
        phi = np.concatenate([ones, ylag, xlag], axis=1).transpose(0, 2, 1)  # (T, m, k)
        yt = X[:, effect]  # (T, m)
        valid = np.isfinite(yt) & np.isfinite(phi).all(axis=2)
        w = valid * (lam ** np.arange(T - 1, -1, -1, dtype=np.float64))[:, None]
        phi = np.where(valid[:, :, None], phi, 0.0)
        yt = np.where(valid, yt, 0.0)
        decay = lam**T
        self.A = decay * self.A + np.einsum("tm,tmi,tmj->mij", w, phi, phi, optimize=True)
        self.b = decay * self.b + np.einsum("tm,tmi,tm->mi", w, phi, yt, optimize=True)
        self.c = decay * self.c + np.einsum("tm,tm,tm->m", w, yt, yt)
        self.n = decay * self.n + w.sum(axis=0)

    # -- read-out ------------------------------------------------------------------------
    def _ssr(self, cols: IntArray) -> FloatArray:
        A = self.A[:, cols[:, None], cols[None, :]]
        b = self.b[:, cols]
        scale = np.maximum(np.einsum("mii->m", A) / len(cols), 1e-300)
        A = A + (1e-12 * scale)[:, None, None] * np.eye(len(cols))
        beta = np.linalg.solve(A, b[:, :, None])[:, :, 0]
        ssr = self.c - np.einsum("mi,mi->m", b, beta)
        return np.asarray(np.maximum(ssr, 0.0), dtype=np.float64)

    def test(self, min_n: float = 0.0) -> GrangerResult:
        """F tests for every pair and lag ``1..p``; lag per pair by BIC, BH across pairs.

        Pairs with fewer than ``max(min_n, 2L + 2)`` effective observations get p = 1.
        Cost ``O(pairs · p · k³)`` (batched solves).
        """
        m, p = len(self.pairs), self.max_lag
        best_f = np.zeros(m)
        best_p = np.ones(m)
        best_lag = np.ones(m, dtype=np.int64)
        best_r2 = np.zeros(m)
        best_bic = np.full(m, np.inf)
        if m:
            for L in range(1, p + 1):
                own = np.arange(0, L + 1)
                full = np.concatenate([own, np.arange(p + 1, p + 1 + L)])
                ssr_r, ssr_u = self._ssr(own), self._ssr(full)
                df2 = self.n - (2 * L + 1)
                ok = (df2 > 0) & (self.n >= min_n) & (ssr_u > 1e-12 * np.maximum(self.c, 1e-300))
                with np.errstate(divide="ignore", invalid="ignore"):
                    f = np.where(ok, ((ssr_r - ssr_u) / L) / (ssr_u / np.where(ok, df2, 1.0)), 0.0)
                    r2 = np.where(ok & (ssr_r > 0), (ssr_r - ssr_u) / ssr_r, 0.0)
                    n_ok = np.where(ok, self.n, 1.0)
                    # the lag is chosen by BIC of the unrestricted model (p-values of
                    # strong pairs underflow to 0 at every lag and cannot choose)
                    bic = np.where(
                        ok,
                        n_ok * np.log(np.where(ok, ssr_u, 1.0) / n_ok) + (2 * L + 1) * np.log(n_ok),
                        np.inf,
                    )
                pv = np.where(ok, f_sf(f, float(L), np.where(ok, df2, 1.0)), 1.0)
                better = bic < best_bic
                best_bic = np.where(better, bic, best_bic)
                best_f = np.where(better, f, best_f)
                best_p = np.where(better, pv, best_p)
                best_lag = np.where(better, L, best_lag)
                best_r2 = np.where(better, r2, best_r2)
        p_adj = np.minimum(best_p * p, 1.0)
        return GrangerResult(
            f=best_f,
            p_value=p_adj,
            q_value=benjamini_hochberg(p_adj),
            lag=best_lag.astype(np.int64),
            strength=np.clip(best_r2, 0.0, 1.0),
            n=self.n.copy(),
        )

    def f_test(self, lag: int) -> tuple[FloatArray, FloatArray]:
        """F statistic and p-value (uncorrected) of every pair at one ``lag`` (1..p)."""
        if not 1 <= lag <= self.max_lag:
            raise StateError(f"granger lag must be in 1..{self.max_lag} (got {lag})")
        own = np.arange(0, lag + 1)
        full = np.concatenate([own, np.arange(self.max_lag + 1, self.max_lag + 1 + lag)])
        ssr_r, ssr_u = self._ssr(own), self._ssr(full)
        df2 = self.n - (2 * lag + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            f = ((ssr_r - ssr_u) / lag) / (ssr_u / df2)
        return f, f_sf(f, float(lag), df2)

    # -- snapshot ------------------------------------------------------------------------
    def to_arrays(self, prefix: str = "granger.") -> dict[str, np.ndarray]:
        return {
            prefix + "meta": np.array([self.n_series, self.max_lag, self.steps], dtype=np.int64),
            prefix + "forgetting": np.array([self.forgetting]),
            prefix + "pairs": self.pairs.copy(),
            prefix + "A": self.A.copy(),
            prefix + "b": self.b.copy(),
            prefix + "c": self.c.copy(),
            prefix + "n": self.n.copy(),
            prefix + "lags": self.lags.copy(),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "granger.") -> GrangerState:
        try:
            n_series, max_lag, steps = (int(v) for v in arrays[prefix + "meta"])
            return cls(
                n_series=n_series,
                pairs=np.asarray(arrays[prefix + "pairs"], dtype=np.int64).reshape(-1, 2),
                max_lag=max_lag,
                forgetting=float(arrays[prefix + "forgetting"][0]),
                A=np.array(arrays[prefix + "A"], dtype=np.float64),
                b=np.array(arrays[prefix + "b"], dtype=np.float64),
                c=np.array(arrays[prefix + "c"], dtype=np.float64),
                n=np.array(arrays[prefix + "n"], dtype=np.float64),
                lags=np.array(arrays[prefix + "lags"], dtype=np.float64),
                steps=steps,
            )
        except KeyError as exc:
            raise StateError(f"granger snapshot lacks array {exc}") from exc


def _positions(old: IntArray, new: IntArray, n_series: int) -> IntArray:
    """For each pair of ``new``, its row in ``old`` (-1 when absent), by sorted keys
    ``cause · n_series + effect`` (a dict of 5,000 tuples cost 5 ms a refresh).

    >>> _positions(np.array([[0, 1], [2, 1]]), np.array([[2, 1], [1, 0], [0, 1]]), 3).tolist()
    [1, -1, 0]
    """
    if len(old) == 0 or len(new) == 0:
        return np.full(len(new), -1, dtype=np.int64)
    width = max(n_series, 1)
    okeys = old[:, 0] * width + old[:, 1]
    order = np.argsort(okeys, kind="stable")
    sorted_keys = okeys[order]
    nkeys = new[:, 0] * width + new[:, 1]
    at = np.minimum(np.searchsorted(sorted_keys, nkeys), len(sorted_keys) - 1)
    out: IntArray = np.where(sorted_keys[at] == nkeys, order[at], -1).astype(np.int64)
    return out


def select_pairs(
    X: FloatArray,
    per_effect: int = 5,
    groups: IntArray | None = None,
    forced: IntArray | None = None,
    exclude_same_group: IntArray | None = None,
) -> IntArray:
    """Bounded candidate pairs ``(cause, effect)`` from an aligned window ``X`` ``(T, n)``.

    Each effect keeps its ``per_effect`` causes with the largest absolute correlation of
    first differences (same step or cause one step ahead), plus every pair inside the same
    ``groups`` id (a label set, e.g. one host) when given, plus ``forced`` pairs (e.g. the
    given graph's edges, both directions). Pairs whose two columns share an
    ``exclude_same_group`` id (e.g. two series of one node) are dropped. The result has at
    most ``n · per_effect`` + group + forced pairs, so Granger cost stays near-linear in the
    number of series; the correlation itself is ``O(n² T)`` but runs only on refresh.

    >>> rng = np.random.default_rng(1)
    >>> a = rng.normal(size=200); X = np.c_[a, np.r_[0, a[:-1]] + 0.1 * rng.normal(size=200),
    ...                                    rng.normal(size=200)]
    >>> select_pairs(X, per_effect=1).tolist()
    [[1, 0], [0, 1], [0, 2]]
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[1]
    parts: list[IntArray] = []  # (cause, effect) rows, repeats allowed
    if X.shape[0] >= 4 and n > 1 and per_effect > 0:
        D = np.diff(X, axis=0)
        D = np.where(np.isfinite(D), D, np.nan)
        # Mean over finite entries without nanmean's "empty slice" warning on all-NaN columns.
        finite = np.isfinite(D)
        count = finite.sum(axis=0)
        mu = np.where(finite, D, 0.0).sum(axis=0) / np.maximum(count, 1)
        Z = np.where(np.isfinite(D), D - mu, 0.0)
        sd = np.sqrt((Z**2).sum(axis=0))
        # A column that did not move in the window (no data, or constant) correlates 0 with
        # everything, so it is neither a cause nor an effect here: the screen runs on the
        # others only (the same pairs; in a backlog most columns of a window can be empty,
        # and their ties made the partition several times slower).
        active = np.flatnonzero(sd > 0)
        if active.size >= 2:
            Z = Z[:, active] / sd[active]
            C = np.abs(Z.T @ Z)
            np.maximum(C, np.abs(Z[:-1].T @ Z[1:]), out=C)  # or cause at t-1, effect at t
            np.fill_diagonal(C, -1.0)
            if exclude_same_group is not None:
                g = np.asarray(exclude_same_group)[active]
                C[g[:, None] == g[None, :]] = -1.0
            kk = min(per_effect, active.size - 1)
            parts.append(active[_top_causes(C, kk)])
    if groups is not None:
        g = np.asarray(groups)
        for gid in np.unique(g).tolist():
            members = np.flatnonzero(g == gid)
            a, b = np.repeat(members, members.size), np.tile(members, members.size)
            parts.append(np.c_[a, b][a != b])
    if forced is not None:
        f = np.asarray(forced, dtype=np.int64).reshape(-1, 2)
        parts.append(f[f[:, 0] != f[:, 1]])
    pairs = np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, 2), np.int64)
    if exclude_same_group is not None and pairs.size:
        g = np.asarray(exclude_same_group)
        pairs = pairs[g[pairs[:, 0]] != g[pairs[:, 1]]]
    if pairs.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    # distinct pairs, by effect then cause
    order = np.lexsort((pairs[:, 0], pairs[:, 1]))
    pairs = pairs[order]
    fresh = np.r_[True, np.any(pairs[1:] != pairs[:-1], axis=1)]
    return np.ascontiguousarray(pairs[fresh]).reshape(-1, 2)


def _top_causes(C: FloatArray, kk: int) -> IntArray:
    """``(cause, effect)`` for each effect column of ``C``: its ``kk`` largest entries
    (ties to the lower cause index, as a stable sort of ``-C`` gives), those above 0.
    ``O(n²)`` by partition, on the rows of ``C.T`` (one contiguous row per effect); the
    ties at the ``kk``-th value are settled in index order only for the effects that have
    more of them than places left (exact floating-point ties: duplicated series). A stable
    argsort of the whole ``n x n`` matrix per refresh was the larger part of a refresh at
    1,000 series, then the column-wise partition and a cumulative sum over every effect
    (36 ms at 1,000 series)."""
    n = C.shape[1]
    if kk <= 0 or C.shape[0] == 0 or n == 0:
        return np.zeros((0, 2), dtype=np.int64)
    neg = np.negative(C.T)  # a contiguous copy: row e holds the causes of effect e
    neg[np.isnan(neg)] = np.inf  # NaN last, as the sort put it
    kth = np.partition(neg, kk - 1, axis=1)[:, kk - 1 : kk]  # per effect: the kk-th best
    take = neg <= kth  # every strictly better cause, and every tied one
    tied = neg == kth
    n_tied = tied.sum(axis=1)
    room = kk - (take.sum(axis=1) - n_tied)  # places left after the strictly better
    over = np.flatnonzero(n_tied > room)  # more ties than places: index order
    if over.size:
        t = tied[over]
        take[over] = (neg[over] < kth[over]) | (t & (np.cumsum(t, axis=1) <= room[over, None]))
    take &= neg < 0  # C > 0 (NaN is +inf here)
    ef, ca = np.nonzero(take)
    order = np.lexsort((ef, ca))  # by cause, then effect, as before
    out: IntArray = np.c_[ca[order], ef[order]].astype(np.int64).reshape(-1, 2)
    return out
