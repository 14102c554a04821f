"""The detector's per-point loop, compiled with numba: one sample at a time, in order.

Why: :class:`detector.core.Detector` is vectorised across series, so a batch costs one
full numpy pass (about 300 calls) per *repeat* of a row. A Kafka poll hands out one
partition's records at a time, i.e. few series, each many times: 50 series x 400 repeats
is 400 passes at 50 wide. This loop does, per sample, exactly what ``evaluate`` +
``_fill`` + ``alerts`` + the ``last_*`` bookkeeping + ``learn`` do, on the same
struct-of-arrays state (same names, dtypes and shapes, updated in place), so its cost is
the same per point however the batch is laid out.

Why numba rather than hand-written C or Cython: the loop is the numpy code rewritten per
scalar, in Python syntax, next to its reference; numba compiles it at first use (and
caches the machine code on disk) with no build step, no compiler on the target and no
per-platform wheels of our own; the numpy path stays the reference and the fallback when
numba is not importable.

The numpy code (:mod:`detector.numpy_step` over :mod:`detector.scoring`,
:mod:`detector.alerting` and :mod:`detector.learning`) is the reference: every statement
here mirrors one there, with the same operation order (IEEE results are then identical,
except for ULPs where numpy's SIMD ``exp``/``log`` and libm's differ).
``tests/unit/detector/test_kernel_equivalence.py`` checks both paths agree.

State is passed as three tuples of 1-D arrays (``F8_FIELDS``, ``I8_FIELDS``, ``B1_FIELDS``,
indexed by the constants below) plus the four 2-D tables; configuration as one float64
vector (``C_*`` indices, built by :func:`config_vector`).
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from detector.calibrate import LEVELS

__all__ = ["B1_FIELDS", "F8_FIELDS", "I8_FIELDS", "config_vector", "run"]

FloatArray = npt.NDArray[np.float64]

F8_FIELDS = (
    "first_ts", "last_ts", "last_value", "dt_typ", "absdiff", "lvl_slow", "lvl_base",
    "lvl_fast", "err_slow", "err_fast", "err_seas", "lvl_fseas", "err_fseas", "resid_mean",
    "resid_sq", "surprise_mem", "surprise_mem_dn", "zmax_up", "zmax_dn", "last_fire_ts",
    "mute_until", "sensitivity", "last_score", "last_expected", "last_lower", "last_upper",
)  # fmt: skip
(
    FIRST_TS, LAST_TS, LAST_VALUE, DT_TYP, ABSDIFF, LVL_SLOW, LVL_BASE,
    LVL_FAST, ERR_SLOW, ERR_FAST, ERR_SEAS, LVL_FSEAS, ERR_FSEAS, RESID_MEAN,
    RESID_SQ, MEM_UP, MEM_DN, ZMAX_UP, ZMAX_DN, LAST_FIRE_TS,
    MUTE_UNTIL, SENSITIVITY, LAST_SCORE, LAST_EXPECTED, LAST_LOWER, LAST_UPPER,
) = range(len(F8_FIELDS))  # fmt: skip
I8_FIELDS = ("n", "n_model", "n_pos", "n_neg", "shift_run", "hot_run", "calm_run")
N, N_MODEL, N_POS, N_NEG, SHIFT_RUN, HOT_RUN, CALM_RUN = range(len(I8_FIELDS))
B1_FIELDS = ("is_counter", "in_alert")
IS_COUNTER, IN_ALERT = range(len(B1_FIELDS))

# configuration vector
(
    C_SEASON_S, C_BINS, C_SCALE_BINS, C_ALERT_P, C_CLEAR, C_GAP_S, C_GAP_POINTS,
    C_CLEAR_POINTS, C_WARMUP_POINTS, C_WARMUP_S, C_REF_S, C_TAIL_PRIOR_POINTS,
    C_A_SLOW, C_A_FAST, C_A_ERR, C_A_SEASON, C_A_RESID, C_TAIL_RATE, C_TAIL_FLOOR,
    C_NOV_DECAY, C_NOV_CROSS, C_HUBER, C_SHIFT_Z, C_SHIFT_POINTS, C_BAND_Z, C_GAIN,
    C_FISHER, C_USE0, C_USE1, C_USE2, C_W0, C_W1, C_W2, C_N_USED, C_PV_MIN, C_AGREE,
    C_CONFIRM, C_OVERWHELM, C_RECORD_S, C_RECORD_MARGIN, C_VAR_SIDE, C_Z2K, C_Z3K,
    C_NOV_CAP, N_CONFIG,
) = range(45)  # fmt: skip

# per-sample evaluation scratch (what scoring.evaluate returns in the numpy path)
(
    E_N, E_NM, E_DT, E_DX, E_V, E_VALID, E_HAS_PREV, E_B, E_SB, E_SB_KNOWN, E_P_SLOW,
    E_P_FAST, E_P_SEAS, E_P_FSEAS, E_SIGMA, E_HK, E_R, E_F_NEW, E_Q_NEW, E_Z2, E_A0,
    E_A1, E_A2, E_P, E_SCORE, E_SEVERITY, E_EXPECTED, E_LOWER, E_UPPER, E_SCORED,
    E_SURPRISE, E_FLOOR, E_BS, E_UP, E_P_RAW, E_Z1_ABS, E_HK_SEAS, E_DESEASON, N_EVAL,
) = range(39)  # fmt: skip

_MAE_TO_SIGMA = math.sqrt(math.pi / 2.0)
_LEVELS = LEVELS.copy()
_N_LV = len(LEVELS)
_DN = 3  # the downward point table's row in the gathered tables
_FLOOR_SHAPE = np.exp(-1.5 * (LEVELS - LEVELS[0]))
_LOG_LAST_GAP = float(np.log(LEVELS[-1] / LEVELS[-2]))


def config_vector(c: Any) -> FloatArray:
    """The :class:`detector.config.DetectorConfig` fields the loop reads, as one vector."""
    cf = np.zeros(N_CONFIG, dtype=np.float64)
    ar = c.resid_alpha
    used = [k for k in range(3) if c.views[k] == "1"]
    wv = np.asarray(c.view_weights, dtype=np.float64)[used]
    share = wv.sum() / wv  # the same factors as the numpy path's weighted Bonferroni
    vals = {
        C_SEASON_S: c.season_s, C_BINS: c.season_bins, C_SCALE_BINS: c.scale_bins,
        C_ALERT_P: 1.0 - c.alert_threshold, C_CLEAR: c.clear_threshold,
        C_GAP_S: c.min_alert_gap_s, C_GAP_POINTS: c.min_alert_gap_points,
        C_CLEAR_POINTS: c.clear_points, C_WARMUP_POINTS: c.warmup_points,
        C_WARMUP_S: c.warmup_s, C_REF_S: c.ref_interval_s,
        C_TAIL_PRIOR_POINTS: c.tail_prior_points, C_A_SLOW: c.level_alpha_slow,
        C_A_FAST: c.level_alpha_fast, C_A_ERR: c.error_alpha, C_A_SEASON: c.season_alpha,
        C_A_RESID: ar, C_TAIL_RATE: c.tail_rate, C_TAIL_FLOOR: c.tail_floor,
        C_NOV_DECAY: c.novelty_decay, C_NOV_CROSS: c.novelty_cross, C_HUBER: c.huber_k,
        C_SHIFT_Z: c.shift_z, C_SHIFT_POINTS: c.shift_points, C_BAND_Z: c.band_z,
        C_GAIN: c.season_gain, C_FISHER: float(c.combine == "fisher"),
        C_N_USED: len(used), C_PV_MIN: float(c.point_view == "min"),
        C_AGREE: c.agree_factor, C_CONFIRM: c.confirm_points,
        C_OVERWHELM: c.overwhelm_factor, C_RECORD_S: c.record_s,
        C_RECORD_MARGIN: c.record_margin,
        C_VAR_SIDE: {"up": 1.0, "down": -1.0}.get(c.variance_side, 0.0),
        C_Z2K: math.sqrt(ar / (2.0 - ar)), C_Z3K: math.sqrt(2.0 * ar / (2.0 - ar)),
        C_NOV_CAP: c.novelty_cap,
    }  # fmt: skip
    for k, val in vals.items():
        cf[k] = float(val)
    for j, k in enumerate(used):
        cf[C_USE0 + k] = 1.0
        cf[C_W0 + k] = float(share[j])
    return cf


# ---------------------------------------------------------------- numpy's scalar semantics
# error_model="numpy": a division by zero gives inf / NaN as numpy does (no check, no
# exception), which is also what lets the loop run without a branch per division
_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
#: the steps of one sample take arrays: inlined (by numba, into ``_sample``) so that its
#: reference-count pruning drops the atomic incref/decref each array argument of a call
#: costs (they were ~40 % of the time); helpers called several times stay calls (or take
#: scalars), which keeps the first compile at ~7 CPU-s instead of ~13
_step = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")


@_jit
def _mn(a: float, b: float) -> float:
    """``np.minimum``: NaN if either is NaN."""
    if a != a or b != b:
        return math.nan
    return a if a <= b else b


@_jit
def _mx(a: float, b: float) -> float:
    """``np.maximum``: NaN if either is NaN."""
    if a != a or b != b:
        return math.nan
    return a if a >= b else b


@_jit
def _clip(a: float, lo: float, hi: float) -> float:
    return _mn(_mx(a, lo), hi)


@_jit
def _sign(a: float) -> float:
    if a != a:
        return math.nan
    return 1.0 if a > 0 else (-1.0 if a < 0 else 0.0)


@_jit
def _bin(ts: float, season_s: float, bins: int) -> int:
    b = math.floor((ts % season_s) / season_s * bins)
    return min(max(b, 0), bins - 1)


@_jit
def _tail_rates(nm: int, rate: float, prior_points: float, warmup: int) -> tuple[float, float]:
    if prior_points <= 0:
        return rate, rate
    n_cal = float(max(nm - warmup, 0))
    r_all = _mx(rate, 1.0 / (n_cal + prior_points))
    r_pt = _mx(rate, 1.0 / (0.5 * n_cal + prior_points))
    return r_pt, r_all


# ---------------------------------------------------------------- detector.calibrate
@_jit
def _logt(t: float, j: int, floor: float) -> float:
    return math.log(t + floor * _FLOOR_SHAPE[j])


@_jit
def _tail_p(a: float, tb: FloatArray, k: int, floor: float) -> float:
    """``calibrate.tail_probability`` for one value and table ``tb[k]`` (only the knots it
    needs: the same logs as the vectorised version)."""
    last = _N_LV - 1
    if a < _LEVELS[last]:
        seg = 0  # the number of levels <= a
        while seg < last and a >= _LEVELS[seg]:
            seg += 1
        z0 = 0.0 if seg == 0 else _LEVELS[seg - 1]
        l0 = 0.0 if seg == 0 else _logt(tb[k, seg - 1], seg - 1, floor)
        frac = (a - z0) / (_LEVELS[seg] - z0)
        logp = l0 + frac * (_logt(tb[k, seg], seg, floor) - l0)
    else:
        l_last = _logt(tb[k, last], last, floor)
        last_slope = (l_last - _logt(tb[k, last - 1], last - 1, floor)) / _LOG_LAST_GAP
        slope = _mn(last_slope, -3.0)
        lv = _LEVELS[last]
        logp = l_last + slope * math.log(_mx(a, lv) / lv)
    return math.exp(_mn(logp, 0.0))


@_jit
def _update_table(tb: FloatArray, k: int, a: float, rate: float) -> None:
    """``calibrate.update_table`` for table ``tb[k]``, rounded to float32 (its storage)."""
    for j in range(_N_LV):
        hit = 1.0 if a > _LEVELS[j] else 0.0
        tb[k, j] = np.float64(np.float32((1.0 - rate) * tb[k, j] + rate * hit))


# ---------------------------------------------------------------- scoring.evaluate
@_step
def _forecast(r: int, ts: float, x: float, st: Any, si: Any, sb: Any, season: Any,
              season_err: Any, cf: FloatArray, e: FloatArray) -> None:  # fmt: skip
    """First half of ``evaluate``: the forecast, its scale and the residual statistics."""
    n, n_model = si[N], si[N_MODEL]
    dt_typ, is_ctr = st[DT_TYP], sb[IS_COUNTER]
    has_prev = n > 0
    dt = ts - st[LAST_TS] if has_prev else 0.0
    dx = x - st[LAST_VALUE] if has_prev else 0.0
    safe_dt = dt if dt > 0 else (dt_typ if dt_typ > 0 else 1.0)
    reset = is_ctr and dx < 0
    v = dx / safe_dt if is_ctr else x
    season_s = cf[C_SEASON_S]
    b = _bin(ts, season_s, int(cf[C_BINS]))
    sbin = np.float64(season[r, b])
    sb_known = not math.isnan(sbin)
    sb0 = sbin if sb_known else 0.0
    p_slow, p_fast = st[LVL_SLOW], st[LVL_FAST]
    p_seas, p_fseas = st[LVL_BASE] + sb0, st[LVL_FSEAS] + sb0
    e_slow, e_fast, e_seas = st[ERR_SLOW], st[ERR_FAST], st[ERR_SEAS]
    e_fseas = st[ERR_FSEAS]
    full_season = has_prev and (ts - st[FIRST_TS]) >= season_s
    seas_ok = full_season and sb_known
    plain, e_sbest = _mn(e_slow, e_fast), _mn(e_seas, e_fseas)
    use_seas = seas_ok and (e_sbest < cf[C_GAIN] * plain)
    pred_plain = p_fast if e_fast < e_slow else p_slow
    pred_seas = p_fseas if e_fseas < e_seas else p_seas
    pred = pred_seas if use_seas else pred_plain
    err = e_sbest if use_seas else plain
    dtt = dt_typ if dt_typ > 0 else 1.0
    step = st[ABSDIFF] / dtt if is_ctr else st[ABSDIFF]
    floor = _mx(0.05 * step, 1e-9 * (1.0 + abs(pred)))
    sigma = _mx(_MAE_TO_SIGMA * err, floor)
    bs = 0
    if cf[C_SCALE_BINS] > 0:
        bs = _bin(ts, season_s, int(cf[C_SCALE_BINS]))
        eb = np.float64(season_err[r, bs])
        if full_season and not math.isnan(eb):
            blended = math.sqrt(_mx(_MAE_TO_SIGMA * eb, floor) * sigma)
            sigma = _mx(blended, floor)
    ratio = dt / dtt if dt_typ > 0 else 1.0
    gap = 1.0 + 0.5 * math.log(_mx(ratio, 1.0))
    res = v - pred
    hk = cf[C_HUBER] * sigma
    ar = cf[C_A_RESID]
    f_new = (1.0 - ar) * st[RESID_MEAN] + ar * _clip(res, -hk, hk)
    q_new = (1.0 - ar) * st[RESID_SQ] + ar * _mn(res * res, 4.0 * hk * hk)
    z1 = res / (sigma * gap)
    if cf[C_PV_MIN] > 0:
        z_pl = (v - pred_plain) / (_mx(_MAE_TO_SIGMA * plain, floor) * gap)
        z_se = (v - pred_seas) / (_mx(_MAE_TO_SIGMA * e_sbest, floor) * gap)
        z_se = z_se if seas_ok else math.inf
        # np.argmin over |.|: the first of equal ones, a NaN wins
        z1 = z_se if (abs(z_se) < abs(z_pl) or z_se != z_se) and z_pl == z_pl else z_pl
    z2 = f_new / (sigma * cf[C_Z2K] * gap)
    z3 = math.log(_mx(q_new, 1e-8 * sigma * sigma) / (sigma * sigma)) / cf[C_Z3K]
    if not _MAE_TO_SIGMA * err > 4.0 * floor:
        z3 = _mx(z3, 0.0)
    if cf[C_VAR_SIDE] > 0:
        z3 = _mx(z3, 0.0)
    elif cf[C_VAR_SIDE] < 0:
        z3 = _mn(z3, 0.0)
    e[E_N], e[E_NM], e[E_DT], e[E_DX], e[E_V] = n, n_model, dt, dx, v
    e[E_VALID] = (not reset) and (not is_ctr or has_prev)
    e[E_HAS_PREV], e[E_B], e[E_SB], e[E_SB_KNOWN] = has_prev, b, sbin, sb_known
    e[E_P_SLOW], e[E_P_FAST], e[E_P_SEAS], e[E_P_FSEAS] = p_slow, p_fast, p_seas, p_fseas
    e[E_SIGMA], e[E_HK], e[E_R], e[E_F_NEW], e[E_Q_NEW] = sigma, hk, res, f_new, q_new
    e[E_Z2], e[E_FLOOR], e[E_BS] = z2, floor, bs
    e[E_Z1_ABS] = abs(z1) if math.isfinite(z1) else 1e12
    for k, z in ((E_A0, z1), (E_A1, z2), (E_A2, z3)):
        a = _mn(abs(z), 60.0)
        e[k] = a if math.isfinite(a) else 60.0
    e[E_UP] = z1 >= 0
    e[E_EXPECTED] = st[LAST_VALUE] + pred * safe_dt if is_ctr else pred
    half = cf[C_BAND_Z] * sigma * gap
    half_x = half * safe_dt if is_ctr else half
    e[E_LOWER] = e[E_EXPECTED] - half_x
    e[E_UPPER] = e[E_EXPECTED] + half_x


@_step
def _score(ts: float, st: Any, tb: FloatArray, cf: FloatArray, e: FloatArray) -> None:
    """Second half of ``evaluate``: calibrated views, combination, warm-up and novelty."""
    up = e[E_UP] > 0
    nm = int(e[E_NM])
    rate_pt, rate_all = _tail_rates(
        nm, cf[C_TAIL_RATE], cf[C_TAIL_PRIOR_POINTS], int(cf[C_WARMUP_POINTS])
    )
    fl = cf[C_TAIL_FLOOR]
    p0 = _tail_p(e[E_A0], tb, 0 if up else _DN, fl * rate_pt)
    p1 = _tail_p(e[E_A1], tb, 1, fl * rate_all)
    p2 = _tail_p(e[E_A2], tb, 2, fl * rate_all)
    if cf[C_RECORD_S] > 0:
        zmax = st[ZMAX_UP] if up else st[ZMAX_DN]
        once = _mn(1.0, _mx(st[DT_TYP], 1.0) / cf[C_RECORD_S])
        p0 = _mx(p0, once if e[E_Z1_ABS] <= cf[C_RECORD_MARGIN] * zmax else 0.0)
    if cf[C_FISHER] > 0:
        y = -(math.log(_mx(p0, 1e-300)) + math.log(_mx(p1, 1e-300)) + math.log(_mx(p2, 1e-300)))
        p_raw = _mn(1.0, math.exp(-y) * (1.0 + y + 0.5 * y * y))
    else:
        lo = math.inf
        second = math.inf
        for k, pk in ((0, p0), (1, p1), (2, p2)):
            if cf[C_USE0 + k] > 0:
                pw = pk * cf[C_W0 + k]
                if pw < lo or pw != pw:
                    lo, second = pw, lo
                elif pw < second:
                    second = pw
        p_raw = _mn(1.0, lo)
        if cf[C_AGREE] > 0 and cf[C_N_USED] > 1:
            p_raw = _mn(1.0, _mn(cf[C_AGREE] * p_raw, second))
    first_ts = st[FIRST_TS]
    old_enough = e[E_HAS_PREV] > 0 and ts - first_ts >= cf[C_WARMUP_S]
    scored = e[E_VALID] > 0 and nm >= cf[C_WARMUP_POINTS] and old_enough
    if not scored:
        p_raw = 1.0
    surprise = -math.log(_mx(p_raw, 1e-300))
    m_up, m_dn = st[MEM_UP], st[MEM_DN]
    same, other = (m_up, m_dn) if up else (m_dn, m_up)
    mem = _mx(same, cf[C_NOV_CROSS] * other)
    p = math.exp(-_mx(surprise - mem, 0.0)) if cf[C_NOV_DECAY] > 0 else p_raw
    e[E_P], e[E_P_RAW], e[E_SCORE], e[E_SCORED], e[E_SURPRISE] = p, p_raw, 1.0 - p, scored, surprise
    sev = 100.0 * (-math.log10(_mx(p, 1e-300))) / 8.0
    e[E_SEVERITY] = _clip(sev, 0.0, 100.0)


# ---------------------------------------------------------------- alerting.alerts
@_step
def _alerts(
    ts: float, st: Any, si: Any, sb: Any, cf: FloatArray, e: FloatArray
) -> tuple[bool, bool]:
    """The alert state machine for one sample; returns (alert after it, fired)."""
    sens = st[SENSITIVITY]
    dt_typ = st[DT_TYP]
    ref = cf[C_REF_S]
    p_adj = _mn(1.0, e[E_P] / sens)
    p_star = cf[C_ALERT_P] * _clip((dt_typ if dt_typ > 0 else ref) / ref, 1e-3, 10.0)
    scored = e[E_SCORED] > 0
    hot = scored and p_adj <= p_star
    if cf[C_CONFIRM] > 1:
        raw_hot = scored and _mn(1.0, e[E_P_RAW] / sens) <= p_star
        run = si[HOT_RUN] + 1 if raw_hot else 0
        si[HOT_RUN] = min(run, 1_000_000)
        hot = (hot and p_adj * cf[C_OVERWHELM] <= p_star) or (raw_hot and run >= cf[C_CONFIRM])
    cold = 1.0 - p_adj < cf[C_CLEAR]
    in_alert = sb[IN_ALERT]
    gap = _mx(cf[C_GAP_S], cf[C_GAP_POINTS] * dt_typ)
    fired = hot and not in_alert and (ts - st[LAST_FIRE_TS] >= gap) and ts >= st[MUTE_UNTIL]
    calm = si[CALM_RUN] + 1 if cold else 0
    new_alert = True if hot else (in_alert and calm < cf[C_CLEAR_POINTS])
    sb[IN_ALERT] = new_alert
    si[CALM_RUN] = calm if new_alert else 0
    if fired:
        st[LAST_FIRE_TS] = ts
    return new_alert, fired


# ---------------------------------------------------------------- learning.learn
@_step
def _learn_clock(ts: float, x: float, st: Any, si: Any, e: FloatArray) -> None:
    """Sampling interval, step size, counts and last sample (every sample)."""
    has_prev = e[E_HAS_PREV] > 0
    dt, dx = e[E_DT], e[E_DX]
    dt_typ = st[DT_TYP]
    dtc = _clip(dt, 0.2 * dt_typ, 5.0 * dt_typ) if dt_typ > 0 else dt
    if has_prev and dt > 0:
        st[DT_TYP] = 0.95 * dt_typ + 0.05 * dtc if dt_typ > 0 else dt
    ad = abs(dx)
    absdiff = st[ABSDIFF]
    if has_prev and ad > 0:
        st[ABSDIFF] = 0.98 * absdiff + 0.02 * ad if absdiff > 0 else ad
    if has_prev and dx > 0:
        si[N_POS] += 1
    if has_prev and dx < 0:
        si[N_NEG] += 1
    n = int(e[E_N])
    si[N] = n + 1
    if n == 0:
        st[FIRST_TS] = ts
    st[LAST_TS] = ts
    st[LAST_VALUE] = x


@_jit
def _learn_err(
    old: float, v: float, pred: float, floor: float, huber: float, w: float, first: bool
) -> tuple[float, float]:
    """One forecaster's robust absolute error and its Huber bound (from the old scale)."""
    hk = huber * _mx(_MAE_TO_SIGMA * old, floor)
    ri = _mn(abs(v - pred), hk)
    return (0.0 if first else old + w * (ri - old)), hk


