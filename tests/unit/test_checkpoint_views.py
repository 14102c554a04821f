"""Checkpoints without copying the detector: views where it is safe, adoption on restore.

The loop takes its checkpoint under ``Cores.lock`` and saves it on the same thread before
the next batch, and only that thread writes the detector, so the detector's arrays go to
the store as read-only views (no 1 GB copy at 1M series). These tests prove the two
things that makes safe: the bytes saved are the state at the snapshot, and every write of
the detector happens on the thread that saves (the explainer worker runs meanwhile and
keeps to the explainer, whose state is still copied)."""

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

    def lag(self) -> dict[tuple[str, int], int]:
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

    settings = load_settings(kafka={"topics": [{"name": "m", "format": "json"}]})
    stage = AllStage(settings, build_cores(settings, None), Sinks(), PipelineStats())
    det_at_snapshot: list[str] = []
    savers: set[int] = set()
    orig_snapshot = stage.snapshot

    def snapshot(**kw: Any) -> Checkpoint:
        assert kw == {"detector_views": True}  # the loop asks for views
        cp = orig_snapshot(**kw)
        assert stage.cores.detector is not None
        det_at_snapshot.append(stage.cores.detector.state_digest())
        return cp

    def on_save(cp: Checkpoint) -> None:
        savers.add(threading.get_ident())
        det, exp = stage.cores.detector, stage.cores.explainer
        assert det is not None and exp is not None
        for name, arr in cp.arrays["detector"].items():
            if name != "schema_version" and arr.size:
                assert np.shares_memory(arr, det._s[name]), name  # views, no copy
        live = exp.snapshot()
        for name, arr in cp.arrays["explainer"].items():  # the worker's state: a copy
            if arr.size and name in live:
                assert not np.shares_memory(arr, live[name]), name

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
    for blob, digest in zip(store.blobs, det_at_snapshot, strict=True):
        saved = Detector.restore(_from_bytes(blob).arrays["detector"], DetectorConfig())
        assert saved.state_digest() == digest  # nothing changed between snapshot and save
    assert writers and writers == savers == {threading.get_ident()}
