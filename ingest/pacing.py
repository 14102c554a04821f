"""Pacing a backlog by data time: which records may reach the pipeline now, which wait.

Why: with a backlog both Kafka clients hand over one partition's buffered chunk per poll
(hours of one-minute data), so an incident's onset is ranked before the series on the
other partitions have data for those minutes. The detector is per series and does not
care; the explainer does. :class:`Pacer` keeps every partition that still has data to read
within ``horizon_s`` of data time of the slowest one: a record whose data time is past
``frontier + horizon_s`` is held back (kept here, in order) until the others catch up.

The rule (:func:`admit_limit`). A partition *bounds* the others when it still has data to
read (``lag > 0``); its frontier is the latest data time it will have reached once the
records in hand are admitted (the largest of what it already passed to the pipeline and
of its pending records). A partition with lag but no data time yet (never read) has
frontier ``-inf``: it is read first. Caught-up and idle partitions (lag 0) bound nothing.
The limit is ``min(frontier) + horizon_s``; each partition admits the prefix of its pending
records whose running data time is within it. The slowest bounding partition is always
admitted in full, so the rule cannot deadlock; per-partition order is kept (a record
waits while an earlier one of its partition waits).

A stalled partition (lag, but nothing delivered: a broker that does not serve it, a lag
reported wrongly) would hold the others forever; one that has delivered nothing for
``max_wait_s`` of wall time while records wait stops bounding until it delivers again.

Records are opaque here (``items``); the caller passes each one's partition, offset and
data time (:func:`record_times`). No I/O, no clock: times are arguments.

Works poorly when data time and offsets disagree inside a partition (a producer that
re-sends old data late): the running maximum decides, so a late old record waits with the
newer ones before it. Cost: O(records) per batch, the lag only asked when a record could
be held; a partition that stays held costs O(1) per batch, whatever it holds (its frontier
is kept, its held records are read only as far as they are admitted).

>>> p = Pacer()
>>> a, b = ("m", 0), ("m", 1)
>>> released, keep = p.offer([a, a, b], [0, 1, 0], np.array([0.0, 600.0, 0.0]),
...                          "xyz", horizon_s=60.0, assigned=[a, b],
...                          lag=lambda: {a: 5, b: 5}, now_s=0.0)
>>> keep.tolist(), sorted(p.held_partitions())
([True, False, True], [('m', 0)])
>>> released, keep = p.offer([b], [1], np.array([600.0]), "w", horizon_s=60.0,
...                          assigned=[a, b], lag=lambda: {a: 5, b: 5}, now_s=1.0)
>>> released, keep.tolist(), p.pop_admitted()
(['y'], [True], {('m', 0): 2, ('m', 1): 2})
"""

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
    """One partition's held records, in order, with their bytes and ``top``: the largest
    data time held since the partition's first hold. Admitted prefixes are dropped and
    what they held is already in ``done_ts``, so ``max(done_ts, top)`` is the partition's
    frontier without a pass over what is still held."""

    items: list[T] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    n_bytes: int = 0
    top: float = -math.inf

    def extend(self, items: list[T], offsets: list[int], ts: FloatArray, sizes: list[int]) -> None:
        """Hold these records after the others (one call per partition and batch); ``top``
        ignores NaN (no data time)."""
        self.items.extend(items)
        self.offsets.extend(offsets)
        self.ts.extend(ts.tolist())
        self.sizes.extend(sizes)
        self.n_bytes += sum(sizes)
        self.top = max(self.top, _nanmax(ts))

    def drop_prefix(self, n: int) -> list[T]:
        out = self.items[:n]
        self.n_bytes -= sum(self.sizes[:n])
        for col in (self.items, self.offsets, self.ts, self.sizes):
            del col[:n]
        return out


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
        for tp, pend in self._held.items():  # top: see _Pending
            seq_max[tp] = max(seq_max.get(tp, -math.inf), pend.top)
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
            self._advance(tp, new.get(tp, []), offsets, ts, items, sizes, limit, released, keep)
        self._spill(released)
        if self._held and self._waiting_since is None:
            self._waiting_since = now_s
        elif not self._held:
            self._waiting_since = None
        return released, keep

    def _advance(
        self,
        tp: TP,
        idx: list[int],
        offsets: Sequence[int],
        ts: FloatArray,
        items: Sequence[T],
        sizes: Sequence[int] | None,
        limit: float,
        released: list[T],
        keep: BoolArray,
    ) -> None:
        """Admit ``tp``'s held records, then its new ones (``idx``), up to ``limit``; hold
        the rest (``keep`` False)."""
        done = self.done_ts.get(tp, -math.inf)
        pend = self._held.pop(tp, None)
        carry = -math.inf  # running data time of what went through so far in this call
        if pend is not None:
            n_ok, carry = _prefix(pend.ts, done, limit, carry)
            if n_ok:
                last_off = pend.offsets[n_ok - 1]
                got = _nanmax(np.asarray(pend.ts[:n_ok]))
                released.extend(pend.drop_prefix(n_ok))
                self._admitted[tp] = max(self._admitted.get(tp, -1), int(last_off) + 1)
                self.done_ts[tp] = max(done, got)
            if pend.items:
                self._held[tp] = pend  # still waiting: the new records wait behind them
        start = 0
        if idx and tp not in self._held:
            seq_ts = ts[idx]
            start, _ = _prefix(seq_ts, done, limit, carry)
            if start:
                self._admitted[tp] = max(
                    self._admitted.get(tp, -1), int(offsets[idx[start - 1]]) + 1
                )
                self.done_ts[tp] = max(self.done_ts.get(tp, -math.inf), _nanmax(seq_ts[:start]))
        if start < len(idx):
            rest = self._held.setdefault(tp, _Pending[T]())
            tail = idx[start:]
            keep[tail] = False
            rest.extend(
                [items[j] for j in tail],
                [int(offsets[j]) for j in tail],
                np.asarray(ts[tail], dtype=np.float64),
                [int(sizes[j]) for j in tail] if sizes is not None else [0] * len(tail),
            )
            self.held_total += len(tail)

    def _spill(self, released: list[T]) -> None:
        """Past ``max_held_bytes``, release whole partitions, earliest held first."""
        cap = self.max_held_bytes
        if cap is None:
            return
        total = sum(p.n_bytes for p in self._held.values())
        while total > cap and self._held:
            tp = min(self._held, key=lambda k: _nanmax(np.asarray(self._held[k].ts[:1])))
            pend = self._held.pop(tp)
            released.extend(pend.items)
            total -= pend.n_bytes
            self._admitted[tp] = max(self._admitted.get(tp, -1), pend.offsets[-1] + 1)
            self.done_ts[tp] = max(self.done_ts.get(tp, -math.inf), pend.top)

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


def _prefix(
    seq_ts: Sequence[float] | FloatArray, done: float, limit: float, carry: float
) -> tuple[int, float]:
    """How many leading records stay within ``limit``, and the running data time after
    them: a record without samples (NaN) counts as ``done``, the data time already passed
    on; ``carry`` is the running time of the records before these. Read in growing
    blocks, so a partition that stays held costs O(1), not O(records held)."""
    n, start, block = len(seq_ts), 0, 64
    while start < n:
        seg = np.asarray(seq_ts[start : start + block], dtype=np.float64)
        running = np.fmax(np.fmax.accumulate(np.where(np.isnan(seg), done, seg)), carry)
        over = np.flatnonzero(running > limit)
        if over.size:
            k = int(over[0])
            return start + k, (float(running[k - 1]) if k else carry)
        carry, start, block = float(running[-1]), start + len(seg), block * 4
    return n, carry
