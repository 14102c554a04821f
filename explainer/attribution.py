"""Root-cause attribution over a target's ancestors: mechanism change and Shapley shares.

The model is a linear structural causal model (SCM) on the ancestor DAG: every node is
``x_j(t) = a_j + Σ_k Σ_l β_jkl x_k(t-l) + n_j(t)`` over its parents ``k`` at lags
``l = 0..lags`` (same bin and the previous ones; the sum over lags is the long-run effect
of a sustained change), fitted robustly
(Huber-weighted, lightly ridged least squares) on a *reference* window before the anomaly.
Then, for the *anomaly* window:

1. **Mechanism change** (the idea of DoWhy's ``gcm.distribution_change``, Budhathoki et al.,
   AISTATS 2021): node ``j``'s residual ``n_j`` (its value given its observed parents) is
   compared between the windows: the shift of the medians in robust units gives a z-score
   and a two-sided p-value. A node whose parents explain its deviation keeps a small
   residual shift; the node whose own mechanism broke does not.
2. **Attribution** (the idea of DoWhy's ``gcm.attribute_anomalies``, Janzing et al. 2019):
   the target's deviation is written through the SCM as a function of all noise terms
   (``t = Σ c_j n_j`` with ``c_j`` the total effect of ``n_j`` on the target). The value of
   a coalition ``S`` of noise terms is the target's median value (target units) when the
   noises in ``S`` take their anomalous values and the others are drawn from their
   reference distribution (window means, bootstrap). DoWhy scores coalitions with an
   information-theoretic outlier score instead; on small, flat operations data that score
   is dominated by variance removal (Jensen) and gave parents that clearly pushed the
   target negative shares, so the deviation itself is the value here. Shapley
   values of that game (exact for up to ``exact_max`` players, otherwise antithetic
   sampled permutations with common random numbers) sum exactly to
   ``v(all) - v(none)``; ``share_j = φ_j / Σφ`` sums to 1 and ``contribution_j = share_j ·
   deviation`` sums to the target's observed deviation (target units).

Why linear with short lags: operations data is small (a few hundred reference points,
many gaps), the fit must be cheap, and latency/error propagation from callee to caller
happens within one or two scrape intervals (without the lag-1 terms a lagged effect lands
in the child's residual and blames the child). Slopes are non-negative (degradation
propagates one way). Everything is vectorised, all nodes' models are fitted in one batched
IRLS: a 50-node ancestor set takes 10-30 ms (``O(nodes · T · F²)`` for the fits with
``F = parents · (lags + 1)``, ``O(perm · players · samples)`` for Shapley).

Ranking: ``score`` = 0.5 x share + 0.5 x mechanism change; with ``support`` the weights
become ``weights`` (0.4, 0.4, 0.2 by default). The share counts only its identified part
(total effect through slopes learned from data, not the flat-parent prior). The mechanism
change is the
Bonferroni-corrected confidence (over the judged nodes) that the node's own residual moved
in the direction the target moved: it saturates, because |z| = 90 vs 20 reflects the noise
level of a series more than which node is the cause.

Works poorly when: relationships are strongly non-linear (saturation), the reference window
already contains the fault, a node's parents are missing from the graph (its mechanism
change then also absorbs its parents' faults), or the anomaly window has a single point of
a noisy series (the mechanism p-value is then weak; attribution still works).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from causalwatch.errors import StateError

__all__ = [
    "Attribution",
    "attribute",
    "deviation_shares",
    "fit_linear_scm",
    "predict_linear_scm",
    "robust_scale",
    "shapley_values",
    "total_effects",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_MAD_TO_SD = 1.4826


def robust_scale(x: FloatArray, axis: int = -1) -> FloatArray:
    """1.4826 · median absolute deviation along ``axis``, ignoring NaN (NaN if all NaN)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1 and x.size and not np.isnan(x).any():  # fast path (IRLS residuals)
        return np.asarray(_MAD_TO_SD * np.median(np.abs(x - np.median(x))))
    with np.errstate(all="ignore"):
        if np.all(np.isnan(x)):
            shape = list(np.shape(x))
            del shape[axis]
            return np.full(shape, np.nan)
        med = _nanmedian(x, axis=axis, keepdims=True)
        return np.asarray(_MAD_TO_SD * _nanmedian(np.abs(x - med), axis=axis), dtype=np.float64)


