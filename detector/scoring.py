"""Scoring: a sample's calibrated tail probability from the state *before* it (read-only).

:func:`evaluate` runs the views of :mod:`detector.core`'s design (forecast residual,
distribution shift, calibration, extreme value, novelty, warm-up) on one sample per row
and returns everything the alert state machine (:mod:`detector.alerting`) and the state
update (:mod:`detector.learning`) need, so the forecast is computed once per sample. It
writes nothing: ``score_many`` is this, and ``step`` is this, then alerting, then learning.

Cost: ``O(len(rows))`` vectorised work per call.
:mod:`detector.kernel` does the same per sample (``_forecast`` + ``_score``), in the same
operation order, so both paths give identical results.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from detector.calibrate import tail_probability
from detector.config import N_STATS, DetectorConfig
from detector.result import FloatArray, IntArray, StateArrays

__all__ = ["MAE_TO_SIGMA", "evaluate", "tail_rates"]

MAE_TO_SIGMA = math.sqrt(math.pi / 2.0)  # E|N(0, s)| = s * sqrt(2 / pi)


def evaluate(
    c: DetectorConfig, s: StateArrays, rows: IntArray, ts: FloatArray, x: FloatArray
) -> dict[str, Any]:
    """Everything the score needs, from the state before the sample (rows unique). Pure."""
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
    sigma = np.maximum(MAE_TO_SIGMA * err, floor)
    if c.scale_bins > 0:
        bs = np.clip(
            np.floor(np.mod(ts, c.season_s) / c.season_s * c.scale_bins).astype(np.int64),
            0,
            c.scale_bins - 1,
        )
        eb = s["season_err"][rows, bs].astype(np.float64)
        eb_ok = full_season & ~np.isnan(eb)
        # geometric blend: the bin's own error, shrunk towards the overall error
        blended = np.sqrt(np.maximum(MAE_TO_SIGMA * np.where(eb_ok, eb, 0.0), floor) * sigma)
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
        z_pl = (v - pred_plain) / (np.maximum(MAE_TO_SIGMA * e_pl, floor) * gap)
        z_se = (v - pred_seas) / (np.maximum(MAE_TO_SIGMA * e_sbest, floor) * gap)
        z_se = np.where(seas_ok, z_se, np.inf)
        stack = np.stack([z_pl, z_se], axis=1)
        pick = np.argmin(np.abs(stack), axis=1)
        z1 = stack[np.arange(len(pick)), pick]
    z2 = f_new / (sigma * math.sqrt(ar / (2.0 - ar)) * gap)
    z3 = np.log(np.maximum(q_new, 1e-8 * sigma * sigma) / (sigma * sigma)) / math.sqrt(
        2.0 * ar / (2.0 - ar)
    )
    # "went quiet" only means something for a series that was not already flat
    z3 = np.where(MAE_TO_SIGMA * err > 4.0 * floor, z3, np.maximum(z3, 0.0))
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
    rate_pt, rate_all = tail_rates(c, n_model)
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
            for k in range(N_STATS)
        ],
        axis=1,
    )
    if p_rec is not None:
        p_each[:, 0] = np.maximum(p_each[:, 0], p_rec)
    if c.combine == "fisher":
        y = -np.log(np.maximum(p_each, 1e-300)).sum(axis=1)
        p_raw = np.minimum(1.0, np.exp(-y) * (1.0 + y + 0.5 * y * y))
    else:
        used = [k for k in range(N_STATS) if c.views[k] == "1"]
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


def tail_rates(c: DetectorConfig, n_model: IntArray) -> tuple[FloatArray, FloatArray]:
    """Per-row update rate of the tail tables (point view per direction, the others)."""
    if c.tail_prior_points <= 0:
        r = np.full(len(n_model), c.tail_rate)
        return r, r
    n_cal = np.maximum(n_model - c.warmup_points, 0).astype(np.float64)
    r_all = np.maximum(c.tail_rate, 1.0 / (n_cal + c.tail_prior_points))
    r_pt = np.maximum(c.tail_rate, 1.0 / (0.5 * n_cal + c.tail_prior_points))
    return r_pt, r_all
