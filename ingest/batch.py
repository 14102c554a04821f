"""Map decoded samples onto dense series rows, refusing new series beyond the limit.

Per-series state lives in arrays indexed by ``row`` (see :class:`causalwatch.series.SeriesIndex`),
so every sample needs its row before the detector sees it. New series are created here, and
this is where ``ingest.max_series`` bites: a sample of a series the index already knows is
always kept, a sample of a *new* series is refused once the index is full (the index raises
:class:`~causalwatch.errors.StateError`). Refused samples are dead-lettered with reason
``series_limit``, one error per source record (the raw message is the unit of replay); the
message names how many samples and which series were refused. Order is kept.

Cost: one dict look-up per sample, ``O(len(batch))``, done by a C-level ``map``; a batch with
new series also loops over its distinct keys (not its samples) to add them. A Python loop per
sample only when series are refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from causalwatch.errors import RecordError, StateError
from causalwatch.models import RawRecord, SampleBatch
from causalwatch.series import SeriesIndex
from ingest.validate import IngestSchemaError

__all__ = ["assign_rows", "next_offsets"]

IntArray = npt.NDArray[np.int64]


def assign_rows(
    batch: SampleBatch, index: SeriesIndex, records: Sequence[RawRecord]
) -> tuple[IntArray, SampleBatch, list[RecordError]]:
    """Rows for the samples of ``batch``, creating new series while the index has room.

    Parameters
    ----------
    batch
        Decoded samples; ``batch.origin`` indexes ``records``.
    index
        The shared series index (mutated: new series get rows). Its ``max_series`` is the
        limit.
    records
        The poll the batch was decoded from, to attach raw bytes and source to errors.

    Returns
    -------
    rows, kept, errors
        ``rows[i]`` is the row of ``kept`` sample ``i``; ``kept`` is ``batch`` without the
        refused samples, in order; ``errors`` one ``series_limit`` error per record that had
        refused samples (``sample_index`` None, ``field`` "series").

    Examples
    --------
    >>> idx = SeriesIndex(max_series=2)
    >>> recs = [RawRecord("m", 0, 5, b"...")]
    >>> b = SampleBatch.from_lists(["a", "b", "c", "a"], [1.0] * 4, [0.0] * 4, [0] * 4)
    >>> rows, kept, errors = assign_rows(b, idx, recs)
    >>> rows.tolist(), kept.series_keys, [(e.reason, e.offset) for e in errors]
    ([0, 1, 0], ['a', 'b', 'a'], [('series_limit', 5)])
    """
    n = len(batch)
    keys = batch.series_keys
    known = index.rows_known(keys)
    if known is not None:  # every series already has a row: no Python loop per sample
        return known, batch, []
    # New series take rows in the order of their first sample (as a loop over the samples
    # would give them): one pass over the distinct keys, not over every sample
    refused_new: set[str] = set()
    for key in dict.fromkeys(keys):
        if key not in index:
            try:
                index.add(key)
            except StateError:
                refused_new.add(key)
    if not refused_new:
        known = index.rows_known(keys)  # every key has a row now
        assert known is not None
        return known, batch, []
    rows = np.empty(n, dtype=np.int64)
    keep = np.ones(n, dtype=np.bool_)
    refused: dict[int, list[str]] = {}
    origin = batch.origin.tolist()
    get = index.get
    for i, key in enumerate(keys):
        row = get(key)
        if row is None:
            keep[i] = False
            refused.setdefault(origin[i], []).append(key)
            continue
        rows[i] = row
    if not refused:
        return rows, batch, []
    errors: list[RecordError] = []
    for rec_i, refused_keys in refused.items():
        rec = records[rec_i] if 0 <= rec_i < len(records) else None
        shown = ", ".join(refused_keys[:3]) + (" ..." if len(refused_keys) > 3 else "")
        where = f"{rec.topic}[{rec.partition}]@{rec.offset}: " if rec is not None else ""
        errors.append(
            IngestSchemaError(
                f"{where}{len(refused_keys)} sample(s) of new series refused, index full at "
                f"ingest.max_series={index.max_series}: {shown}",
                reason="series_limit",
                field="series",
                record=rec,
            )
        )
    return rows[keep], batch.select(keep), errors


def next_offsets(records: Sequence[RawRecord]) -> dict[tuple[str, int], int]:
    """The next offset to read per ``(topic, partition)`` after ``records``: last + 1.

    This is what :meth:`ingest.kafka_source.KafkaSource.commit` and a checkpoint store;
    committing the last offset itself instead would replay one record per partition.

    >>> recs = [RawRecord("m", 0, 4, b""), RawRecord("m", 0, 5, b""), RawRecord("m", 1, 9, b"")]
    >>> next_offsets(recs)
    {('m', 0): 6, ('m', 1): 10}
    """
    out: dict[tuple[str, int], int] = {}
    for rec in records:
        tp = (rec.topic, rec.partition)
        if rec.offset + 1 > out.get(tp, -1):
            out[tp] = rec.offset + 1
    return out