def _nanmedian(x: FloatArray, axis: int = -1, keepdims: bool = False) -> FloatArray:
    """NaN-ignoring median without the all-NaN RuntimeWarning (NaN where a slice is empty)."""
    x = np.asarray(x, dtype=np.float64)
    s = np.sort(x, axis=axis)  # NaN sorts last
    n = np.isfinite(x).sum(axis=axis, keepdims=True)
    lo = np.clip((n - 1) // 2, 0, None)
    hi = np.clip(n // 2, 0, None)
    a = np.take_along_axis(s, lo, axis=axis)
    b = np.take_along_axis(s, hi, axis=axis)
    out = np.where(n > 0, 0.5 * (a + b), np.nan)
    return out if keepdims else np.squeeze(out, axis=axis)


def fit_linear_scm(
    parents: Sequence[Sequence[int]],
    data: FloatArray,
    lags: int = 0,
    n_fit: int | None = None,
    huber_k: float = 2.0,
    iterations: int = 3,
    ridge: float = 1e-3,
    nonnegative: bool = True,
    flat_prior: float = 1.0,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Fit ``x_j(t) = a_j + Σ_k Σ_{l<=lags} β_jkl x_k(t-l)`` per node on ``data[:, :n_fit]``.

    ``data`` is ``(nodes, T)`` on consecutive time bins; the first ``n_fit`` bins (all by
    default) are the fitting window. Missing values are filled with the node's median (a
    missing 5-minute bucket usually means "no traffic", not "unknown"); bins where the node
    itself is missing are left out. Huber IRLS (``iterations`` rounds, threshold
    ``huber_k`` robust SDs) keeps a few spikes in the reference window from bending the fit;
    ``ridge`` (relative to the standardised parents) keeps collinear parents stable. A node
    with too few points for its parents gets the intercept-only model. With
    ``nonnegative`` (the default) slopes are constrained to be >= 0 (active set): edges
    point the way degradation propagates (a slower callee never makes its caller faster),
    and the constraint keeps collinear parents from getting large opposite-signed slopes on
    small data. A parent that is constant over the fitting window (availability at 100%)
    gets the lag-0 slope ``flat_prior / len(parents)`` (the caller's traffic split evenly over
    its callees): its effect cannot be learned, and assuming none would blame the child.

    Returns ``(intercept (nodes,), B (lags + 1, nodes, nodes) with B[l, j, k] = β_jkl,
    medians (nodes,))``.
    """
    data = np.asarray(data, dtype=np.float64)
    n_nodes, T_all = data.shape
    T = T_all if n_fit is None else int(n_fit)
    L = int(lags)
    med = _nanmedian(data[:, :T], axis=1)
    med = np.where(np.isfinite(med), med, 0.0)
    filled = np.where(np.isfinite(data), data, med[:, None])
    pad = np.concatenate([np.repeat(med[:, None], L, axis=1), filled], axis=1)
    intercept = med.copy()
    B = np.zeros((L + 1, n_nodes, n_nodes))
    n_par = np.array([len(p) for p in parents], dtype=np.int64)
    P = int(n_par.max()) if n_nodes else 0
    if P == 0 or T == 0:
        return intercept, B, med
    # All nodes at once, padded to the largest parent set: feature (k, l) = parent k, lag l.
    F = P * (L + 1)
    par_idx = np.full((n_nodes, P), -1, dtype=np.int64)
    for j, p in enumerate(parents):
        par_idx[j, : len(p)] = [int(k) for k in p]
    feat_par = np.repeat(par_idx, L + 1, axis=1)  # (n, F)
    feat_lag = np.tile(np.arange(L + 1), (n_nodes, P))
    # a parent never observed in the fitting window has no usable level: leave it out
    seen = np.isfinite(data[:, :T]).sum(axis=1) >= 3
    feat_ok = (feat_par >= 0) & seen[np.maximum(feat_par, 0)]
    n_par = feat_ok[:, :: L + 1].sum(axis=1)
    t_idx = np.arange(T)[None, :, None] - feat_lag[:, None, :] + L  # (n, T, F)
    X = np.where(feat_ok[:, None, :], pad[np.maximum(feat_par, 0)[:, None, :], t_idx], 0.0)
    Y = data[:, :T]
    yok = np.isfinite(Y)
    count = yok.sum(axis=1)
    fitted = (n_par > 0) & (count >= n_par * (L + 1) + 3)
    w0 = (yok & fitted[:, None]).astype(np.float64)
    wsum = np.maximum(w0.sum(axis=1), 1.0)
    mu = np.einsum("ntf,nt->nf", X, w0) / wsum[:, None]
    sd = np.sqrt(np.einsum("ntf,nt->nf", (X - mu[:, None, :]) ** 2, w0) / wsum[:, None])
    live = feat_ok & fitted[:, None] & (sd > 1e-12 * np.maximum(np.abs(mu), 1.0))
    # A parent that never moved in the fitting window has an unidentifiable slope;
    # assume one-to-one propagation split over the callees rather than none, otherwise the
    # child's residual would absorb every fault of that parent.
    prior = np.where(
        feat_ok & ~live & (feat_lag == 0), flat_prior / np.maximum(n_par, 1)[:, None], 0.0
    )
    Yadj = np.where(yok, Y, 0.0) - np.einsum("ntf,nf->nt", X, prior)
    Z = np.where(live[:, None, :], (X - mu[:, None, :]) / np.where(live, sd, 1.0)[:, None, :], 0.0)
    Z1 = np.concatenate([np.ones((n_nodes, T, 1)), Z], axis=2)
    base = np.concatenate([fitted[:, None], live], axis=1)  # (n, F + 1)
    pen = np.concatenate([np.zeros((n_nodes, 1)), np.repeat((ridge * count)[:, None], F, 1)], 1)
    eye = np.eye(F + 1)
    w = w0.copy()
    coef: FloatArray = np.zeros((n_nodes, F + 1))
    for _ in range(max(iterations, 1)):
        G0 = np.einsum("ntf,nt,ntg->nfg", Z1, w, Z1, optimize=True)
        h0 = np.einsum("ntf,nt->nf", Z1, w * Yadj)
        act = base.copy()
        for _ in range(F + 1):  # active set: drop negative slopes, re-solve
            M = act[:, :, None] & act[:, None, :]
            G = np.where(M, G0, 0.0) + eye * np.where(act, pen, 1.0)[:, :, None]
            coef = np.asarray(
                np.linalg.solve(G, np.where(act, h0, 0.0)[:, :, None])[:, :, 0], dtype=np.float64
            )
            neg = act & (coef < 0)
            neg[:, 0] = False
            if not (nonnegative and neg.any()):
                break
            act &= ~neg
        r = np.where(w0 > 0, Yadj - np.einsum("ntf,nf->nt", Z1, coef), np.nan)
        s = robust_scale(r, axis=1) if r.size else np.zeros(n_nodes)
        ok_s = np.isfinite(s) & (s > 0)
        a = np.abs(np.nan_to_num(r)) / (huber_k * np.where(ok_s, s, 1.0))[:, None]
        w = np.where(ok_s[:, None], w0 * np.where(a <= 1.0, 1.0, 1.0 / np.maximum(a, 1e-12)), w0)
    beta = np.where(live, coef[:, 1:] / np.where(live, sd, 1.0), prior)
    has_live = live.any(axis=1)
    icpt = coef[:, 0] - np.einsum("nf,nf->n", np.where(live, beta, 0.0), mu)
    no_live = _nanmedian(np.where(yok, Yadj, np.nan), axis=1)
    intercept = np.where(fitted, np.where(has_live, icpt, no_live), med)
    beta = np.where(fitted[:, None], beta, 0.0)
    j_idx = np.repeat(np.arange(n_nodes)[:, None], F, axis=1)
    sel = feat_ok & fitted[:, None]
    B[feat_lag[sel], j_idx[sel], feat_par[sel]] = beta[sel]
    return intercept, B, med


def predict_linear_scm(intercept: FloatArray, B: FloatArray, data: FloatArray) -> FloatArray:
    """Each node's value predicted from its observed parents (``B`` from :func:`fit_linear_scm`);
    ``data`` must already be filled (no NaN). The first ``lags`` bins use the first bin as lag."""
    L = B.shape[0] - 1
    pad = np.concatenate([np.repeat(data[:, :1], L, axis=1), data], axis=1)
    T = data.shape[1]
    out = np.repeat(intercept[:, None], T, axis=1)
    for lag in range(L + 1):
        out += B[lag] @ pad[:, L - lag : L - lag + T]
    return out


def total_effects(B: FloatArray, order: Sequence[int], target: int) -> FloatArray:
    """``c_j``: total linear effect of node ``j``'s noise on ``target`` (``c_target = 1``).

    ``order`` is a topological order of the nodes; one backward pass, ``O(nodes²)``.

    >>> B = np.array([[0, 0, 0], [2.0, 0, 0], [0, 0.5, 0]])  # 0 -> 1 -> 2
    >>> total_effects(B, [0, 1, 2], 2).tolist()
    [1.0, 0.5, 1.0]
    """
    c = np.zeros(B.shape[0])
    c[target] = 1.0
    for j in reversed(list(order)):
        if j != target:
            c[j] = float(B[:, j] @ c)
    return c


def shapley_values(
    value: Callable[[BoolArray], FloatArray],
    n_players: int,
    rng: np.random.Generator,
    exact_max: int = 10,
    n_permutations: int = 64,
) -> FloatArray:
    """Shapley values of a game given by a vectorised ``value(coalitions)`` function.

    ``coalitions`` is a boolean ``(K, n_players)`` matrix; ``value`` returns ``(K,)``.
    Exact (all ``2^n`` coalitions, one call) when ``n_players <= exact_max``; otherwise
    ``n_permutations`` random permutations, each with its reverse (antithetic), all
    prefixes evaluated in one call. Either way the values sum exactly to
    ``v(all) - v(none)`` (efficiency), because each permutation's marginals telescope.

    >>> v = lambda m: (m * [1.0, 2.0, 3.0]).sum(axis=1) ** 2
    >>> phi = shapley_values(v, 3, np.random.default_rng(0))
    >>> phi.round(6).tolist(), float(phi.sum())
    ([6.0, 12.0, 18.0], 36.0)
    """
    n = int(n_players)
    if n == 0:
        return np.zeros(0)
    if n <= exact_max:
        masks = ((np.arange(1 << n)[:, None] >> np.arange(n)[None, :]) & 1).astype(bool)
        v = np.asarray(value(masks), dtype=np.float64)
        size = masks.sum(axis=1)
        fact = np.array([math.factorial(i) for i in range(n + 1)], dtype=np.float64)
        phi = np.zeros(n)
        idx = np.arange(1 << n)
        for j in range(n):
            without = idx[(idx >> j) & 1 == 0]
            s = size[without]
            w = fact[s] * fact[n - s - 1] / fact[n]
            phi[j] = float(w @ (v[without | (1 << j)] - v[without]))
        return phi
    half = max(n_permutations // 2, 1)
    perms = np.argsort(rng.random((half, n)), axis=1)
    perms = np.concatenate([perms, perms[:, ::-1]], axis=0)
    P = perms.shape[0]
    # prefix coalitions: row (p, i) has the first i players of permutation p (i = 0..n)
    rank = np.empty_like(perms)
    rank[np.arange(P)[:, None], perms] = np.arange(n)[None, :]
    masks = rank[:, None, :] < np.arange(n + 1)[None, :, None]  # (P, n+1, n)
    v = np.asarray(value(masks.reshape(-1, n)), dtype=np.float64).reshape(P, n + 1)
    marg = np.diff(v, axis=1)  # (P, n): marginal of the player added at step i
    phi = np.zeros(n)
    np.add.at(phi, perms.ravel(), marg.ravel())
    return np.asarray(phi / P, dtype=np.float64)


def deviation_shares(
    push: FloatArray, deviation: float, half_width: FloatArray | None = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Shares that read as "how much of the deviation this node explains".

    ``push`` holds each node's contribution to the target's ``deviation`` in target units
    (Shapley values: they sum to the modelled deviation, with signs). The contributions in
    the deviation's direction are the explanation; over the scale ``max(their sum,
    |deviation|)`` each becomes a share in [0, 1] and the shares sum to at most 1 (what is
    left is unexplained: the model explains less than was observed, or causes not listed).
    Contributions that pulled the other way get a share of 0 and their size on the same
    scale (at most 1) apart (``against``). ``half_width`` (target units) is scaled the same way.

    Returns ``(share, against, half_width)``.

    >>> s, a, _ = deviation_shares(np.array([3.0, -1.0, 0.5]), 2.0)
    >>> s.round(3).tolist(), a.round(3).tolist()
    ([0.857, 0.0, 0.143], [0.0, 0.286, 0.0])
    """
    p = np.nan_to_num(np.asarray(push, dtype=np.float64))
    sign = 1.0 if deviation >= 0 else -1.0
    toward = np.clip(sign * p, 0.0, None)
    away = np.clip(-sign * p, 0.0, None)
    scale = max(float(toward.sum()), abs(float(deviation)), 1e-300)
    hw = np.zeros_like(p) if half_width is None else np.asarray(half_width, np.float64)
    return toward / scale, np.minimum(away / scale, 1.0), np.nan_to_num(hw) / scale


@dataclass(frozen=True, slots=True)
class Attribution:
    """Per-node results (arrays indexed like the input nodes).

    ``deviation`` is the target's observed deviation (anomaly-window median minus reference
    median, target units). ``contribution`` sums to it; ``share`` sums to 1.
    ``shift_z`` / ``p_value`` are the mechanism-change z-score and two-sided p-value;
    ``effect`` is ``c_j``; ``score`` the ranking score in [0, 1].

    ``dev_share`` is what a person reads (see :func:`deviation_shares`): the part of the
    deviation each node explains, >= 0, summing to at most 1; ``against_share`` the size of
    a contribution that pulled the other way on the same scale; ``ci_low``/``ci_high`` a
    95% interval of ``dev_share``. ``changed``: the node's own mechanism changed in the
    target's direction (5 %, Bonferroni over the judged nodes).
    """

    deviation: float
    share: FloatArray
    contribution: FloatArray
    phi: FloatArray
    shift: FloatArray
    shift_z: FloatArray
    p_value: FloatArray
    effect: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    score: FloatArray
    n_reference: IntArray
    n_anomaly: IntArray
    dev_share: FloatArray
    against_share: FloatArray
    changed: BoolArray

    def ranking(self) -> IntArray:
        """Node indices by descending score (stable on ties)."""
        return np.argsort(-self.score, kind="stable").astype(np.int64)


def attribute(
    parents: Sequence[Sequence[int]],
    order: Sequence[int],
    reference: FloatArray,
    anomaly: FloatArray,
    target: int,
    *,
    seed: int = 0,
    n_samples: int = 256,
    n_permutations: int = 32,
    exact_max: int = 8,
    player_z: float = 2.0,
    max_players: int = 16,
    lags: int = 1,
    min_reference: int = 5,
    support: FloatArray | None = None,
    weights: tuple[float, float, float] = (0.4, 0.4, 0.2),
    saturate: bool = True,
) -> Attribution:
    """Attribute the ``target``'s deviation in ``anomaly`` to the nodes' mechanisms.

    Parameters
    ----------
    parents
        ``parents[j]``: indices of node ``j``'s parents (the graph restricted to the nodes).
    order
        A topological order of all node indices.
    reference, anomaly
        ``(nodes, T_ref)`` and ``(nodes, T_anom)`` aligned values (NaN = no sample).
    target
        Index of the target node.
    seed
        Seeds the reference-noise draws and the sampled permutations (deterministic).
    lags
        Parent lags in the node models (0 = same bin only). ``reference`` and ``anomaly``
        are then taken as consecutive bins (the anomaly right after the reference).
    min_reference
        Nodes with fewer reference points get no mechanism score (p = 1) and no share.
    support
        Optional per-node evidence in [0, 1] from outside the model (with no graph the
        explainer passes each node's onset: how long it has been anomalous); it counts
        only for nodes whose own mechanism changed.
    weights
        Weights of (share, mechanism change, support) in the score when ``support`` is given.
    player_z, max_players
        Nodes whose residual moved less than ``player_z`` robust SDs stay background noise
        in the Shapley game; at most ``max_players`` nodes play (largest push first).
    saturate
        Mechanism evidence as a Bonferroni-corrected confidence (True) or, for a ranking
        without a graph where every candidate is a root and the size of its own change is
        the evidence, as ``log1p(z)`` over the largest (False).

    Examples
    --------
    A chain ``0 -> 1 -> 2`` whose middle node's mechanism shifts:

    >>> rng = np.random.default_rng(0)
    >>> def draw(n, shift):
    ...     a = rng.normal(size=n); b = 2 * a + rng.normal(size=n) + shift
    ...     return np.vstack([a, b, b + 0.5 * rng.normal(size=n)])
    >>> res = attribute([[], [0], [1]], [0, 1, 2], draw(300, 0.0), draw(5, 6.0), target=2)
    >>> int(res.ranking()[0]), bool(abs(res.contribution.sum() - res.deviation) < 1e-9)
    (1, True)
    """
    ref = np.asarray(reference, dtype=np.float64)
    anom = np.asarray(anomaly, dtype=np.float64)
    n = ref.shape[0]
    if anom.shape[0] != n or len(parents) != n or not 0 <= target < n:
        raise StateError(
            f"attribute: {n} nodes in reference, {anom.shape[0]} in anomaly,"
            f" {len(parents)} parent lists, target {target}"
        )
    T_ref = ref.shape[1]
    full = np.concatenate([ref, anom], axis=1)
    intercept, Bl, med = fit_linear_scm(parents, full, lags=lags, n_fit=T_ref)
    filled = np.where(np.isfinite(full), full, med[:, None])
    # residual of each node given its observed parents (NaN where the node has no sample)
    res = np.where(np.isfinite(full), full - predict_linear_scm(intercept, Bl, filled), np.nan)
    B = Bl.sum(axis=0)  # long-run effect of a sustained change
    res_ref, res_anom = res[:, :T_ref], res[:, T_ref:]
    n_ref = np.isfinite(res_ref).sum(axis=1).astype(np.int64)
    # a node seen fewer than min_reference times before the anomaly cannot be judged
    judged = n_ref >= min_reference
    res_anom = np.where(judged[:, None], res_anom, np.nan)
    n_anom = np.isfinite(res_anom).sum(axis=1).astype(np.int64)
    center = np.where(n_ref > 0, _nanmedian(res_ref, axis=1), 0.0)
    sigma = robust_scale(res_ref, axis=1)
    dev2 = np.where(np.isfinite(res_ref), (res_ref - center[:, None]) ** 2, 0.0)
    sd = np.sqrt(dev2.sum(axis=1) / np.maximum(n_ref, 1))
    # a flat reference (availability at 100%) has no scale: floor it at 0.1% of the level
    level = np.maximum(np.abs(np.nan_to_num(med)), np.nan_to_num(_nanmedian(np.abs(anom), axis=1)))
    floor = np.maximum(1e-3 * level, 1e-9)
    sigma = np.where(
        np.isfinite(sigma) & (sigma > floor), sigma, np.maximum(np.nan_to_num(sd), floor)
    )
    shift = np.where(n_anom > 0, _nanmedian(res_anom, axis=1) - center, 0.0)
    shift = np.where(np.isfinite(shift), shift, 0.0)
    se = sigma * np.sqrt((math.pi / 2) * (1.0 / np.maximum(n_anom, 1) + 1.0 / np.maximum(n_ref, 1)))
    z = np.where(n_anom > 0, shift / se, 0.0)
    p_value = np.asarray(np.minimum(2.0 * special.ndtr(-np.abs(z)), 1.0), dtype=np.float64)

    c = total_effects(B, order, target)
    # A parent that never moved in the reference got the flat_prior slope, a guess: the part
    # of c_j that runs through such slopes says nothing about node j, so the ranking uses
    # only the identified part of each share (c over slopes learned from data).
    n_ok = np.isfinite(ref).sum(axis=1)
    r_dev2 = np.where(np.isfinite(ref), (ref - med[:, None]) ** 2, 0.0)
    flat = np.sqrt(r_dev2.sum(axis=1) / np.maximum(n_ok, 1)) <= 1e-12 * np.maximum(np.abs(med), 1)
    c_fit = total_effects(np.where(flat[None, :], 0.0, B), order, target)
    with np.errstate(all="ignore"):
        identified = np.where(np.abs(c) > 1e-12, np.clip(c_fit / c, 0.0, 1.0), 0.0)
    identified[target] = 1.0
    dev_t = anom[target][np.isfinite(anom[target])]
    tref = ref[target][np.isfinite(ref[target])]
    deviation = float(np.median(dev_t) - np.median(tref)) if dev_t.size and tref.size else 0.0

    # Players are the nodes that moved (|z| >= player_z) and reach the target, at most
    # max_players by |push on the target|; the rest stay random background noise in every
    # coalition (their Shapley value is ~0 anyway), which keeps the game small and often exact.
    push = np.abs(c * shift)
    cand = np.flatnonzero((np.abs(c) > 0) & (np.abs(z) >= player_z))
    if target not in cand.tolist():
        cand = np.append(cand, target)
    players = np.sort(cand[np.argsort(-push[cand], kind="stable")][:max_players])
    background = np.setdiff1d(np.flatnonzero(np.abs(c) > 0), players)
    a = c[players] * shift[players]  # each player's linear push on the target
    rng = np.random.default_rng(seed)
    m = int(max(min(n_anom[target], 10), 1))
    # reference noise, as window means of m bins (bootstrap), centred: (S, players)
    Zs = np.zeros((n_samples, players.size))
    for i, j in enumerate(players.tolist()):
        pool = res_ref[j][np.isfinite(res_ref[j])] - center[j]
        if pool.size:
            Zs[:, i] = pool[rng.integers(0, pool.size, (n_samples, m))].mean(axis=1)
    noise = Zs * c[players][None, :]
    back = np.zeros(n_samples)
    for j in background.tolist():
        pool = res_ref[j][np.isfinite(res_ref[j])] - center[j]
        if pool.size:
            back += c[j] * pool[rng.integers(0, pool.size, (n_samples, m))].mean(axis=1)

    def value(masks: BoolArray) -> FloatArray:
        # noise.T is (players, S): where(mask, 0, 1) @ noise.T sums the random noises not in S
        t = (
            (masks * a[None, :]).sum(axis=1)[:, None]
            + np.where(masks, 0.0, 1.0) @ noise.T
            + back[None, :]
        )
        # the target's typical (median) value over the noise draws, in target units: robust
        # to one wild draw, and not additive, so the Shapley weighting matters
        return np.asarray(np.median(t, axis=1), dtype=np.float64)

    phi_p = shapley_values(value, players.size, rng, exact_max, n_permutations)
    phi = np.zeros(n)
    phi[players] = phi_p
    total = float(phi.sum())
    lin = c * shift
    lin_total = float(lin.sum())
    if abs(total) > 1e-12:
        share = phi / total
    elif abs(lin_total) > 1e-12:
        share = lin / lin_total
    else:
        share = np.zeros(n)
    contribution = share * deviation
    direction = 1.0 if deviation >= 0 else -1.0
    pushes = phi if abs(total) > 1e-12 else lin
    dev_share, against_share, dev_half = deviation_shares(pushes, deviation, 1.96 * np.abs(c) * se)
    ci_low, ci_high = dev_share - dev_half, dev_share + dev_half

    # Ranking: the node's share of the deviation and its own mechanism change in the
    # direction the target moved (every candidate is an ancestor, so a slope the fit set to
    # zero on a flat reference window does not remove its mechanism evidence), each
    # normalised by the best candidate, averaged.
    raw_share = np.clip(share, 0.0, None)
    pos_share = raw_share * identified
    mech_push = np.where(n_anom > 0, np.clip(direction * z, 0.0, None), 0.0)
    # the share itself (a fraction of the deviation), not over the best candidate's: when
    # the shares are guesses (unidentified), a small identified one must stay small
    part_share = np.clip(pos_share, 0.0, 1.0)
    # Confidence that the node's own mechanism changed, corrected for testing every
    # candidate (Bonferroni): beyond a clear change, |z| = 90 vs 20 says more about the noise
    # level of the series than about which node is the cause, so the evidence saturates.
    p_dir = special.ndtr(-mech_push)
    confidence = np.where(
        mech_push > 0, np.clip(1.0 - 2.0 * p_dir * max(int(judged.sum()), 1), 0, 1), 0.0
    )
    if saturate:
        part_mech = confidence
    else:
        log_push = np.log1p(mech_push)
        part_mech = log_push / log_push.max() if log_push.max() > 0 else log_push
    # the verdict's "own mechanism changed": significant at 5 % after Bonferroni over the
    # judged nodes, in the target's direction
    changed = judged & (confidence >= 0.95)
    if support is None:
        score = np.clip(0.5 * part_share + 0.5 * part_mech, 0.0, 1.0)
    else:
        # outside evidence (the onset with no graph) counts for nodes that changed themselves
        sup = np.clip(np.asarray(support, dtype=np.float64), 0.0, 1.0) * (part_mech > 0)
        w_share, w_mech, w_sup = weights
        score = np.clip(w_share * part_share + w_mech * part_mech + w_sup * sup, 0.0, 1.0)
    return Attribution(
        deviation=deviation,
        share=share,
        contribution=contribution,
        phi=phi,
        shift=shift,
        shift_z=z,
        p_value=p_value,
        effect=c,
        ci_low=ci_low,
        ci_high=ci_high,
        score=score,
        n_reference=n_ref,
        n_anomaly=n_anom,
        dev_share=dev_share,
        against_share=against_share,
        changed=changed,
    )
