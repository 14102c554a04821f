"""The streaming detector: per-series state in parallel arrays, scored and learned in batches.

Why this design
---------------
Ops metrics come in many shapes (seasonal, trending, random-walk, quantised, flat, counters)
and one model never fits all of them. Each series therefore runs a small *ensemble of cheap
views*, all updated in O(1) per point and vectorised across series:

* **forecast residual**: four forecasters run side by side: a slow level, a fast level that
  follows random-walk-like series, a baseline plus a time-of-season profile (``season_bins``
  bins over ``season_s``; the baseline forgets over about one season so the profile carries
  the daily swing), and a fast deseasonalised level plus the same profile (a daily jump is
  then foreseen). The seasonal pair is trusted once a full season has been seen and while
  its recent absolute error beats the plain pair's. The trusted view's residual over a
  robust scale (exponentially weighted mean absolute error, with a floor from the typical
  step so flat and quantised series stay sane) is the *point surprise* ``z1``.
* **distribution shift**: a fast exponentially weighted mean of residuals against its null
  spread (``z2``: level shifts and drifts) and the fast mean square of residuals against
  the slow one (``z3``: by default only a noisy series *going quiet*, e.g. a stuck sensor;
  variance increases already show in ``z1``).
* **calibration**: each statistic becomes a tail probability from that series' own history
  of exceedances (see :mod:`detector.calibrate`; the point surprise keeps one history for
  upward and one for downward deviations, so a series that surges often can still be
  surprised by a drop); the views are combined by the minimum p-value with a weighted
  Bonferroni factor (``view_weights``: the point view gets the largest share of the
  false-alarm budget), so the ensemble misses only when all views miss.
* **extreme value**: a fading record of each series' largest point surprises per
  direction (it shrinks by a factor e over ``record_s``, three days). A surprise within
  ``record_margin`` times the record is something this series did recently, so its tail
  probability is at least ``typical interval / record_s`` (about once per three days),
  whatever the calibration table says. Real ops series (latency percentiles of a few
  requests, availability of a quiet Lambda) throw outliers far beyond any Gaussian tail a
  few times a day; they now page for the first such outlier, not for every one. On NAB dev
  this costs 0.3 points of the cross-validated score (58.16 -> 57.87) and removes about a
  third of the alerts on the noisiest normal day (Nezha Train Ticket).
* **novelty**: surprise already explained by a recent, larger surprise is not news: the
  reported ``-log p`` is reduced by a memory of recent surprise that fades by
  ``novelty_decay`` nats per point. The memory is kept per direction (a drop right after a
  spike is still news; the other direction's memory counts at ``novelty_cross``). It takes
  in at most ``novelty_cap`` nats (50), so no single surprise mutes a series for more than
  500 points. A long incident therefore scores high at its onset and when it escalates,
  not on every point (one incident, one alert).
* **agreement** (``agree_factor``, off by default) and **persistence**
  (``confirm_points`` / ``overwhelm_factor``, off): an alert could require a second view or
  a second surprising point unless the evidence is overwhelming. Both were measured and left
  off: agreement x10 costs 6 points of NAB (in-sample 60.2 -> 55.7) for 10-50 % fewer
  alerts on normal days; persistence pages *more* on real normal days (sustained normal
  level changes keep the raw surprise up).

Counters (monotonic, mostly increasing, with rare drops) are detected after
``warmup_points`` and modelled as rates; a drop is a reset and is neither scored nor learned.
Gaps in sampling widen the scale (by ``1 + log(gap / typical interval) / 2``) instead of paging.

Warm-up: nothing is scored (score 0, no alert) before a series has ``warmup_points``
points *and* ``warmup_s`` seconds of history, however it starts (a 1 s series is not
calibrated after 30 s, a 5 min series not after two hours).

Alerting is part of the detector: an alert fires when the (sensitivity-adjusted) tail
probability falls to the alert level, stays open until the score has been below
``clear_threshold`` for ``clear_points`` points, and never fires twice within the
de-duplication gap (``max(min_alert_gap_s, min_alert_gap_points * typical interval)``).
After a sustained level shift the baselines re-anchor, so a shift pages once and is then
adapted to.

The alert level is ``1 - alert_threshold`` at ``ref_interval_s`` (60 s) and scales with the
series' typical sampling interval (``(1 - alert_threshold) * interval / 60 s``, clipped to
[1e-3, 10] times), so one threshold means the same false-alarm rate *per day* at any
interval from 1 s to 5 min, with no configuration. The default 0.9999 (tail probability
1e-4 per minute of data) was chosen from ``bench/quiet.py`` and the cross-validated NAB
figure together: the NAB-optimal level (about 0.993 on 5-minute data) pages 14-146 times
per 100 series per day on the normal datasets; 0.9999 pages several times less, and the
NAB figure, which sweeps its own threshold, does not depend on it (the product's own
alerts on NAB do: see BENCHMARKS.md). Raise it (0.99999) or lower a series' sensitivity
(:meth:`Detector.set_sensitivity`) where pages must be rarer still; lower it (0.999) to
catch more faults at the price of more pages.

State is a fixed number of bytes per series (:attr:`Detector.bytes_per_series`); the
caller evicts idle series with :meth:`Detector.stale_rows` + :meth:`Detector.reset_rows`.

Two implementations of ``step``/``learn_many`` run on that state: the vectorised numpy
code (:mod:`detector.numpy_step`, the reference) and a compiled per-point loop
(:mod:`detector.kernel`, numba) that does the same per sample and is used when numba is
importable (``DetectorConfig.backend``; :attr:`Detector.backend` says which runs).

Where each part lives
---------------------
This module holds :class:`Detector`, which checks its inputs and wires the parts:

* :mod:`detector.config`: :class:`DetectorConfig` (the hyper-parameters) and its checks;
* :mod:`detector.state`: the state arrays (layout, growth, reset, snapshot, restore,
  ``SCHEMA_VERSION``);
* :mod:`detector.scoring`: the views above, from the state before a sample (read-only);
* :mod:`detector.alerting`: the alert level and the hysteresis state machine;
* :mod:`detector.learning`: the state update (forecasters, profiles, tails, memory,
  level shifts, counters);
* :mod:`detector.numpy_step`: a batch as rounds of unique rows through the three above;
* :mod:`detector.kernel`: the same per sample, compiled;
* :mod:`detector.calibrate`: the tail tables; :mod:`detector.result`: the shared types.

Works poorly when
-----------------
* anomalies are slow drifts over many seasons (the baselines follow them);
* a series has fewer than ``warmup_points`` points (nothing is scored) or less than one
  season of history (no seasonal view yet);
* seasonality is not a whole fraction of ``season_s`` (only one period is modelled). A
  weekly pattern on top of the daily one (weekday / weekend levels) is adapted to rather
  than modelled: after the first weekend it no longer reaches a paging threshold (0.9999),
  but at the NAB-tuned default each switch can still page (about once per switch for a
  40 % weekend drop); ``season_s=604800`` (a weekly profile in 70-minute bins) halves that.
"""

