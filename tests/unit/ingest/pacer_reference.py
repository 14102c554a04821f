"""The pacer as it was before its held records kept a running frontier (commit 84992b5),
kept as the reference that ``test_pacer_equivalence.py`` checks the current one against
decision by decision. Not used by the product."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_WAIT_S", "Pacer", "admit_limit", "record_times"]

TP = tuple[str, int]
T = TypeVar("T")
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Wall seconds a partition with lag may deliver nothing while records wait for it before
#: it stops bounding the others. A partition that is not paused is fetched within a poll
#: or two (the broker answers a fetch within ``fetch.max.wait``, 0.5 s); ten seconds of
#: nothing is a stall, and waiting longer would stop the service for it.
MAX_WAIT_S = 10.0


def record_times(n_records: int, origin: npt.NDArray[np.int64], ts: FloatArray) -> FloatArray:
    """Data time of each record: the latest timestamp of its samples (NaN: none kept).

    ``origin[i]`` is the record index of sample ``i`` (-1: none), as decoding sets it.

    >>> record_times(3, np.array([0, 0, 2, -1]), np.array([5.0, 7.0, 1.0, 9.0])).tolist()
    [7.0, nan, 1.0]
    """
    out = np.full(n_records, np.nan)
    ok = origin >= 0
    if ok.any():
        np.fmax.at(out, origin[ok], ts[ok])
    return out


def admit_limit(frontiers: Mapping[TP, float], horizon_s: float) -> float:
    """``min(frontiers) + horizon_s``: the latest data time any record may have now
    (``inf`` when no partition bounds the others).

    >>> admit_limit({("m", 0): 100.0, ("m", 1): float("-inf")}, 60.0)
    -inf
    >>> admit_limit({}, 60.0)
    inf
    """
    if not frontiers:
        return math.inf
    return min(frontiers.values()) + horizon_s


@dataclass
class _Pending(Generic[T]):
    items: list[T] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


class Pacer(Generic[T]):
    """The hold-back buffer and the state of the rule (see the module docstring).

    State: per partition the latest data time passed to the pipeline (``done_ts``), the
    records held back (in order), the next offset after the last admitted record (what
    may be committed: :meth:`pop_admitted`) and when it last delivered records.
    """

    def __init__(
        self, *, max_wait_s: float = MAX_WAIT_S, max_held_bytes: int | None = None
    ) -> None:
        self.max_wait_s = max_wait_s
        self.max_held_bytes = max_held_bytes
        self.done_ts: dict[TP, float] = {}
        self._held: dict[TP, _Pending[T]] = {}
        self._admitted: dict[TP, int] = {}
        self._delivered_at: dict[TP, float] = {}
        self._waiting_since: float | None = None
        #: partitions that stopped bounding (stalled) until they deliver records again
        self.stalled: set[TP] = set()
        #: records held back at least once (a counter for the metrics)
        self.held_total = 0

    # -- what the caller reads
    @property
    def holding(self) -> bool:
        return bool(self._held)

    def held_partitions(self) -> set[TP]:
        return set(self._held)

    def held_records(self) -> int:
        return sum(len(p.items) for p in self._held.values())

    def pop_admitted(self) -> dict[TP, int]:
        """Next offset after the last record admitted, per partition, since the last call."""
        out, self._admitted = self._admitted, {}
        return out

    def drop(self, tps: Collection[TP]) -> list[T]:
        """Forget partitions (revoked): their held records are returned, not admitted; a
        new owner reads them again from the last committed offset."""
        out: list[T] = []
        for tp in tps:
            pend = self._held.pop(tp, None)
            if pend is not None:
                out.extend(pend.items)
            self.done_ts.pop(tp, None)
            self.stalled.discard(tp)
            self._admitted.pop(tp, None)
            self._delivered_at.pop(tp, None)
        if not self._held:
            self._waiting_since = None
        return out

    def release_all(self) -> list[T]:
        """Every held record, in partition order (pacing bypassed, e.g. during a rebuild);
        the caller handles them and commits their offsets itself."""
        out = [item for pend in self._held.values() for item in pend.items]
        self._held.clear()
        self._waiting_since = None
        return out

    # -- the rule
    def offer(
        self,
        parts: Sequence[TP],
        offsets: Sequence[int],
        ts: FloatArray,
        items: Sequence[T],
        *,
        horizon_s: float,
        assigned: Collection[TP],
        lag: Callable[[], Mapping[TP, int]],
        now_s: float,
        sizes: Sequence[int] | None = None,
    ) -> tuple[list[T], BoolArray]:
        """Offer newly read records (in the order read); returns the held records admitted
        now (to handle *before* the new ones) and which new records are admitted.

        ``lag()`` (records left to read per partition; a partition it does not name counts
        as having lag) is only called when a record could be held. ``sizes`` (bytes per
        record) count against ``max_held_bytes``: past it, the partition held back the
        longest is released whole (order given up for memory, never records).
        """
        keep = np.ones(len(items), dtype=bool)
        new: dict[TP, list[int]] = {}
        for i, tp in enumerate(parts):
            new.setdefault(tp, []).append(i)
        for tp in new:
            self._delivered_at[tp] = now_s
        self.stalled.difference_update(new)
        seq_max = {tp: _nanmax(ts[idx]) for tp, idx in new.items()}
        for tp, pend in self._held.items():
            seq_max[tp] = max(seq_max.get(tp, -math.inf), _nanmax(np.asarray(pend.ts)))
        known = set(assigned) | set(new) | set(self._held)
        neg = -math.inf
        bound = {tp: max(self.done_ts.get(tp, neg), seq_max.get(tp, neg)) for tp in known}
        top = max(seq_max.values(), default=neg)
        if not self._held and top <= admit_limit(bound, horizon_s):
            # the cheap path (live): nothing could wait even if every partition had lag
            self._admit_new(new, offsets, ts)
            return [], keep
        left = lag()
        in_hand = set(new) | set(self._held)
        bound = {
            tp: f
            for tp, f in bound.items()
            if left.get(tp, 1) > 0 and not self._is_stalled(tp, now_s, tp in in_hand)
        }
        # a partition whose lag is 0 but with records in hand bounds nothing (caught up)
        limit = admit_limit(bound, horizon_s)
        released: list[T] = []
        for tp in known:
            pend = self._held.pop(tp, _Pending[T]())
            idx = new.get(tp, [])
            seq_ts = np.asarray(pend.ts + ts[idx].tolist(), dtype=np.float64)
            n_ok = _admitted_prefix(seq_ts, self.done_ts.get(tp, -math.inf), limit)
            n_held = len(pend.items)
            released.extend(pend.items[:n_ok])
            if n_ok:
                last = pend.offsets[n_ok - 1] if n_ok <= n_held else offsets[idx[n_ok - n_held - 1]]
                self._admitted[tp] = max(self._admitted.get(tp, -1), int(last) + 1)
                self.done_ts[tp] = max(self.done_ts.get(tp, -math.inf), _nanmax(seq_ts[:n_ok]))
            rest = _Pending(
                pend.items[n_ok:], pend.offsets[n_ok:], pend.ts[n_ok:], pend.sizes[n_ok:]
            )
            for j in idx[max(0, n_ok - n_held) :]:
                keep[j] = False
                rest.items.append(items[j])
                rest.offsets.append(int(offsets[j]))
                rest.ts.append(float(ts[j]))
                rest.sizes.append(int(sizes[j]) if sizes is not None else 0)
                self.held_total += 1
            if rest.items:
                self._held[tp] = rest
        self._spill(released)
        if self._held and self._waiting_since is None:
            self._waiting_since = now_s
        elif not self._held:
            self._waiting_since = None
        return released, keep

    def _spill(self, released: list[T]) -> None:
        """Past ``max_held_bytes``, release whole partitions, earliest held first."""
        cap = self.max_held_bytes
        if cap is None:
            return
        total = sum(sum(p.sizes) for p in self._held.values())
        while total > cap and self._held:
            tp = min(self._held, key=lambda k: _nanmax(np.asarray(self._held[k].ts[:1])))
            pend = self._held.pop(tp)
            released.extend(pend.items)
            total -= sum(pend.sizes)
            self._admitted[tp] = max(self._admitted.get(tp, -1), pend.offsets[-1] + 1)
            done = _nanmax(np.asarray(pend.ts))
            self.done_ts[tp] = max(self.done_ts.get(tp, -math.inf), done)

    def _admit_new(
        self,
        new: Mapping[TP, list[int]],
        offsets: Sequence[int],
        ts: FloatArray,
    ) -> None:
        for tp, idx in new.items():
            self._admitted[tp] = max(self._admitted.get(tp, -1), int(offsets[idx[-1]]) + 1)
            self.done_ts[tp] = max(self.done_ts.get(tp, -math.inf), _nanmax(ts[idx]))

    def _is_stalled(self, tp: TP, now_s: float, delivering: bool) -> bool:
        """Whether ``tp`` (lag, no records in hand) has delivered nothing for
        ``max_wait_s`` while records waited; once stalled it stays so until it delivers,
        so a dead partition costs one wait, not one per hold."""
        if delivering:
            return False
        if tp in self.stalled:
            return True
        if self._waiting_since is None:
            return False
        since = max(self._delivered_at.get(tp, -math.inf), self._waiting_since)
        if now_s - since > self.max_wait_s:
            self.stalled.add(tp)
            return True
        return False


def _nanmax(x: FloatArray) -> float:
    finite = x[~np.isnan(x)]
    return float(finite.max()) if len(finite) else -math.inf


def _admitted_prefix(seq_ts: FloatArray, done: float, limit: float) -> int:
    """How many leading records stay within ``limit``: the running data time (a record
    without samples takes its predecessor's) must not pass it."""
    if len(seq_ts) == 0:
        return 0
    running = np.fmax.accumulate(np.where(np.isnan(seq_ts), done, seq_ts))
    return int(np.searchsorted(running > limit, True))
