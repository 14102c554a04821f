"""Alerting: the alert level per series and the hysteresis state machine over the scores.

An alert fires when the sensitivity-adjusted tail probability falls to the alert level,
which is ``1 - alert_threshold`` at ``ref_interval_s`` and scales with the series' typical
sampling interval (one threshold, the same false-alarm rate per day at any interval; why
0.9999 is in :mod:`detector.core`). It stays open until the score has been below
``clear_threshold`` for ``clear_points`` points, never fires twice within the
de-duplication gap and not while the row is muted. Optional persistence
(``confirm_points``) asks for a run of surprising points unless one is overwhelming.

The state machine reads and writes only its own arrays (``in_alert``, ``calm_run``,
``hot_run``, ``last_fire_ts``) and reads ``sensitivity``, ``mute_until`` and ``dt_typ``.
:mod:`detector.kernel` does the same per sample (``_alerts``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detector.config import DetectorConfig
from detector.result import BoolArray, FloatArray, IntArray, StateArrays

__all__ = ["alerts", "p_alert", "would_page"]


def p_alert(c: DetectorConfig, dt_typ: FloatArray) -> FloatArray:
    """The per-point tail probability an alert needs: ``1 - alert_threshold`` at
    ``ref_interval_s``, proportionally smaller for faster series (same rate per day)."""
    ratio = np.clip(np.where(dt_typ > 0, dt_typ, c.ref_interval_s) / c.ref_interval_s,
                    1e-3, 10.0)  # fmt: skip
    out: FloatArray = (1.0 - c.alert_threshold) * ratio
    return out


def _levels(
    c: DetectorConfig, s: StateArrays, rows: IntArray, e: dict[str, Any]
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per sample: the row's sensitivity, the tail probability it adjusts and the level."""
    sens = s["sensitivity"][rows]
    p_adj = np.minimum(1.0, e["p"] / sens)
    return sens, p_adj, p_alert(c, s["dt_typ"][rows])


def would_page(c: DetectorConfig, s: StateArrays, rows: IntArray, e: dict[str, Any]) -> BoolArray:
    """Where a scored sample reaches its row's alert level (read-only: no state machine)."""
    _, p_adj, p_star = _levels(c, s, rows, e)
    out: BoolArray = e["scored"] & (p_adj <= p_star)
    return out


def alerts(
    c: DetectorConfig, s: StateArrays, rows: IntArray, ts: FloatArray, e: dict[str, Any]
) -> tuple[BoolArray, BoolArray]:
    """Run the state machine on one sample per row (rows unique): (alert open, fired)."""
    sens, p_adj, p_star = _levels(c, s, rows, e)
    hot = e["scored"] & (p_adj <= p_star)
    if c.confirm_points > 1:
        # one surprising point pages only when overwhelming; otherwise the surprise
        # (before novelty gating) must persist for confirm_points points in a row
        raw_hot = e["scored"] & (np.minimum(1.0, e["p_raw"] / sens) <= p_star)
        run = np.where(raw_hot, s["hot_run"][rows] + 1, 0)
        s["hot_run"][rows] = np.minimum(run, 1_000_000)
        hot = (hot & (p_adj * c.overwhelm_factor <= p_star)) | (raw_hot & (run >= c.confirm_points))
    cold = 1.0 - p_adj < c.clear_threshold
    in_alert = s["in_alert"][rows]
    gap = np.maximum(c.min_alert_gap_s, c.min_alert_gap_points * s["dt_typ"][rows])
    fired = hot & ~in_alert & (ts - s["last_fire_ts"][rows] >= gap) & (ts >= s["mute_until"][rows])
    calm = np.where(cold, s["calm_run"][rows] + 1, 0)
    new_alert = np.where(hot, True, in_alert & (calm < c.clear_points))
    s["in_alert"][rows] = new_alert
    s["calm_run"][rows] = np.where(new_alert, calm, 0)
    s["last_fire_ts"][rows] = np.where(fired, ts, s["last_fire_ts"][rows])
    return new_alert, fired
