"""The incident page's snapshot of an explanation: the series it plots and the graph it draws.

Written next to each explanation (:class:`causalwatch.store.snapshots.SnapshotStore`) by the
process that explains, because only that process holds what the page needs: the samples of
the target and its top candidates with the detector's expected value and band (the
:class:`~causalwatch.app.pipeline.trail.Trail`), and the merged graph (given and learned
edges) the explanation was ranked on. The API process only reads it back; the page is then
a picture of what the explainer saw when it wrote the explanation, not of the state now.

Bounded: at most ``max_series`` series of at most ``trail_points`` samples each (about 30 kB
of JSON with the defaults) and at most ``max_nodes`` graph nodes.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from causalwatch.app.pipeline.steps import Cores
from causalwatch.app.pipeline.trail import Trail
from causalwatch.models import Explanation
from detector.severity import severity_from_score
from explainer.dag import DependencyGraph

__all__ = ["SCHEMA_VERSION", "build_snapshots", "gather_snapshots", "render_snapshots"]

SCHEMA_VERSION = 1
_AFTER_STEPS = 30  # samples kept after the anomaly window, in explainer steps


def _num(x: float) -> float | None:
    return float(f"{x:.6g}") if math.isfinite(x) else None


def _nums(a: np.ndarray[Any, Any]) -> list[float | None]:
    """:func:`_num` of each value (inlined: a snapshot formats about 3,000 of them)."""
    isfinite = math.isfinite
    return [float(f"{v:.6g}") if isfinite(v) else None for v in a.astype(np.float64).tolist()]


def _times(a: np.ndarray[Any, Any]) -> list[float | None]:
    """Unix seconds to the millisecond (six significant digits would round to hours)."""
    return [round(float(v), 3) if math.isfinite(v) else None for v in a.tolist()]


def _node_severity(trail: Trail, rows: Sequence[int], win_start: float) -> float:
    """The highest severity of a node's samples in the trail from ``win_start`` on (0 when
    it has none). All of its rows at once: a slot never written has a NaN time, so the
    whole ring of each row can be read (what :meth:`Trail.read` returns plus NaN slots,
    which the window test leaves out)."""
    live = [r for r in rows if 0 <= r < trail.capacity]
    if not live:
        return 0.0
    idx = np.asarray(live, dtype=np.int64)
    in_win = trail.ts[idx] >= win_start
    if not in_win.any():
        return 0.0
    scores = trail.cols["score"][idx][in_win].astype(np.float64)
    return max(0.0, float(severity_from_score(scores).max()))


def _graph_nodes(g: DependencyGraph, exp: Explanation, max_nodes: int) -> list[str]:
    """The target, the nodes the explanation names (with their paths), then the rest of its
    ancestors and descendants nearest first, up to ``max_nodes``."""
    target = exp.target.node
    first: list[str] = [target]
    for rc in exp.root_causes:
        path = rc.evidence.get("path") if isinstance(rc.evidence, dict) else None
        first += [str(n) for n in path] if isinstance(path, list) else []
        first.append(rc.node)
    keep = {target} | g.ancestors(target) | g.descendants(target) if target in g else {target}
    out: list[str] = []
    for n in first:
        if n not in out and (n in keep or n == target or n in g):
            out.append(n)
    seen, todo = set(out), deque([target])
    while todo and len(out) < max_nodes:
        n = todo.popleft()
        for m in (g.parents(n) + g.children(n)) if n in g else []:
            if m not in seen and m in keep:
                seen.add(m)
                out.append(m)
                todo.append(m)
    return out[:max_nodes]


def build_snapshots(
    cores: Cores,
    explanations: Sequence[Explanation],
    *,
    reference_points: int,
    max_series: int = 4,
    max_nodes: int = 40,
) -> list[dict[str, Any]]:
    """One snapshot per explanation (JSON-ready). Call with the cores' lock held."""
    gathered = gather_snapshots(
        cores,
        explanations,
        reference_points=reference_points,
        max_series=max_series,
        max_nodes=max_nodes,
    )
    return render_snapshots(gathered)


def render_snapshots(gathered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`gather_snapshots`' output made JSON-ready: each series' arrays become lists
    (times to the millisecond, values to six significant digits). Needs no lock: the
    arrays are copies. Formatting is most of a snapshot's cost (about 3,000 numbers)."""
    for snap in gathered:
        snap["series"] = [
            {
                k: (_times(v) if k == "ts" else _nums(v)) if isinstance(v, np.ndarray) else v
                for k, v in one.items()
            }
            for one in snap["series"]
        ]
    return gathered


def gather_snapshots(
    cores: Cores,
    explanations: Sequence[Explanation],
    *,
    reference_points: int,
    max_series: int = 4,
    max_nodes: int = 40,
) -> list[dict[str, Any]]:
    """What :func:`build_snapshots` reads from the cores, with each series' samples as
    arrays (copies) not yet formatted: call with the cores' lock held, then
    :func:`render_snapshots` outside it."""
    trail, ex = cores.trail, cores.explainer
    if trail is None or ex is None or not explanations:
        return []
    graph = ex.graph
    step_s = ex.step_s
    out = []
    for exp in explanations:
        nodes = _graph_nodes(graph, exp, max_nodes)
        rows_by_node = cores.index.rows_of_nodes(nodes)
        win_start, win_end = exp.window.start, exp.window.end
        ref_start = win_start - reference_points * step_s if step_s > 0 else win_start
        wanted: list[tuple[str, str, str]] = [(exp.target.series, exp.target.node, "target")]
        for rc in exp.root_causes:
            fresh = rc.series and all(rc.series != w[0] for w in wanted)
            if fresh and rc.series is not None and len(wanted) < max_series:
                wanted.append((rc.series, rc.node, "candidate"))
        series = []
        for key, node, role in wanted:
            row = cores.index.get(key)
            data = trail.read(row) if row is not None else trail.read(-1)
            # around the windows: a batch of old data can run far past the anomaly
            keep = (data["ts"] >= ref_start - 10 * step_s) & (
                data["ts"] <= win_end + _AFTER_STEPS * max(step_s, 1.0)
            )
            cols = {name: col[keep] for name, col in data.items() if name != "ts"}
            series.append(
                {"series": key, "node": node, "role": role, "ts": data["ts"][keep], **cols}
            )
        node_out = [
            {
                "node": n,
                "severity": round(_node_severity(trail, rows_by_node.get(n, []), win_start), 1),
            }
            for n in nodes
        ]
        node_set = set(nodes)
        edges = [
            {
                "cause": e.cause,
                "effect": e.effect,
                "provenance": e.provenance,
                "strength": None if e.strength is None else _num(e.strength),
            }
            for e in graph.edges
            if e.cause in node_set and e.effect in node_set
        ]
        out.append(
            {
                "schema_version": SCHEMA_VERSION,
                "explanation_id": exp.id,
                "incident_id": exp.incident_id,
                "step_s": step_s,
                "reference": [round(ref_start, 3), round(win_start, 3)],
                "anomaly": [round(win_start, 3), round(win_end, 3)],
                "series": series,
                "graph": {"nodes": node_out, "edges": edges},
            }
        )
    return out
