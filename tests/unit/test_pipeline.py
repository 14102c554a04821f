from __future__ import annotations

import numpy as np

from causalwatch.app.pipeline import (
    Adapters,
    build_cores,
    build_pipeline,
    evict_stale,
    in_order_mask,
    process_samples,
)
from causalwatch.models import SampleBatch
from causalwatch.schemas import FalsePositive, Mute
from causalwatch.settings import load_settings


def test_in_order_mask_rejects_repeats_and_late_samples() -> None:
    rows = np.array([0, 1, 0, 0, 1, 0])
    ts = np.array([10.0, 5.0, 10.0, 12.0, 4.0, 11.0])
    last = np.array([9.0, np.nan])
    keep = in_order_mask(rows, ts, last)
    # row 0: 10 ok, 10 repeat, 12 ok, 11 late; row 1: 5 ok, 4 late
    assert keep.tolist() == [True, True, False, True, False, False]


def test_in_order_mask_against_state() -> None:
    keep = in_order_mask(np.array([0, 0]), np.array([5.0, 6.0]), np.array([5.0]))
    assert keep.tolist() == [False, True]


def _feed(cores, keys, t0, n):  # type: ignore[no-untyped-def]
    for i in range(n):
        batch = SampleBatch.from_lists(keys, [t0 + 60.0 * i] * len(keys), [1.0 + i % 3] * len(keys))
        rows = cores.index.rows_for(batch.series_keys)
        process_samples(cores, rows, batch)


def test_eviction_frees_rows_and_a_new_series_starts_fresh() -> None:
    cores = build_cores(load_settings())
    _feed(cores, ['a{service="x"}', 'b{service="y"}'], 0.0, 50)
    _feed(cores, ['a{service="x"}'], 3000.0, 100)  # b stops at t=2940
    det = cores.detector
    assert det is not None
    b_row = cores.index.get('b{service="y"}')
    assert b_row is not None
    assert evict_stale(cores, now_s=8940.0, ttl_s=3600.0) == 1
    assert 'b{service="y"}' not in cores.index and len(cores.index) == 1
    assert evict_stale(cores, now_s=8940.0, ttl_s=3600.0) == 0
    # The freed row is reused by the next new series, with no state of the old one.
    new_row = cores.index.add('c{service="z"}')
    assert new_row == b_row
    assert int(det.snapshot()["n"][new_row]) == 0
    assert np.isnan(det.last_ts[new_row])


def test_batch_equals_one_by_one_through_the_pipeline() -> None:
    rng = np.random.default_rng(3)
    keys = ['m{service="a"}', 'm{service="b"}']
    n = 300
    ts = np.repeat(np.arange(n) * 60.0, 2)
    x = rng.normal(10, 1, 2 * n)
    x[500] += 15
    k = keys * n
    whole = build_cores(load_settings())
    out = process_samples(
        whole, whole.index.rows_for(k), SampleBatch.from_lists(k, ts.tolist(), x.tolist())
    )
    one = build_cores(load_settings())
    scores = []
    for i in range(0, 2 * n, 7):
        b = SampleBatch.from_lists(k[i : i + 7], ts[i : i + 7].tolist(), x[i : i + 7].tolist())
        r = process_samples(one, one.index.rows_for(b.series_keys), b)
        assert r.result is not None
        scores.append(r.result.score)
    assert out.result is not None
    np.testing.assert_allclose(out.result.score, np.concatenate(scores))


def test_sensitivity_rules_apply_to_new_and_reused_rows() -> None:
    """A label set configured quieter does not page on the spike that pages its twin; the
    rule also reaches a series that takes over an evicted row."""
    settings = load_settings(
        detector={
            "sensitivity": [
                {"matchers": {"service": "batch"}, "factor": 1e-9},
                {"matchers": {"__name__": "m"}, "factor": 2.0},
            ]
        }
    )
    cores = build_cores(settings)
    det = cores.detector
    assert det is not None
    rng = np.random.default_rng(8)
    keys = ['m{service="batch"}', 'm{service="web"}', 'other{service="web"}']
    n = 600
    x = rng.normal(10.0, 1.0, (n, 3))
    x[500, :] += 12.0  # the same spike on all three
    fired = np.zeros(3, dtype=int)
    for i in range(n):
        b = SampleBatch.from_lists(keys, [60.0 * i] * 3, x[i].tolist())
        out = process_samples(cores, cores.index.rows_for(b.series_keys), b)
        assert out.result is not None
        fired += out.result.fired
    assert fired[0] == 0 and fired[1] >= 1 and fired[2] >= 1
    rows = [cores.index.get(k) for k in keys]
    snap = det.snapshot()["sensitivity"]
    assert [float(snap[r]) for r in rows] == [1e-9, 2.0, 1.0]
    # 'm{service="web"}' goes quiet and is evicted; a new batch series reuses its row
    _feed(cores, [keys[0], keys[2]], 60.0 * n, 80)
    assert evict_stale(cores, now_s=60.0 * (n + 80), ttl_s=3000.0) == 1
    _feed(cores, ['m{service="batch",job="b"}'], 60.0 * (n + 80), 1)
    reused = cores.index.get('m{service="batch",job="b"}')
    assert reused == rows[1]
    assert float(det.snapshot()["sensitivity"][reused]) == 1e-9


