"""Learning: fold one sample per row into the state (the forecasters, profiles, tails, memory).

:func:`learn` takes what :func:`detector.scoring.evaluate` computed from the state before
the sample (the forecasts, their scales, the residual statistics), so nothing is computed
twice. Every forecaster is updated robustly (Huber-clipped with its own scale), with a
running mean while the series is young and exponential forgetting after; the tail tables
learn only once the series is warm; a sustained one-sided shift re-anchors the levels
(one page per shift). A series that turns out to be a monotonic counter restarts its model
on the rate (:func:`_become_counters`). :mod:`detector.kernel` does the same per sample
(``_learn_*`` and ``_counter_check``).

Cost: ``O(len(rows))`` vectorised work per call; rows must be unique (a batch that repeats
a row is learned in rounds, see :mod:`detector.numpy_step`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detector.calibrate import update_table
from detector.config import N_STATS, DetectorConfig
from detector.result import FloatArray, IntArray, StateArrays
from detector.scoring import MAE_TO_SIGMA, tail_rates
from detector.state import SEASON_DTYPE, fresh

__all__ = ["learn"]

#: the arrays a series restarts from fresh when it becomes a counter (its model, now of
#: the rate); the clock, the counts and the alert state carry on
_MODEL_FIELDS = (
    "n_model", "lvl_slow", "lvl_base", "lvl_fast", "err_slow", "err_fast", "err_seas",
    "lvl_fseas", "err_fseas", "resid_mean", "resid_sq", "shift_run", "season", "season_err",
    "tails", "tail_dn", "zmax_up", "zmax_dn", "hot_run",
)  # fmt: skip


def learn(
    c: DetectorConfig,
    s: StateArrays,
    rows: IntArray,
    ts: FloatArray,
    x: FloatArray,
    e: dict[str, Any],
) -> None:
    """Fold one sample per row (rows unique) into the state."""
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
        hks[name] = c.huber_k * np.maximum(MAE_TO_SIGMA * old, floor)
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
        base + np.maximum(a_base, 1.0 / (nm + 1.0)) * np.clip(deseason0 - base, -hk_seas, hk_seas),
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
    s["season"][rr, b] = np.where(first, 0.0, new_sb).astype(SEASON_DTYPE)
    if c.scale_bins > 0:
        bs = e["bs"][ok]
        eb = s["season_err"][rr, bs].astype(np.float64)
        ar_ = np.minimum(np.abs(e["r"][ok]), e["hk"][ok])
        new_eb = np.where(np.isnan(eb), ar_, eb + a_s * (ar_ - eb))
        s["season_err"][rr, bs] = np.where(first, np.nan, new_eb).astype(SEASON_DTYPE)
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
    rate_pt, rate_all = tail_rates(c, nm)
    point = update_table(np.where(up1, tails[:, 0, :], t_dn), a[:, 0], rate_pt)
    s["tail_dn"][rr] = np.where(wm & ~up1, point, t_dn)
    tails[:, 0, :] = np.where(wm & up1, point, tails[:, 0, :])
    for k in range(1, N_STATS):
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
    if c.novelty_cap > 0:
        su = np.minimum(su, c.novelty_cap)
    for name, side in (("surprise_mem", up), ("surprise_mem_dn", ~up)):
        mem = np.maximum(s[name][rr], np.where(side, su, 0.0)) - c.novelty_decay
        s[name][rr] = np.maximum(mem, 0.0)

    _become_counters(c, s, rows)


def _become_counters(c: DetectorConfig, s: StateArrays, rows: IntArray) -> None:
    """Monotonic non-decreasing and mostly increasing rows are counters from now on: their
    model restarts on the rate."""
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
        new = fresh(c, len(br))
        for name in _MODEL_FIELDS:
            s[name][br] = new[name]