@_step
def _learn_levels(st: Any, cf: FloatArray, e: FloatArray) -> float:
    """Robust errors and levels of the four forecasters; returns the old baseline."""
    v, nm = e[E_V], e[E_NM]
    first = nm == 0
    w_err = _mx(cf[C_A_ERR], 1.0 / (nm + 1.0))
    w_slow = _mx(cf[C_A_SLOW], 1.0 / (nm + 1.0))
    w_fast = _mx(cf[C_A_FAST], 1.0 / (nm + 1.0))
    huber, fl = cf[C_HUBER], e[E_FLOOR]
    st[ERR_SLOW], hk_slow = _learn_err(st[ERR_SLOW], v, e[E_P_SLOW], fl, huber, w_err, first)
    st[ERR_FAST], hk_fast = _learn_err(st[ERR_FAST], v, e[E_P_FAST], fl, huber, w_err, first)
    st[ERR_SEAS], hk_seas = _learn_err(st[ERR_SEAS], v, e[E_P_SEAS], fl, huber, w_err, first)
    st[ERR_FSEAS], hk_fs = _learn_err(st[ERR_FSEAS], v, e[E_P_FSEAS], fl, huber, w_err, first)
    deseason0 = v - (e[E_SB] if e[E_SB_KNOWN] > 0 else 0.0)
    e[E_DESEASON] = deseason0
    lfs = st[LVL_FSEAS]
    st[LVL_FSEAS] = v if first else lfs + w_fast * _clip(deseason0 - lfs, -hk_fs, hk_fs)
    ls = st[LVL_SLOW]
    st[LVL_SLOW] = v if first else ls + w_slow * _clip(v - ls, -hk_slow, hk_slow)
    base: float = st[LVL_BASE]
    a_base = _clip(st[DT_TYP] / cf[C_SEASON_S], 1e-4, cf[C_A_SLOW])
    st[LVL_BASE] = (
        v if first
        else base + _mx(a_base, 1.0 / (nm + 1.0)) * _clip(deseason0 - base, -hk_seas, hk_seas)
    )  # fmt: skip
    lf = st[LVL_FAST]
    st[LVL_FAST] = v if first else lf + w_fast * _clip(v - lf, -hk_fast, hk_fast)
    e[E_HK_SEAS] = hk_seas
    return base