from __future__ import annotations

import importlib
import time
from types import ModuleType
from typing import Any

import numpy as np

from causalwatch.errors import StateError
from detector import state
from detector.alerting import p_alert
from detector.calibrate import prior_table
from detector.config import DetectorConfig, check_config
from detector.numpy_step import run as run_numpy
from detector.numpy_step import score as score_numpy
from detector.result import BoolArray, DetectorResult, FloatArray, IntArray, StateArrays
from detector.state import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "Detector", "DetectorConfig", "DetectorResult"]

_SCALAR_FIELDS = state.SCALAR_FIELDS  # the per-row layout, under its name from before the split

_KERNEL: ModuleType | None = None
_KERNEL_TRIED = False


def _kernel() -> ModuleType | None:
    """:mod:`detector.kernel`, imported at first use (numba's import costs ~0.3 s); None
    when numba is not importable."""
    global _KERNEL, _KERNEL_TRIED
    if not _KERNEL_TRIED:
        _KERNEL_TRIED = True
        try:
            _KERNEL = importlib.import_module("detector.kernel")
        except (ImportError, OSError):  # no numba, one built for another numpy, no llvmlite
            _KERNEL = None
    return _KERNEL


def _as_rows(rows: Any) -> IntArray:
    r = np.asarray(rows, dtype=np.int64).reshape(-1)
    if r.size and int(r.min()) < 0:
        raise StateError(f"row {int(r.min())} is negative; rows come from SeriesIndex")
    return r


def _as_float(name: str, v: Any, n: int) -> FloatArray:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if a.size == 1 and n != 1:
        a = np.full(n, float(a[0]))
    if a.size != n:
        raise StateError(f"field {name!r} has {a.size} entries, expected {n} (one per row)")
    return a


def _as_batch(rows: Any, ts: Any, x: Any) -> tuple[IntArray, FloatArray, FloatArray]:
    r = _as_rows(rows)
    return r, _as_float("ts", ts, len(r)), _as_float("x", x, len(r))