def test_changed_sensitivity_rules_reach_restored_series() -> None:
    """A checkpoint taken under one set of rules, restored under another: the live series
    get the new rules (the state's own sensitivity is overwritten)."""
    keys = ['m{service="batch"}', 'm{service="web"}']
    before = load_settings()
    stage = build_pipeline(before).stage
    _feed(stage.cores, keys, 0.0, 40)
    cp = stage.snapshot()
    after = load_settings(
        detector={"sensitivity": [{"matchers": {"service": "batch"}, "factor": 0.05}]}
    )
    restored = build_pipeline(after).stage
    restored.restore(cp)
    det = restored.cores.detector
    assert det is not None
    sens = det.snapshot()["sensitivity"]
    got = {k: float(sens[restored.cores.index.get(k)]) for k in keys}  # type: ignore[index]
    assert got == {keys[0]: 0.05, keys[1]: 1.0}
    assert int(det.snapshot()["n"][restored.cores.index.get(keys[0])]) == 40  # type: ignore[index]


class _Feedback:
    """An in-memory feedback store (plain lists), as the Redis one answers."""

    def __init__(self) -> None:
        self.mutes: list[Mute] = []
        self.marks: list[FalsePositive] = []

    def active_mutes(self, now: float) -> list[Mute]:
        return [m for m in self.mutes if m.until > now]

    def false_positives_since(self, ts: float) -> list[FalsePositive]:
        return [f for f in self.marks if f.marked_at > ts]


def test_the_builder_passes_feedback_hooks_to_the_stage() -> None:
    """Hooks are built from the adapters and given to the stage's constructor: each
    false-positive mark halves the configured sensitivity, a mute reaches the detector."""
    settings = load_settings(
        detector={"sensitivity": [{"matchers": {"service": "web"}, "factor": 2.0}]}
    )
    fb = _Feedback()
    pipe = build_pipeline(settings, "all", Adapters(feedback=fb))
    assert isinstance(pipe.stage.hooks, tuple) and len(pipe.stage.hooks) == 1
    keys = ['m{service="web"}', 'm{service="db"}']
    pipe.process(SampleBatch.from_lists(keys, [0.0, 0.0], [1.0, 1.0]))
    det = pipe.cores.detector
    assert det is not None
    web, db = (pipe.cores.index.get(k) for k in keys)
    fb.marks += [
        FalsePositive(incident_id=f"i{n}", marked_at=float(n), series=[keys[0]]) for n in (1, 2)
    ]
    fb.mutes.append(Mute(id="m", matchers={"service": "db"}, until=500.0))
    pipe.stage.periodic(10.0)
    snap = det.snapshot()
    assert float(snap["sensitivity"][web]) == 2.0 * 0.5**2
    assert float(snap["sensitivity"][db]) == 1.0
    assert float(snap["mute_until"][db]) == 500.0
    fb.marks.append(FalsePositive(incident_id="i3", marked_at=3.0, series=[keys[0]]))
    pipe.stage.periodic(11.0)  # within the poll interval: nothing read yet
    assert float(det.snapshot()["sensitivity"][web]) == 0.5
    pipe.stage.periodic(13.0)
    assert float(det.snapshot()["sensitivity"][web]) == 0.25


def test_replay_and_live_roles_share_the_builder() -> None:
    """The detector role has no explainer, the explainer role no detector; a pipeline
    without a source refuses to run."""
    import threading

    import pytest

    from causalwatch.errors import CausalwatchError

    settings = load_settings()
    assert build_pipeline(settings, "detector").cores.explainer is None
    assert build_pipeline(settings, "explainer").cores.detector is None
    with pytest.raises(CausalwatchError, match="source"):
        build_pipeline(settings).run(threading.Event())


def test_explainer_stage_keeps_scores_aligned_when_its_index_refuses_a_series() -> None:
    """A scores message whose first series is refused (series limit): the alert flag of
    the kept series is its own, not its neighbour's."""
    from causalwatch.app.pipeline import Cores
    from causalwatch.models import RawRecord
    from causalwatch.series import SeriesIndex
    from causalwatch.wire import encode_columns

    seen: list[list[str]] = []

    class Recorder:  # an explainer that records the alerts it is given
        def observe(self, rows, ts, x):  # type: ignore[no-untyped-def]
            pass

        def on_anomalies(self, events, now_ts):  # type: ignore[no-untyped-def]
            seen.append([e.series_key for e in events])
            return []

        def close_stale(self, now_ts, keep=()):  # type: ignore[no-untyped-def]
            return []

    settings = load_settings()
    cores = Cores(index=SeriesIndex(max_series=1), detector=None, explainer=Recorder())  # type: ignore[arg-type]
    stage = build_pipeline(settings, "explainer", cores=cores).stage

    def message(keys: list[str], fired: list[float], offset: int) -> RawRecord:
        n = len(keys)
        cols = {k: np.zeros(n) for k in ("score", "severity", "expected", "lower", "upper")}
        body = encode_columns(
            keys, np.full(n, 60.0 * offset), np.ones(n), **cols, fired=np.asarray(fired)
        )
        return RawRecord(settings.kafka.scores_topic, 0, offset, body)

    stage.handle([message(["a"], [0.0], 1)], 0.0)
    stage.handle([message(["b", "a"], [1.0, 0.0], 2)], 0.0)  # b refused; its alert is b's
    stage.handle([message(["b", "a"], [0.0, 1.0], 3)], 0.0)  # a's own alert
    assert seen == [[], [], ["a"]]
    assert stage.stats.deadletter_by_reason["series_limit"] == 2


def test_in_order_mask_matches_one_sample_at_a_time() -> None:
    """The vectorised mask keeps exactly what a sequential pass over the samples keeps."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 60))
        rows = rng.integers(0, 8, n)
        ts = rng.integers(0, 10, n).astype(float)
        last = rng.integers(-1, 5, 6).astype(float)  # rows 6 and 7 are new series
        seen = {r: (last[r] if r < len(last) else -np.inf) for r in range(8)}
        expected = []
        for r, t in zip(rows.tolist(), ts.tolist(), strict=True):
            expected.append(t > seen[r])
            if t > seen[r]:
                seen[r] = t
        assert in_order_mask(rows, ts, last).tolist() == expected
