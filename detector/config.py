"""The detector's hyper-parameters (:class:`DetectorConfig`) and the checks a config must pass.

The config is stored verbatim, separate from the learned state (:mod:`detector.state`);
:func:`check_config` runs when a :class:`detector.core.Detector` is built, so a bad value
fails at startup with the setting's name in the message. What each view and default is
for, and what it costs on NAB, is in :mod:`detector.core`'s docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from causalwatch.errors import StateError

__all__ = ["N_STATS", "DetectorConfig", "check_config"]

N_STATS = 3  # z1 point surprise, z2 mean shift, z3 variance shift


@dataclass(frozen=True)
class DetectorConfig:
    """Hyper-parameters of :class:`detector.core.Detector`, stored verbatim (no learned state here).

    Times are in seconds. ``*_alpha`` are per-point smoothing weights in (0, 1].
    """

    season_s: float = 86_400.0
    #: score an alert needs at ``ref_interval_s`` (per-point tail probability 1e-4); chosen
    #: with bench/quiet.py and the cross-validated NAB figure (see :mod:`detector.core`)
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
    #: most nats of surprise the novelty memory takes in (0: no cap), so one surprise mutes
    #: its direction for at most ``novelty_cap / novelty_decay`` points (500). Uncapped, a
    #: level shift's surprise (97 nats on NAB's rds_cpu_utilization_cc0c53) still muted the
    #: series 400 points later, through the next labelled anomaly. 50: NAB CV 57.68 -> 58.29,
    #: in-sample 61.16 -> 61.77, bench/quiet.py pages unchanged (Train Ticket recall 0.29 ->
    #: 0.32); 30 pages more on PetShop (4.4 -> 4.6 per 100 series per day); 100 = no cap on NAB
    novelty_cap: float = 50.0
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


def check_config(c: DetectorConfig) -> None:
    """Raise StateError naming the setting (``detector.<field>``) when ``c`` is unusable."""
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
    if len(w) != N_STATS or not all(math.isfinite(v) and v > 0 for v in w):
        raise StateError(f"detector.view_weights must be {N_STATS} positive numbers (got {w!r})")
    if c.tail_prior not in ("laplace", "gauss"):
        raise StateError(f"detector.tail_prior must be 'laplace' or 'gauss' (got {c.tail_prior!r})")
    if not (c.warmup_s >= 0 and c.ref_interval_s > 0):
        raise StateError(
            "detector.warmup_s must be >= 0 and detector.ref_interval_s > 0"
            f" (got {c.warmup_s}, {c.ref_interval_s})"
        )
    if not (math.isfinite(c.novelty_cap) and c.novelty_cap >= 0):
        raise StateError(f"detector.novelty_cap must be a number >= 0 (got {c.novelty_cap})")
    if c.backend not in ("auto", "numpy"):
        raise StateError(f"detector.backend must be 'auto' or 'numpy' (got {c.backend!r})")
    if c.season_s <= 0 or c.season_bins < 1:
        raise StateError(
            f"detector.season_s and season_bins must be positive"
            f" (got {c.season_s}, {c.season_bins})"
        )
