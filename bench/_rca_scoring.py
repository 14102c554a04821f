"""Scoring rules of the root-cause development suite (pure; unit-tested).

- :func:`pooled_ranking`: a node's score is the sum of ``1/rank`` over the explanations in
  a window (Nezha's rule: every explanation a user sees during an incident counts);
- :func:`ac_at`: AC@k of one case (1 if the truth is in the top ``k``); Avg@5 is the mean
  of AC@1..AC@5;
- :func:`latest_for_node`: the automatic PetShop answer: the latest explanation of the
  target node in a window, one of the target's own series preferred;
- :func:`quiet_seconds`: the time far from every injection, where explanations are false
  alarms;
- :func:`loso`: leave one system out over a tuned setting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from _rca_stream import Expl

__all__ = [
    "ac_at",
    "avg_at5",
    "in_window",
    "latest_for_node",
    "loso",
    "pooled_ranking",
    "quiet_mask",
    "quiet_seconds",
]

QUIET_AFTER_S = 1800.0  # after an injection, 30 min may still hold its (recovery) alerts
QUIET_BEFORE_S = 300.0


def in_window(expls: Iterable[Expl], start: float, end: float) -> list[Expl]:
    """Explanations detected in ``[start, end)``, in publication order."""
    return [e for e in expls if start <= e.at < end]


def pooled_ranking(expls: Iterable[Expl]) -> list[str]:
    """Nodes by the sum of ``1/rank`` over the explanations (ties by name).

    >>> a = Expl(0.0, "x", "s", ["db", "api"], 50.0, "i", 1)
    >>> b = Expl(1.0, "x", "s", ["api"], 50.0, "i", 2)
    >>> pooled_ranking([a, b])
    ['api', 'db']
    """
    score: dict[str, float] = {}
    for e in expls:
        for r, node in enumerate(e.roots, start=1):
            score[node] = score.get(node, 0.0) + 1.0 / r
    return sorted(score, key=lambda n: (-score[n], n))


def ac_at(ranked: Sequence[str], truth: str, k: int) -> float:
    """1.0 when ``truth`` is among the first ``k`` nodes, else 0.0."""
    return float(truth in ranked[:k])


def avg_at5(ranked: Sequence[str], truth: str) -> float:
    """Avg@5: the mean of AC@1 .. AC@5."""
    return float(np.mean([ac_at(ranked, truth, k) for k in range(1, 6)]))


def latest_for_node(expls: Sequence[Expl], node: str, series: str | None) -> Expl | None:
    """The last explanation of ``node``, one of ``series`` preferred; None if none."""
    own = [e for e in expls if e.node == node and series is not None and e.series == series]
    if own:
        return own[-1]
    mine = [e for e in expls if e.node == node]
    return mine[-1] if mine else None


def quiet_mask(ts: np.ndarray, injections: Sequence[float]) -> np.ndarray:
    """True where a time is at least ``QUIET_AFTER_S`` after the last injection before it
    and ``QUIET_BEFORE_S`` before the next one."""
    inj = np.sort(np.asarray(injections, dtype=float))
    ts = np.asarray(ts, dtype=float)
    if inj.size == 0:
        return np.ones(ts.shape, dtype=bool)
    i = np.searchsorted(inj, ts, side="right")  # injections at or before t: inj[:i]
    prev = np.where(i > 0, inj[np.maximum(i - 1, 0)], -np.inf)
    nxt = np.where(i < inj.size, inj[np.minimum(i, inj.size - 1)], np.inf)
    return (ts - prev >= QUIET_AFTER_S) & (nxt - ts >= QUIET_BEFORE_S)


def quiet_seconds(ts: np.ndarray, step_s: float, injections: Sequence[float]) -> float:
    """Seconds of quiet in a stream sampled at ``ts`` (each point covers ``step_s``)."""
    return float(quiet_mask(ts, injections).sum()) * step_s


@dataclass(frozen=True)
class LosoResult:
    held_out: str
    chosen: str
    score: float  # of the chosen value on the held-out system
    best_in_sample: str
    best_score: float  # the held-out system's own best (in-sample)


def loso(scores: Mapping[str, Mapping[str, float]]) -> list[LosoResult]:
    """Leave one system out: ``scores[value][system]`` -> per held-out system, the value
    with the best mean over the other systems (ties: the first value given) and its score
    on the held-out one, beside that system's in-sample best.

    >>> s = {"a": {"p": 0.9, "q": 0.1, "r": 0.5}, "b": {"p": 0.2, "q": 0.8, "r": 0.6}}
    >>> [(r.held_out, r.chosen, r.score) for r in loso(s)]
    [('p', 'b', 0.2), ('q', 'a', 0.1), ('r', 'a', 0.5)]
    """
    values = list(scores)
    systems = sorted({s for v in values for s in scores[v]})
    out = []
    for held in systems:
        others = [s for s in systems if s != held]

        train = {v: _mean([scores[v][s] for s in others if s in scores[v]]) for v in values}
        chosen = max(values, key=lambda v: (train[v], -values.index(v)))
        own = max(values, key=lambda v: (scores[v].get(held, -np.inf), -values.index(v)))
        out.append(
            LosoResult(
                held,
                chosen,
                scores[chosen].get(held, float("nan")),
                own,
                scores[own].get(held, float("nan")),
            )
        )
    return out


def _mean(xs: Sequence[float]) -> float:
    return float(np.mean(xs)) if xs else -np.inf
