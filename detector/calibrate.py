"""Empirical tail calibration: turn a per-series statistic into a tail probability.

Why: a z-score means different things on different series. A quantised or heavy-tailed
series sees ``|z| > 4`` every day; a smooth one never does. Counting, per series, how often
the statistic exceeded a few fixed levels (exponentially weighted, so old history fades)
turns ``|z|`` into ``P(|Z| >= |z|)`` estimated on that series' own past. A score of 0.999
then means "rarer than one point in a thousand *for this series*", the same meaning on
every series, which is what makes one alert threshold work everywhere.

State is ``len(LEVELS)`` floats per statistic and series. Cost is ``O(rows * levels)``.

Works poorly when a series has fewer points than about ``1 / rate``: the table then still
leans on its Gaussian prior.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["LEVELS", "prior_table", "tail_probability", "update_table"]

FloatArray = npt.NDArray[np.float64]

#: |z| levels at which exceedance frequencies are tracked.
LEVELS: FloatArray = np.array([1.0, 2.0, 3.0, 4.0, 5.5, 7.5], dtype=np.float64)
#: how the trust floor thins out with the level (Laplace-like): a level never yet exceeded
#: is still rarer than a lower one that was never exceeded either
_FLOOR_SHAPE = np.exp(-1.5 * (LEVELS - LEVELS[0]))
_LOG_LAST_GAP = float(np.log(LEVELS[-1] / LEVELS[-2]))


def _gauss_two_sided(z: float) -> float:
    return math.erfc(z / math.sqrt(2.0))


def prior_table(kind: str = "laplace") -> FloatArray:
    """Exceedance probabilities at :data:`LEVELS` a fresh series starts from.

    ``"laplace"`` (the default): the two-sided tail of a Laplace variable whose z is scaled
    as the detector scales it (``sigma = sqrt(pi / 2) * mean absolute error``), i.e.
    ``P(|Z| >= z) = exp(-z * sqrt(pi / 2))``. Ops metrics are heavier-tailed than Gaussian
    (latency percentiles, request bursts), so a young series starts out cautious and earns
    sensitivity as its own history shows light tails; ``"gauss"``: the Gaussian tail (a
    young series starts out eager and learns caution from its false alarms).

    >>> t = prior_table("gauss")
    >>> bool(t[0] > t[-1]), round(float(t[1]), 4)
    (True, 0.0455)
    >>> round(float(prior_table()[3]), 4)
    0.0066
    """
    if kind == "gauss":
        return np.array([_gauss_two_sided(float(z)) for z in LEVELS], dtype=np.float64)
    out: FloatArray = np.exp(-LEVELS * math.sqrt(math.pi / 2.0))
    return out


def tail_probability(a: FloatArray, table: FloatArray, floor: float | FloatArray) -> FloatArray:
    """``P(|Z| >= a)`` from each row's exceedance table, log-linear between levels.

    Parameters
    ----------
    a
        Absolute statistic, shape ``(n,)``.
    table
        Exceedance frequencies, shape ``(n, len(LEVELS))``, non-increasing along axis 1.
    floor
        Frequency a never-exceeded first level is trusted to (about the update rate), one
        value or one per row; higher levels get a floor that thins out exponentially.

    Beyond the last level the tail is extrapolated as a power law in ``a`` (the steeper of
    the last segment's slope and ``a**-3``), so larger deviations always rank higher but
    probabilities stay within what a float score ``1 - p`` can resolve.

    >>> t = np.tile(prior_table("gauss"), (3, 1))
    >>> p = tail_probability(np.array([0.0, 2.0, 20.0]), t, 1e-4)
    >>> [round(float(v), 4) for v in p[:2]], bool(p[2] < 1e-4)
    ([1.0, 0.0455], True)
    """
    fl = np.asarray(floor, dtype=np.float64)
    logt = np.log(table + (fl[:, None] if fl.ndim else fl) * _FLOOR_SHAPE)
    # log P at 0 is 0 (probability 1); segments between consecutive levels.
    zs = np.concatenate(([0.0], LEVELS))
    n_lv = len(LEVELS)
    logp_knots = np.concatenate((np.zeros((len(a), 1)), logt), axis=1)
    # index of the segment each a falls in
    seg = np.searchsorted(zs, a, side="right") - 1
    seg = np.clip(seg, 0, n_lv)
    inside = seg < n_lv
    seg_in = np.minimum(seg, n_lv - 1)
    rows = np.arange(len(a))
    z0 = zs[seg_in]
    z1 = zs[seg_in + 1]
    l0 = logp_knots[rows, seg_in]
    l1 = logp_knots[rows, seg_in + 1]
    frac = (a - z0) / (z1 - z0)
    logp_in = l0 + frac * (l1 - l0)
    # extrapolate past the last level with a power-law (Pareto) tail: heavy enough that one
    # wild point does not reach absurd probabilities, and still strictly decreasing
    last_slope = (logt[:, -1] - logt[:, -2]) / _LOG_LAST_GAP
    slope = np.minimum(last_slope, -3.0)
    logp_out = logt[:, -1] + slope * np.log(np.maximum(a, LEVELS[-1]) / LEVELS[-1])
    logp = np.where(inside, logp_in, logp_out)
    out: FloatArray = np.exp(np.minimum(logp, 0.0))
    return out


def update_table(table: FloatArray, a: FloatArray, rate: float | FloatArray) -> FloatArray:
    """Exponentially weighted exceedance frequencies after seeing ``a`` (returns a new array).
    ``rate`` is one value or one per row.

    >>> t = update_table(np.tile(prior_table(), (1, 1)), np.array([10.0]), 0.5)
    >>> bool(t[0, -1] > 0.4)
    True
    """
    hit = (a[:, None] > LEVELS[None, :]).astype(np.float64)
    r = np.asarray(rate, dtype=np.float64)
    r = r[:, None] if r.ndim else r
    out: FloatArray = (1.0 - r) * table + r * hit
    return out
