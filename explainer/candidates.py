"""Which series are explained and which nodes may have caused it.

- :func:`pick_target`: with no series asked, the node's most anomalous series.
- :func:`analysis_row`: an alert on a noisy view (a p99) is analysed on the node's least
  noisy series of the same metric that deviates the same way (its mean).
- :func:`candidate_nodes`: the target's ancestors in the given graph; else (no graph, or
  learned edges only) every other node, of which the anomalous ones become direct parents
  of the target (the "star").
- :func:`choose_series`: one series per candidate node.
- :func:`structure`: the candidates' DAG for the attribution (ancestors without data
  contracted away), or the star.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from causalwatch.errors import StateError
from explainer.attribution import _nanmedian, robust_scale
from explainer.config import ExplainerConfig
from explainer.dag import DependencyGraph
from explainer.view import View
from explainer.windows import anomaly_bins, zscores

__all__ = [
    "CandidateSet",
    "SeriesChoice",
    "Structure",
    "analysis_row",
    "candidate_nodes",
    "choose_series",
    "pick_target",
    "structure",
]

FloatArray = npt.NDArray[np.float64]

#: why a candidate's series was chosen, by match rank (see :func:`choose_series`)
REASONS = ("same metric and labels", "same metric, most anomalous", "most anomalous")
#: the most anomalous nodes kept as star parents when there is no graph
MAX_STAR_PARENTS = 20


def pick_target(
    view: View, cfg: ExplainerConfig, node: str, series_key: str | None, at: float
) -> int:
    """The asked series' row; with none, the node's series with the largest |robust z| at
    ``at``. Raises :class:`StateError` for an unknown series or a node without series."""
    if series_key is not None:
        row = view.index.get(series_key)
        if row is None:
            raise StateError(f"explain: unknown series {series_key!r}")
        return row
    rows = view.node_rows().get(node)
    if not rows:
        raise StateError(f"explain: node {node!r} has no series")
    step = view.step_for(rows[0])
    _, V = view.history.aligned(np.array(rows), at, step, cfg.reference_points + cfg.anomaly_points)
    z = zscores(V, min(cfg.anomaly_points, max(V.shape[1] - 3, 1)))
    return rows[int(np.argmax(np.abs(np.nan_to_num(z))))]


def analysis_row(
    view: View, cfg: ExplainerConfig, target_row: int, at: float, step: float, rows: list[int]
) -> int:
    """The series of the target's node to analyse for an alert on ``target_row``: among the
    node's ``rows`` of the same metric name that deviate in the alert's direction (|robust
    z| > ``anomaly_z`` over the alert's anomaly window), the one with the smallest noise
    relative to its level.

    Why: a node's fault shows in all its views (mean, percentiles), but the linear
    SCM fits and the mechanism tests are only as good as the series: tail percentiles
    are noisy and do not add up along calls (a caller's p99 is not its callees' p99s
    plus its own), while a mean does. Detectors often fire on the noisier view first.
    """
    name = view.identity(target_row)[0]
    sibs = [r for r in rows if view.identity(r)[0] == name]
    if len(sibs) < 2 or target_row not in sibs:
        return target_row
    _, V = view.history.aligned(np.array(sibs), at, step, cfg.reference_points + cfg.anomaly_points)
    if V.shape[1] < 4:
        return target_row
    t = sibs.index(target_row)
    n_anom = anomaly_bins(V[t], cfg.anomaly_points, cfg.anomaly_z)
    z = zscores(V, n_anom)
    if abs(z[t]) <= cfg.anomaly_z:
        return target_row
    ref = V[:, : V.shape[1] - n_anom]
    with np.errstate(all="ignore"):
        med = np.abs(_nanmedian(ref, axis=1))
        rel = robust_scale(ref, axis=1) / med
    ok = (np.sign(z) == np.sign(z[t])) & (np.abs(z) > cfg.anomaly_z) & np.isfinite(rel)
    ok &= np.isfinite(ref).sum(axis=1) >= max(cfg.reference_points // 2, 3)
    if not ok.any():
        return target_row
    cand = np.flatnonzero(ok)
    return sibs[int(cand[np.argmin(rel[cand])])]


@dataclass(frozen=True)
class CandidateSet:
    """The candidate nodes of one target.

    ``ancestors`` is empty for the star (no given edge reaches the target).
    """

    nodes: list[str]
    ancestors: set[str]

    @property
    def star(self) -> bool:
        return not self.ancestors


def candidate_nodes(view: View, node: str, node_rows: dict[str, list[int]]) -> CandidateSet:
    """Ancestors of ``node`` when a given edge reaches it, else every other node with data.

    Learned (Granger) edges alone are too imprecise to be the structure (they miss
    same-step effects and pick up common drivers): when no given edge reaches the target,
    rank like with no graph and keep the learned edges as evidence only.
    """
    graph = view.graph
    anc = graph.ancestors(node) if node in graph else set()
    if not (node in view.given and view.given.ancestors(node)):
        anc = set()
    nodes = sorted(anc) if anc else sorted(n for n in node_rows if n != node)
    return CandidateSet(nodes, anc)


@dataclass(frozen=True, slots=True)
class SeriesChoice:
    """The series analysed for one candidate node: its column in the aligned matrix, its
    row, how well it matches the target's series (0 same metric and labels, 1 same metric,
    2 other metric) and that reason in words."""

    col: int
    row: int
    match: int
    reason: str


def choose_series(
    view: View, rows: list[int], owner: list[str], z: FloatArray
) -> dict[str, SeriesChoice]:
    """One series per node of ``owner[1:]`` (``rows[0]`` is the target): the series with
    the target's metric name and other labels; else, among the node's series of the
    target's metric, the most anomalous (largest |z|); else the most anomalous."""
    t_name, t_labels = view.identity(rows[0])
    chosen: dict[str, SeriesChoice] = {}
    best: dict[str, tuple[int, float]] = {}  # node -> (match, -|z|) of the chosen series
    for col in range(1, len(rows)):
        n, r = owner[col], rows[col]
        name, labels = view.identity(r)
        match = 0 if (name == t_name and labels == t_labels) else 1 if name == t_name else 2
        key = (match, -abs(float(z[col])))
        if n not in best or key < best[n]:
            best[n] = key
            chosen[n] = SeriesChoice(col, r, match, REASONS[match])
    return chosen