@_step
def _learn_profiles(r: int, ts: float, base: float, st: Any, season: Any, season_err: Any,
                    cf: FloatArray, e: FloatArray) -> None:  # fmt: skip
    """The time-of-season profile (and error profile), stored as float32."""
    first = e[E_NM] == 0
    hk_seas = e[E_HK_SEAS]
    dev = e[E_V] - base
    sb = e[E_SB]
    seasons_seen = np.floor((ts - st[FIRST_TS]) / cf[C_SEASON_S])
    a_s = _mx(cf[C_A_SEASON], 1.0 / (seasons_seen + 1.0))
    new_sb = sb + a_s * _clip(dev - sb, -hk_seas, hk_seas) if e[E_SB_KNOWN] > 0 else dev
    season[r, int(e[E_B])] = np.float32(0.0 if first else new_sb)
    if cf[C_SCALE_BINS] > 0:
        bs = int(e[E_BS])
        eb = np.float64(season_err[r, bs])
        ar_ = _mn(abs(e[E_R]), e[E_HK])
        new_eb = ar_ if math.isnan(eb) else eb + a_s * (ar_ - eb)
        season_err[r, bs] = np.float32(math.nan if first else new_eb)


@_step
def _learn_tails(tb: FloatArray, cf: FloatArray, e: FloatArray) -> None:
    """Exceedance tables (point view per direction), only once warm."""
    if not e[E_NM] >= cf[C_WARMUP_POINTS]:
        return
    rate_pt, rate_all = _tail_rates(
        int(e[E_NM]), cf[C_TAIL_RATE], cf[C_TAIL_PRIOR_POINTS], int(cf[C_WARMUP_POINTS])
    )
    _update_table(tb, 0 if e[E_UP] > 0 else _DN, e[E_A0], rate_pt)
    _update_table(tb, 1, e[E_A1], rate_all)
    _update_table(tb, 2, e[E_A2], rate_all)


