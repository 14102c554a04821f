"""The pacer decides exactly as the reference implementation (``pacer_reference.py``, the
one before held partitions stopped being re-read in full on every offer), on random
streams: several partitions, NaN data times, lag that comes and goes, stalls, a byte cap,
revocations and rebuilds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ingest.pacing import Pacer
from tests.unit.ingest import pacer_reference as ref

TPS = [("m", 0), ("m", 1), ("m", 2), ("n", 0)]


def _state(p: Pacer[str] | ref.Pacer[str]) -> tuple[object, ...]:
    return (
        sorted(p.held_partitions()),
        p.held_records(),
        dict(sorted(p.done_ts.items())),
        sorted(p.stalled),
        p.held_total,
        p.holding,
    )


@pytest.mark.parametrize("seed", range(40))
def test_same_decisions_as_the_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cap = int(rng.choice([0, 2_000, 20_000]))
    a: Pacer[str] = Pacer(max_wait_s=5.0, max_held_bytes=cap or None)
    b: ref.Pacer[str] = ref.Pacer(max_wait_s=5.0, max_held_bytes=cap or None)
    next_off = {tp: 0 for tp in TPS}
    clock = {tp: float(rng.uniform(0, 3_000)) for tp in TPS}  # partitions start skewed
    assigned = list(TPS)
    for step in range(120):
        op = rng.random()
        if op < 0.04:
            gone = [TPS[int(rng.integers(len(TPS)))]]
            assert a.drop(gone) == b.drop(gone)
            continue
        if op < 0.06:
            assert a.release_all() == b.release_all()
            continue
        n = int(rng.integers(0, 60))
        parts = [TPS[int(k)] for k in rng.choice(len(TPS), size=n, p=[0.5, 0.2, 0.2, 0.1])]
        offsets, ts, items, sizes = [], [], [], []
        for tp in parts:
            offsets.append(next_off[tp])
            next_off[tp] += 1
            clock[tp] += float(rng.exponential(60.0))
            t = math.nan if rng.random() < 0.1 else clock[tp] - float(rng.exponential(5.0))
            ts.append(t)
            items.append(f"{tp[0]}{tp[1]}:{offsets[-1]}")
            sizes.append(int(rng.integers(10, 200)))
        lag = {tp: int(rng.integers(0, 3)) * int(rng.integers(0, 100)) for tp in TPS}
        kw = dict(
            horizon_s=float(rng.choice([0.0, 60.0, 300.0])),
            assigned=assigned,
            lag=lambda lag=lag: lag,
            now_s=float(step),
            sizes=sizes,
        )
        ra, ka = a.offer(parts, offsets, np.array(ts, dtype=float), items, **kw)  # type: ignore[arg-type]
        rb, kb = b.offer(parts, offsets, np.array(ts, dtype=float), items, **kw)  # type: ignore[arg-type]
        assert ra == rb, step
        assert ka.tolist() == kb.tolist(), step
        assert _state(a) == _state(b), step
        if rng.random() < 0.5:
            assert a.pop_admitted() == b.pop_admitted(), step
    assert a.release_all() == b.release_all()
