"""The ranking's score terms beyond the attribution: coverage, onset, Granger, early change.

The final score of a candidate (see :func:`explainer.ranking.rank`) is

``clip(0.9 x attribution score + 0.1 x (1 - Granger q) [if the attribution score > 0])``

then, with a given graph, times the early-change discount (:func:`early_change_discount`).
The attribution score (:func:`explainer.attribution.attribute`) weighs the identified own
share, the confidence of an own mechanism change and a third ``support`` term with
:data:`GRAPH_WEIGHTS` (support = :func:`coverage`) or, with no graph, :data:`STAR_WEIGHTS`
(support = :func:`onset`). Each rule is a function of arrays here, to be changed and
tested on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from explainer.attribution import _nanmedian, robust_scale
from explainer.candidates import SeriesChoice
from explainer.windows import anomaly_bins

__all__ = [
    "GRAPH_WEIGHTS",
    "STAR_WEIGHTS",
    "combine",
    "coverage",
    "early_change_discount",
    "early_run",
    "graph_weights",
    "hops_to",
    "onset",
]

FloatArray = npt.NDArray[np.float64]

#: (share, mechanism change, support) weights of the attribution score with a given graph
GRAPH_WEIGHTS = (0.4, 0.4, 0.2)
#: with no graph the star regression's shares say which node *predicts* the target, not
#: which caused it: rank by own change and onset instead
STAR_WEIGHTS = (0.1, 0.5, 0.4)


def graph_weights(coverage_weight: float) -> tuple[float, float, float]:
    """(share, mechanism change, coverage) weights with a given graph: ``coverage_weight``
    for coverage and the rest split evenly (0.2 gives :data:`GRAPH_WEIGHTS`).

    >>> graph_weights(0.2)
    (0.4, 0.4, 0.2)
    """
    rest = round((1.0 - coverage_weight) / 2.0, 12)
    return (rest, rest, coverage_weight)


def coverage(
    nodes: list[str],
    target: str,
    desc: dict[str, set[str]],
    chosen: dict[str, SeriesChoice],
    z: FloatArray,
    anomaly_z: float,
) -> FloatArray:
    """Per node: the share of the anomalous nodes (|z| > anomaly_z, the target, its
    ancestors and their other descendants) that the node's own change could explain,
    i.e. the node itself and its anomalous descendants (coverage: one fault that
    explains more of the observed symptoms is the simpler story). ``z[0]`` is the
    target's."""
    hot = {n for n, c in chosen.items() if abs(z[c.col]) > anomaly_z}
    if abs(z[0]) > anomaly_z:
        hot.add(target)
    if not hot:
        return np.zeros(len(nodes))
    count = np.array([len((desc.get(n, set()) | {n}) & hot) for n in nodes], dtype=np.float64)
    return count / len(hot)


def onset(
    nodes: list[str],
    target: str,
    chosen: dict[str, SeriesChoice],
    V: FloatArray,
    anomaly_points: int,
    anomaly_z: float,
) -> FloatArray:
    """No graph: how long each node has been anomalous (a fault shows first at its root),
    over the longest run, looking back ``3 x anomaly_points`` bins (``V[0]`` is the
    target's series)."""
    look = 3 * anomaly_points
    run = np.array(
        [anomaly_bins(V[0 if n == target else chosen[n].col], look, anomaly_z) for n in nodes],
        dtype=np.float64,
    )
    return run / run.max() if run.max() > 0 else run


def combine(attribution_score: FloatArray, granger_bonus: FloatArray) -> FloatArray:
    """0.9 x the attribution score + 0.1 x the Granger bonus (only for nodes the attribution
    scored above 0), clipped to [0, 1]."""
    bonus = 0.1 * granger_bonus * (attribution_score > 0)
    out: FloatArray = np.clip(0.9 * attribution_score + bonus, 0.0, 1.0)
    return out