@dataclass(frozen=True)
class Structure:
    """The attribution's graph: ``nodes`` (the target among them), ``parents`` as index
    lists into ``nodes``, and a topological ``order``."""

    nodes: list[str]
    parents: list[list[int]]
    order: list[int]


def structure(
    graph: DependencyGraph,
    node: str,
    cands: CandidateSet,
    chosen: dict[str, SeriesChoice],
    z: FloatArray,
    anomaly_z: float,
) -> Structure:
    """The star (no graph: the anomalous candidates, most anomalous first, as parents of
    the target) or the ancestors' DAG restricted to nodes with data (an ancestor without
    data is contracted: its parents become its children's parents)."""
    if cands.star:
        ranked = sorted(
            (n for n in chosen if abs(z[chosen[n].col]) > anomaly_z),
            key=lambda n: (-abs(z[chosen[n].col]), n),
        )[:MAX_STAR_PARENTS]
        nodes = [*ranked, node]
        parents: list[list[int]] = [[] for _ in ranked] + [list(range(len(ranked)))]
        return Structure(nodes, parents, list(range(len(nodes))))
    # sorted: Kahn's order breaks ties by input order, and a set's order follows the
    # process's string hash seed (the attribution's node order must not)
    sub = graph.topological_order(sorted([*cands.ancestors, node]))
    have = [n for n in sub if n == node or n in chosen]
    pos = {n: i for i, n in enumerate(have)}
    parents = [_data_parents(graph, n, pos) for n in have]
    return Structure(have, parents, list(range(len(have))))


def _data_parents(graph: DependencyGraph, n: str, pos: dict[str, int]) -> list[int]:
    """Indices (in ``pos``) of ``n``'s nearest ancestors with data, through ancestors
    without."""
    ps: set[int] = set()
    todo = list(graph.parents(n))
    seen: set[str] = set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        if p in pos:
            ps.add(pos[p])
        else:
            todo.extend(graph.parents(p))
    return sorted(ps)
