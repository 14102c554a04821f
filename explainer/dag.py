"""The dependency graph: given (user-supplied) and learned edges, merged into a DAG.

Edges point from **cause** to **effect** (callee -> caller for latency and errors: a slow
callee makes its caller slow). Every edge keeps its provenance: ``"given"`` edges come from
a file, the command line or Redis and always win; ``"learned"`` edges come from the online
Granger tests and carry a strength, a p-value and a lag.

Attribution needs a DAG, so :meth:`DependencyGraph.merged_with` adds given edges first (in
their order, dropping any given edge that would close a cycle, which a call graph with
mutual calls can contain) and then learned edges strongest first (shorter lag first on a
tie), skipping any learned edge that closes a cycle or duplicates/reverses a given one.

The graph is immutable: edits build a new graph. ``version`` is the version of the given
graph it came from (the Redis cache increments it on every write; 0 means "not stored").
"""

from __future__ import annotations

import csv
import io
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from causalwatch.errors import GraphError

__all__ = ["DependencyGraph", "Edge", "load_graph", "parse_graph"]

Provenance = Literal["given", "learned"]


@dataclass(frozen=True, slots=True)
class Edge:
    """One directed edge ``cause -> effect``.

    ``strength`` is in [0, 1] for learned edges (partial R² of the Granger test: the share of
    the effect's residual variance the cause's lags explain); ``p_value`` is the FDR-adjusted
    p-value; ``lag`` the number of steps at which the cause leads. All three are None for
    given edges unless a file supplies them.
    """

    cause: str
    effect: str
    provenance: Provenance = "given"
    strength: float | None = None
    p_value: float | None = None
    lag: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "effect": self.effect,
            "provenance": self.provenance,
            "strength": self.strength,
            "p_value": self.p_value,
            "lag": self.lag,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "edge") -> Edge:
        cause, effect = d.get("cause"), d.get("effect")
        if not isinstance(cause, str) or not cause.strip():
            raise GraphError(f"{where}: field 'cause' is missing or empty (got {cause!r})")
        if not isinstance(effect, str) or not effect.strip():
            raise GraphError(f"{where}: field 'effect' is missing or empty (got {effect!r})")
        prov = d.get("provenance", "given")
        if prov not in ("given", "learned"):
            raise GraphError(f"{where}: provenance must be 'given' or 'learned' (got {prov!r})")
        try:
            strength = None if d.get("strength") is None else float(d["strength"])
            p_value = None if d.get("p_value") is None else float(d["p_value"])
            lag = None if d.get("lag") is None else int(d["lag"])
        except (TypeError, ValueError) as exc:
            raise GraphError(f"{where}: strength/p_value/lag not numeric ({exc})") from exc
        if cause.strip() == effect.strip():
            raise GraphError(f"{where}: self-loop {cause!r} -> {effect!r} is not allowed")
        return cls(cause.strip(), effect.strip(), prov, strength, p_value, lag)


