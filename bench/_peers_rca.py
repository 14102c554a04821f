"""Peer root-cause rankers for the development suite, on the samples the product streams.

Every peer gets a window of one case's samples (``values[time, series]``, NaN where
nothing was sent), the node of each series and where the scored window starts; it returns
nodes ranked best first (a node scores the maximum over its series). None uses a graph.

- :func:`baro`: BARO (Pham, Ha, Zhang, "BARO: Robust Root Cause Analysis for Microservices
  via Multivariate Bayesian Online Change Point Detection", FSE 2024), written from the
  paper: a multivariate Bayesian online change-point detector (Adams & MacKay 2007; here a
  product of per-metric Normal-Gamma models, constant hazard) finds the anomaly onset; each
  metric is then scaled robustly on the data before the onset (median and inter-quartile
  range, as scikit-learn's ``RobustScaler``) and scored by its largest absolute scaled
  value after the onset; metrics are ranked by that score. Metrics with no spread before
  the onset are dropped (the constant / near-constant filter of BARO's evaluation). The
  onset is searched from a few points before the scored window to its end (the same hint
  every peer gets).
- :func:`nsigma`: N-sigma: largest ``|x - mean| / sd`` in the scored window against the
  data before it.
- :func:`zscore_change`: the z-score change baseline: ``|median(window) - median(before)|``
  over the MAD of the data before (a level change, robust).

Works poorly when: metrics are constant before the onset and move a little after it (the
scale floors below decide those); BOCPD with hundreds of metrics is very sensitive, so its
onset is taken as the most probable change point of the search range, not the first one.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy.special import gammaln

__all__ = ["PEERS", "baro", "bocpd_onset", "nsigma", "rank_nodes", "zscore_change"]

REFERENCE_POINTS = 120  # data before the onset the peers compare with (at most)


def rank_nodes(scores: np.ndarray, nodes: Sequence[str]) -> list[str]:
    """Nodes ranked by the maximum score of their series (NaN scores ignored)."""
    best: dict[str, float] = {}
    for s, n in zip(scores.tolist(), nodes):
        if np.isfinite(s) and s > best.get(n, -np.inf):
            best[n] = s
    return sorted(best, key=lambda n: (-best[n], n))


def _split(values: np.ndarray, onset: int) -> tuple[np.ndarray, np.ndarray]:
    ref = values[max(0, onset - REFERENCE_POINTS) : onset]
    return ref, values[onset:]


def _floor(scale: np.ndarray, level: np.ndarray) -> np.ndarray:
    # a metric that never moved before the onset: a tiny relative scale, not zero
    return np.maximum(np.nan_to_num(scale), 1e-3 * np.abs(np.nan_to_num(level)) + 1e-9)


def _max_abs(z: np.ndarray) -> np.ndarray:
    z = np.where(np.isfinite(z), np.abs(z), -np.inf)
    out = z.max(axis=0) if z.shape[0] else np.full(z.shape[1], -np.inf)
    return np.where(np.isfinite(out), out, np.nan)


def _usable(ref: np.ndarray, post: np.ndarray) -> np.ndarray:
    return (np.isfinite(ref).sum(axis=0) >= 3) & (np.isfinite(post).sum(axis=0) >= 1)


def nsigma(values: np.ndarray, nodes: Sequence[str], start: int) -> list[str]:
    ref, post = _split(values, start)
    ok = _usable(ref, post)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mu, sd = np.nanmean(ref[:, ok], axis=0), np.nanstd(ref[:, ok], axis=0)
        z = (post[:, ok] - mu) / _floor(sd, mu)
    scores = np.full(values.shape[1], np.nan)
    scores[ok] = _max_abs(z)
    return rank_nodes(scores, nodes)


def zscore_change(values: np.ndarray, nodes: Sequence[str], start: int) -> list[str]:
    ref, post = _split(values, start)
    ok = _usable(ref, post)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(ref[:, ok], axis=0)
        mad = 1.4826 * np.nanmedian(np.abs(ref[:, ok] - med), axis=0)
        z = np.abs(np.nanmedian(post[:, ok], axis=0) - med) / _floor(mad, med)
    scores = np.full(values.shape[1], np.nan)
    scores[ok] = z
    return rank_nodes(scores, nodes)


def bocpd_onset(
    values: np.ndarray,
    lo: int,
    hi: int,
    hazard: float = 1.0 / 100.0,
    lag: int = 3,
    max_run: int = 256,
) -> int:
    """The most probable change point in ``[lo, hi)`` by Bayesian online change-point
    detection over all columns (independent Normal-Gamma models per column, Student-t
    predictives, constant ``hazard``), on columns scaled robustly and clipped to +-8.

    With a constant hazard the posterior of a run of length 0 right at ``t`` is always the
    hazard, so a change at ``t`` is judged ``lag`` points later: the probability that the
    run then has length ``lag`` (it started at ``t``). Run lengths are truncated at
    ``max_run`` (the tail mass is folded into the last one). ``O(T * max_run * columns)``."""
    x = np.asarray(values, dtype=np.float64)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        med = np.nanmedian(x, axis=0)
        iqr = np.nanpercentile(x, 75, axis=0) - np.nanpercentile(x, 25, axis=0)
    keep = np.isfinite(med) & (np.nan_to_num(iqr) > 0)
    if not keep.any() or hi <= lo:
        return lo
    z = np.clip((x[:, keep] - med[keep]) / iqr[keep], -8.0, 8.0)
    z = np.where(np.isfinite(z), z, 0.0)  # a missing value carries no evidence
    t_n, d = z.shape
    # Normal-Gamma prior: mean 0, kappa 1, alpha 1, beta 1 (unit scale after scaling)
    mu0, k0, a0, b0 = 0.0, 1.0, 1.0, 1.0
    mu = np.full((1, d), mu0)
    kap = np.full((1, d), k0)
    alp = np.full((1, d), a0)
    bet = np.full((1, d), b0)
    logr = np.array([0.0])  # log P(run length) after the data so far
    lh, l1h = np.log(hazard), np.log1p(-hazard)
    change_at: dict[int, float] = {}
    history: list[np.ndarray] = []
    for t in range(t_n):
        xt = z[t][None, :]
        scale2 = bet * (kap + 1.0) / (alp * kap)
        nu = 2.0 * alp
        lp = (
            gammaln((nu + 1.0) / 2.0)
            - gammaln(nu / 2.0)
            - 0.5 * np.log(np.pi * nu * scale2)
            - (nu + 1.0) / 2.0 * np.log1p((xt - mu) ** 2 / (nu * scale2))
        ).sum(axis=1)
        growth = logr + lp + l1h
        cp = np.logaddexp.reduce(logr + lp + lh)
        new = np.concatenate([[cp], growth])
        # update the sufficient statistics (a new run starts from the prior)
        mu_n = (kap * mu + xt) / (kap + 1.0)
        bet_n = bet + kap * (xt - mu) ** 2 / (2.0 * (kap + 1.0))
        mu = np.vstack([np.full((1, d), mu0), mu_n])
        kap = np.vstack([np.full((1, d), k0), kap + 1.0])
        alp = np.vstack([np.full((1, d), a0), alp + 0.5])
        bet = np.vstack([np.full((1, d), b0), bet_n])
        if new.size > max_run:
            tail = np.logaddexp.reduce(new[max_run - 1 :])
            new = np.concatenate([new[: max_run - 1], [tail]])
            mu, kap, alp, bet = (a[:max_run] for a in (mu, kap, alp, bet))
        logr = new - np.logaddexp.reduce(new)
        history.append(logr)
        s = t - lag  # a run of length lag+1 after x_t started at x_s
        if lo <= s < hi and lag + 1 < logr.size:
            change_at[s] = float(logr[lag + 1])
    for s in range(max(lo, t_n - lag), hi):  # too close to the end to judge with the lag
        r = t_n - 1 - s + 1
        if r < history[-1].size:
            change_at.setdefault(s, float(history[-1][r]))
    if not change_at:
        return lo
    return max(change_at, key=lambda s: (change_at[s], -s))


def baro(values: np.ndarray, nodes: Sequence[str], start: int, search_before: int = 5) -> list[str]:
    """BARO: BOCPD onset in ``[start - search_before, end)``, then robust scores."""
    lo = max(1, start - search_before)
    onset = bocpd_onset(values, lo, values.shape[0])
    ref, post = _split(values, onset)
    ok = _usable(ref, post)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(ref[:, ok], axis=0)
        iqr = np.nanpercentile(ref[:, ok], 75, axis=0) - np.nanpercentile(ref[:, ok], 25, axis=0)
        z = (post[:, ok] - med) / iqr
    # constant and near-constant metrics (no spread before the onset) are dropped, the
    # preprocessing BARO's evaluation applies; they would otherwise dominate with IQR ~ 0
    z[:, ~(np.nan_to_num(iqr) > 1e-9 * (1.0 + np.abs(np.nan_to_num(med))))] = np.nan
    scores = np.full(values.shape[1], np.nan)
    scores[ok] = _max_abs(z)
    return rank_nodes(scores, nodes)


PEERS = {"BARO": baro, "NSigma": nsigma, "z-score change": zscore_change}
