"""Per-partition detector checkpoints: the state of scaled detectors follows their partitions.

With ``run detector --scale N`` the replicas share a consumer group on the samples topic, and
a rebalance moves partitions between them. Ingest sends every series to one partition of that
topic (messages are keyed by series group), so a partition's series and their detector state
can travel together:

- each row remembers the partition its samples come from;
- a checkpoint is written per partition (the store's ``for_partition(tp)``; in Redis
  ``{checkpoint key}:partition:{topic}:{partition}``), holding that partition's series keys,
  their detector rows and the partition's next offset;
- on assignment, a replica loads the checkpoints of its new partitions, adds their series to
  its index and state, and seeks to their offsets;
- on revocation (and at shutdown), it writes those checkpoints and forgets the rows.

So a replica that takes over a partition continues its series where the previous owner
checkpointed them, with no sample lost or counted twice (at-least-once input, exactly-once
state). Raw input topics in ``run all`` are not partition-aligned, so that role keeps one
checkpoint of its whole state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from causalwatch.models import RawRecord
from causalwatch.store.checkpoint import Checkpoint, CheckpointStore
from detector.core import Detector, DetectorConfig

__all__ = ["PartitionCheckpoints"]

log = logging.getLogger(__name__)

TP = tuple[str, int]
IntArray = npt.NDArray[np.int64]


class PartitionCheckpoints:
    """Save, load and hand over the detector state of individual partitions."""

    def __init__(
        self, cores: Any, stores: Callable[[TP], CheckpointStore], config: DetectorConfig
    ) -> None:
        self.cores = cores
        self.stores = stores
        self.config = config
        self.row_tp: dict[int, TP] = {}
        self.owned: set[TP] = set()

    def store(self, tp: TP) -> CheckpointStore:
        return self.stores(tp)

    def track(self, rows: IntArray, origin: IntArray, records: Sequence[RawRecord]) -> None:
        """Remember which partition each row's samples come from."""
        for row, o in zip(rows.tolist(), origin.tolist(), strict=True):
            if o >= 0:
                rec = records[o]
                self.row_tp[row] = (rec.topic, rec.partition)

    def rows_of(self, tp: TP) -> IntArray:
        live = self.cores.index.is_live
        return np.asarray(
            sorted(r for r, t in self.row_tp.items() if t == tp and live(r)), dtype=np.int64
        )

    def save(self, tps: Sequence[TP], offsets: Mapping[TP, int]) -> None:
        det = self.cores.detector
        if det is None:
            return
        with self.cores.lock:
            # views: every subset below is a fancy-indexed copy taken under the lock
            snap = det.snapshot(copy=False)
            for tp in tps:
                if tp not in offsets:
                    continue  # nothing read from it yet: its previous checkpoint still holds
                rows = self.rows_of(tp)
                arrays = {
                    name: np.asarray(arr)[rows]
                    for name, arr in snap.items()
                    if name != "schema_version"
                }
                arrays["schema_version"] = np.asarray(snap["schema_version"])
                keys = [self.cores.index.key_of(int(r)) for r in rows.tolist()]
                cp = Checkpoint(
                    arrays={"detector": arrays},
                    meta={"stage": "detector", "keys": keys},
                    offsets={tp: int(offsets[tp])},
                )
                self.store(tp).save(cp)

    def load(self, tps: Sequence[TP]) -> dict[TP, int]:
        """Adopt the checkpointed series of newly assigned partitions; their next offsets."""
        offsets: dict[TP, int] = {}
        loaded: list[tuple[TP, Checkpoint]] = []
        for tp in tps:
            self.owned.add(tp)
            cp = self.store(tp).load()
            if cp is not None and tp in cp.offsets:
                loaded.append((tp, cp))
                offsets[tp] = cp.offsets[tp]
        if loaded:
            with self.cores.lock:
                self._adopt(loaded)
            log.info(
                "adopted partition state",
                extra={"partitions": [f"{t}:{p}" for (t, p), _ in loaded]},
            )
        return offsets

    def _adopt(self, loaded: list[tuple[TP, Checkpoint]]) -> None:
        det: Detector = self.cores.detector
        index = self.cores.index
        new_rows: list[IntArray] = []
        subsets: list[dict[str, Any]] = []
        for tp, cp in loaded:
            keys = cp.meta["keys"]
            rows = index.rows_for(keys) if keys else np.empty(0, dtype=np.int64)
            for r in rows.tolist():
                self.row_tp[r] = tp
            new_rows.append(rows)
            subsets.append(cp.arrays["detector"])
        rows_all = np.concatenate(new_rows) if new_rows else np.empty(0, dtype=np.int64)
        if rows_all.size == 0:
            return
        need = max(int(rows_all.max()) + 1, det.capacity)
        base = det.snapshot(copy=False)  # copied into ``merged`` below, under the lock
        fresh = Detector(self.config, capacity=need).snapshot(copy=False)
        merged: dict[str, Any] = {}
        for name, arr in base.items():
            if name == "schema_version":
                merged[name] = arr
                continue
            out = np.array(fresh[name], copy=True)
            out[: arr.shape[0]] = arr
            for rows, sub in zip(new_rows, subsets, strict=True):
                if rows.size:
                    out[rows] = sub[name]
            merged[name] = out
        self.cores.detector = Detector.restore(merged, self.config, adopt=True)

    def drop(self, tps: Sequence[TP]) -> None:
        """Forget the series of partitions this member no longer owns."""
        det = self.cores.detector
        with self.cores.lock:
            for tp in tps:
                self.owned.discard(tp)
                rows = self.rows_of(tp)
                if rows.size == 0:
                    continue
                if det is not None:
                    det.reset_rows(rows)
                self.cores.index.remove(rows)
                for r in rows.tolist():
                    self.row_tp.pop(r, None)
