"""Conformance checks every detector must pass: read-only scoring, batch == one-by-one,
snapshot round-trip, seeded determinism, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest

from causalwatch.errors import StateError
from detector import SCHEMA_VERSION, Detector, DetectorConfig

N_SERIES = 6


def workload(seed: int, n: int = 1500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interleaved samples of several series with different shapes, rows repeating in
    batches, irregular timestamps, a counter, a spike and a level shift."""
    rng = np.random.default_rng(seed)
    rows, ts, xs = [], [], []
    clock = np.zeros(N_SERIES)
    counter = 0.0
    for i in range(n):
        r = int(rng.integers(0, N_SERIES))
        clock[r] += float(rng.uniform(30.0, 90.0))
        t = clock[r]
        if r == 0:
            x = 10.0 + 5.0 * np.sin(2 * np.pi * t / 86_400.0) + rng.normal()
        elif r == 1:
            counter += float(rng.poisson(20.0))
            x = counter
        elif r == 2:
            x = float(rng.choice([0.0, 1.0, 2.0]))
        elif r == 3:
            x = 5.0 + (8.0 if t > 20_000 else 0.0) + rng.normal()
        elif r == 4:
            x = 3.0
        else:
            x = rng.standard_t(3) * (40.0 if i == n // 2 else 1.0)
        rows.append(r)
        ts.append(t)
        xs.append(x)
    return np.array(rows, dtype=np.int64), np.array(ts), np.array(xs)


def test_score_many_is_read_only() -> None:
    rows, ts, x = workload(1)
    det = Detector(capacity=2)
    det.step(rows[:1000], ts[:1000], x[:1000])
    before = det.state_digest()
    snap = det.snapshot()
    out = det.score_many(rows[1000:], ts[1000:], x[1000:])
    assert det.state_digest() == before
    assert np.isfinite(out.score).all() and (out.score >= 0).all() and (out.score <= 1).all()
    for name, arr in det.snapshot().items():
        np.testing.assert_array_equal(arr, snap[name], err_msg=name)
    # unknown rows beyond capacity are scored as "no evidence", still without growing state
    cap = det.capacity
    res = det.score_many([cap + 5], [1.0], [2.0])
    assert res.score[0] == 0.0 and det.capacity == cap


def test_batch_equals_one_by_one() -> None:
    rows, ts, x = workload(2)
    batched = Detector(capacity=1)
    res_b = [
        batched.step(rows[i : i + 97], ts[i : i + 97], x[i : i + 97])
        for i in range(0, len(rows), 97)
    ]
    single = Detector(capacity=1)
    res_s = [single.step(rows[i : i + 1], ts[i : i + 1], x[i : i + 1]) for i in range(len(rows))]
    for field in ("score", "severity", "expected", "lower", "upper", "alert", "fired"):
        got = np.concatenate([getattr(r, field) for r in res_b])
        want = np.concatenate([getattr(r, field) for r in res_s])
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=field)
    assert batched.state_digest() == single.state_digest()


def test_learn_many_matches_step_state() -> None:
    rows, ts, x = workload(3)
    a, b = Detector(), Detector()
    a.learn_many(rows, ts, x)
    b.step(rows, ts, x)
    for name in ("lvl_slow", "lvl_fast", "err_slow", "tails", "season", "n"):
        np.testing.assert_array_equal(a._s[name], b._s[name], err_msg=name)


def test_snapshot_round_trip_continues_identically() -> None:
    rows, ts, x = workload(4)
    cfg = DetectorConfig()
    det = Detector(cfg)
    det.step(rows[:800], ts[:800], x[:800])
    snap = det.snapshot()
    assert int(snap["schema_version"]) == SCHEMA_VERSION
    assert all(not a.flags.writeable for a in snap.values())
    restored = Detector.restore({k: v.copy() for k, v in snap.items()}, cfg)
    r1 = det.step(rows[800:], ts[800:], x[800:])
    r2 = restored.step(rows[800:], ts[800:], x[800:])
    np.testing.assert_array_equal(r1.score, r2.score)
    np.testing.assert_array_equal(r1.fired, r2.fired)
    assert det.state_digest() == restored.state_digest()
    # the snapshot is a copy: stepping the detector did not change it
    assert int(snap["n"].sum()) == 800


