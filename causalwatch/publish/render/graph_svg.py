"""The dependency graph around an incident, laid out and drawn as SVG by the service.

Layout: a small Sugiyama-style layered drawing. Each node's layer is its longest path from
a source within the drawn subgraph (causes left, effects right, the target last on its
path); within a layer nodes are ordered by the mean position of their neighbours in the
previous and next layers (a few sweeps), which removes most crossings in the trees and
near-trees service graphs are. ``O(nodes + edges)`` per sweep; meant for the at most 40
nodes a snapshot holds, not for whole estates.

Encoding: fill from the node's anomaly severity (0-100: pale to red); given edges solid,
learned edges dashed; the root-cause path to the target drawn thick in the accent colour,
with its nodes outlined. Every element carries ``data-*`` attributes naming what it is, so
tests (and people with a DOM inspector) can check what is drawn, and a ``<title>`` for
hover text and screen readers.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

__all__ = ["GraphLayout", "layout_graph", "render_graph", "severity_colour"]

NODE_W, NODE_H = 150, 34
GAP_X, GAP_Y = 70, 22
PAD = 16
ACCENT = "#c2185b"


def severity_colour(severity: float) -> str:
    """Fill for a severity in [0, 100]: pale grey-green -> amber -> red.

    >>> severity_colour(0), severity_colour(100)
    ('#e4ede6', '#d7303b')
    """
    s = min(max(float(severity), 0.0), 100.0) / 100.0
    stops = [(0.0, (0xE4, 0xED, 0xE6)), (0.5, (0xF6, 0xC3, 0x43)), (1.0, (0xD7, 0x30, 0x3B))]
    for (s0, c0), (s1, c1) in itertools.pairwise(stops):
        if s <= s1:
            f = (s - s0) / (s1 - s0)
            rgb = [round(a + (b - a) * f) for a, b in zip(c0, c1, strict=True)]
            return "#" + "".join(f"{v:02x}" for v in rgb)
    return "#d7303b"


@dataclass(frozen=True)
class GraphLayout:
    """Node centres (SVG units) and the drawing's size."""

    pos: dict[str, tuple[float, float]]
    width: float
    height: float


