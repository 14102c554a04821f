"""Per-series ring buffers of recent ``(ts, value)`` samples, and time alignment.

Struct-of-arrays: two 2-D arrays ``[rows, history_points]`` (timestamps in unix seconds and
values) plus a write head and a fill count per row. Appending a batch is ``O(batch)``
and vectorised; memory is fixed at ``rows · history_points · 16`` bytes, growing only when
the series index grows (capacity doubles).

Why ring buffers and not a dense time grid: series arrive on their own clocks with gaps
(a 5-minute bucket with no traffic is simply absent), and an explanation needs the last
few hundred points of a handful of rows, aligned only then, on the union of their
timestamps binned to a common step (:meth:`History.aligned`). Long gaps between samples
(days) are skipped, not filled, so a reference window made of older data still works.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from causalwatch.errors import StateError

__all__ = ["History", "infer_step"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def infer_step(ts: FloatArray) -> float:
    """Median positive spacing of sorted unique timestamps; 0.0 when there are fewer than 2.

    >>> infer_step(np.array([0.0, 60.0, 120.0, 300.0, 360.0]))
    60.0
    """
    u = np.unique(np.asarray(ts, dtype=np.float64)[np.isfinite(ts)])
    if u.size < 2:
        return 0.0
    return float(np.median(np.diff(u)))


class History:
    """Ring buffers of the last ``points`` samples of every row.

    >>> h = History(points=4)
    >>> h.append(np.array([0, 1, 0]), np.array([10.0, 10.0, 20.0]), np.array([1.0, 5.0, 2.0]))
    >>> h.latest(np.array([0, 1]))[1].tolist()
    [2.0, 5.0]
    >>> ts, v = h.aligned(np.array([0, 1]), end_ts=20.0, step_s=10.0, n_points=3)
    >>> ts.tolist(), v.tolist()
    ([10.0, 20.0], [[1.0, 2.0], [5.0, nan]])
    """

    def __init__(self, points: int = 512, capacity: int = 0) -> None:
        if points < 2:
            raise StateError(f"explainer.history_points must be >= 2 (got {points})")
        self.points = int(points)
        self.ts = np.full((capacity, self.points), np.nan)
        self.value = np.full((capacity, self.points), np.nan)
        self.head = np.zeros(capacity, dtype=np.int64)
        self.count = np.zeros(capacity, dtype=np.int64)

    @property
    def capacity(self) -> int:
        return int(self.head.shape[0])

    def nbytes(self) -> int:
        return int(self.ts.nbytes + self.value.nbytes + self.head.nbytes + self.count.nbytes)

    def ensure(self, n_rows: int) -> None:
        """Grow to at least ``n_rows`` rows (doubling)."""
        cap = self.capacity
        if n_rows <= cap:
            return
        new = max(n_rows, 2 * cap, 8)
        pad = new - cap
        self.ts = np.vstack([self.ts, np.full((pad, self.points), np.nan)])
        self.value = np.vstack([self.value, np.full((pad, self.points), np.nan)])
        self.head = np.concatenate([self.head, np.zeros(pad, dtype=np.int64)])
        self.count = np.concatenate([self.count, np.zeros(pad, dtype=np.int64)])

    def append(self, rows: IntArray, ts: FloatArray, x: FloatArray) -> None:
        """Append samples in arrival order; a row may repeat within the batch. ``O(batch)``."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return
        if rows.min() < 0:
            raise StateError(f"history: negative row {int(rows.min())}")
        self.ensure(int(rows.max()) + 1)
        order = np.argsort(rows, kind="stable")
        r = rows[order]
        n = r.size
        start = np.r_[True, r[1:] != r[:-1]]
        first = np.maximum.accumulate(np.where(start, np.arange(n), 0))
        k = np.arange(n) - first  # rank of the sample within its row, in arrival order
        per_row = np.bincount(r, minlength=self.capacity)
        keep = k >= per_row[r] - self.points  # only the last `points` of a row matter
        r, k, o = r[keep], k[keep], order[keep]
        pos = (self.head[r] + k) % self.points
        self.ts[r, pos] = np.asarray(ts, dtype=np.float64)[o]
        self.value[r, pos] = np.asarray(x, dtype=np.float64)[o]
        self.head = (self.head + per_row[: self.capacity]) % self.points
        self.count = np.minimum(self.count + per_row[: self.capacity], self.points)

    def clear(self, rows: IntArray) -> None:
        """Forget rows (a series was evicted from the index)."""
        rows = np.asarray(rows, dtype=np.int64)
        rows = rows[rows < self.capacity]
        self.ts[rows] = np.nan
        self.value[rows] = np.nan
        self.head[rows] = 0
        self.count[rows] = 0

    def latest(self, rows: IntArray) -> tuple[FloatArray, FloatArray]:
        """Timestamp and value of the most recently appended sample of each row (NaN if none)."""
        rows = np.asarray(rows, dtype=np.int64)
        out_t = np.full(rows.size, np.nan)
        out_v = np.full(rows.size, np.nan)
        ok = rows < self.capacity
        pos = (self.head[rows[ok]] - 1) % self.points
        out_t[ok] = self.ts[rows[ok], pos]
        out_v[ok] = self.value[rows[ok], pos]
        return out_t, out_v

    def row_ts(self, row: int) -> FloatArray:
        if row >= self.capacity:
            return np.empty(0)
        t = self.ts[row]
        return np.sort(t[np.isfinite(t)])

    def aligned(
        self, rows: IntArray, end_ts: float, step_s: float, n_points: int
    ) -> tuple[FloatArray, FloatArray]:
        """Values of ``rows`` on the last ``n_points`` occupied time bins up to ``end_ts``.

        Bins are ``step_s`` wide and end at ``end_ts`` (bin ``j`` holds
        ``(end_ts - (j+1)·step_s, end_ts - j·step_s]``); only bins where at least one of the
        rows has a sample count, so gaps are skipped. A row's value in a bin is the mean of
        its samples there, NaN when it has none. Returns ``(bin_end_ts, values)`` with
        ``values`` of shape ``(len(rows), bins)``, oldest first. Cost ``O(rows · points)``.

        Why two paths: a ranking aligns every candidate row (all series, without a graph),
        and with the defaults only the newest ``n_points`` of the ``points`` held (130 of
        512) are used. When every one of the ``n_points`` nearest bins holds a sample of
        some row (the usual case: rows sampled at the step), or no sample lies beyond them
        (a young history), the bins kept are known from those samples alone and only they
        are binned (:meth:`_aligned_dense`); otherwise (a gap among the nearest bins and
        older data behind it) :meth:`_aligned_general` finds the occupied bins. Both give the
        same bins and the same values, bit for bit (the same samples summed in the same
        order).
        """
        if step_s <= 0:
            raise StateError(f"history: step_s must be > 0 (got {step_s})")
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return np.empty(0), np.empty((0, 0))
        got = self._aligned_dense(rows, end_ts, step_s, n_points)
        if got is not None:
            return got
        return self._aligned_general(rows, end_ts, step_s, n_points)

    def _rows_of(self, rows: IntArray, arr: FloatArray) -> FloatArray:
        """``arr[rows]``, NaN for rows beyond the capacity (not appended yet)."""
        if rows.size and int(rows.max()) < self.capacity:
            return arr[rows]
        out = np.full((rows.size, self.points), np.nan)
        live = rows < self.capacity
        out[live] = arr[rows[live]]
        return out

    def _aligned_dense(
        self, rows: IntArray, end_ts: float, step_s: float, n_points: int
    ) -> tuple[FloatArray, FloatArray] | None:
        """:meth:`aligned` when the bins kept are among the ``n_points`` nearest: all of
        those are occupied, or no sample lies farther (a young history); else None."""
        if n_points <= 0:
            return None
        m = rows.size
        T = self._rows_of(rows, self.ts)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(T)
            ok &= end_ts >= T
            # the same expression as the general path's, so j is the same per sample
            d = (end_ts - T) / step_s + 1e-9
            near_mask = d < n_points  # floor(d) < n_points
            use = ok & near_mask
        ri, pi = np.nonzero(use)
        j = np.floor(d[ri, pi]).astype(np.int64)
        occupied = np.zeros(n_points, dtype=bool)
        occupied[j] = True
        if not occupied.all():
            if (ok & ~near_mask).any():
                return None  # an occupied bin farther away may be among those kept
            if not occupied.any():
                return np.empty(0), np.empty((m, 0))
        near = np.flatnonzero(occupied)  # the kept bins, nearest first
        b = near.size
        col = np.full(n_points, -1, dtype=np.int64)
        col[near] = np.arange(b - 1, -1, -1, dtype=np.int64)  # oldest first
        flat = ri * b + col[j]
        V = self.value[rows[ri], pi] if ri.size else np.empty(0)
        sums = np.bincount(flat, weights=V, minlength=m * b)
        cnt = np.bincount(flat, minlength=m * b)
        with np.errstate(invalid="ignore", divide="ignore"):
            vals = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)
        bin_ts = np.asarray(end_ts - near[::-1] * step_s, dtype=np.float64)
        out: FloatArray = vals.reshape(m, b)
        return bin_ts, out

    def _aligned_general(
        self, rows: IntArray, end_ts: float, step_s: float, n_points: int
    ) -> tuple[FloatArray, FloatArray]:
        m = rows.size
        T = self._rows_of(rows, self.ts)
        V = self._rows_of(rows, self.value)
        ok = np.isfinite(T) & (end_ts >= T)
        j = np.floor((end_ts - np.where(ok, T, end_ts)) / step_s + 1e-9).astype(np.int64)
        if not ok.any():
            return np.empty(0), np.empty((m, 0))
        near = np.unique(j[ok])[:n_points]  # nearest bins first (ascending distance)
        bins = near[::-1]  # oldest first
        # Column of each sample by binary search among the kept bins: O(rows · points)
        # memory whatever the distance between end_ts and the data (a dense lookup table
        # indexed by distance allocated 1.3 GB for an end_ts 300 years away).
        jj = np.where(ok, j, -1)
        pos = np.searchsorted(near, jj)
        hit = ok & (pos < near.size) & (near[np.minimum(pos, near.size - 1)] == jj)
        c = np.where(hit, near.size - 1 - pos, -1)
        use = c >= 0
        flat = (np.arange(m)[:, None] * bins.size + c)[use]
        sums = np.bincount(flat, weights=V[use], minlength=m * bins.size)
        cnt = np.bincount(flat, minlength=m * bins.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            vals = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)
        bin_ts = np.asarray(end_ts - bins * step_s, dtype=np.float64)
        out: FloatArray = vals.reshape(m, bins.size)
        return bin_ts, out

    def to_arrays(self, prefix: str = "history.", *, copy: bool = True) -> dict[str, np.ndarray]:
        """The buffers as arrays: copies, or with ``copy=False`` read-only views of the live
        buffers (no copy of the ``rows · points · 16`` bytes), for a caller that is done with
        them before the next :meth:`append` or :meth:`clear`."""
        out: dict[str, np.ndarray] = {}
        for name in ("ts", "value", "head", "count"):
            arr: np.ndarray = getattr(self, name)
            view = arr.copy() if copy else arr.view()
            view.flags.writeable = False
            out[prefix + name] = view
        return out

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], prefix: str = "history.", *, adopt: bool = False
    ) -> History:
        """Rebuild from :meth:`to_arrays`. ``adopt=True`` takes over arrays that already
        have the right dtype and layout and are writable (what a checkpoint store just read
        back) instead of copying them; read-only ones (views of a live history) are copied."""

        def take(name: str, dtype: type) -> np.ndarray:
            src = arrays[prefix + name]
            ok = (
                adopt
                and isinstance(src, np.ndarray)
                and src.dtype == dtype
                and src.flags.writeable
                and src.flags.c_contiguous
            )
            return src if ok else np.array(src, dtype=dtype)

        try:
            ts = take("ts", np.float64)
            h = cls(points=int(ts.shape[1]) if ts.ndim == 2 else 2)
            h.ts = ts.reshape(-1, h.points)
            h.value = take("value", np.float64).reshape(-1, h.points)
            h.head = take("head", np.int64)
            h.count = take("count", np.int64)
        except KeyError as exc:
            raise StateError(f"history snapshot lacks array {exc}") from exc
        return h
