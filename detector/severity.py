"""Severity: the detector's 0-100 scale of how surprising a point is.

Why a log scale of the tail probability: alert thresholds live near p = 1e-2 .. 1e-8, and
operators compare incidents across series of any unit, so the scale must depend on nothing
but the calibrated probability. 100 is a tail probability of 1e-8 (or smaller), 50 of 1e-4,
0 of 1. ``score = 1 - p`` is the detector's calibrated score, so the severity of the last
score of each row (what the metrics endpoint shows) is computed from the state arrays alone.

>>> severity_from_p(np.array([1e-2, 1e-4, 1e-8, 1e-12])).tolist()
[25.0, 50.0, 100.0, 100.0]
>>> severity_from_score(np.array([0.99, 0.9999])).round(6).tolist()
[25.0, 50.0]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["FULL_SCALE_DECADES", "severity_from_p", "severity_from_score"]

FloatArray = npt.NDArray[np.float64]

#: decades of tail probability from severity 0 to 100
FULL_SCALE_DECADES = 8.0


def severity_from_p(p: FloatArray) -> FloatArray:
    """Severity of tail probabilities ``p`` (in [0, 1]); ``O(n)``, no state."""
    tail = np.maximum(np.asarray(p, dtype=np.float64), 1e-300)
    out: FloatArray = np.clip(100.0 * -np.log10(tail) / FULL_SCALE_DECADES, 0.0, 100.0)
    return out


def severity_from_score(score: FloatArray) -> FloatArray:
    """Severity of calibrated scores (``1 - p``); a NaN score (never scored) is 0."""
    return severity_from_p(1.0 - np.nan_to_num(np.asarray(score, dtype=np.float64), nan=0.0))
