"""The ranking's score terms beyond the attribution: coverage, onset, Granger.

The final score of a candidate (see :func:`explainer.ranking.rank`) is

``clip(0.9 x attribution score + 0.1 x (1 - Granger q) [if the attribution score > 0])``.

The attribution score (:func:`explainer.attribution.attribute`) weighs the identified own
share, the confidence of an own mechanism change and a third ``support`` term with
:data:`GRAPH_WEIGHTS` (support = :func:`coverage`) or, with no graph, :data:`STAR_WEIGHTS`
(support = :func:`onset`). Each rule is a function of arrays here, to be changed and
tested on its own.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from explainer.candidates import SeriesChoice
from explainer.windows import anomaly_bins

__all__ = [
    "GRAPH_WEIGHTS",
    "STAR_WEIGHTS",
    "combine",
    "coverage",
    "graph_weights",
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