@_step
def _learn_memory(st: Any, si: Any, cf: FloatArray, e: FloatArray) -> None:
    """Level-shift re-anchoring, extreme-value records and novelty memories."""
    v, nm = e[E_V], e[E_NM]
    warm = nm >= cf[C_WARMUP_POINTS]
    first = nm == 0
    st[RESID_MEAN] = 0.0 if first else e[E_F_NEW]
    st[RESID_SQ] = 0.0 if first else e[E_Q_NEW]
    z2 = e[E_Z2]
    same_side = _sign(z2) == _sign(e[E_R])
    run = si[SHIFT_RUN] + 1 if (abs(z2) >= cf[C_SHIFT_Z] and same_side and warm) else 0
    if run >= cf[C_SHIFT_POINTS]:
        st[LVL_SLOW] = v
        st[LVL_BASE] = e[E_DESEASON]
        st[LVL_FSEAS] = e[E_DESEASON]
        st[LVL_FAST] = v
        st[RESID_MEAN] = 0.0
        st[RESID_SQ] = e[E_SIGMA] * e[E_SIGMA]
        run = 0
    si[SHIFT_RUN] = run
    si[N_MODEL] = int(nm) + 1
    up = e[E_UP] > 0
    if cf[C_RECORD_S] > 0:
        fade = math.exp(-_mx(e[E_DT], 0.0) / cf[C_RECORD_S])
        z1a = _mn(e[E_Z1_ABS], 1e6) if warm else 0.0
        st[ZMAX_UP] = _mx(st[ZMAX_UP] * fade, z1a if up else 0.0)
        st[ZMAX_DN] = _mx(st[ZMAX_DN] * fade, 0.0 if up else z1a)
    su, decay = e[E_SURPRISE], cf[C_NOV_DECAY]
    if cf[C_NOV_CAP] > 0:
        su = _mn(su, cf[C_NOV_CAP])
    st[MEM_UP] = _mx(_mx(st[MEM_UP], su if up else 0.0) - decay, 0.0)
    st[MEM_DN] = _mx(_mx(st[MEM_DN], 0.0 if up else su) - decay, 0.0)


