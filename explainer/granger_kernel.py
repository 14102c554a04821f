"""The Granger state's update, compiled with numba: one pair at a time, its steps in order.

Why: :meth:`explainer.granger.GrangerState.update_many` builds, per batch of closed bins,
the regressors of every candidate pair (``(T, pairs, k)``), masks them and sums their outer
products with ``einsum``: about 20 numpy passes over ``pairs · k²`` numbers. At 1,000 series
(about 4,900 pairs) that was 1.4 ms a bin, the larger part of the learner's cost in a
backlog (BENCHMARKS.md, throughput). Here each pair's ``k x k`` sums stay in registers over
its ``T`` steps: ``pairs · T · k²`` multiply-adds and no temporaries.

Same arithmetic as the numpy path, step by step: ``A ← λA + v·φφᵀ`` (``v`` = the step is
finite for this pair), so the sums equal ``T`` single-step updates and agree with the
numpy path's batched form to rounding (``tests/unit/explainer/test_granger_kernel.py``).
The numpy path stays the reference and the fallback when numba is not importable. The first
update of a process compiles the loop: 0.9 s, or 0.4 s from numba's on-disk cache (measured
here, 2026-12-04), once.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["update"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


# not nogil: a snapshot on another thread never sees half an update
@numba.njit(cache=True)
def update(
    A: FloatArray,
    b: FloatArray,
    c: FloatArray,
    n: FloatArray,
    hist: FloatArray,
    pairs: IntArray,
    p: int,
    lam: float,
) -> None:
    """Fold the steps ``hist[p:]`` into every pair's sums, in place.

    ``hist`` is ``(p + T, n_series)`` in time order: the ``p`` steps before the batch, then
    its ``T`` steps. ``pairs[m] = (cause, effect)``. ``phi = [1, y_{t-1..t-p},
    x_{t-1..t-p}]``.
    """
    m = pairs.shape[0]
    k = 2 * p + 1
    T = hist.shape[0] - p
    phi = np.empty(k)
    Am = np.empty((k, k))
    bm = np.empty(k)
    for i in range(m):
        cause = pairs[i, 0]
        effect = pairs[i, 1]
        for r in range(k):
            bm[r] = b[i, r]
            for s in range(r, k):
                Am[r, s] = A[i, r, s]
        cm = c[i]
        nm = n[i]
        for t in range(T):
            row = p + t
            y = hist[row, effect]
            ok = math.isfinite(y)
            phi[0] = 1.0
            for j in range(1, p + 1):
                yl = hist[row - j, effect]
                xl = hist[row - j, cause]
                phi[j] = yl
                phi[p + j] = xl
                ok = ok and math.isfinite(yl) and math.isfinite(xl)
            # the forgetting is per step of time, whether or not the step is usable
            for r in range(k):
                bm[r] *= lam
                for s in range(r, k):
                    Am[r, s] *= lam
            cm *= lam
            nm *= lam
            if ok:
                for r in range(k):
                    bm[r] += phi[r] * y
                    for s in range(r, k):
                        Am[r, s] += phi[r] * phi[s]
                cm += y * y
                nm += 1.0
        for r in range(k):
            b[i, r] = bm[r]
            for s in range(r, k):
                A[i, r, s] = Am[r, s]
                A[i, s, r] = Am[r, s]
        c[i] = cm
        n[i] = nm
