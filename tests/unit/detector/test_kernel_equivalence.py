"""The compiled per-point loop (detector/kernel.py) and the numpy reference agree.

Same inputs through both paths: ``fired`` and ``alert`` identical, scores, bands and every
float64 state array within rtol 1e-9 / atol 1e-12 (numpy's SIMD exp/log and libm's differ
in the last bits), float32 tables within one float32 rounding, counters and flags exact.
"""

from __future__ import annotations

import copy
import csv
import itertools
import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import detector.core as core
from detector import Detector, DetectorConfig, DetectorResult

pytest.importorskip("numba")

RTOL, ATOL = 1e-9, 1e-12
F32_RTOL = 2.0**-22  # one float32 rounding of a value that differs in its last float64 bits


def pair(cfg: DetectorConfig | None = None, capacity: int = 4) -> tuple[Detector, Detector]:
    cfg = cfg or DetectorConfig()
    fast = Detector(replace(cfg, backend="auto"), capacity=capacity)
    ref = Detector(replace(cfg, backend="numpy"), capacity=capacity)
    assert (fast.backend, ref.backend) == ("numba", "numpy")
    return fast, ref


def assert_results(a: DetectorResult, b: DetectorResult) -> None:
    assert np.array_equal(a.fired, b.fired)
    assert np.array_equal(a.alert, b.alert)
    for name in ("score", "severity", "expected", "lower", "upper"):
        np.testing.assert_allclose(
            getattr(a, name), getattr(b, name), rtol=RTOL, atol=ATOL, err_msg=name
        )


def assert_state(a: Detector, b: Detector) -> None:
    assert a.capacity == b.capacity
    assert a._s.keys() == b._s.keys()
    for name, x in a._s.items():
        y = b._s[name]
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if x.dtype == np.float64:
            np.testing.assert_allclose(x, y, rtol=RTOL, atol=ATOL, err_msg=name)
        elif x.dtype == np.float32:
            np.testing.assert_allclose(x, y, rtol=F32_RTOL, atol=ATOL, err_msg=name)
        else:
            assert np.array_equal(x, y), name


def feed(fast: Detector, ref: Detector, rows: Any, ts: Any, x: Any, *, learn: bool = False) -> Any:
    if learn:
        fast.learn_many(rows, ts, x)
        ref.learn_many(rows, ts, x)
        assert_state(fast, ref)
        return None
    ra, rb = fast.step(rows, ts, x), ref.step(rows, ts, x)
    assert_results(ra, rb)
    assert_state(fast, ref)
    return ra


