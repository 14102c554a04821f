"""Operator feedback as detector sensitivity: how a false-positive mark quiets a series.

Why halving: a mark says "this alert was noise", not how much noise; each mark divides the
series' alerting tail probability by two more (``sensitivity = configured * 0.5**marks``), so
one mistaken mark costs little and a series marked again and again goes quiet geometrically,
without ever being switched off. The configured factor (``detector.sensitivity`` rules) is
the base. Works poorly when one incident's alert was noise on one series and real on
another: the mark applies to all of the incident's target series.

>>> sensitivity_after_marks(np.array([1.0, 2.0, 1.0]), np.array([0, 1, 3])).tolist()
[1.0, 1.0, 0.125]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["FALSE_POSITIVE_FACTOR", "sensitivity_after_marks"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: each false-positive mark multiplies a series' sensitivity by this
FALSE_POSITIVE_FACTOR = 0.5


def sensitivity_after_marks(
    configured: FloatArray, marks: IntArray, factor: float = FALSE_POSITIVE_FACTOR
) -> FloatArray:
    """Per-row sensitivity after ``marks`` false-positive marks on top of ``configured``."""
    base = np.asarray(configured, dtype=np.float64)
    out: FloatArray = base * factor ** np.asarray(marks, dtype=np.float64)
    return out