@_step
def _counter_check(r: int, st: Any, si: Any, sb: Any, season: Any, season_err: Any,
                   tb: FloatArray, prior: Any, cf: FloatArray) -> None:  # fmt: skip
    """A monotonic, mostly increasing series becomes a counter: its model starts afresh."""
    n = si[N]
    n1 = n - 1
    if sb[IS_COUNTER] or not n >= cf[C_WARMUP_POINTS]:
        return
    if not (si[N_POS] >= 0.8 * n1 and si[N_NEG] <= _mx(1.0, 0.02 * n1)):
        return
    sb[IS_COUNTER] = True
    si[N_MODEL] = 0
    si[SHIFT_RUN] = 0
    si[HOT_RUN] = 0
    st[LVL_SLOW] = st[LVL_BASE] = st[LVL_FAST] = st[LVL_FSEAS] = 0.0
    st[ERR_SLOW] = st[ERR_FAST] = st[ERR_SEAS] = st[ERR_FSEAS] = 0.0
    st[RESID_MEAN] = st[RESID_SQ] = st[ZMAX_UP] = st[ZMAX_DN] = 0.0
    for j in range(season.shape[1]):
        season[r, j] = np.nan
    for j in range(season_err.shape[1]):
        season_err[r, j] = np.nan
    for j in range(_N_LV):
        tb[0, j] = tb[1, j] = tb[2, j] = tb[_DN, j] = prior[j]


