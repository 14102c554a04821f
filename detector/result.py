"""What the detector's modules hand each other: the array aliases, the state and a step's result.

The state is one dict of parallel arrays, one row per series (struct-of-arrays; the names,
dtypes and shapes are laid out in :mod:`detector.state`). :class:`DetectorResult` is what
``step`` and ``score_many`` return, aligned with the input arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["BoolArray", "DetectorResult", "FloatArray", "IntArray", "StateArrays"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
#: the detector's state: array name -> one row per series (see :mod:`detector.state`)
StateArrays = dict[str, np.ndarray[Any, Any]]


@dataclass
class DetectorResult:
    """Per-sample outputs, aligned with the input arrays.

    ``score`` is ``1 - p`` with ``p`` the calibrated tail probability (higher is more
    anomalous), ``severity`` 0..100, ``expected``/``lower``/``upper`` in the units of the
    input, ``alert`` the alert state after the sample, ``fired`` True where a new alert
    starts (one incident pages once).
    """

    score: FloatArray
    severity: FloatArray
    expected: FloatArray
    lower: FloatArray
    upper: FloatArray
    alert: BoolArray
    fired: BoolArray

    @classmethod
    def empty(cls, n: int) -> DetectorResult:
        z = np.zeros(n, dtype=np.float64)
        b = np.zeros(n, dtype=np.bool_)
        return cls(z.copy(), z.copy(), z.copy(), z.copy(), z.copy(), b.copy(), b.copy())
