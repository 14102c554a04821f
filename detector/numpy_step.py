"""The vectorised reference path: a batch of samples as rounds of unique rows.

:func:`run` is what :func:`detector.kernel.run` does in a compiled per-point loop, with the
same contract: step a batch (``out`` a :class:`~detector.result.DetectorResult` to fill)
or learn it (``out`` None), in order, on the state arrays in place. Numpy updates a fancy
index once even when the row repeats, so a batch is split into rounds in which every row
appears once (the first sample of each row, then the second, ...); each round is scored
(:mod:`detector.scoring`), alerted on (:mod:`detector.alerting`) and learned
(:mod:`detector.learning`), so a batch gives what feeding its samples one at a time would.

Cost: one vectorised pass per round, so ``O(len(rows))`` work plus one pass per repeat of
the most repeated row: cheap for many series a few points each, slow for a few series
with many points each (that is what the compiled loop is for).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detector.alerting import alerts, would_page
from detector.config import DetectorConfig
from detector.learning import learn
from detector.result import DetectorResult, FloatArray, IntArray, StateArrays
from detector.scoring import evaluate

__all__ = ["occurrence_rank", "rounds", "run", "score"]


def occurrence_rank(rows: IntArray) -> IntArray:
    """0 for the first time a row appears in the batch, 1 for the second time, ..."""
    order = np.argsort(rows, kind="stable")
    sr = rows[order]
    start = np.ones(len(sr), dtype=np.bool_)
    start[1:] = sr[1:] != sr[:-1]
    idx = np.arange(len(sr))
    group_start = np.maximum.accumulate(np.where(start, idx, 0))
    rank = np.empty(len(rows), dtype=np.int64)
    rank[order] = idx - group_start
    return rank


def rounds(r: IntArray) -> list[IntArray]:
    """Positions in ``r`` split into rounds of unique rows, each in batch order."""
    if len(r) == 0:
        return []
    if len(np.unique(r)) == len(r):
        return [np.arange(len(r))]
    rank = occurrence_rank(r)
    order = np.argsort(rank, kind="stable")
    counts = np.bincount(rank)
    return np.split(order, np.cumsum(counts)[:-1])


def _fill(out: DetectorResult, idx: IntArray, e: dict[str, Any]) -> None:
    out.score[idx] = e["score"]
    out.severity[idx] = e["severity"]
    out.expected[idx] = e["expected"]
    out.lower[idx] = e["lower"]
    out.upper[idx] = e["upper"]


def score(
    c: DetectorConfig, s: StateArrays, r: IntArray, t: FloatArray, v: FloatArray
) -> DetectorResult:
    """Score samples against the state without changing it; rows beyond the state are
    unknown (score 0, expected value the sample itself). See ``Detector.score_many``."""
    out = DetectorResult.empty(len(r))
    known = r < len(s["n"])
    if known.any():
        idx = np.flatnonzero(known)
        e = evaluate(c, s, r[idx], t[idx], v[idx])
        _fill(out, idx, e)
        out.alert[idx] = would_page(c, s, r[idx], e)
    out.expected[~known] = v[~known]
    out.lower[~known] = v[~known]
    out.upper[~known] = v[~known]
    return out


def run(
    c: DetectorConfig,
    s: StateArrays,
    r: IntArray,
    t: FloatArray,
    v: FloatArray,
    out: DetectorResult | None,
) -> None:
    """Step (``out`` a DetectorResult to fill) or learn (``out`` None) a batch in order;
    every row is below the state's capacity."""
    for idx in rounds(r):
        rr, tt, vv = r[idx], t[idx], v[idx]
        e = evaluate(c, s, rr, tt, vv)
        if out is not None:
            _fill(out, idx, e)
            out.alert[idx], out.fired[idx] = alerts(c, s, rr, tt, e)
            s["last_score"][rr] = e["score"]
            s["last_expected"][rr] = e["expected"]
            s["last_lower"][rr] = e["lower"]
            s["last_upper"][rr] = e["upper"]
        learn(c, s, rr, tt, vv, e)
