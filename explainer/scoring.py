"""The ranking's score terms beyond the attribution: onset (no graph) and Granger.

The final score of a candidate (see :func:`explainer.ranking.rank`) is

``clip(0.9 x attribution score + 0.1 x (1 - Granger q) [if the attribution score > 0])``.

The attribution score (:func:`explainer.attribution.attribute`) weighs the identified own
share and the confidence of an own mechanism change evenly with a given graph; with no
graph (the star) it adds a ``support`` term, :func:`onset`, with :data:`STAR_WEIGHTS`.
Each rule is a function of arrays here, to be changed and tested on its own.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from explainer.candidates import SeriesChoice
from explainer.windows import anomaly_bins

__all__ = [
    "STAR_WEIGHTS",
    "combine",
    "onset",
]

FloatArray = npt.NDArray[np.float64]

#: with no graph the star regression's shares say which node *predicts* the target, not
#: which caused it: rank by own change and onset instead
STAR_WEIGHTS = (0.1, 0.5, 0.4)


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
