"""The pacing rule (:mod:`ingest.pacing`): who bounds whom, order, stalls, memory, offsets."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pytest

from ingest.pacing import Pacer, admit_limit, record_times

A, B, C = ("m", 0), ("m", 1), ("m", 2)
H = 60.0


def offer(
    p: Pacer[str],
    part: tuple[str, int],
    first_offset: int,
    ts: list[float],
    lag: Mapping[tuple[str, int], int],
    now: float = 0.0,
    assigned: tuple[tuple[str, int], ...] = (A, B),
) -> tuple[list[str], list[bool]]:
    n = len(ts)
    items = [f"{part[1]}:{first_offset + i}" for i in range(n)]
    released, keep = p.offer(
        [part] * n,
        list(range(first_offset, first_offset + n)),
        np.asarray(ts, dtype=np.float64),
        items,
        horizon_s=H,
        assigned=assigned,
        lag=lambda: lag,
        now_s=now,
    )
    return released, keep.tolist()


def test_admit_limit_is_the_slowest_frontier_plus_the_horizon() -> None:
    assert admit_limit({A: 100.0, B: 40.0}, H) == 100.0
    assert admit_limit({}, H) == math.inf


def test_record_times_take_each_records_latest_sample() -> None:
    got = record_times(2, np.array([1, 1, 0]), np.array([3.0, 9.0, 4.0]))
    assert got.tolist() == [4.0, 9.0]


def test_caught_up_partitions_never_hold_the_others_and_lag_is_not_asked() -> None:
    p: Pacer[str] = Pacer()
    asked = []
    offer(p, A, 0, [0.0], {A: 0, B: 0})
    offer(p, B, 0, [0.0], {A: 0, B: 0})

    def lag() -> dict[tuple[str, int], int]:
        asked.append(1)
        return {A: 0, B: 0}

    _rel, keep = p.offer(
        [A, B], [1, 1], np.array([30.0, 30.0]), ["a", "b"],
        horizon_s=H, assigned=(A, B), lag=lag, now_s=1.0,
    )  # fmt: skip
    assert keep.tolist() == [True, True] and not asked  # the live path
    # A far ahead, but B has no lag (idle): nothing waits
    _rel, keep2 = offer(p, A, 2, [10_000.0], {A: 5, B: 0})
    assert keep2 == [True]


def test_a_partition_never_read_but_with_lag_is_read_first() -> None:
    p: Pacer[str] = Pacer()
    rel, keep = offer(p, A, 0, [0.0, 60.0, 120.0], {A: 10, B: 10})
    assert rel == [] and keep == [False, False, False]  # B's data time unknown: behind
    assert p.held_partitions() == {A}
    rel, keep = offer(p, B, 0, [0.0, 60.0], {A: 10, B: 10})
    # B reached 60: A may go to 60 + H; the rest of A waits, B goes on
    assert keep == [True, True] and rel == ["0:0", "0:1", "0:2"]
    assert p.pop_admitted() == {A: 3, B: 2}


def test_a_partition_keeps_its_order_and_only_admitted_offsets_count() -> None:
    p: Pacer[str] = Pacer()
    offer(p, B, 0, [0.0], {A: 10, B: 10})
    offer(p, A, 0, [0.0], {A: 10, B: 10})
    p.pop_admitted()
    # A: 1000 waits; 30 after it is within the limit but must wait behind it
    _rel, keep = offer(p, A, 1, [1000.0, 30.0], {A: 10, B: 10})
    assert keep == [False, False]
    assert p.pop_admitted() == {}  # nothing of A past offset 0 may be committed
    rel, keep = offer(p, B, 1, [990.0], {A: 10, B: 10})
    assert rel == ["0:1", "0:2"] and keep == [True]
    assert p.pop_admitted() == {A: 3, B: 2}


def test_a_stalled_partition_stops_bounding_after_max_wait() -> None:
    p: Pacer[str] = Pacer(max_wait_s=10.0)
    offer(p, B, 0, [0.0], {A: 5, B: 5}, now=0.0)
    _rel, keep = offer(p, A, 0, [500.0], {A: 5, B: 5}, now=1.0)
    assert keep == [False]
    rel, _ = offer(p, A, 1, [], {A: 5, B: 5}, now=5.0)
    assert rel == []  # B may still come
    rel, _ = offer(p, A, 1, [], {A: 5, B: 5}, now=12.0)
    assert rel == ["0:0"] and B in p.stalled
    # stays stalled (no second wait) until it delivers again
    _rel, keep = offer(p, A, 1, [900.0], {A: 5, B: 5}, now=13.0)
    assert keep == [True]
    offer(p, B, 1, [60.0], {A: 5, B: 5}, now=14.0)
    assert B not in p.stalled


def test_held_bytes_are_bounded_by_releasing_the_longest_held_partition() -> None:
    p: Pacer[str] = Pacer(max_held_bytes=250)
    offer(p, C, 0, [10.0], {A: 9, B: 9, C: 9}, assigned=(A, B, C))
    n = 3
    rel, keep = p.offer(
        [A] * n, [0, 1, 2], np.array([0.0, 60.0, 120.0]), ["a0", "a1", "a2"],
        horizon_s=H, assigned=(A, B, C), lag=lambda: {A: 9, B: 9, C: 9}, now_s=0.0,
        sizes=[100] * n,
    )  # fmt: skip
    # B unknown: all would wait, but 300 bytes > 250: A (held from the earliest data
    # time) goes through whole, as released records (order given up, never records)
    assert keep.tolist() == [False] * 3 and rel == ["a0", "a1", "a2"]
    assert p.held_partitions() == {C}
    assert p.pop_admitted()[A] == 3


def test_drop_forgets_a_revoked_partitions_held_records_uncommitted() -> None:
    p: Pacer[str] = Pacer()
    offer(p, A, 0, [0.0, 60.0], {A: 5, B: 5})
    assert p.drop([A]) == ["0:0", "0:1"]
    assert not p.holding and p.pop_admitted() == {}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_simulated_backlog_is_read_once_in_order_within_the_horizon(seed: int) -> None:
    """Four partitions, each a minute per record but at different record rates per poll;
    polls take the next chunk of a random partition that is not held. Every record is
    admitted once, in offset order, and after each offer the admitted data times of the
    partitions that still have data stay within the horizon plus one chunk."""
    rng = np.random.default_rng(seed)
    parts = [("t", i) for i in range(4)]
    total = 300
    pos = dict.fromkeys(parts, 0)
    chunk = {tp: int(rng.integers(5, 40)) for tp in parts}
    p: Pacer[tuple[tuple[str, int], int]] = Pacer()
    seen: dict[tuple[str, int], list[int]] = {tp: [] for tp in parts}
    done: dict[tuple[str, int], float] = {}
    for _ in range(10_000):
        if all(pos[tp] >= total for tp in parts) and not p.holding:
            break
        ready = [tp for tp in parts if pos[tp] < total and tp not in p.held_partitions()]
        tp = ready[int(rng.integers(len(ready)))] if ready else parts[0]
        n = min(chunk[tp], total - pos[tp]) if ready else 0
        offs = list(range(pos[tp], pos[tp] + n))
        pos[tp] += n
        items = [(tp, o) for o in offs]
        released, keep = p.offer(
            [tp] * n, offs, np.asarray(offs, dtype=np.float64) * 60.0, items,
            horizon_s=5 * 60.0, assigned=parts,
            lag=lambda: {q: total - pos[q] for q in parts}, now_s=0.0,
        )  # fmt: skip
        for q, o in released + [it for it, k in zip(items, keep.tolist(), strict=True) if k]:
            seen[q].append(o)
            done[q] = max(done.get(q, -60.0), o * 60.0)
        behind = [done.get(q, -60.0) for q in parts if done.get(q, -60.0) < (total - 1) * 60.0]
        if behind:
            ahead = max(done.get(q, -60.0) for q in parts)
            assert ahead - min(behind) <= 5 * 60.0 + max(chunk.values()) * 60.0
    assert all(seen[tp] == list(range(total)) for tp in parts)