def hops_to(parents: Sequence[Sequence[int]], target: int) -> FloatArray:
    """Per node: edges on the shortest directed path to ``target`` (0 for the target and for
    nodes that do not reach it), over parent index lists; breadth-first, ``O(edges)``.

    >>> hops_to([[], [0], [1]], 2).tolist()
    [2.0, 1.0, 0.0]
    """
    hops = np.full(len(parents), -1.0)
    hops[target] = 0.0
    frontier = [target]
    while frontier:
        nxt = []
        for j in frontier:
            for k in parents[j]:
                if hops[k] < 0:
                    hops[k] = hops[j] + 1.0
                    nxt.append(int(k))
        frontier = nxt
    return np.asarray(np.maximum(hops, 0.0), dtype=np.float64)


def early_change_discount(
    score: FloatArray,
    Vn: FloatArray,
    tgt: int,
    n_anom: int,
    parents: Sequence[Sequence[int]],
    *,
    model_lags: int,
    anomaly_points: int,
    anomaly_z: float,
) -> FloatArray:
    """``score`` discounted by ``(delay + 1) / (run + 1)`` where a node's change was already
    in place for ``run`` bins, longer than the propagation ``delay`` (``model_lags`` per
    hop to the target), while the target stayed normal (cause present, effect absent).
    ``Vn`` holds the nodes' aligned series, row ``tgt`` the target."""
    early = early_run(Vn, tgt, n_anom, anomaly_z=anomaly_z, anomaly_points=anomaly_points)
    delay = model_lags * hops_to(parents, tgt)
    out: FloatArray = score * np.where(early > delay, (delay + 1.0) / (early + 1.0), 1.0)
    return out


def early_run(
    Vn: FloatArray, tgt: int, n_anom: int, *, anomaly_z: float, anomaly_points: int
) -> FloatArray:
    """Per node: how many bins right before the anomaly window the node was already
    deviated as in the window while the target showed less than a quarter of the effect
    that deviation implies (0 for the target; a NaN bin ends the run; at most
    ``anomaly_points`` bins are looked at).

    "Deviated as in the window": |robust z| > ``anomaly_z``, the window's sign and at
    least half the window's deviation (so the early part of a slow drift, whose cause
    crosses the threshold before its effect does, does not count). "The effect it
    implies": the target's window deviation scaled by the node's pre-bin deviation over
    its window deviation (linear propagation, as the node models assume)."""
    T = Vn.shape[1]
    ref = Vn[:, : T - n_anom]
    out = np.zeros(Vn.shape[0])
    if ref.shape[1] < 4:
        return out
    med = _nanmedian(ref, axis=1)
    with np.errstate(all="ignore"):
        sc = robust_scale(ref, axis=1)
        floor = np.maximum(1e-3 * np.abs(np.nan_to_num(med)), 1e-9)
        sc = np.where(np.isfinite(sc) & (sc > floor), sc, floor)
        dev = _nanmedian(Vn[:, T - n_anom :], axis=1) - med
        D = Vn - med[:, None]
    if not np.isfinite(dev[tgt]) or dev[tgt] == 0.0:
        return out
    first = T - n_anom - 1
    last = max(first - anomaly_points, -1)
    for j in range(Vn.shape[0]):
        if j == tgt or not np.isfinite(dev[j]) or abs(dev[j]) <= anomaly_z * sc[j]:
            continue
        out[j] = _run_before(D, dev, sc, j, tgt, first, last, anomaly_z)
    return out


def _run_before(
    D: FloatArray,
    dev: FloatArray,
    sc: FloatArray,
    j: int,
    tgt: int,
    first: int,
    last: int,
    anomaly_z: float,
) -> int:
    """Bins ``first, first-1, ... > last`` in a row where node ``j`` was deviated as in the
    window while the target showed under a quarter of the implied effect."""
    run = 0
    for b in range(first, last, -1):
        d = D[j, b]
        if not np.isfinite(d) or d * dev[j] <= 0 or abs(d) <= anomaly_z * sc[j]:
            break
        if abs(d) < 0.5 * abs(dev[j]):
            break
        implied = dev[tgt] * d / dev[j]
        seen = D[tgt, b]
        if not np.isfinite(seen) or seen / implied >= 0.25:
            break  # the target responded (or is unobserved): not "effect absent"
        run += 1
    return run