def layout_graph(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> GraphLayout:
    """Layered positions of ``nodes`` (edges between unknown nodes are ignored).

    >>> lay = layout_graph(["a", "b", "c"], [("a", "b"), ("b", "c")])
    >>> [lay.pos[n][0] < lay.pos[m][0] for n, m in [("a", "b"), ("b", "c")]]
    [True, True]
    """
    known = set(nodes)
    es = [(a, b) for a, b in edges if a in known and b in known and a != b]
    parents: dict[str, list[str]] = {n: [] for n in nodes}
    children: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in es:
        parents[b].append(a)
        children[a].append(b)
    layer: dict[str, int] = {}

    def depth(n: str, stack: frozenset[str]) -> int:
        if n in layer:
            return layer[n]
        ps = [p for p in parents[n] if p not in stack]  # a cycle (should not happen) is cut
        layer[n] = 1 + max((depth(p, stack | {n}) for p in ps), default=-1)
        return layer[n]

    for n in nodes:
        depth(n, frozenset())
    n_layers = max(layer.values(), default=0) + 1
    layers: list[list[str]] = [[] for _ in range(n_layers)]
    for n in nodes:  # input order is the first guess: the target and the causes first
        layers[layer[n]].append(n)
    index = {n: float(i) for lay in layers for i, n in enumerate(lay)}
    for sweep in range(6):
        order = range(1, n_layers) if sweep % 2 == 0 else range(n_layers - 2, -1, -1)
        for li in order:
            nbrs = parents if sweep % 2 == 0 else children

            def key(n: str, nbrs: Mapping[str, list[str]] = nbrs) -> float:
                ps = nbrs[n]
                return sum(index[p] for p in ps) / len(ps) if ps else index[n]

            layers[li].sort(key=key)
            for i, n in enumerate(layers[li]):
                index[n] = float(i)
    tallest = max((len(lay) for lay in layers), default=1)
    height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y
    width = PAD * 2 + n_layers * NODE_W + (n_layers - 1) * GAP_X
    pos: dict[str, tuple[float, float]] = {}
    for li, lay in enumerate(layers):
        span = len(lay) * NODE_H + (len(lay) - 1) * GAP_Y
        top = (height - span) / 2
        x = PAD + li * (NODE_W + GAP_X) + NODE_W / 2
        for i, n in enumerate(lay):
            pos[n] = (x, top + i * (NODE_H + GAP_Y) + NODE_H / 2)
    return GraphLayout(pos, float(width), float(height))


def _label(text: str, limit: int = 19) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_graph(
    graph: Mapping[str, Any],
    *,
    target: str,
    path: Sequence[str],
    candidates: Sequence[str] = (),
) -> str:
    """An ``<svg>`` of the snapshot's graph (``{"nodes": [{node, severity}], "edges":
    [{cause, effect, provenance}]}``); ``path`` is the root-cause path ending at ``target``."""
    nodes_in = [n for n in graph.get("nodes") or [] if isinstance(n, Mapping)]
    names = [str(n["node"]) for n in nodes_in]
    if target not in names:
        names.insert(0, target)
    sev = {str(n["node"]): float(n.get("severity") or 0.0) for n in nodes_in}
    edges = [e for e in graph.get("edges") or [] if isinstance(e, Mapping)]
    lay = layout_graph(names, [(str(e["cause"]), str(e["effect"])) for e in edges])
    on_path = {(path[i], path[i + 1]) for i in range(len(path) - 1)}
    path_nodes = set(path)
    parts = [
        f'<svg class="graph" viewBox="0 0 {lay.width:.0f} {lay.height:.0f}" '
        f'width="{lay.width:.0f}" height="{lay.height:.0f}" role="img" '
        f'aria-labelledby="graph-title" data-target="{escape(target)}" '
        f'data-path="{escape(" -> ".join(path))}" preserveAspectRatio="xMidYMid meet">',
        f'<title id="graph-title">Dependency graph around {escape(target)}'
        + (f"; root-cause path {escape(' → '.join(path))}" if len(path) > 1 else "")
        + "</title>",
        "<defs>"
        '<marker id="arr" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="9" '
        'markerHeight="9" markerUnits="userSpaceOnUse" orient="auto"><path '
        'd="M0,0L10,5L0,10z" fill="#6b7280"/></marker>'
        f'<marker id="arr-hot" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="12" '
        f'markerHeight="12" markerUnits="userSpaceOnUse" orient="auto"><path '
        f'd="M0,0L10,5L0,10z" fill="{ACCENT}"/></marker></defs>',
    ]
    # edges first (under the nodes); the path last so it is drawn on top
    ordered = sorted(edges, key=lambda e: (str(e["cause"]), str(e["effect"])) in on_path)
    for e in ordered:
        a, b = str(e["cause"]), str(e["effect"])
        if a not in lay.pos or b not in lay.pos:
            continue
        (x1, y1), (x2, y2) = lay.pos[a], lay.pos[b]
        sx, ex = x1 + NODE_W / 2, x2 - NODE_W / 2
        if ex <= sx:  # same layer (should not happen in a DAG layering): go round
            sx, ex = x1, x2
        mid = (sx + ex) / 2
        hot = (a, b) in on_path
        prov = str(e.get("provenance") or "given")
        dash = ' stroke-dasharray="6 4"' if prov == "learned" else ""
        stroke = ACCENT if hot else "#6b7280"
        width = 3.5 if hot else 1.4
        cls = "edge on-path" if hot else "edge"
        parts.append(
            f'<path class="{cls}" data-cause="{escape(a)}" data-effect="{escape(b)}" '
            f'data-provenance="{escape(prov)}" d="M{sx:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} '
            f'{mid:.1f},{y2:.1f} {ex:.1f},{y2:.1f}" fill="none" stroke="{stroke}" '
            f'stroke-width="{width}"{dash} marker-end="url(#{"arr-hot" if hot else "arr"})">'
            f"<title>{escape(a)} → {escape(b)} ({escape(prov)})</title></path>"
        )
    for n in names:
        x, y = lay.pos[n]
        s = sev.get(n, 0.0)
        classes = ["node"]
        if n == target:
            classes.append("target")
        if n in path_nodes:
            classes.append("on-path")
        if n in candidates:
            classes.append("candidate")
        outline = ACCENT if n in path_nodes else ("#111827" if n == target else "#9ca3af")
        sw = 3 if n in path_nodes or n == target else 1
        role = " (target)" if n == target else (" (root-cause path)" if n in path_nodes else "")
        parts.append(
            f'<g class="{" ".join(classes)}" data-node="{escape(n)}" data-severity="{s:.0f}">'
            f"<title>{escape(n)}{role}: anomaly severity {s:.0f}/100</title>"
            f'<rect x="{x - NODE_W / 2:.1f}" y="{y - NODE_H / 2:.1f}" width="{NODE_W}" '
            f'height="{NODE_H}" rx="7" fill="{severity_colour(s)}" stroke="{outline}" '
            f'stroke-width="{sw}"/>'
            f'<text x="{x:.1f}" y="{y + 5:.1f}" text-anchor="middle" font-size="13" '
            f'font-weight="{"700" if n == target or n in path_nodes else "400"}" '
            f'fill="#111827">{escape(_label(n))}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)
