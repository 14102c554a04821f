"""Held records of the pacing adapter (causalwatch/app/pipeline/pacing.py): a shrunk poll
gives back, for any released order, exactly the records, samples and rejects that each
record had in the poll as read."""

from __future__ import annotations

import numpy as np
import pytest

from causalwatch.app.pipeline.pacing import Decoded, HeldRecord, joined
from causalwatch.errors import RecordError
from causalwatch.models import RawRecord, SampleBatch


def _poll(
    rng: np.random.Generator, tag: str
) -> tuple[list[RawRecord], SampleBatch, list[RecordError]]:
    n = int(rng.integers(1, 30))
    records = [RawRecord("t", int(k % 3), 100 * k, f"{tag}{k}".encode()) for k in range(n)]
    m = int(rng.integers(0, 80))
    origin = rng.integers(-1, n, size=m)  # -1: a sample no record owns
    keys = [f"{tag}-s{int(v)}" for v in rng.integers(0, 9, size=m)]
    batch = SampleBatch(keys, rng.normal(size=m), rng.normal(size=m), origin.astype(np.int64))
    errors = [
        RecordError("bad", reason="not_json", topic=r.topic, partition=r.partition, offset=r.offset)
        for r in records
        if rng.random() < 0.3
    ]
    return records, batch, errors


def _expected(
    records: list[RawRecord], batch: SampleBatch, errors: list[RecordError], i: int
) -> tuple[RawRecord, list[str], list[float], list[float], list[RecordError]]:
    mine = [j for j in np.argsort(batch.origin, kind="stable").tolist() if batch.origin[j] == i]
    r = records[i]
    errs = [
        e for e in errors if (e.topic, e.partition, e.offset) == (r.topic, r.partition, r.offset)
    ]
    return (
        r,
        [batch.series_keys[j] for j in mine],
        batch.ts[mine].tolist(),
        batch.value[mine].tolist(),
        errs,
    )


@pytest.mark.parametrize("seed", range(30))
def test_released_in_any_order_equals_the_poll_as_read(seed: int) -> None:
    rng = np.random.default_rng(seed)
    polls, refs, want = [], [], []
    for p in range(3):
        records, batch, errors = _poll(rng, f"p{p}")
        dec = Decoded(records, batch, errors)
        held = rng.random(len(records)) < 0.6
        items = [dec[int(i)] for i in np.flatnonzero(held)]  # what the pacer keeps
        dec.shrink(held)
        polls.append(dec)
        for h in items:
            refs.append(h)
            want.append(_expected(records, batch, errors, h.at))
    order = rng.permutation(len(refs)).tolist() if seed % 2 else list(range(len(refs)))
    released: list[HeldRecord] = [refs[k] for k in order]
    recs, batch, errs = joined(released)
    assert recs == [want[k][0] for k in order]
    assert [h.record for h in released] == recs
    for pos, k in enumerate(order):
        mine = np.flatnonzero(batch.origin == pos)
        assert np.all(np.diff(mine) == 1)  # a record's samples stay together, in order
        assert [batch.series_keys[j] for j in mine] == want[k][1]
        assert batch.ts[mine].tolist() == want[k][2]
        assert batch.value[mine].tolist() == want[k][3]
    assert errs == [e for k in order for e in want[k][4]]
    assert len(batch) == sum(len(want[k][1]) for k in order)


def test_nothing_released() -> None:
    recs, batch, errs = joined([])
    assert (recs, len(batch), errs) == ([], 0, [])