# ---------------------------------------------------------------- the batch loop
@_jit
def _sample(r: int, t: float, xi: float, st: Any, si: Any, sb: Any, tb: FloatArray,
            season: Any, season_err: Any, prior: Any, cf: FloatArray, e: FloatArray,
            alerts: bool) -> tuple[bool, bool]:  # fmt: skip
    """One sample of one row, on its scalar state and tail tables gathered into
    ``st``/``si``/``sb``/``tb`` (float64 scratch, no array views in the loop)."""
    _forecast(r, t, xi, st, si, sb, season, season_err, cf, e)
    _score(t, st, tb, cf, e)
    alert = fired = False
    if alerts:
        alert, fired = _alerts(t, st, si, sb, cf, e)
        st[LAST_SCORE], st[LAST_EXPECTED] = e[E_SCORE], e[E_EXPECTED]
        st[LAST_LOWER], st[LAST_UPPER] = e[E_LOWER], e[E_UPPER]
    _learn_clock(t, xi, st, si, e)
    if e[E_VALID] > 0:
        base = _learn_levels(st, cf, e)
        _learn_profiles(r, t, base, st, season, season_err, cf, e)
        _learn_tails(tb, cf, e)
        _learn_memory(st, si, cf, e)
    _counter_check(r, st, si, sb, season, season_err, tb, prior, cf)
    return alert, fired


