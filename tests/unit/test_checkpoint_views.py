"""Checkpoints without copying the detector or the explainer's history: views where it is
safe, adoption on restore.

The loop takes its checkpoint under ``Cores.lock`` and saves it on the same thread before
the next batch, and only that thread writes the detector and the explainer's sample
history, so their arrays go to the store as read-only views (no 1 GB copy at 1M series,
no 0.8 GB copy of the history at 100k). These tests prove the two things that makes safe:
the bytes saved are the state at the snapshot, and every write of those arrays happens on
the thread that saves (the explainer worker runs meanwhile and writes only the rest of the
explainer, which is still copied)."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from causalwatch.app.pipeline import AllStage, Sinks, build_cores, run_stage
from causalwatch.models import RawRecord
from causalwatch.publish.metrics import PipelineStats
from causalwatch.settings import load_settings
from causalwatch.store.checkpoint import Checkpoint, _StreamReader, iter_stream
from detector import Detector, DetectorConfig
from explainer.history import History

T0 = 1_800_000_000.0


def _fed(n_rows: int = 8, n: int = 400) -> Detector:
    rng = np.random.default_rng(5)
    det = Detector(capacity=2)
    rows = rng.integers(0, n_rows, n)
    det.step(rows, T0 + np.arange(n) * 60.0, rng.normal(10, 1, n))
    return det


def test_views_are_read_only_and_share_the_state_a_copy_does_not() -> None:
    det = _fed()
    views, copies = det.snapshot(copy=False), det.snapshot()
    for name, arr in det._s.items():
        assert not views[name].flags.writeable and not copies[name].flags.writeable
        if arr.size:  # (an empty array shares nothing)
            assert np.shares_memory(views[name], arr), name
            assert not np.shares_memory(copies[name], arr), name
        np.testing.assert_array_equal(views[name], copies[name], err_msg=name)
    with pytest.raises(ValueError):
        views["n"][0] = 99


def test_restore_adopts_handed_over_arrays_and_copies_everything_else() -> None:
    det = _fed()
    loaded = {k: np.array(v) for k, v in det.snapshot().items()}  # writable, as read back
    adopted = Detector.restore(loaded, DetectorConfig(), adopt=True)
    assert adopted.state_digest() == det.state_digest()
    assert all(np.shares_memory(adopted._s[k], loaded[k]) for k in adopted._s if loaded[k].size)
    copied = Detector.restore(loaded, DetectorConfig())
    assert not any(np.shares_memory(copied._s[k], loaded[k]) for k in copied._s)
    # read-only arrays (a snapshot, views of a live detector) are never adopted
    snap = det.snapshot(copy=False)
    safe = Detector.restore(snap, DetectorConfig(), adopt=True)
    assert not any(np.shares_memory(safe._s[k], det._s[k]) for k in safe._s)
    # an array of another dtype is converted, the rest still adopted
    loaded2 = {k: np.array(v) for k, v in det.snapshot().items()}
    loaded2["n"] = loaded2["n"].astype(np.float64)
    mixed = Detector.restore(loaded2, DetectorConfig(), adopt=True)
    assert mixed._s["n"].dtype == det._s["n"].dtype
    assert mixed.state_digest() == det.state_digest()
    assert np.shares_memory(mixed._s["season"], loaded2["season"])


def test_history_views_share_the_buffers_and_restore_adopts_only_writable_arrays() -> None:
    h = History(points=4)
    h.append(np.array([0, 1, 0]), np.array([10.0, 10.0, 20.0]), np.array([1.0, 5.0, 2.0]))
    views, copies = h.to_arrays(copy=False), h.to_arrays()
    for name in ("ts", "value", "head", "count"):
        live = getattr(h, name)
        v, c = views["history." + name], copies["history." + name]
        assert not v.flags.writeable and not c.flags.writeable
        assert np.shares_memory(v, live) and not np.shares_memory(c, live), name
        np.testing.assert_array_equal(v, c)
    loaded = {k: np.array(v) for k, v in copies.items()}  # writable, as read back
    adopted = History.from_arrays(loaded, adopt=True)
    assert np.shares_memory(adopted.value, loaded["history.value"])
    assert not np.shares_memory(History.from_arrays(loaded).value, loaded["history.value"])
    safe = History.from_arrays(views, adopt=True)  # read-only views: copied, never adopted
    assert not np.shares_memory(safe.value, h.value)
    safe.append(np.array([1]), np.array([30.0]), np.array([7.0]))  # and writable
    assert h.latest(np.array([1]))[1].tolist() == [5.0]
    assert safe.latest(np.array([1]))[1].tolist() == [7.0]


def _bytes_of(cp: Checkpoint) -> bytes:
    return b"".join(bytes(p) for p in iter_stream(cp))


def _from_bytes(blob: bytes) -> Checkpoint:
    reader = _StreamReader()
    reader.feed(blob)
    return reader.result(cp_version())


def cp_version() -> int:
    from causalwatch.store.checkpoint import SCHEMA_VERSION

    return SCHEMA_VERSION


class ListSource:
    def __init__(self, values: list[bytes], stop: threading.Event, per: int) -> None:
        self.values, self.stop, self.per, self.pos = values, stop, per, 0

    def next_batch(self, max_records: int) -> list[RawRecord]:
        if self.pos >= len(self.values):
            self.stop.set()
            return []
        end = min(len(self.values), self.pos + self.per)
        out = [RawRecord("m", 0, i, self.values[i]) for i in range(self.pos, end)]
        self.pos = end
        return out

    def commit(self, next_offsets: Mapping[tuple[str, int], int]) -> None:
        pass

    def lag(self, *, fresh: bool = True) -> dict[tuple[str, int], int]:
        return {}

    def close(self) -> None:
        pass


class ByteStore:
    """Serialises what it is given, as the Redis store does, and keeps only bytes."""

    def __init__(self, on_save: Any) -> None:
        self.blobs: list[bytes] = []
        self.on_save = on_save

    def load(self) -> None:
        return None

    def save(self, cp: Checkpoint) -> int:
        self.on_save(cp)
        self.blobs.append(_bytes_of(cp))
        return len(self.blobs[-1])


def _samples(n: int) -> list[bytes]:
    rng = np.random.default_rng(9)
    out = []
    for i in range(n):
        spike = 40.0 if i > 100 and i % 25 == 0 else 0.0
        batch = [
            {
                "name": f"m{j}",
                "labels": {"service": f"s{j}"},
                "timestamp": T0 + 60 * i,
                "value": float(10 + rng.normal() + (spike if j == (i // 25) % 4 else 0.0)),
            }
            for j in range(4)
        ]
        out.append(json.dumps(batch).encode())
    return out


def test_the_loop_saves_the_state_at_the_snapshot_and_only_its_thread_writes_the_detector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writers: set[int] = set()
    for name in ("step", "learn_many", "reset_rows", "mute", "set_sensitivity", "_alloc"):
        orig = getattr(Detector, name)

        def record(self: Detector, *a: Any, _orig: Any = orig, **k: Any) -> Any:
            writers.add(threading.get_ident())
            return _orig(self, *a, **k)

        monkeypatch.setattr(Detector, name, record)
    for name in ("append", "clear", "ensure"):
        orig_h = getattr(History, name)

        def record_h(self: History, *a: Any, _orig: Any = orig_h, **k: Any) -> Any:
            writers.add(threading.get_ident())
            return _orig(self, *a, **k)

        monkeypatch.setattr(History, name, record_h)

    settings = load_settings(kafka={"topics": [{"name": "m", "format": "json"}]})
    stage = AllStage(settings, build_cores(settings, None), Sinks(), PipelineStats())
    det_at_snapshot: list[str] = []
    hist_at_snapshot: list[dict[str, np.ndarray]] = []
    savers: set[int] = set()
    orig_snapshot = stage.snapshot

    def snapshot(**kw: Any) -> Checkpoint:
        assert kw == {"views": True}  # the loop asks for views
        cp = orig_snapshot(**kw)
        assert stage.cores.detector is not None and stage.cores.explainer is not None
        det_at_snapshot.append(stage.cores.detector.state_digest())
        hist_at_snapshot.append(stage.cores.explainer._history.to_arrays())
        return cp

    def on_save(cp: Checkpoint) -> None:
        savers.add(threading.get_ident())
        det, exp = stage.cores.detector, stage.cores.explainer
        assert det is not None and exp is not None
        for name, arr in cp.arrays["detector"].items():
            if name != "schema_version" and arr.size:
                assert np.shares_memory(arr, det._s[name]), name  # views, no copy
        hist = exp._history
        for name, arr in cp.arrays["explainer"].items():
            if not arr.size or name == "schema_version":
                continue
            if name.startswith("history."):  # written by this thread only: views
                assert np.shares_memory(arr, getattr(hist, name.removeprefix("history."))), name
            else:  # the rest (the worker writes some of it): copies
                ln = exp._learner
                live = [
                    ln.p_rb,
                    ln.p_sc,
                    ln.newest,
                    ln.late_bin,
                    ln.recent,
                    ln.prev_vec,
                    ln.state.A,
                    ln.state.n,
                ]
                assert not any(np.shares_memory(arr, a) for a in live), name

    monkeypatch.setattr(stage, "snapshot", snapshot)
    stop = threading.Event()
    store = ByteStore(on_save)
    stage.worker.start()  # explanations on their own thread, as in `run all`
    try:
        run_stage(
            stage,
            lambda resume, revoke: ListSource(_samples(600), stop, per=40),
            store,  # type: ignore[arg-type]
            stop,
            checkpoint_interval_s=0.0,
            clock=lambda: T0 + 60 * 600,
        )
    finally:
        stage.worker.stop()
    # the worker thread explained while the loop checkpointed
    assert stage.stats.alerts_total >= 3 and stage.stats.explanations_total >= 3
    assert len(store.blobs) >= 10 and len(set(det_at_snapshot)) == len(det_at_snapshot)
    for blob, digest, hist in zip(store.blobs, det_at_snapshot, hist_at_snapshot, strict=True):
        arrays = _from_bytes(blob).arrays
        saved = Detector.restore(arrays["detector"], DetectorConfig())
        assert saved.state_digest() == digest  # nothing changed between snapshot and save
        for name, arr in hist.items():
            np.testing.assert_array_equal(arrays["explainer"][name], arr, err_msg=name)
    assert writers and writers == savers == {threading.get_ident()}
