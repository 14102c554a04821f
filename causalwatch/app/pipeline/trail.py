"""The short history the incident page plots: what each series did against what the
detector expected.

Why a separate ring and not the explainer's history: the explainer keeps values only, and
the detector keeps only the *last* expected value and band per series (its state is a
model, not a record). The page needs, for the target and its top candidates, the samples
around the incident with the expected value and band the detector gave *at each sample*,
which exist only in the moment a batch is scored. So the explaining process keeps them in
a bounded struct-of-arrays ring, fed with each scored batch (``O(batch)``, vectorised), and
copies a few rows out when an explanation is written (:mod:`~causalwatch.app.pipeline.snapshot`).

Memory is fixed at ``rows · points · 28`` bytes (timestamps float64; value, expected,
lower, upper and score float32: plots need no more precision), growing only when the series
index grows. The default 150 points cover the explainer's reference and anomaly windows
(120 + 10 points) with a little margin; ``explainer.trail_points`` sets it, 0 turns it off.

Works poorly when: series are sampled much faster than the explainer's step (the ring then
spans less time than the reference window; the plot shows what it has). The ring is not
checkpointed: after a restart the first incidents' plots start at the restart.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from causalwatch.errors import StateError

__all__ = ["COLUMNS", "Trail"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: the float32 columns, in the order of :meth:`Trail.append`'s arguments after ``ts``
COLUMNS = ("value", "expected", "lower", "upper", "score")


class Trail:
    """Ring buffers of the last ``points`` scored samples of every row.

    >>> t = Trail(points=3)
    >>> r = np.array([0, 0, 1, 0, 0])
    >>> t.append(r, np.array([1.0, 2.0, 2.0, 3.0, 4.0]), *[np.arange(5.0)] * 5)
    >>> rows = t.read(0)
    >>> rows["ts"].tolist(), rows["expected"].tolist()
    ([2.0, 3.0, 4.0], [1.0, 3.0, 4.0])
    >>> t.read(1)["value"].tolist(), t.read(7)["ts"].tolist()
    ([2.0], [])
    """

    def __init__(self, points: int = 150, capacity: int = 0) -> None:
        if points < 2:
            raise StateError(f"explainer.trail_points must be >= 2 (got {points})")
        self.points = int(points)
        self.ts = np.full((capacity, self.points), np.nan)
        self.cols = {c: np.full((capacity, self.points), np.nan, np.float32) for c in COLUMNS}
        self.head = np.zeros(capacity, dtype=np.int64)
        self.count = np.zeros(capacity, dtype=np.int64)

    @property
    def capacity(self) -> int:
        return int(self.head.shape[0])

    @property
    def bytes_per_series(self) -> int:
        return self.points * (8 + 4 * len(COLUMNS)) + 16

    def _ensure(self, n_rows: int) -> None:
        cap = self.capacity
        if n_rows <= cap:
            return
        pad = max(n_rows, 2 * cap, 8) - cap
        self.ts = np.vstack([self.ts, np.full((pad, self.points), np.nan)])
        for c, arr in self.cols.items():
            self.cols[c] = np.vstack([arr, np.full((pad, self.points), np.nan, np.float32)])
        self.head = np.concatenate([self.head, np.zeros(pad, dtype=np.int64)])
        self.count = np.concatenate([self.count, np.zeros(pad, dtype=np.int64)])

    def append(
        self,
        rows: IntArray,
        ts: FloatArray,
        value: FloatArray,
        expected: FloatArray,
        lower: FloatArray,
        upper: FloatArray,
        score: FloatArray,
    ) -> None:
        """Append scored samples in arrival order (a row may repeat). ``O(batch)``."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return
        if rows.min() < 0:
            raise StateError(f"trail: negative row {int(rows.min())}")
        self._ensure(int(rows.max()) + 1)
        per_row = np.bincount(rows, minlength=self.capacity)
        if per_row.max() <= 1:  # the live case: each series once per batch, no sort needed
            r, o = rows, np.arange(rows.size)
            pos = self.head[r]
        else:
            order = np.argsort(rows, kind="stable")
            r = rows[order]
            n = r.size
            start = np.r_[True, r[1:] != r[:-1]]
            first = np.maximum.accumulate(np.where(start, np.arange(n), 0))
            k = np.arange(n) - first  # rank of the sample within its row
            keep = k >= per_row[r] - self.points  # only a row's last `points` samples matter
            r, k, o = r[keep], k[keep], order[keep]
            pos = (self.head[r] + k) % self.points
        self.ts[r, pos] = np.asarray(ts, dtype=np.float64)[o]
        for c, src in zip(COLUMNS, (value, expected, lower, upper, score), strict=True):
            self.cols[c][r, pos] = np.asarray(src, dtype=np.float64)[o]
        self.head = (self.head + per_row[: self.capacity]) % self.points
        self.count = np.minimum(self.count + per_row[: self.capacity], self.points)

    def clear(self, rows: IntArray | None = None) -> None:
        """Forget rows (evicted series), or every row (the index was replaced)."""
        sel: slice | IntArray = slice(None)
        if rows is not None:
            r = np.asarray(rows, dtype=np.int64)
            sel = r[r < self.capacity]
        self.ts[sel] = np.nan
        for arr in self.cols.values():
            arr[sel] = np.nan
        self.head[sel] = 0
        self.count[sel] = 0

    def read(self, row: int) -> dict[str, FloatArray]:
        """One row's samples, oldest first: ``ts`` and every column (empty when unknown)."""
        if not 0 <= row < self.capacity or self.count[row] == 0:
            empty = np.empty(0)
            return {"ts": empty, **{c: empty for c in COLUMNS}}
        n = int(self.count[row])
        idx = (int(self.head[row]) - n + np.arange(n)) % self.points
        out = {"ts": self.ts[row, idx].copy()}
        for c, arr in self.cols.items():
            out[c] = arr[row, idx].astype(np.float64)
        return out
