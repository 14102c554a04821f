"""The detector on generated series of each shape ops metrics have (seeded, no shared data)."""

from __future__ import annotations

import numpy as np
import pytest

from causalwatch.errors import StateError
from detector import Detector, DetectorConfig, DetectorResult

STEP_S = 300.0  # 5-minute samples
DAY = int(86_400 / STEP_S)
#: a paging threshold (p < 1e-4 per point); the NAB-tuned default 0.99 pages on weaker evidence
PAGING = {"alert_threshold": 0.9999, "clear_threshold": 0.99}


def run(x: np.ndarray, ts: np.ndarray | None = None, **cfg: float) -> DetectorResult:
    det = Detector(DetectorConfig(**cfg))  # type: ignore[arg-type]
    if ts is None:
        ts = np.arange(len(x)) * STEP_S
    return det.step(np.zeros(len(x), dtype=np.int64), ts, x)


def daily(n: int, rng: np.random.Generator, noise: float = 1.0) -> np.ndarray:
    t = np.arange(n)
    return 50.0 + 20.0 * np.sin(2 * np.pi * t / DAY) + rng.normal(0.0, noise, n)


def test_spike_is_flagged_within_one_point() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(100.0, 2.0, 3000)
    x[2000] = 160.0
    res = run(x)
    assert res.fired[2000]
    assert res.score[2000] > 0.999
    assert res.severity[2000] > 30
    assert not (x[2000] >= res.lower[2000] and x[2000] <= res.upper[2000])


def test_dip_is_flagged() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(100.0, 2.0, 3000)
    x[2500] = 40.0
    res = run(x)
    assert res.fired[2500]


def test_level_shift_fires_once_then_adapts() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(10.0, 1.0, 4000)
    x[2000:] += 15.0
    res = run(x, **PAGING)
    fired = np.flatnonzero(res.fired[1900:]) + 1900
    assert fired.size >= 1 and 2000 <= fired[0] <= 2005
    assert fired.size == 1, f"a level shift paged {fired.size} times at {fired.tolist()}"
    # adapted: a day after the shift the band contains the new level and scores are calm
    assert abs(res.expected[3000] - 25.0) < 2.0
    # (pure noise: a calibrated score passes 0.999 about once per 1,000 points, so the bar
    # is the paging threshold)
    assert res.score[2600:].max() < PAGING["alert_threshold"]
    assert not res.alert[3999]


def test_daily_seasonality_does_not_page() -> None:
    rng = np.random.default_rng(4)
    x = daily(DAY * 10, rng)
    res = run(x, **PAGING)
    assert res.fired[DAY * 2 :].sum() <= 1