class Detector:
    """Anomaly detector for many series at once. See the module docstring for the method.

    Parameters
    ----------
    config
        Hyper-parameters; defaults suit minute-scale ops metrics.
    capacity
        Initial number of row slots; grows (doubling) when a larger row appears.

    Cost: on the numba path (:attr:`backend`, see :mod:`detector.kernel`) about a
    microsecond per sample however the batch is laid out; on the numpy path
    ``O(len(rows))`` vectorised work per call plus one pass per repeat of a row in the same
    batch. Memory: :attr:`bytes_per_series` per row slot.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> det = Detector(DetectorConfig(warmup_points=20, alert_threshold=0.999))
    >>> x = rng.normal(10.0, 1.0, 300)
    >>> x[250] = 25.0
    >>> res = det.step(np.zeros(300, dtype=np.int64), np.arange(300) * 60.0, x)
    >>> int(np.argmax(res.score)), bool(res.fired[250]), int(res.fired.sum())
    (250, True, 1)
    >>> det.bytes_per_series < 1024
    True
    """

    def __init__(self, config: DetectorConfig | None = None, capacity: int = 1024) -> None:
        self.config = config if config is not None else DetectorConfig()
        check_config(self.config)
        self._capacity = 0
        self._s: StateArrays = {}
        self._alloc(max(1, int(capacity)))
        kernel = _kernel() if self.config.backend == "auto" else None
        # a flag, not the module: a Detector stays picklable and deep-copyable
        self._compiled = kernel is not None
        if kernel is not None:
            self._kernel_cfg = kernel.config_vector(self.config)
            self._kernel_prior = prior_table(self.config.tail_prior).astype(np.float32)

    def prepare(self) -> float:
        """Compile the numba loop now (or load it from numba's on-disk cache) rather than
        at the first ``step``; the seconds it took (0 on the numpy path). A first compile
        on a machine takes seconds of CPU; later processes load the cache in well under
        one."""
        if not self._compiled:
            return 0.0
        t0 = time.perf_counter()
        one = Detector(self.config, capacity=1)
        one.step(np.zeros(1, dtype=np.int64), np.zeros(1), np.zeros(1))
        return time.perf_counter() - t0

    @property
    def backend(self) -> str:
        """Which implementation runs ``step``/``learn_many``: "numba" (the compiled loop of
        :mod:`detector.kernel`) or "numpy" (the vectorised reference)."""
        return "numba" if self._compiled else "numpy"

    # ------------------------------------------------------------------ state
    def _alloc(self, n: int) -> None:
        """Grow to ``n`` rows (see :func:`detector.state.grow`: one old array at a time)."""
        self._s = state.grow(self.config, self._s, self._capacity, n)
        self._capacity = n

    def _ensure(self, rows: IntArray) -> None:
        if rows.size == 0:
            return
        need = int(rows.max()) + 1
        if need > self._capacity:
            cap = self._capacity
            while cap < need:
                cap *= 2
            self._alloc(cap)

    @property
    def capacity(self) -> int:
        """Number of row slots allocated."""
        return self._capacity

    @property
    def bytes_per_series(self) -> int:
        """Bytes of state per row slot (all arrays, itemsize times trailing shape)."""
        return int(sum(a.nbytes for a in self._s.values()) // self._capacity)

    # read-only views for metrics and dead-lettering
    def _view(self, name: str) -> np.ndarray[Any, Any]:
        v = self._s[name].view()
        v.flags.writeable = False
        return v

    @property
    def last_ts(self) -> FloatArray:
        """Timestamp of the last learned sample per row (NaN if none)."""
        return self._view("last_ts")

    @property
    def last_value(self) -> FloatArray:
        return self._view("last_value")

    @property
    def last_score(self) -> FloatArray:
        return self._view("last_score")

    @property
    def last_expected(self) -> FloatArray:
        return self._view("last_expected")

    @property
    def last_lower(self) -> FloatArray:
        return self._view("last_lower")

    @property
    def last_upper(self) -> FloatArray:
        return self._view("last_upper")

    @property
    def in_alert(self) -> BoolArray:
        return self._view("in_alert")

    @property
    def is_counter(self) -> BoolArray:
        """Rows detected as monotonic counters (modelled as rates)."""
        return self._view("is_counter")

    # ------------------------------------------------------------------ scoring and learning
    def score_many(self, rows: Any, ts: Any, x: Any) -> DetectorResult:
        """Score samples against the current state without changing it (read-only).

        A row that appears several times is scored each time against the same state.
        ``alert`` reports whether the sample would be hot; ``fired`` is always False
        (firing needs the alert state machine of :meth:`step`).
        """
        r, t, v = _as_batch(rows, ts, x)
        return score_numpy(self.config, self._s, r, t, v)

    def _run(self, r: IntArray, t: FloatArray, v: FloatArray, out: DetectorResult | None) -> None:
        if self._compiled:
            kernel = _kernel()
            assert kernel is not None  # _compiled is only set when it imported
            kernel.run(self._s, self._kernel_prior, self._kernel_cfg, r, t, v, out)
        else:
            run_numpy(self.config, self._s, r, t, v, out)

    def learn_many(self, rows: Any, ts: Any, x: Any) -> None:
        """Fold samples into the state (in order; a repeated row is learned in sequence)."""
        r, t, v = _as_batch(rows, ts, x)
        self._ensure(r)
        self._run(r, t, v, None)

    def step(self, rows: Any, ts: Any, x: Any) -> DetectorResult:
        """Score each sample, run the alert state machine, then learn it.

        Equivalent to feeding the samples one at a time in order, also when a row appears
        several times in the batch. Samples of one row must be in time order.
        """
        r, t, v = _as_batch(rows, ts, x)
        self._ensure(r)
        out = DetectorResult.empty(len(r))
        self._run(r, t, v, out)
        return out

    def _p_alert(self, dt_typ: FloatArray) -> FloatArray:
        """The per-point tail probability an alert needs (:func:`detector.alerting.p_alert`)."""
        return p_alert(self.config, dt_typ)

    # ------------------------------------------------------------------ feedback and eviction
    def reset_rows(self, rows: Any) -> None:
        """Forget everything about these rows (a series was evicted and its row reused)."""
        r = _as_rows(rows)
        r = r[r < self._capacity]
        if r.size == 0:
            return
        state.reset(self.config, self._s, r)

    def stale_rows(self, now_ts: float, ttl_s: float) -> IntArray:
        """Rows with state whose last sample is older than ``now_ts - ttl_s``."""
        lt = self._s["last_ts"]
        with np.errstate(invalid="ignore"):
            return np.flatnonzero(~np.isnan(lt) & (lt < now_ts - ttl_s)).astype(np.int64)

    def mute(self, rows: Any, until_ts: Any) -> None:
        """No new alerts fire on these rows before ``until_ts``; scores are still computed."""
        r = _as_rows(rows)
        u = _as_float("until_ts", until_ts, len(r))
        self._ensure(r)
        np.maximum.at(self._s["mute_until"], r, u)

    def set_sensitivity(self, rows: Any, factor: Any) -> None:
        """Scale per-row sensitivity: the tail probability used for alerting is ``p / factor``.

        ``factor < 1`` makes a row quieter (e.g. after a false-positive mark), ``> 1`` louder.
        """
        r = _as_rows(rows)
        f = _as_float("factor", factor, len(r))
        if np.any(~np.isfinite(f) | (f <= 0)):
            raise StateError(f"sensitivity factor must be positive and finite (got {f.tolist()})")
        self._ensure(r)
        self._s["sensitivity"][r] = f

    # ------------------------------------------------------------------ snapshots
    def snapshot(self, *, copy: bool = True) -> StateArrays:
        """The whole state as plain arrays plus ``schema_version``, all read-only.

        ``copy=True`` (the default) gives an immutable copy, safe to keep or hand to another
        thread. ``copy=False`` gives read-only *views* of the live arrays and costs no
        memory (the copy is the whole state: about 1 GB at 1M series); the views change
        with the next ``step``/``learn_many``/``mute``/``set_sensitivity``/``reset_rows``,
        so use them only where nothing writes the detector until they are dropped: on the
        thread that writes it, e.g. a checkpoint taken and saved synchronously between two
        batches. (A growth re-allocates the arrays, so views taken before it keep the old
        values, which is also safe.)
        """
        return state.snapshot(self._s, copy=copy)

    @classmethod
    def restore(
        cls,
        snap: StateArrays,
        config: DetectorConfig | None = None,
        *,
        adopt: bool = False,
    ) -> Detector:
        """Rebuild a detector from :meth:`snapshot`. Raises StateError on a version or
        layout mismatch, naming both versions or the offending array.

        ``adopt=True`` takes over the snapshot's arrays where they already have this
        build's dtype and layout (writable, C-contiguous) instead of copying them: the
        caller hands them over and must not use them again. A checkpoint just read from
        the store is restored that way, so a restore holds one copy of the state, not the
        loaded arrays plus a rebuilt set (about 1 GB each at 1M series). Arrays that are
        read-only (a :meth:`snapshot`), of another dtype or upgraded are still copied.

        A schema 1 snapshot (one novelty memory, one point table for both directions) is
        upgraded: both directions start from what it learned, so an upgrade keeps the
        detector's history; schema 2 gains the extreme-value records and the persistence
        run, both starting at zero."""
        snap = state.upgrade(snap)
        det = cls(config, capacity=1)
        det._s = state.restore(det.config, snap, adopt=adopt)
        det._capacity = len(det._s["n"])
        return det

    def state_digest(self) -> str:
        """A hash of the whole state (used by conformance tests to prove read-only scoring)."""
        return state.digest(self._s)
