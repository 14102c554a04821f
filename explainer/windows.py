"""The anomaly window and robust z-scores over aligned bins.

Every series in an explanation is read on the same aligned bins (see
:meth:`explainer.history.History.aligned`): the *anomaly window* is the last ``n_anom``
bins, the *reference window* the bins before it. Deviations are measured in robust units
(median and scaled MAD of the reference, with a floor of 1e-3 of the level so a flat
series does not give an infinite z).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from causalwatch.errors import StateError
from explainer.attribution import _nanmedian, robust_scale
from explainer.history import History

__all__ = ["AlignedWindow", "aligned_window", "anomaly_bins", "zscores"]

FloatArray = npt.NDArray[np.float64]


def zscores(V: FloatArray, n_anom: int) -> FloatArray:
    """Robust z of the last ``n_anom`` bins' median against the bins before them, per row
    (0 where undefined).

    >>> V = np.array([[1.0, 2.0, 1.0, 2.0, 9.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    >>> zscores(V, 1).round(2).tolist()
    [10.12, 0.0]
    """
    if V.shape[1] <= n_anom:
        return np.zeros(V.shape[0])
    ref, an = V[:, :-n_anom], V[:, -n_anom:]
    med = _nanmedian(ref, axis=1)
    am = _nanmedian(an, axis=1)
    with np.errstate(all="ignore"):
        sc = robust_scale(ref, axis=1) if ref.size else np.full(V.shape[0], np.nan)
        floor = np.maximum(1e-3 * np.abs(np.nan_to_num(med)), 1e-9)
        sc = np.where(np.isfinite(sc) & (sc > floor), sc, floor)
        z = (am - med) / sc
    return np.where(np.isfinite(z), z, 0.0)


def anomaly_bins(v: FloatArray, max_bins: int, anomaly_z: float) -> int:
    """Length of the run of bins ending at the last bin that are anomalous (robust z beyond
    ``anomaly_z``) in the same direction as the last bin (at least 1, at most ``max_bins``).

    >>> anomaly_bins(np.array([1.0, 2.0, 1.0, 2.0, 1.0, 9.0, 9.0]), 5, 3.0)
    2
    """
    T = v.size
    ref = v[: max(T - max_bins, 3)]
    ok = ref[np.isfinite(ref)]
    if ok.size < 3:
        return 1
    med = float(np.median(ok))
    sc = float(robust_scale(ok))
    floor = max(1e-3 * abs(med), 1e-9)
    sc = sc if np.isfinite(sc) and sc > floor else floor
    last = v[T - 1]
    sign = np.sign(last - med) if np.isfinite(last) else 0.0
    n = 1
    for k in range(2, min(max_bins, T - 3) + 1):
        val = v[T - k]
        if not np.isfinite(val) or sign * (val - med) / sc <= anomaly_z:
            break
        n = k
    return n


@dataclass(frozen=True)
class AlignedWindow:
    """Rows aligned on common bins (``values[0]`` is the target), the bins' end times and
    the anomaly window's length in bins (the last ``n_anom`` columns)."""

    bin_ts: FloatArray
    values: FloatArray
    n_anom: int


def aligned_window(
    history: History,
    rows: list[int],
    at_ts: float,
    step_s: float,
    *,
    reference_points: int,
    anomaly_points: int,
    anomaly_z: float,
    window_start: float | None,
    what: str,
) -> AlignedWindow:
    """Align ``rows`` up to ``at_ts`` and find the anomaly window of ``rows[0]``.

    By default the window is the run of anomalous target bins ending at ``at_ts`` (at most
    ``anomaly_points``); with ``window_start`` it is the bins after ``window_start`` (the
    history must hold them plus ``reference_points``). Raises :class:`StateError` naming
    ``what`` when fewer than 4 bins are aligned.
    """
    n_win = anomaly_points
    if window_start is not None:
        n_win = max(math.floor((at_ts - window_start) / step_s + 1e-9) + 1, 1)
    t_bins, V = history.aligned(np.array(rows), at_ts, step_s, reference_points + n_win)
    if V.shape[1] < 4:
        raise StateError(f"explain: only {V.shape[1]} time bins of history for {what!r}")
    if window_start is None:
        n_anom = anomaly_bins(V[0], anomaly_points, anomaly_z)
    else:
        n_anom = int(min(max((t_bins > window_start - 1e-9).sum(), 1), V.shape[1] - 3))
    return AlignedWindow(t_bins, V, n_anom)