def test_sharp_daily_pattern_is_learned() -> None:
    """A square wave (busy hours) should stop paging once a couple of days are seen."""
    rng = np.random.default_rng(5)
    t = np.arange(DAY * 10)
    x = np.where((t % DAY) < DAY // 3, 80.0, 20.0) + rng.normal(0.0, 1.0, len(t))
    res = run(x)
    assert res.fired[DAY * 4 :].sum() == 0


def test_anomaly_on_top_of_seasonality_is_flagged() -> None:
    rng = np.random.default_rng(6)
    x = daily(DAY * 8, rng)
    k = DAY * 6 + 40
    x[k] += 25.0
    res = run(x)
    assert res.fired[k - 1 : k + 2].any()


def test_counter_reset_does_not_page_and_rate_change_does() -> None:
    rng = np.random.default_rng(7)
    inc = rng.poisson(50.0, 4000).astype(float)
    inc[3000:] = rng.poisson(150.0, 1000)  # the rate triples
    x = np.cumsum(inc)
    x[2000:] -= x[1999]  # counter reset (process restart) at 2000
    x[2000:] += inc[2000]
    det = Detector()
    res = det.step(np.zeros(len(x), dtype=np.int64), np.arange(len(x)) * 15.0, x)
    assert det.is_counter[0]
    assert not res.fired[1995:2010].any()
    assert res.fired[3000:3005].any()
    # the expected value is in counter units: last value plus the expected increase
    assert abs(res.expected[2500] - (x[2499] + 50.0)) < 25.0


def test_gap_in_sampling_does_not_page() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(20.0, 1.0, 3000)
    ts = np.arange(3000) * 60.0
    ts[1500:] += 6 * 3600.0  # six hours without data
    res = run(x, ts=ts)
    assert not res.fired[1500:1510].any()


def test_irregular_sampling_still_detects() -> None:
    rng = np.random.default_rng(9)
    ts = np.cumsum(rng.uniform(30.0, 90.0, 3000))
    x = rng.normal(5.0, 0.5, 3000)
    x[2500] = 12.0
    res = run(x, ts=ts)
    assert res.fired[2500]


def test_flat_series_stays_quiet_and_a_break_is_flagged() -> None:
    x = np.full(2000, 3.0)
    x[1500] = 4.0
    res = run(x)
    assert not res.fired[:1500].any()
    assert res.fired[1500]


def test_quantised_series_does_not_page_on_its_usual_steps() -> None:
    rng = np.random.default_rng(10)
    x = rng.choice([0.0, 0.0, 0.0, 1.0], size=4000)
    res = run(x)
    assert res.fired[1000:].sum() <= 2


def test_variance_increase_is_flagged() -> None:
    rng = np.random.default_rng(11)
    x = rng.normal(0.0, 1.0, 4000)
    x[3000:] = rng.normal(0.0, 6.0, 1000)
    res = run(x)
    assert res.fired[3000:3030].any()


def test_mute_suppresses_alerts_but_not_scores() -> None:
    rng = np.random.default_rng(12)
    x = rng.normal(0.0, 1.0, 2000)
    x[1500] = 30.0
    det = Detector()
    det.mute([0], [1500 * 60.0 + 1.0])
    res = det.step(np.zeros(2000, dtype=np.int64), np.arange(2000) * 60.0, x)
    assert not res.fired[1500]
    assert res.score[1500] > 0.999


def test_lower_sensitivity_reduces_alerts() -> None:
    rng = np.random.default_rng(13)
    x = rng.standard_t(3, 6000)
    loud = run(x).fired.sum()
    det = Detector()
    det.set_sensitivity([0], [0.01])
    quiet = det.step(np.zeros(6000, dtype=np.int64), np.arange(6000) * 60.0, x).fired.sum()
    assert quiet < loud


def test_scores_are_calibrated_on_noise() -> None:
    """On stationary noise, about a fraction q of points should score above 1 - q."""
    rng = np.random.default_rng(14)
    x = rng.normal(0.0, 1.0, 20000)
    res = run(x, novelty_decay=0.0)
    s = res.score[2000:]
    frac = float(np.mean(s >= 0.99))
    assert 0.001 < frac < 0.03


def test_bad_sensitivity_and_negative_rows_raise_state_error() -> None:
    det = Detector()
    with pytest.raises(StateError, match="sensitivity"):
        det.set_sensitivity([0], [0.0])
    with pytest.raises(StateError, match="negative"):
        det.step([-1], [0.0], [1.0])
    with pytest.raises(StateError, match="clear_threshold"):
        Detector(DetectorConfig(alert_threshold=0.5, clear_threshold=0.9))
    with pytest.raises(StateError, match="view_weights"):
        Detector(DetectorConfig(view_weights=(1.0, 0.0, 1.0)))


def test_view_weights_share_the_false_alarm_budget() -> None:
    """A spike seen only by the point view scores higher when that view's share grows."""
    rng = np.random.default_rng(15)
    x = rng.normal(100.0, 2.0, 3000)
    x[2000] = 112.0
    equal = run(x, view_weights=(1.0, 1.0, 1.0)).score[2000]
    point = run(x, view_weights=(2.0, 1.0, 1.0)).score[2000]
    assert 0.9 < equal < point < 1.0


def test_stale_rows_and_reset() -> None:
    det = Detector(capacity=4)
    det.step([0, 1, 2], [100.0, 100.0, 5000.0], [1.0, 2.0, 3.0])
    stale = det.stale_rows(now_ts=6000.0, ttl_s=3600.0)
    assert stale.tolist() == [0, 1]
    det.reset_rows(stale)
    assert np.isnan(det.last_ts[0]) and det.last_ts[2] == 5000.0
    assert det.stale_rows(now_ts=6000.0, ttl_s=3600.0).size == 0


def test_capacity_grows_and_views_are_read_only() -> None:
    det = Detector(capacity=2)
    det.step([0, 9], [1.0, 1.0], [1.0, 1.0])
    assert det.capacity >= 10
    assert det.last_value[9] == 1.0
    with pytest.raises(ValueError):
        det.last_value[0] = 5.0


def test_growing_keeps_every_row_as_a_detector_born_that_large() -> None:
    """Growth copies each state array into the larger one (and lets the old one go): the
    result equals a detector that had the room from the start."""
    rng = np.random.default_rng(8)
    grown, roomy = Detector(capacity=1), Detector(capacity=100)
    for k in range(40):
        rows = rng.integers(0, 2 + k, 30)  # new rows beyond capacity every few batches
        ts = 1_800_000_000.0 + 60.0 * (k * 30 + np.arange(30))
        vals = rng.normal(10.0, 1.0, 30)
        a, b = grown.step(rows, ts, vals), roomy.step(rows, ts, vals)
        np.testing.assert_array_equal(a.score, b.score)
    assert grown.capacity < roomy.capacity
    snap_g, snap_r = grown.snapshot(), roomy.snapshot()
    for name, arr in snap_g.items():
        if arr.ndim and arr.shape[0] == grown.capacity:
            np.testing.assert_array_equal(arr, snap_r[name][: grown.capacity], err_msg=name)


def test_a_drop_right_after_a_spike_is_news_but_a_smaller_spike_is_not() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(100.0, 2.0, 3000)
    x[2000] = 160.0  # a surge ...
    x[2010] = 130.0  # ... a smaller one soon after: the same incident, already reported
    x[2020] = 40.0  # ... then an outage: a different story
    res = run(x)
    assert res.score[2000] > 0.9999
    assert res.score[2001:2004].max() < 0.9, "the return from the spike is not news"
    assert res.score[2010] < 0.9
    assert res.score[2020] > 0.9999
    # with the other direction's memory counted in full, the outage would be muted
    muted = run(x, novelty_cross=1.0)
    assert muted.score[2020] < 0.9


def test_weekday_weekend_levels_stop_paging_after_the_first_week() -> None:
    """A weekly pattern is not modelled explicitly (one season); the views adapt to it: the
    first weekend pages, later weekday/weekend switches do not (paging threshold)."""
    rng = np.random.default_rng(11)
    n = DAY * 7 * 5
    t = np.arange(n)
    ts = t * STEP_S
    dow = np.floor(np.mod(ts, 7 * 86_400.0) / 86_400.0)
    weekend = (dow == 2) | (dow == 3)  # unix day 0 was a Thursday
    x = np.where(weekend, 60.0, 100.0) + 15.0 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 2, n)
    res = run(x, ts, **PAGING)
    fired_days = sorted({int(i) // DAY for i in np.flatnonzero(res.fired)})
    assert fired_days and fired_days[0] == 2, fired_days  # the first Saturday is news
    assert all(d < 7 for d in fired_days), f"paged again on days {fired_days}"
    # and the band follows the weekend level once it has been seen
    late_sat = DAY * 30 + DAY // 2
    assert weekend[late_sat]
    assert abs(res.expected[late_sat] - x[late_sat]) < 10.0


def test_trend_does_not_page_and_a_spike_on_it_does() -> None:
    other = 0
    for seed in range(5):
        rng = np.random.default_rng(seed)
        n = 4000
        x = 50.0 + 0.05 * np.arange(n) + rng.normal(0.0, 1.0, n)  # +200 over the run
        x[3500] += 12.0
        res = run(x, **PAGING)
        fired = np.flatnonzero(res.fired[200:]) + 200
        assert 3500 in fired.tolist()
        other += int(fired.size) - 1
        # the forecast keeps up with the trend
        assert abs(res.expected[3000] - (50.0 + 0.05 * 3000)) < 3.0
    # pure noise pages about once in 10,000 points at this threshold; 19,000 points here
    assert other <= 2, f"the trend paged {other} times"


def test_a_noisy_series_that_goes_flat_is_flagged() -> None:
    """A stuck sensor: a noisy metric suddenly repeats one value (variance drop)."""
    rng = np.random.default_rng(13)
    x = rng.normal(100.0, 5.0, 3000)
    x[2500:] = x[2499]
    res = run(x)
    fired = np.flatnonzero(res.fired)
    assert fired.size and 2500 <= fired[fired >= 2500][0] <= 2520, fired[-5:]


def test_silent_during_warm_up_by_points_and_by_time() -> None:
    """A 1 s series has 30 points after 30 s, but no calibration worth paging on: nothing
    scores before warmup_s, however wild the start."""
    rng = np.random.default_rng(11)
    x = rng.standard_t(1.5, 4000)  # very heavy tails from the first point
    ts = np.arange(len(x)) * 1.0
    res = run(x, ts)
    cfg = DetectorConfig()
    assert not res.fired[: int(cfg.warmup_s)].any()
    assert (res.score[: int(cfg.warmup_s)] == 0.0).all()
    # and a 5 min series is silent for its first warmup_points points
    res5 = run(rng.standard_t(1.5, 200))
    assert not res5.fired[: cfg.warmup_points].any()


def test_threshold_means_the_same_rate_per_day_at_any_interval() -> None:
    det = Detector()
    p = det._p_alert(np.array([1.0, 60.0, 300.0]))
    assert p[1] == pytest.approx(1.0 - det.config.alert_threshold)
    assert p[0] == pytest.approx(p[1] / 60.0) and p[2] == pytest.approx(5.0 * p[1])


def test_an_outlier_within_the_series_record_is_not_rarer_than_the_record() -> None:
    """The extreme-value view: once a series produced a 30-sigma outlier, one of the same
    size within the record's memory scores at most 1 - interval / record_s (about once in
    three days), whatever the calibration table extrapolates; without the view it
    score higher."""
    rng = np.random.default_rng(12)
    n = DAY * 3
    x = 10.0 + rng.normal(0.0, 1.0, n)
    x[DAY * 2] += 30.0
    scores = []
    for record_s in (DetectorConfig().record_s, 0.0):
        det = Detector(DetectorConfig(record_s=record_s))
        det.step(np.zeros(n, dtype=np.int64), np.arange(n) * STEP_S, x)
        again = det.score_many([0], [n * STEP_S], [10.0 + 29.0])
        scores.append(float(again.score[0]))
    assert scores[0] <= 1.0 - STEP_S / DetectorConfig().record_s + 1e-12
    assert scores[1] > scores[0]


def test_one_huge_surprise_mutes_its_series_for_at_most_cap_over_decay_points() -> None:
    # a step of ~1,000 sigma: tens of nats of surprise, more than the memory takes in
    rng = np.random.default_rng(5)
    x = rng.normal(6.0, 0.3, 3000)
    x[1500:] += 300.0
    cfg = DetectorConfig(novelty_cap=20.0)
    det = Detector(cfg)
    mem = []
    for i in range(len(x)):
        det.step(np.zeros(1, dtype=np.int64), np.array([i * STEP_S]), x[i : i + 1])
        mem.append(max(det._s["surprise_mem"][0], det._s["surprise_mem_dn"][0]))
    assert max(mem) == pytest.approx(cfg.novelty_cap - cfg.novelty_decay)
    quiet_after = int(cfg.novelty_cap / cfg.novelty_decay)
    # the step's memory is gone once cap / decay points have passed (noise refills a little)
    assert min(mem[1500 + quiet_after : 1500 + quiet_after + 20]) < 5.0
    uncapped = Detector(DetectorConfig(novelty_cap=0.0))
    uncapped.step(np.zeros(1501, dtype=np.int64), np.arange(1501) * STEP_S, x[:1501])
    assert max(uncapped._s["surprise_mem"][0], uncapped._s["surprise_mem_dn"][0]) > 30.0


def test_novelty_cap_must_be_a_non_negative_number() -> None:
    with pytest.raises(StateError, match="novelty_cap"):
        Detector(DetectorConfig(novelty_cap=-1.0))
