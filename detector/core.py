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
  spike is still news; the other direction's memory counts at ``novelty_cross``). A long
  incident therefore scores high at its onset and when it escalates, not on every point
  (one incident, one alert).
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
code in this module (the reference) and a compiled per-point loop (:mod:`detector.kernel`,
numba) that does the same per sample and is used when numba is importable
(``DetectorConfig.backend``; :attr:`Detector.backend` says which runs).

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

import hashlib
import importlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from causalwatch.errors import StateError
from detector.calibrate import LEVELS, prior_table, tail_probability, update_table

__all__ = ["SCHEMA_VERSION", "Detector", "DetectorConfig", "DetectorResult"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Bumped whenever the state layout changes; :meth:`Detector.restore` refuses other versions
#: (schema 1 and 2 snapshots are upgraded).
SCHEMA_VERSION = 3
#: arrays schema 3 added, all starting at zero (a fading record, a run counter)
_ADDED_IN_3 = ("zmax_up", "zmax_dn", "hot_run")

_N_STATS = 3  # z1 point surprise, z2 mean shift, z3 variance shift
_MAE_TO_SIGMA = math.sqrt(math.pi / 2.0)  # E|N(0, s)| = s * sqrt(2 / pi)


@dataclass(frozen=True)
class DetectorConfig:
    """Hyper-parameters of :class:`Detector`, stored verbatim (no learned state here).

    Times are in seconds. ``*_alpha`` are per-point smoothing weights in (0, 1].
    """

    season_s: float = 86_400.0
    #: score an alert needs at ``ref_interval_s`` (per-point tail probability 1e-4); chosen
    #: with bench/quiet.py and the cross-validated NAB figure (see the module docstring)
    alert_threshold: float = 0.9999
    clear_threshold: float = 0.9
    min_alert_gap_s: float = 900.0
    #: de-duplication gap in typical sampling intervals (the larger of the two gaps wins)
    min_alert_gap_points: int = 30
    clear_points: int = 3
    #: no score (and no alert) before a series has this many points *and* ...
    warmup_points: int = 30
    #: ... this much history in seconds (a 1 s series is not calibrated after 30 s). Kept
    #: under 5 minutes: a user who just started (5 minutes of 1 s data before a fault) must
    #: still be told (issue 9); at 8 s and slower sampling ``warmup_points`` decides.
    warmup_s: float = 240.0
    #: sampling interval at which ``alert_threshold`` holds as is: the per-point tail
    #: probability an alert needs scales with the series' typical interval over this, so
    #: a threshold means the same false-alarm rate per day at any sampling interval
    ref_interval_s: float = 60.0
    #: starting point of each series' tail calibration (see detector.calibrate.prior_table)
    tail_prior: str = "gauss"
    #: weight of that prior in points. 0: the tables forget at ``tail_rate`` from the first
    #: point (the prior weighs about ``1 / tail_rate`` points). > 0: a running mean over the
    #: series' own points, weighted against this many prior points, until ``1 / tail_rate``
    #: points; the trust floor then follows ``1 / points`` too, so a young series cannot
    #: claim tails rarer than its history can show
    tail_prior_points: float = 0.0
    season_bins: int = 144
    #: bins of a time-of-season error profile (0: off). On NAB dev 24 bins trade standard
    #: (53.8 -> 50.7) for reward_low_FP (35.3 -> 39.5)
    scale_bins: int = 0
    level_alpha_slow: float = 0.02
    level_alpha_fast: float = 0.3
    error_alpha: float = 0.02
    season_alpha: float = 0.1
    resid_alpha: float = 0.2
    tail_rate: float = 0.001
    #: smallest trusted exceedance frequency, as a fraction of ``tail_rate``
    tail_floor: float = 0.05
    #: novelty memory: nats of surprise forgotten per point (0 disables the gating). On NAB
    #: dev 0.1 beats 0.2 (standard 53.8 -> 54.3, own-alert reward_low_FP 29.7 -> 36.3, 2-fold
    #: split 44.4 / 55.8 -> 51.5 / 55.5); 0.05 and 0.35 are worse
    novelty_decay: float = 0.1
    #: upward and downward surprises are remembered (and calibrated) separately: a drop
    #: after a spike (an outage after a surge) is news. A surprise in the other direction is
    #: muted only by this fraction of the other direction's memory. On NAB dev, with the
    #: two-sided point calibration and ``view_weights`` (1.5, 1, 1): standard 60.2 (0.15 /
    #: 0.25 / 0.3: 60.1 / 60.5 / 58.3; 1.0, one shared memory: 54.3)
    novelty_cross: float = 0.2
    huber_k: float = 4.0
    shift_z: float = 4.0
    shift_points: int = 5
    band_z: float = 3.0
    #: the seasonal views are trusted while their error is below this multiple of the others'
    season_gain: float = 1.2
    #: how the views' tail probabilities are combined: "min" (Bonferroni) or "fisher"
    combine: str = "min"
    #: which views take part, as flags for point surprise / mean shift / variance shift
    views: str = "111"
    #: weighted Bonferroni: each view's share of the false-alarm budget (normalised over the
    #: views in use). The point view is the primary detector and gets the largest share; on
    #: NAB dev with two-sided novelty (1.5, 1, 1) gives standard 60.2, (1, 1, 1) 58.6,
    #: (1.25, 1, 1) 59.6, (1.75, 1, 1) 60.3, (2, 1, 1) 59.9, (3, 1, 1) 59.3
    view_weights: tuple[float, float, float] = (1.5, 1.0, 1.0)
    #: point surprise from the most accurate view ("best") or the view that explains the
    #: point best ("min": a point is anomalous only when every forecaster misses it)
    point_view: str = "best"
    #: agreement (0: off): the combined tail probability is ``min(agree_factor * p_min,
    #: p_second)``: a view alone must be ``agree_factor`` times more surprised than when a
    #: second view agrees
    agree_factor: float = 0.0
    #: persistence: an alert needs this many surprising points in a row (1: off) ...
    confirm_points: int = 1
    #: ... or one point this many times more surprising than the threshold
    overwhelm_factor: float = 1.0
    #: extreme-value view (0: off): seconds over which the record of a series' largest
    #: point surprises fades (by a factor e); a surprise within the record scores at most
    #: ``1 - typical interval / record_s``
    record_s: float = 259_200.0
    #: a surprise up to this multiple of the record counts as within it
    record_margin: float = 1.5
    #: which variance changes the variance view reports: "both", "up" or "down"
    variance_side: str = "down"
    #: how ``step``/``learn_many`` run: "auto" (the compiled per-point loop of
    #: :mod:`detector.kernel` when numba is importable, else numpy) or "numpy" (the
    #: vectorised reference). Both give the same results; see :attr:`Detector.backend`
    backend: str = "auto"


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


# name -> (dtype, trailing shape as a function of config, initial value)
_F8 = np.float64
_SCALAR_FIELDS: dict[str, tuple[type[np.generic], float]] = {
    "n": (np.int64, 0),
    "n_model": (np.int64, 0),
    "n_pos": (np.int64, 0),
    "n_neg": (np.int64, 0),
    "is_counter": (np.bool_, 0),
    "first_ts": (_F8, math.nan),
    "last_ts": (_F8, math.nan),
    "last_value": (_F8, math.nan),
    "dt_typ": (_F8, 0.0),
    "absdiff": (_F8, 0.0),
    "lvl_slow": (_F8, 0.0),
    "lvl_base": (_F8, 0.0),
    "lvl_fast": (_F8, 0.0),
    "err_slow": (_F8, 0.0),
    "err_fast": (_F8, 0.0),
    "err_seas": (_F8, 0.0),
    "lvl_fseas": (_F8, 0.0),
    "err_fseas": (_F8, 0.0),
    "resid_mean": (_F8, 0.0),
    "resid_sq": (_F8, 0.0),
    "shift_run": (np.int64, 0),
    "surprise_mem": (_F8, 0.0),  # novelty memory for upward surprises (nats)
    "surprise_mem_dn": (_F8, 0.0),  # ... and for downward ones
    "zmax_up": (_F8, 0.0),  # fading record of the largest upward point surprise |z1|
    "zmax_dn": (_F8, 0.0),  # ... and downward
    "in_alert": (np.bool_, 0),
    "hot_run": (np.int64, 0),  # consecutive points surprising enough to page
    "calm_run": (np.int64, 0),
    "last_fire_ts": (_F8, -math.inf),
    "mute_until": (_F8, -math.inf),
    "sensitivity": (_F8, 1.0),
    "last_score": (_F8, math.nan),
    "last_expected": (_F8, math.nan),
    "last_lower": (_F8, math.nan),
    "last_upper": (_F8, math.nan),
}


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


def _occurrence_rank(rows: IntArray) -> IntArray:
    """0 for the first time a row appears in the batch, 1 for the second time, ..."""
    order = np.argsort(rows, kind="stable")
    sr = rows[order]
    start = np.ones(len(sr), dtype=np.bool_)
    start[1:] = sr[1:] != sr[:-1]
    idx = np.arange(len(sr))
    group_start = np.maximum.accumulate(np.where(start, idx, 0))
    rank = np.empty(len(rows), dtype=np.int64)
    rank[order] = idx - group_start
    return rank


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

    _SEASON_DTYPE: ClassVar[type[np.generic]] = np.float32

    def __init__(self, config: DetectorConfig | None = None, capacity: int = 1024) -> None:
        self.config = config if config is not None else DetectorConfig()
        self._check_config(self.config)
        self._capacity = 0
        self._s: dict[str, np.ndarray[Any, Any]] = {}
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

    # ------------------------------------------------------------------ state layout
    @staticmethod
    def _check_config(c: DetectorConfig) -> None:
        if not 0.0 < c.clear_threshold < c.alert_threshold < 1.0:
            raise StateError(
                "detector.clear_threshold must be below detector.alert_threshold, both in"
                f" (0, 1) (got {c.clear_threshold} and {c.alert_threshold})"
            )
        for f in fields(c):
            if f.name.endswith("_alpha") or f.name == "tail_rate":
                v = getattr(c, f.name)
                if not 0.0 < v <= 1.0:
                    raise StateError(f"detector.{f.name} must be in (0, 1] (got {v})")
        w = c.view_weights
        if len(w) != _N_STATS or not all(math.isfinite(v) and v > 0 for v in w):
            raise StateError(
                f"detector.view_weights must be {_N_STATS} positive numbers (got {w!r})"
            )
        if c.tail_prior not in ("laplace", "gauss"):
            raise StateError(
                f"detector.tail_prior must be 'laplace' or 'gauss' (got {c.tail_prior!r})"
            )
        if not (c.warmup_s >= 0 and c.ref_interval_s > 0):
            raise StateError(
                "detector.warmup_s must be >= 0 and detector.ref_interval_s > 0"
                f" (got {c.warmup_s}, {c.ref_interval_s})"
            )
        if c.backend not in ("auto", "numpy"):
            raise StateError(f"detector.backend must be 'auto' or 'numpy' (got {c.backend!r})")
        if c.season_s <= 0 or c.season_bins < 1:
            raise StateError(
                f"detector.season_s and season_bins must be positive"
                f" (got {c.season_s}, {c.season_bins})"
            )

    def _fresh(self, n: int) -> dict[str, np.ndarray[Any, Any]]:
        return dict(self._fresh_fields(n))

    def _fresh_fields(self, n: int) -> Iterator[tuple[str, np.ndarray[Any, Any]]]:
        """The state arrays of ``n`` new rows, one at a time (so :meth:`_alloc` can let
        each old array go as soon as it is copied)."""
        for name, (dt, init) in _SCALAR_FIELDS.items():
            yield name, np.full(n, init, dtype=dt)
        yield "season", np.full((n, self.config.season_bins), np.nan, dtype=self._SEASON_DTYPE)
        # time-of-season profile of the absolute error (busy hours are noisier)
        yield (
            "season_err",
            np.full((n, self.config.scale_bins), np.nan, dtype=self._SEASON_DTYPE),
        )
        # float32 before tiling: no float64 temporary of the whole table
        prior = prior_table(self.config.tail_prior).astype(np.float32)
        yield "tails", np.tile(prior, (n, _N_STATS, 1))
        # the point view is calibrated per direction: tails[:, 0] holds upward deviations,
        # tail_dn downward ones (a series with frequent surges can still be surprised by a
        # drop)
        yield "tail_dn", np.tile(prior, (n, 1))

    def _alloc(self, n: int) -> None:
        """Grow to ``n`` rows. Each old array is dropped as soon as it is copied, so the
        peak is the new state plus one old array, not old plus new (at 1M series the
        doubling from 512k rows held both: about 1.5 GB for a moment)."""
        old, self._s = self._s, {}
        for name, arr in self._fresh_fields(n):
            prev = old.pop(name, None)
            if prev is not None:
                arr[: self._capacity] = prev
            del prev
            self._s[name] = arr
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

    # ------------------------------------------------------------------ the model
    def _evaluate(self, rows: IntArray, ts: FloatArray, x: FloatArray) -> dict[str, Any]:
        """Everything the score needs, from the state before the sample. Pure."""
        c = self.config
        s = self._s
        n = s["n"][rows]
        n_model = s["n_model"][rows]
        last_ts = s["last_ts"][rows]
        last_x = s["last_value"][rows]
        dt_typ = s["dt_typ"][rows]
        is_ctr = s["is_counter"][rows]
        has_prev = n > 0
        dt = np.where(has_prev, ts - last_ts, 0.0)
        dx = np.where(has_prev, x - last_x, 0.0)
        # counters: model the rate; a drop is a reset and is neither scored nor learned
        safe_dt = np.where(dt > 0, dt, np.where(dt_typ > 0, dt_typ, 1.0))
        reset = is_ctr & (dx < 0)
        v = np.where(is_ctr, dx / safe_dt, x)
        valid = ~reset & (~is_ctr | has_prev)

        lvl_slow = s["lvl_slow"][rows]
        lvl_fast = s["lvl_fast"][rows]
        b = np.floor(np.mod(ts, c.season_s) / c.season_s * c.season_bins).astype(np.int64)
        b = np.clip(b, 0, c.season_bins - 1)
        sb = s["season"][rows, b].astype(np.float64)
        sb_known = ~np.isnan(sb)
        sb0 = np.where(sb_known, sb, 0.0)
        p_slow, p_fast, p_seas = lvl_slow, lvl_fast, s["lvl_base"][rows] + sb0
        p_fseas = s["lvl_fseas"][rows] + sb0
        e_slow, e_fast, e_seas = s["err_slow"][rows], s["err_fast"][rows], s["err_seas"][rows]
        e_fseas = s["err_fseas"][rows]
        full_season = has_prev & ((ts - s["first_ts"][rows]) >= c.season_s)
        seas_ok = full_season & sb_known
        plain = np.minimum(e_slow, e_fast)
        e_sbest = np.minimum(e_seas, e_fseas)
        use_seas = seas_ok & (e_sbest < c.season_gain * plain)
        use_fast = e_fast < e_slow
        pred_plain = np.where(use_fast, p_fast, p_slow)
        pred_seas = np.where(e_fseas < e_seas, p_fseas, p_seas)
        pred = np.where(use_seas, pred_seas, pred_plain)
        err = np.where(use_seas, e_sbest, plain)
        # the typical step is tracked on the raw values; a counter is modelled as a rate, so
        # its step floor is in units per second (the raw step over the typical interval)
        step = np.where(is_ctr, s["absdiff"][rows] / np.where(dt_typ > 0, dt_typ, 1.0), 1.0)
        step = np.where(is_ctr, step, s["absdiff"][rows])
        floor = np.maximum(0.05 * step, 1e-9 * (1.0 + np.abs(pred)))
        sigma = np.maximum(_MAE_TO_SIGMA * err, floor)
        if c.scale_bins > 0:
            bs = np.clip(
                np.floor(np.mod(ts, c.season_s) / c.season_s * c.scale_bins).astype(np.int64),
                0,
                c.scale_bins - 1,
            )
            eb = s["season_err"][rows, bs].astype(np.float64)
            eb_ok = full_season & ~np.isnan(eb)
            # geometric blend: the bin's own error, shrunk towards the overall error
            blended = np.sqrt(np.maximum(_MAE_TO_SIGMA * np.where(eb_ok, eb, 0.0), floor) * sigma)
            sigma = np.where(eb_ok, np.maximum(blended, floor), sigma)
        else:
            bs = np.zeros(len(rows), dtype=np.int64)
        ratio = np.where(dt_typ > 0, dt / np.where(dt_typ > 0, dt_typ, 1.0), 1.0)
        gap = 1.0 + 0.5 * np.log(np.maximum(ratio, 1.0))
        r = v - pred
        hk = c.huber_k * sigma
        rc = np.clip(r, -hk, hk)
        ar = c.resid_alpha
        f_new = (1.0 - ar) * s["resid_mean"][rows] + ar * rc
        q_new = (1.0 - ar) * s["resid_sq"][rows] + ar * np.minimum(r * r, 4.0 * hk * hk)
        z1 = r / (sigma * gap)
        if c.point_view == "min":
            # a point is surprising only if neither the best plain nor the best seasonal
            # forecaster explains it
            e_pl = np.minimum(e_slow, e_fast)
            z_pl = (v - pred_plain) / (np.maximum(_MAE_TO_SIGMA * e_pl, floor) * gap)
            z_se = (v - pred_seas) / (np.maximum(_MAE_TO_SIGMA * e_sbest, floor) * gap)
            z_se = np.where(seas_ok, z_se, np.inf)
            stack = np.stack([z_pl, z_se], axis=1)
            pick = np.argmin(np.abs(stack), axis=1)
            z1 = stack[np.arange(len(pick)), pick]
        z2 = f_new / (sigma * math.sqrt(ar / (2.0 - ar)) * gap)
        z3 = np.log(np.maximum(q_new, 1e-8 * sigma * sigma) / (sigma * sigma)) / math.sqrt(
            2.0 * ar / (2.0 - ar)
        )
        # "went quiet" only means something for a series that was not already flat
        z3 = np.where(_MAE_TO_SIGMA * err > 4.0 * floor, z3, np.maximum(z3, 0.0))
        if c.variance_side == "up":
            z3 = np.maximum(z3, 0.0)
        elif c.variance_side == "down":
            z3 = np.minimum(z3, 0.0)
        # the record keeps the uncapped size (a spike 3x the record is news even past 60)
        z1_abs = np.where(np.isfinite(z1), np.abs(z1), 1e12)
        a = np.minimum(np.abs(np.stack([z1, z2, z3], axis=1)), 60.0)
        a = np.where(np.isfinite(a), a, 60.0)
        tails = s["tails"][rows]
        up = z1 >= 0  # the direction of the point surprise (its table and its memory)
        point = np.where(up[:, None], tails[:, 0, :], s["tail_dn"][rows])
        rate_pt, rate_all = self._tail_rates(n_model)
        p_rec = None
        if c.record_s > 0:
            # extreme-value view: a point surprise no larger than one this series produced
            # recently (its fading record) happens about once per record_s, whatever the
            # calibration table says (heavy-tailed series stay quiet by construction)
            zmax = np.where(up, s["zmax_up"][rows], s["zmax_dn"][rows])
            once = np.minimum(1.0, np.maximum(dt_typ, 1.0) / c.record_s)
            p_rec = np.where(z1_abs <= c.record_margin * zmax, once, 0.0)
        p_each = np.stack(
            [
                tail_probability(
                    a[:, k],
                    point if k == 0 else tails[:, k, :],
                    c.tail_floor * (rate_pt if k == 0 else rate_all),
                )
                for k in range(_N_STATS)
            ],
            axis=1,
        )
        if p_rec is not None:
            p_each[:, 0] = np.maximum(p_each[:, 0], p_rec)
        if c.combine == "fisher":
            y = -np.log(np.maximum(p_each, 1e-300)).sum(axis=1)
            p_raw = np.minimum(1.0, np.exp(-y) * (1.0 + y + 0.5 * y * y))
        else:
            used = [k for k in range(_N_STATS) if c.views[k] == "1"]
            wv = np.asarray(c.view_weights, dtype=np.float64)[used]
            pw = p_each[:, used] * (wv.sum() / wv)
            p_raw = np.minimum(1.0, pw.min(axis=1))
            if c.agree_factor > 0 and len(used) > 1:
                # agreement or overwhelming evidence: one view alone must be agree_factor
                # times more surprised than when a second view backs it
                second = np.sort(pw, axis=1)[:, 1]
                p_raw = np.minimum(1.0, np.minimum(c.agree_factor * p_raw, second))
        old_enough = has_prev & (ts - s["first_ts"][rows] >= c.warmup_s)
        scored = valid & (n_model >= c.warmup_points) & old_enough
        p_raw = np.where(scored, p_raw, 1.0)
        # novelty: surprise already explained by a recent, larger surprise in the same
        # direction (or a much larger one in the other) is not news
        surprise = -np.log(np.maximum(p_raw, 1e-300))
        m_up, m_dn = s["surprise_mem"][rows], s["surprise_mem_dn"][rows]
        same, other = np.where(up, m_up, m_dn), np.where(up, m_dn, m_up)
        mem = np.maximum(same, c.novelty_cross * other)
        p = np.exp(-np.maximum(surprise - mem, 0.0)) if c.novelty_decay > 0 else p_raw
        score = 1.0 - p
        severity = np.clip(100.0 * (-np.log10(np.maximum(p, 1e-300))) / 8.0, 0.0, 100.0)
        half = c.band_z * sigma * gap
        if is_ctr.any():
            # back to the counter's own units: last value plus the expected increase
            exp_x = np.where(is_ctr, last_x + pred * safe_dt, pred)
            half_x = np.where(is_ctr, half * safe_dt, half)
        else:
            exp_x, half_x = pred, half
        return {
            "n": n, "n_model": n_model, "dt": dt, "dx": dx, "v": v, "valid": valid,
            "has_prev": has_prev, "reset": reset, "b": b, "sb": sb, "sb_known": sb_known,
            "p_slow": p_slow, "p_fast": p_fast, "p_seas": p_seas, "p_fseas": p_fseas,
            "sigma": sigma,
            "hk": hk, "r": r, "rc": rc, "f_new": f_new, "q_new": q_new, "z2": z2, "a": a,
            "p": p, "score": score, "severity": severity, "expected": exp_x,
            "lower": exp_x - half_x, "upper": exp_x + half_x, "scored": scored,
            "surprise": surprise, "floor": floor, "bs": bs, "up": up, "p_raw": p_raw,
            "z1_abs": z1_abs,
        }  # fmt: skip

    def _learn(self, rows: IntArray, ts: FloatArray, x: FloatArray, e: dict[str, Any]) -> None:
        """Fold one sample per row (rows unique) into the state."""
        c = self.config
        s = self._s
        n = e["n"]
        has_prev = e["has_prev"]
        dt, dx = e["dt"], e["dx"]
        # sampling interval and step size (for gaps and the scale floor)
        dt_typ = s["dt_typ"][rows]
        dtc = np.where(dt_typ > 0, np.clip(dt, 0.2 * dt_typ, 5.0 * dt_typ), dt)
        s["dt_typ"][rows] = np.where(
            has_prev & (dt > 0), np.where(dt_typ > 0, 0.95 * dt_typ + 0.05 * dtc, dt), dt_typ
        )
        ad = np.abs(dx)
        nz = has_prev & (ad > 0)
        absdiff = s["absdiff"][rows]
        s["absdiff"][rows] = np.where(
            nz, np.where(absdiff > 0, 0.98 * absdiff + 0.02 * ad, ad), absdiff
        )
        s["n_pos"][rows] += (has_prev & (dx > 0)).astype(np.int64)
        s["n_neg"][rows] += (has_prev & (dx < 0)).astype(np.int64)
        s["n"][rows] = n + 1
        s["first_ts"][rows] = np.where(n == 0, ts, s["first_ts"][rows])
        s["last_ts"][rows] = ts
        s["last_value"][rows] = x

        # model update, only for valid samples
        ok = e["valid"]
        rr, v = rows[ok], e["v"][ok]
        nm = e["n_model"][ok]
        first = nm == 0

        def w(alpha: float) -> FloatArray:
            # a running mean while the series is young, then exponential forgetting
            out: FloatArray = np.maximum(alpha, 1.0 / (nm + 1.0))
            return out

        sigma = e["sigma"][ok]
        floor = e["floor"][ok]
        sb, sb_known = e["sb"][ok], e["sb_known"][ok]
        lvl_slow = s["lvl_slow"][rr]
        deseason0 = v - np.where(sb_known, sb, 0.0)
        # each view is robustified with its own scale, so a view that is currently poor
        # (e.g. the seasonal profile still learning a large daily swing) can still learn
        hks = {}
        views = (
            ("err_slow", "p_slow"),
            ("err_fast", "p_fast"),
            ("err_seas", "p_seas"),
            ("err_fseas", "p_fseas"),
        )
        for name, pname in views:
            old = s[name][rr]
            hks[name] = c.huber_k * np.maximum(_MAE_TO_SIGMA * old, floor)
            ri = np.minimum(np.abs(v - e[pname][ok]), hks[name])
            s[name][rr] = np.where(first, 0.0, old + w(c.error_alpha) * (ri - old))
        hk_slow, hk_fast, hk_seas = hks["err_slow"], hks["err_fast"], hks["err_seas"]
        hk_fs = hks["err_fseas"]
        lfs = s["lvl_fseas"][rr]
        s["lvl_fseas"][rr] = np.where(
            first, v, lfs + w(c.level_alpha_fast) * np.clip(deseason0 - lfs, -hk_fs, hk_fs)
        )
        s["lvl_slow"][rr] = np.where(
            first, v, lvl_slow + w(c.level_alpha_slow) * np.clip(v - lvl_slow, -hk_slow, hk_slow)
        )
        # the seasonal profile hangs off a baseline that forgets over about one season, so
        # the profile, not the baseline, carries the within-season swing
        base = s["lvl_base"][rr]
        dt_typ = s["dt_typ"][rr]
        a_base = np.clip(dt_typ / c.season_s, 1e-4, c.level_alpha_slow)
        s["lvl_base"][rr] = np.where(
            first,
            v,
            base
            + np.maximum(a_base, 1.0 / (nm + 1.0)) * np.clip(deseason0 - base, -hk_seas, hk_seas),
        )
        lf = s["lvl_fast"][rr]
        s["lvl_fast"][rr] = np.where(
            first, v, lf + w(c.level_alpha_fast) * np.clip(v - lf, -hk_fast, hk_fast)
        )
        dev = v - base
        b = e["b"][ok]
        # a running mean over the first seasons, then exponential forgetting
        seasons_seen = np.floor((ts[ok] - s["first_ts"][rr]) / c.season_s)
        a_s = np.maximum(c.season_alpha, 1.0 / (seasons_seen + 1.0))
        new_sb = np.where(sb_known, sb + a_s * np.clip(dev - sb, -hk_seas, hk_seas), dev)
        s["season"][rr, b] = np.where(first, 0.0, new_sb).astype(self._SEASON_DTYPE)
        if c.scale_bins > 0:
            bs = e["bs"][ok]
            eb = s["season_err"][rr, bs].astype(np.float64)
            ar_ = np.minimum(np.abs(e["r"][ok]), e["hk"][ok])
            new_eb = np.where(np.isnan(eb), ar_, eb + a_s * (ar_ - eb))
            s["season_err"][rr, bs] = np.where(first, np.nan, new_eb).astype(self._SEASON_DTYPE)
        s["resid_mean"][rr] = np.where(first, 0.0, e["f_new"][ok])
        s["resid_sq"][rr] = np.where(first, 0.0, e["q_new"][ok])
        warm = nm >= c.warmup_points
        tails = s["tails"][rr]
        a = e["a"][ok]
        wm = warm[:, None]
        # the point view's table is per direction: each side learns from its own points only
        up = e["up"][ok]
        up1 = up[:, None]
        t_dn = s["tail_dn"][rr]
        rate_pt, rate_all = self._tail_rates(nm)
        point = update_table(np.where(up1, tails[:, 0, :], t_dn), a[:, 0], rate_pt)
        s["tail_dn"][rr] = np.where(wm & ~up1, point, t_dn)
        tails[:, 0, :] = np.where(wm & up1, point, tails[:, 0, :])
        for k in range(1, _N_STATS):
            tails[:, k, :] = np.where(
                wm, update_table(tails[:, k, :], a[:, k], rate_all), tails[:, k, :]
            )
        s["tails"][rr] = tails
        # level shift: a sustained one-sided mean shift re-anchors the levels (pages once)
        z2 = e["z2"][ok]
        run = s["shift_run"][rr]
        same_side = np.sign(z2) == np.sign(e["r"][ok])
        run = np.where((np.abs(z2) >= c.shift_z) & same_side & warm, run + 1, 0)
        shifted = run >= c.shift_points
        if shifted.any():
            s["lvl_slow"][rr] = np.where(shifted, v, s["lvl_slow"][rr])
            s["lvl_base"][rr] = np.where(shifted, deseason0, s["lvl_base"][rr])
            s["lvl_fseas"][rr] = np.where(shifted, deseason0, s["lvl_fseas"][rr])
            s["lvl_fast"][rr] = np.where(shifted, v, s["lvl_fast"][rr])
            s["resid_mean"][rr] = np.where(shifted, 0.0, s["resid_mean"][rr])
            s["resid_sq"][rr] = np.where(shifted, sigma * sigma, s["resid_sq"][rr])
            run = np.where(shifted, 0, run)
        s["shift_run"][rr] = run
        s["n_model"][rr] = nm + 1
        if c.record_s > 0:
            fade = np.exp(-np.maximum(dt[ok], 0.0) / c.record_s)
            z1a = np.where(warm, np.minimum(e["z1_abs"][ok], 1e6), 0.0)
            for name, side in (("zmax_up", up), ("zmax_dn", ~up)):
                s[name][rr] = np.maximum(s[name][rr] * fade, np.where(side, z1a, 0.0))
        su = e["surprise"][ok]
        for name, side in (("surprise_mem", up), ("surprise_mem_dn", ~up)):
            mem = np.maximum(s[name][rr], np.where(side, su, 0.0)) - c.novelty_decay
            s[name][rr] = np.maximum(mem, 0.0)

        # counters: monotonic non-decreasing and mostly increasing -> model the rate from now
        n1 = s["n"][rows] - 1
        become = (
            ~s["is_counter"][rows]
            & (s["n"][rows] >= c.warmup_points)
            & (s["n_pos"][rows] >= 0.8 * n1)
            & (s["n_neg"][rows] <= np.maximum(1, 0.02 * n1))
        )
        if become.any():
            br = rows[become]
            s["is_counter"][br] = True
            fresh = self._fresh(len(br))
            for name in (
                "n_model",
                "lvl_slow",
                "lvl_base",
                "lvl_fast",
                "err_slow",
                "err_fast",
                "err_seas",
                "lvl_fseas",
                "err_fseas",
                "resid_mean",
                "resid_sq",
                "shift_run",
                "season",
                "season_err",
                "tails",
                "tail_dn",
                "zmax_up",
                "zmax_dn",
                "hot_run",
            ):
                s[name][br] = fresh[name]  # fmt: skip

    def _tail_rates(self, n_model: IntArray) -> tuple[FloatArray, FloatArray]:
        """Per-row update rate of the tail tables (point view per direction, the others)."""
        c = self.config
        if c.tail_prior_points <= 0:
            r = np.full(len(n_model), c.tail_rate)
            return r, r
        n_cal = np.maximum(n_model - c.warmup_points, 0).astype(np.float64)
        r_all = np.maximum(c.tail_rate, 1.0 / (n_cal + c.tail_prior_points))
        r_pt = np.maximum(c.tail_rate, 1.0 / (0.5 * n_cal + c.tail_prior_points))
        return r_pt, r_all

    def _p_alert(self, dt_typ: FloatArray) -> FloatArray:
        """The per-point tail probability an alert needs: ``1 - alert_threshold`` at
        ``ref_interval_s``, proportionally smaller for faster series (same rate per day)."""
        c = self.config
        ratio = np.clip(np.where(dt_typ > 0, dt_typ, c.ref_interval_s) / c.ref_interval_s,
                        1e-3, 10.0)  # fmt: skip
        out: FloatArray = (1.0 - c.alert_threshold) * ratio
        return out

    def _alerts(
        self, rows: IntArray, ts: FloatArray, e: dict[str, Any]
    ) -> tuple[BoolArray, BoolArray]:
        c = self.config
        s = self._s
        sens = s["sensitivity"][rows]
        p_adj = np.minimum(1.0, e["p"] / sens)
        p_star = self._p_alert(s["dt_typ"][rows])
        hot = e["scored"] & (p_adj <= p_star)
        if c.confirm_points > 1:
            # one surprising point pages only when overwhelming; otherwise the surprise
            # (before novelty gating) must persist for confirm_points points in a row
            raw_hot = e["scored"] & (np.minimum(1.0, e["p_raw"] / sens) <= p_star)
            run = np.where(raw_hot, s["hot_run"][rows] + 1, 0)
            s["hot_run"][rows] = np.minimum(run, 1_000_000)
            hot = (hot & (p_adj * c.overwhelm_factor <= p_star)) | (
                raw_hot & (run >= c.confirm_points)
            )
        cold = 1.0 - p_adj < c.clear_threshold
        in_alert = s["in_alert"][rows]
        gap = np.maximum(c.min_alert_gap_s, c.min_alert_gap_points * s["dt_typ"][rows])
        fired = (
            hot & ~in_alert & (ts - s["last_fire_ts"][rows] >= gap) & (ts >= s["mute_until"][rows])
        )
        calm = np.where(cold, s["calm_run"][rows] + 1, 0)
        new_alert = np.where(hot, True, in_alert & (calm < c.clear_points))
        s["in_alert"][rows] = new_alert
        s["calm_run"][rows] = np.where(new_alert, calm, 0)
        s["last_fire_ts"][rows] = np.where(fired, ts, s["last_fire_ts"][rows])
        return new_alert, fired

    # ------------------------------------------------------------------ public API
    def score_many(self, rows: Any, ts: Any, x: Any) -> DetectorResult:
        """Score samples against the current state without changing it (read-only).

        A row that appears several times is scored each time against the same state.
        ``alert`` reports whether the sample would be hot; ``fired`` is always False
        (firing needs the alert state machine of :meth:`step`).
        """
        r = _as_rows(rows)
        t = _as_float("ts", ts, len(r))
        v = _as_float("x", x, len(r))
        out = DetectorResult.empty(len(r))
        known = r < self._capacity
        if known.any():
            idx = np.flatnonzero(known)
            e = self._evaluate(r[idx], t[idx], v[idx])
            self._fill(out, idx, e)
            p_adj = np.minimum(1.0, e["p"] / self._s["sensitivity"][r[idx]])
            out.alert[idx] = e["scored"] & (p_adj <= self._p_alert(self._s["dt_typ"][r[idx]]))
        out.expected[~known] = v[~known]
        out.lower[~known] = v[~known]
        out.upper[~known] = v[~known]
        return out

    @staticmethod
    def _fill(out: DetectorResult, idx: IntArray, e: dict[str, Any]) -> None:
        out.score[idx] = e["score"]
        out.severity[idx] = e["severity"]
        out.expected[idx] = e["expected"]
        out.lower[idx] = e["lower"]
        out.upper[idx] = e["upper"]

    def _rounds(self, r: IntArray) -> list[IntArray]:
        if len(r) == 0:
            return []
        if len(np.unique(r)) == len(r):
            return [np.arange(len(r))]
        rank = _occurrence_rank(r)
        order = np.argsort(rank, kind="stable")
        counts = np.bincount(rank)
        return np.split(order, np.cumsum(counts)[:-1])

    def _run_kernel(self, r: IntArray, t: FloatArray, v: FloatArray, out: Any) -> None:
        kernel = _kernel()
        assert kernel is not None  # _compiled is only set when it imported
        kernel.run(self._s, self._kernel_prior, self._kernel_cfg, r, t, v, out)

    def learn_many(self, rows: Any, ts: Any, x: Any) -> None:
        """Fold samples into the state (in order; a repeated row is learned in sequence)."""
        r = _as_rows(rows)
        t = _as_float("ts", ts, len(r))
        v = _as_float("x", x, len(r))
        self._ensure(r)
        if self._compiled:
            self._run_kernel(r, t, v, None)
            return
        for idx in self._rounds(r):
            e = self._evaluate(r[idx], t[idx], v[idx])
            self._learn(r[idx], t[idx], v[idx], e)

    def step(self, rows: Any, ts: Any, x: Any) -> DetectorResult:
        """Score each sample, run the alert state machine, then learn it.

        Equivalent to feeding the samples one at a time in order, also when a row appears
        several times in the batch. Samples of one row must be in time order.
        """
        r = _as_rows(rows)
        t = _as_float("ts", ts, len(r))
        v = _as_float("x", x, len(r))
        self._ensure(r)
        out = DetectorResult.empty(len(r))
        if self._compiled:
            self._run_kernel(r, t, v, out)
            return out
        s = self._s
        for idx in self._rounds(r):
            rr, tt, vv = r[idx], t[idx], v[idx]
            e = self._evaluate(rr, tt, vv)
            self._fill(out, idx, e)
            out.alert[idx], out.fired[idx] = self._alerts(rr, tt, e)
            s["last_score"][rr] = e["score"]
            s["last_expected"][rr] = e["expected"]
            s["last_lower"][rr] = e["lower"]
            s["last_upper"][rr] = e["upper"]
            self._learn(rr, tt, vv, e)
        return out

    def reset_rows(self, rows: Any) -> None:
        """Forget everything about these rows (a series was evicted and its row reused)."""
        r = _as_rows(rows)
        r = r[r < self._capacity]
        if r.size == 0:
            return
        fresh = self._fresh(len(r))
        for name, arr in self._s.items():
            arr[r] = fresh[name]

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

    def snapshot(self, *, copy: bool = True) -> dict[str, np.ndarray[Any, Any]]:
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
        snap: dict[str, np.ndarray[Any, Any]] = {}
        for name, arr in self._s.items():
            cp = arr.copy() if copy else arr.view()
            cp.flags.writeable = False
            snap[name] = cp
        version = np.array(SCHEMA_VERSION, dtype=np.int64)
        version.flags.writeable = False
        snap["schema_version"] = version
        return snap

    @classmethod
    def restore(
        cls,
        snap: dict[str, np.ndarray[Any, Any]],
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
        got = snap.get("schema_version")
        got_v = int(np.asarray(got)) if got is not None else None
        if got_v == 1 and "surprise_mem_dn" not in snap and "tail_dn" not in snap:
            snap = {
                **snap,
                "surprise_mem_dn": np.asarray(snap["surprise_mem"]).copy(),
                "tail_dn": np.asarray(snap["tails"])[:, 0, :].copy(),
            }
            got_v = 2
        if got_v == 2 and "n" in snap:
            n_rows = len(np.asarray(snap["n"]))
            snap = {**{k: np.zeros(n_rows) for k in _ADDED_IN_3}, **snap}
            got_v = SCHEMA_VERSION
        if got_v != SCHEMA_VERSION:
            raise StateError(
                f"detector snapshot schema_version {got_v} does not match this build's"
                f" schema_version {SCHEMA_VERSION}"
            )
        det = cls(config, capacity=1)
        cap = len(snap["n"])
        # shapes and dtypes from a one-row template: a full one would be a third copy
        layout = det._fresh(1)
        state: dict[str, np.ndarray[Any, Any]] = {}
        for name, one in layout.items():
            if name not in snap:
                raise StateError(f"detector snapshot is missing array {name!r}")
            src = np.asarray(snap[name])
            shape = (cap, *one.shape[1:])
            if src.shape != shape:
                raise StateError(
                    f"detector snapshot array {name!r} has shape {src.shape}, expected"
                    f" {shape} (season_bins in config vs snapshot?)"
                )
            can_adopt = (
                adopt and src.dtype == one.dtype and src.flags.writeable and src.flags.c_contiguous
            )
            state[name] = src if can_adopt else src.astype(one.dtype, copy=True)
        det._s = state
        det._capacity = cap
        return det

    def state_digest(self) -> str:
        """A hash of the whole state (used by conformance tests to prove read-only scoring)."""
        h = hashlib.blake2b(digest_size=16)
        for name in sorted(self._s):
            h.update(name.encode())
            h.update(np.ascontiguousarray(self._s[name]).tobytes())
        return h.hexdigest()


_ = LEVELS  # re-exported for readers of the state layout