def interleave(
    series: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All samples of all series in one stream, each series in time order, the series
    shuffled into each other at random (rows repeat within a batch in any pattern)."""
    owner = np.concatenate([np.full(len(t), k) for k, (t, _) in enumerate(series)])
    owner = rng.permutation(owner)
    pos = [0] * len(series)
    ts, x = np.empty(len(owner)), np.empty(len(owner))
    for i, k in enumerate(owner):
        ts[i], x[i] = series[k][0][pos[k]], series[k][1][pos[k]]
        pos[k] += 1
    return owner.astype(np.int64), ts, x


def batches(n: int, rng: np.random.Generator) -> list[slice]:
    cuts = np.sort(rng.choice(np.arange(1, n), size=min(n - 1, 12), replace=False))
    edges = [0, *cuts.tolist(), n]
    return [slice(a, b) for a, b in itertools.pairwise(edges)]


def run_both(cfg: DetectorConfig, series: list[tuple[np.ndarray, np.ndarray]], seed: int) -> int:
    """Stream the series through both paths in random batches; the number of fires."""
    rng = np.random.default_rng(seed)
    rows, ts, x = interleave(series, rng)
    fast, ref = pair(cfg, capacity=2)
    fires = 0
    for sl in batches(len(rows), rng):
        fires += int(feed(fast, ref, rows[sl], ts[sl], x[sl]).fired.sum())
    return fires


def noisy(n: int, rng: np.random.Generator, dt: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(n) * dt
    x = 100.0 + 10.0 * np.sin(2 * np.pi * t / 86_400.0) + rng.normal(0, 1.0, n)
    x[rng.random(n) < 0.01] += rng.normal(0, 30.0, 1)
    x[n // 2 :] += 15.0  # a level shift
    return t, x


def test_random_series_in_random_batches() -> None:
    rng = np.random.default_rng(1)
    series = [noisy(int(rng.integers(200, 1500)), rng) for _ in range(8)]
    assert run_both(DetectorConfig(), series, seed=2) > 0


def test_many_repeat_patterns() -> None:
    rng = np.random.default_rng(3)
    for pattern in range(6):
        fast, ref = pair(DetectorConfig(warmup_points=10, warmup_s=0.0))
        n_rows = 1 + pattern * 3
        clock = np.zeros(n_rows)
        for _ in range(30):
            size = int(rng.integers(1, 200))
            if pattern % 2:
                rows = np.sort(rng.integers(0, n_rows, size))  # runs of one row
            else:
                rows = rng.integers(0, n_rows, size)
            ts = np.empty(size)
            for i, r in enumerate(rows):
                clock[r] += 60.0
                ts[i] = clock[r]
            x = rng.standard_t(3, size) + np.sin(ts / 3000.0)
            feed(fast, ref, rows, ts, x)


@pytest.mark.parametrize(
    "name",
    [
        "realKnownCause/rogue_agent_key_hold.csv",
        "realTraffic/speed_7578.csv",
        "realAdExchange/exchange-2_cpc_results.csv",
        "realAWSCloudwatch/ec2_cpu_utilization_53ea38.csv",
        "realAWSCloudwatch/rds_cpu_utilization_cc0c53.csv",
        "artificialWithAnomaly/art_daily_jumpsup.csv",
        "artificialNoAnomaly/art_flatline.csv",
    ],
)
def test_nab_files(shared_data: Path, name: str) -> None:
    path = shared_data / "nab-dev" / "data" / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    ts = np.array([np.datetime64(r["timestamp"]).astype("datetime64[s]").astype(float)
                   for r in rows])  # fmt: skip
    x = np.array([float(r["value"]) for r in rows])
    fast, ref = pair()
    n = len(ts)
    r = np.zeros(n, dtype=np.int64)
    # the whole file in one batch, then the same file again on another row in small ones
    feed(fast, ref, r, ts, x)
    for a in range(0, n, 97):
        feed(fast, ref, r[a : a + 97] + 1, ts[a : a + 97], x[a : a + 97])


def counter(n: int, rng: np.random.Generator, resets: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.cumsum(rng.choice([15.0, 15.0, 15.0, 30.0], n))
    inc = rng.poisson(20.0, n).astype(float)
    inc[n // 2 : n // 2 + 20] *= 8.0  # a burst of requests
    x = np.cumsum(inc)
    for k in rng.choice(np.arange(100, n), resets, replace=False):
        x[k:] -= x[k] - 3.0  # the process restarted
    return t, x


def test_counters_with_resets() -> None:
    rng = np.random.default_rng(4)
    series = [counter(900, rng, resets=k) for k in (0, 1, 3)]
    run_both(DetectorConfig(), series, seed=5)
    fast, ref = pair()
    t, x = series[2]
    feed(fast, ref, np.zeros(len(t), dtype=np.int64), t, x)
    assert fast.is_counter[0]


def test_gaps_irregular_flat_and_quantised() -> None:
    rng = np.random.default_rng(6)
    n = 1200
    irregular = np.cumsum(rng.exponential(30.0, n))
    irregular[600:] += 7200.0  # a two-hour gap
    gappy = (irregular, rng.normal(5.0, 0.5, n))
    flat = (np.arange(n) * 60.0, np.full(n, 3.0))
    flat[1][900] = 4.0
    quantised = (np.arange(n) * 10.0, np.round(rng.normal(2.0, 1.0, n)))
    same_ts = (np.repeat(np.arange(n // 2) * 60.0, 2), rng.normal(0, 1, n))  # dt == 0
    run_both(DetectorConfig(), [gappy, flat, quantised, same_ts], seed=7)


def test_full_seasons() -> None:
    rng = np.random.default_rng(8)
    cfg = DetectorConfig(season_s=3600.0, season_bins=24, scale_bins=12)
    t = np.arange(4000) * 60.0  # about 66 seasons
    x = 50.0 + 20.0 * np.sin(2 * np.pi * t / 3600.0) + rng.normal(0, 1.0 + (t % 3600 > 1800), 4000)
    x[3000:3010] += 40.0
    assert run_both(cfg, [(t, x), (t + 30.0, -x)], seed=9) > 0


def test_mute_sensitivity_reset_and_growth() -> None:
    rng = np.random.default_rng(10)
    fast, ref = pair(DetectorConfig(warmup_points=20, warmup_s=0.0), capacity=1)
    clock = 0.0
    for k in range(40):
        rows = rng.integers(0, 3 + 2 * k, 60)  # rows beyond capacity: the arrays grow
        ts = clock + np.arange(60) * 60.0
        clock = float(ts[-1]) + 60.0
        x = rng.normal(0, 1, 60)
        x[rng.random(60) < 0.05] += 25.0
        feed(fast, ref, rows, ts, x)
        if k % 5 == 1:
            for d in (fast, ref):
                d.mute([0, 1, 2], clock + 1800.0)
        if k % 7 == 3:
            for d in (fast, ref):
                d.set_sensitivity([1, 4], [0.25, 8.0])
        if k % 9 == 8:
            for d in (fast, ref):
                d.reset_rows([2, 5, 1000])
    assert fast.capacity > 1


def test_learn_many_then_step_and_score_many() -> None:
    rng = np.random.default_rng(11)
    rows, ts, x = interleave([noisy(700, rng) for _ in range(4)], rng)
    fast, ref = pair()
    feed(fast, ref, rows[:1500], ts[:1500], x[:1500], learn=True)
    feed(fast, ref, rows[1500:], ts[1500:], x[1500:])
    later = np.arange(4, dtype=np.int64)
    sa = fast.score_many(later, np.full(4, 1e6), np.array([0.0, 100.0, 200.0, 1e4]))
    sb = ref.score_many(later, np.full(4, 1e6), np.array([0.0, 100.0, 200.0, 1e4]))
    assert_results(sa, sb)


def test_snapshot_restore_keeps_the_backend_and_the_results() -> None:
    rng = np.random.default_rng(12)
    t, x = noisy(800, rng)
    rows = np.zeros(800, dtype=np.int64)
    fast, ref = pair()
    feed(fast, ref, rows[:400], t[:400], x[:400])
    fast2 = Detector.restore(fast.snapshot(), fast.config)
    ref2 = Detector.restore(ref.snapshot(), ref.config)
    assert (fast2.backend, ref2.backend) == ("numba", "numpy")
    feed(fast2, ref2, rows[400:], t[400:], x[400:])


@pytest.mark.parametrize(
    "changes",
    [
        {"scale_bins": 24},
        {"tail_prior": "laplace", "tail_prior_points": 50.0},
        {"combine": "fisher"},
        {"point_view": "min"},
        {"agree_factor": 10.0},
        {"confirm_points": 3, "overwhelm_factor": 10.0},
        {"record_s": 0.0, "novelty_decay": 0.0},
        {"novelty_cap": 5.0},
        {"novelty_cap": 0.0},
        {"variance_side": "both", "views": "101"},
        {"variance_side": "up", "view_weights": (1.0, 2.0, 3.0)},
        {"min_alert_gap_points": 1, "clear_points": 1, "alert_threshold": 0.99},
    ],
)
def test_non_default_configs(changes: dict[str, Any]) -> None:
    rng = np.random.default_rng(13)
    cfg = replace(DetectorConfig(season_s=7200.0, season_bins=12, warmup_points=15), **changes)
    series = [noisy(900, rng), counter(600, rng, resets=1), noisy(500, rng, dt=5.0)]
    run_both(cfg, series, seed=14)


def test_a_compiled_detector_copies_and_pickles() -> None:
    rng = np.random.default_rng(15)
    t, x = noisy(300, rng)
    rows = np.zeros(300, dtype=np.int64)
    fast, ref = pair()
    feed(fast, ref, rows[:200], t[:200], x[:200])
    for clone in (copy.deepcopy(fast), pickle.loads(pickle.dumps(fast))):
        assert clone.backend == "numba"
        want = copy.deepcopy(ref)
        assert_results(
            clone.step(rows[200:], t[200:], x[200:]), want.step(rows[200:], t[200:], x[200:])
        )
        assert_state(clone, want)


def test_the_loop_covers_every_state_array() -> None:
    from detector import kernel

    names = kernel.F8_FIELDS + kernel.I8_FIELDS + kernel.B1_FIELDS
    assert sorted(names) == sorted(core._SCALAR_FIELDS) and len(set(names)) == len(names)
    for group, dtype in ((kernel.F8_FIELDS, np.float64), (kernel.I8_FIELDS, np.int64),
                         (kernel.B1_FIELDS, np.bool_)):  # fmt: skip
        assert all(core._SCALAR_FIELDS[f][0] is dtype for f in group), group
    tables = set(Detector()._s) - set(names)
    assert tables == {"season", "season_err", "tails", "tail_dn"}


def test_numpy_when_numba_is_missing_or_not_wanted(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Detector(DetectorConfig(backend="numpy")).backend == "numpy"
    monkeypatch.setattr(core, "_KERNEL", None)
    monkeypatch.setattr(core, "_KERNEL_TRIED", True)
    assert Detector().backend == "numpy"