class DependencyGraph:
    """An immutable directed graph of nodes (services) with edge provenance.

    Parameters
    ----------
    edges
        Directed edges; duplicates (same cause and effect) keep the first.
    nodes
        Extra isolated nodes (a service with no known dependency).
    version
        Version of the stored given graph (see :mod:`explainer.redis_dag_cache`).

    Cost: construction ``O(E)``; ``ancestors``/``path`` are breadth-first, ``O(V + E)``.

    >>> g = DependencyGraph([Edge("db", "api"), Edge("api", "web")])
    >>> sorted(g.ancestors("web")), g.path("db", "web"), g.parents("api")
    (['api', 'db'], ['db', 'api', 'web'], ['db'])
    >>> m = g.merged_with([Edge("web", "db", "learned", 0.9, 0.001, 1)])  # would close a cycle
    >>> [(e.cause, e.effect) for e in m.edges]
    [('db', 'api'), ('api', 'web')]
    """

    def __init__(
        self,
        edges: Iterable[Edge] = (),
        nodes: Iterable[str] = (),
        version: int = 0,
        dropped: Iterable[Edge] = (),
    ) -> None:
        self.version = int(version)
        seen: dict[tuple[str, str], Edge] = {}
        for e in edges:
            seen.setdefault((e.cause, e.effect), e)
        self.edges: tuple[Edge, ...] = tuple(seen.values())
        self.dropped: tuple[Edge, ...] = tuple(dropped)
        self._parents: dict[str, list[str]] = {}
        self._children: dict[str, list[str]] = {}
        for n in nodes:
            self._parents.setdefault(n, [])
            self._children.setdefault(n, [])
        for e in self.edges:
            self._parents.setdefault(e.cause, [])
            self._children.setdefault(e.cause, [])
            self._parents.setdefault(e.effect, []).append(e.cause)
            self._children.setdefault(e.effect, [])
            self._children[e.cause].append(e.effect)
        self._edge = seen

    # -- queries -------------------------------------------------------------------------
    @property
    def nodes(self) -> list[str]:
        """All nodes, in order of first appearance."""
        return list(self._parents)

    def __contains__(self, node: object) -> bool:
        return node in self._parents

    def __len__(self) -> int:
        return len(self._parents)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DependencyGraph):
            return NotImplemented
        return (
            self.version == other.version
            and self.edges == other.edges
            and set(self.nodes) == set(other.nodes)
        )

    def __hash__(self) -> int:
        return hash((self.version, self.edges))

    def __repr__(self) -> str:
        return f"DependencyGraph(nodes={len(self)}, edges={len(self.edges)}, v{self.version})"

    def edge(self, cause: str, effect: str) -> Edge | None:
        return self._edge.get((cause, effect))

    def parents(self, node: str) -> list[str]:
        return list(self._parents.get(node, ()))

    def children(self, node: str) -> list[str]:
        return list(self._children.get(node, ()))

    def ancestors(self, node: str) -> set[str]:
        """Every node with a directed path to ``node`` (``node`` itself excluded)."""
        out: set[str] = set()
        todo = deque(self._parents.get(node, ()))
        while todo:
            n = todo.popleft()
            if n in out:
                continue
            out.add(n)
            todo.extend(self._parents.get(n, ()))
        out.discard(node)
        return out

    def descendants(self, node: str) -> set[str]:
        out: set[str] = set()
        todo = deque(self._children.get(node, ()))
        while todo:
            n = todo.popleft()
            if n in out:
                continue
            out.add(n)
            todo.extend(self._children.get(n, ()))
        out.discard(node)
        return out

    def path(self, a: str, b: str) -> list[str]:
        """A shortest directed path ``[a, ..., b]``; ``[a]`` when ``a == b``; ``[]`` if none."""
        if a == b:
            return [a] if a in self._parents else []
        prev: dict[str, str] = {}
        todo = deque([a])
        while todo:
            n = todo.popleft()
            for c in self._children.get(n, ()):
                if c in prev or c == a:
                    continue
                prev[c] = n
                if c == b:
                    out = [b]
                    while out[-1] != a:
                        out.append(prev[out[-1]])
                    return out[::-1]
                todo.append(c)
        return []

    def topological_order(self, nodes: Iterable[str] | None = None) -> list[str]:
        """Kahn order of ``nodes`` (all by default) restricted to edges among them."""
        keep = list(self._parents) if nodes is None else [n for n in nodes]
        kept = set(keep)
        indeg = {n: sum(1 for p in self._parents.get(n, ()) if p in kept) for n in keep}
        todo = deque(n for n in keep if indeg[n] == 0)
        out: list[str] = []
        while todo:
            n = todo.popleft()
            out.append(n)
            for c in self._children.get(n, ()):
                if c in kept:
                    indeg[c] -= 1
                    if indeg[c] == 0:
                        todo.append(c)
        if len(out) != len(keep):
            raise GraphError(f"graph has a cycle among {sorted(kept - set(out))[:5]}")
        return out

    def is_dag(self) -> bool:
        try:
            self.topological_order()
        except GraphError:
            return False
        return True

    # -- edits -------------------------------------------------------------------------
    def merged_with(self, learned: Iterable[Edge]) -> DependencyGraph:
        """This graph's given edges plus ``learned`` ones, as a DAG.

        Given edges are added first, in order; one that would close a cycle is dropped (kept
        in ``dropped``). Learned edges are then tried strongest first (``strength`` desc,
        then ``lag`` asc, then names for determinism) and skipped when they duplicate or
        reverse an edge already present, or close a cycle.
        """
        adj: dict[str, set[str]] = {}
        kept: list[Edge] = []
        dropped: list[Edge] = []

        def reaches(src: str, dst: str) -> bool:
            todo, seen = [src], {src}
            while todo:
                n = todo.pop()
                if n == dst:
                    return True
                for c in adj.get(n, ()):
                    if c not in seen:
                        seen.add(c)
                        todo.append(c)
            return False

        def try_add(e: Edge) -> bool:
            if e.effect in adj.get(e.cause, ()) or e.cause in adj.get(e.effect, ()):
                return False
            if reaches(e.effect, e.cause):
                return False
            adj.setdefault(e.cause, set()).add(e.effect)
            kept.append(e)
            return True

        for e in self.edges:
            if e.provenance == "given" and not try_add(e):
                dropped.append(e)
        given_pairs = {(e.cause, e.effect) for e in kept}
        ordered = sorted(
            (e for e in learned if (e.cause, e.effect) not in given_pairs),
            key=lambda e: (
                -(e.strength if e.strength is not None else 0.0),
                e.lag if e.lag is not None else 1 << 30,
                e.cause,
                e.effect,
            ),
        )
        for e in ordered:
            if e.provenance != "learned":
                e = Edge(e.cause, e.effect, "learned", e.strength, e.p_value, e.lag)
            if not try_add(e):
                dropped.append(e)
        return DependencyGraph(kept, self.nodes, self.version, dropped)

    def given(self) -> DependencyGraph:
        """Only the given edges (all nodes kept)."""
        return DependencyGraph(
            (e for e in self.edges if e.provenance == "given"), self.nodes, self.version
        )

    def with_edits(
        self, add: Iterable[Edge] = (), remove: Iterable[tuple[str, str]] = ()
    ) -> DependencyGraph:
        """A copy with ``remove`` (cause, effect) pairs deleted and ``add`` appended."""
        gone = set(remove)
        edges = [e for e in self.edges if (e.cause, e.effect) not in gone]
        return DependencyGraph([*edges, *add], self.nodes, self.version)

    def with_version(self, version: int) -> DependencyGraph:
        return DependencyGraph(self.edges, self.nodes, version, self.dropped)

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "nodes": self.nodes,
            "edges": [e.to_dict() for e in self.edges],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DependencyGraph:
        edges_raw = d.get("edges")
        if not isinstance(edges_raw, list):
            raise GraphError(f"graph: 'edges' must be a list (got {type(edges_raw).__name__})")
        edges = []
        for i, e in enumerate(edges_raw):
            if not isinstance(e, Mapping):
                raise GraphError(f"edge #{i}: must be a mapping with cause/effect (got {e!r})")
            edges.append(Edge.from_dict(e, where=f"edge #{i} {e.get('cause')!r}"))
        nodes = d.get("nodes") or []
        if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
            raise GraphError("graph: 'nodes' must be a list of names")
        return cls(edges, nodes, int(d.get("version", 0)))