def test_restore_rejects_other_schema_versions() -> None:
    snap = dict(Detector().snapshot())
    snap["schema_version"] = np.array(SCHEMA_VERSION + 1)
    with pytest.raises(StateError, match=rf"{SCHEMA_VERSION + 1}.*{SCHEMA_VERSION}"):
        Detector.restore(snap, DetectorConfig())
    del snap["schema_version"]
    with pytest.raises(StateError, match="schema_version"):
        Detector.restore(snap, DetectorConfig())


def test_restore_rejects_layout_mismatch() -> None:
    snap = Detector(DetectorConfig(season_bins=24)).snapshot()
    with pytest.raises(StateError, match="season"):
        Detector.restore(snap, DetectorConfig(season_bins=48))


def test_seeded_determinism() -> None:
    outs = []
    for _ in range(2):
        rows, ts, x = workload(5)
        det = Detector()
        outs.append((det.step(rows, ts, x).score, det.state_digest()))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    assert outs[0][1] == outs[1][1]


def test_bounded_memory_per_series() -> None:
    det = Detector(capacity=16)
    assert det.bytes_per_series <= 1024
    rows, ts, x = workload(6, n=3000)
    det.step(rows, ts, x)
    # state does not grow with the number of samples, only with row slots
    assert det.capacity == 16
    total = sum(a.nbytes for a in det._s.values())
    assert total == det.bytes_per_series * det.capacity
    det.step(np.arange(100, dtype=np.int64), np.full(100, 1e6), np.ones(100))
    assert det.capacity == 128
    assert sum(a.nbytes for a in det._s.values()) == det.bytes_per_series * 128


def test_scores_are_probabilities_and_outputs_finite() -> None:
    rows, ts, x = workload(7)
    res = Detector().step(rows, ts, x)
    assert ((res.score >= 0) & (res.score <= 1)).all()
    assert ((res.severity >= 0) & (res.severity <= 100)).all()
    for name in ("expected", "lower", "upper"):
        assert np.isfinite(getattr(res, name)).all(), name
    assert (res.lower <= res.upper).all()
    assert not (res.fired & ~res.alert).any()


def test_restore_upgrades_a_schema_1_snapshot() -> None:
    """Schema 1 had one novelty memory and one point table for both directions; an upgrade
    keeps what was learned and starts both directions from it."""
    det = Detector()
    rng = np.random.default_rng(5)
    x = rng.normal(5.0, 1.0, 500)
    x[450] = 40.0
    det.step(np.zeros(500, dtype=np.int64), np.arange(500) * 60.0, x)
    snap = {
        k: v.copy() for k, v in det.snapshot().items() if k not in ("surprise_mem_dn", "tail_dn")
    }
    snap["schema_version"] = np.array(1)
    got = Detector.restore(snap, DetectorConfig()).snapshot()
    np.testing.assert_array_equal(got["season"], snap["season"])
    assert int(got["n"][0]) == 500
    assert float(got["surprise_mem_dn"][0]) == float(snap["surprise_mem"][0]) > 0
    np.testing.assert_array_equal(got["tail_dn"], snap["tails"][:, 0, :])
    # a schema 1 snapshot missing an array it did have is still refused, naming it
    del snap["season"]
    with pytest.raises(StateError, match="season"):
        Detector.restore(snap, DetectorConfig())


def test_restore_upgrades_a_schema_2_snapshot() -> None:
    """Schema 2 had no extreme-value records and no persistence run; they start at zero."""
    det = Detector()
    rng = np.random.default_rng(6)
    det.step(np.zeros(300, dtype=np.int64), np.arange(300) * 60.0, rng.normal(5.0, 1.0, 300))
    snap = {
        k: v.copy() for k, v in det.snapshot().items() if k not in ("zmax_up", "zmax_dn", "hot_run")
    }
    snap["schema_version"] = np.array(2)
    got = Detector.restore(snap, DetectorConfig()).snapshot()
    np.testing.assert_array_equal(got["tails"], snap["tails"])
    assert float(got["zmax_up"][0]) == 0.0 and int(got["hot_run"][0]) == 0
    assert int(got["schema_version"]) == SCHEMA_VERSION