@_jit
def _run(f8: Any, i8: Any, b1: Any, season: Any, season_err: Any, tails: Any, tail_dn: Any,
         prior: Any, cf: FloatArray, rows: Any, ts: Any, x: Any, score: Any, severity: Any,
         expected: Any, lower: Any, upper: Any, alert: Any, fired: Any,
         alerts: bool) -> None:  # fmt: skip
    e = np.empty(N_EVAL)
    st = np.empty(len(f8))
    si = np.empty(len(i8), dtype=np.int64)
    sb = np.empty(len(b1), dtype=np.bool_)
    tb = np.empty((4, _N_LV))  # tails[r, 0..2] and tail_dn[r]
    for i in range(len(rows)):
        r = rows[i]
        for k in range(len(f8)):
            st[k] = f8[k][r]
        for k in range(len(i8)):
            si[k] = i8[k][r]
        for k in range(len(b1)):
            sb[k] = b1[k][r]
        for j in range(_N_LV):
            tb[0, j], tb[1, j], tb[2, j] = tails[r, 0, j], tails[r, 1, j], tails[r, 2, j]
            tb[_DN, j] = tail_dn[r, j]
        a, f = _sample(r, ts[i], x[i], st, si, sb, tb, season, season_err, prior, cf, e,
                       alerts)  # fmt: skip
        for k in range(len(f8)):
            f8[k][r] = st[k]
        for k in range(len(i8)):
            i8[k][r] = si[k]
        for k in range(len(b1)):
            b1[k][r] = sb[k]
        for j in range(_N_LV):  # float32-exact values (rounded when learned)
            tails[r, 0, j], tails[r, 1, j], tails[r, 2, j] = tb[0, j], tb[1, j], tb[2, j]
            tail_dn[r, j] = tb[_DN, j]
        if alerts:
            score[i], severity[i], expected[i] = e[E_SCORE], e[E_SEVERITY], e[E_EXPECTED]
            lower[i], upper[i], alert[i], fired[i] = e[E_LOWER], e[E_UPPER], a, f


def _plain(a: Any) -> Any:
    """C-contiguous and writable, the one array layout the loop is compiled for (another
    layout would compile a second specialisation, seconds of CPU)."""
    return a if a.flags.c_contiguous and a.flags.writeable else np.array(a, order="C")


def run(s: dict[str, Any], prior: Any, cf: FloatArray, rows: Any, ts: Any, x: Any,
        out: Any) -> None:  # fmt: skip
    """Step (``out`` a DetectorResult to fill) or learn (``out`` None) a batch in order."""
    rows, ts, x = _plain(rows), _plain(ts), _plain(x)
    f8 = tuple(s[k] for k in F8_FIELDS)
    i8 = tuple(s[k] for k in I8_FIELDS)
    b1 = tuple(s[k] for k in B1_FIELDS)
    if out is None:
        z, b = np.empty(0), np.empty(0, dtype=np.bool_)
        res = (z, z, z, z, z, b, b)
    else:
        res = (out.score, out.severity, out.expected, out.lower, out.upper, out.alert, out.fired)
    _run(f8, i8, b1, s["season"], s["season_err"], s["tails"], s["tail_dn"], prior, cf,
         rows, ts, x, *res, out is not None)  # fmt: skip