def parse_graph(text: str, fmt: Literal["csv", "yaml"], source: str = "<graph>") -> DependencyGraph:
    """Parse graph text; ``fmt`` is ``"csv"`` (header ``cause,effect``) or ``"yaml"``.

    >>> parse_graph("cause,effect\\ndb,api\\n", "csv").parents("api")
    ['db']
    >>> parse_graph("edges:\\n  - {cause: db, effect: api}\\n", "yaml").edges[0].cause
    'db'
    """
    if fmt == "yaml":
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise GraphError(f"{source}: not valid YAML ({exc})") from exc
        if not isinstance(doc, Mapping) or "edges" not in doc:
            raise GraphError(f"{source}: YAML graph must be a mapping with an 'edges' list")
        edges_raw = doc["edges"] or []
        if not isinstance(edges_raw, list):
            raise GraphError(f"{source}: 'edges' must be a list")
        edges = []
        for i, e in enumerate(edges_raw):
            if not isinstance(e, Mapping):
                raise GraphError(f"{source}: edge #{i} must be a mapping {{cause, effect}}: {e!r}")
            edges.append(Edge.from_dict(e, where=f"{source}: edge #{i}"))
        return DependencyGraph(edges, [str(n) for n in doc.get("nodes") or []])
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise GraphError(f"{source}: empty graph file (expected header 'cause,effect')")
    header = [c.strip().lower() for c in rows[0]]
    if "cause" not in header or "effect" not in header:
        raise GraphError(f"{source}: line 1: header must name 'cause' and 'effect' (got {rows[0]})")
    ci, ei = header.index("cause"), header.index("effect")
    edges = []
    for lineno, r in enumerate(rows[1:], start=2):
        if r[0].lstrip().startswith("#"):
            continue
        if len(r) <= max(ci, ei):
            raise GraphError(f"{source}: line {lineno}: expected cause,effect (got {r})")
        extra = {h: r[j] for j, h in enumerate(header) if j < len(r) and r[j].strip() != ""}
        extra["cause"], extra["effect"] = r[ci], r[ei]
        edges.append(Edge.from_dict(extra, where=f"{source}: line {lineno}"))
    return DependencyGraph(edges)


def load_graph(path: str | Path) -> DependencyGraph:
    """Load a graph file: CSV (``.csv``, header ``cause,effect``) or YAML (``.yaml``/``.yml``).

    Raises :class:`~causalwatch.errors.GraphError` naming the file and the bad line or edge.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise GraphError(f"graph file {str(p)!r} cannot be read: {exc}") from exc
    fmt: Literal["csv", "yaml"] = "yaml" if p.suffix.lower() in (".yaml", ".yml") else "csv"
    return parse_graph(text, fmt, source=str(p))
