"""The given dependency graph: read, replace and edit it, guarded by its version."""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response

from causalwatch.errors import BackendError, GraphError
from causalwatch.publish.api.bodies import GraphOut, GraphPatch, GraphPut
from causalwatch.publish.api.deps import GraphCache, error
from explainer.dag import DependencyGraph, Edge

__all__ = ["router"]


def _parse_version(if_match: str | None, body_version: int | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return body_version
    raw = if_match.strip().removeprefix("W/").strip('"')
    if not raw.isdigit():
        raise GraphError(f"If-Match must be a graph version like '\"3\"' (got {if_match!r})")
    return int(raw)


def _graph_out(g: DependencyGraph | None) -> GraphOut:
    if g is None:
        return GraphOut(version=0, nodes=[], edges=[])
    return GraphOut(version=g.version, nodes=g.nodes, edges=[e.to_dict() for e in g.edges])


def _checked(graph: DependencyGraph) -> DependencyGraph:
    graph.topological_order()  # raises GraphError naming the nodes of a cycle
    return graph


def router(graph_cache: GraphCache | None) -> APIRouter:
    """``graph_cache`` None makes every route answer 503."""
    r = APIRouter()
    graph_lock = threading.Lock()

    @r.get("/graph", response_model=GraphOut, tags=["graph"])
    def get_graph(response: Response) -> Any:
        g = _graph_out(_cache().get())
        response.headers["ETag"] = f'"{g.version}"'
        return g

    conflict: dict[int | str, dict[str, Any]] = {
        409: {"description": "version conflict"},
        422: {"description": "cycle or bad edge"},
    }

    @r.put("/graph", response_model=GraphOut, tags=["graph"], responses=conflict)
    def put_graph(
        body: GraphPut,
        response: Response,
        if_match: Annotated[str | None, Header()] = None,
    ) -> Any:
        """Replace the given graph. ``If-Match: "<version>"`` or ``version`` guard the write."""
        cache = _cache()
        with graph_lock:
            expected = _parse_version(if_match, body.version)
            current = cache.version()
            if expected is not None and expected != current:
                return error(409, f"graph version is {current}, not {expected}")
            edges = [
                Edge.from_dict(e.model_dump(), where=f"edge #{i}") for i, e in enumerate(body.edges)
            ]
            new = _checked(DependencyGraph(edges, body.nodes))
            version = cache.put(new)
        out = _graph_out(new.with_version(version))
        response.headers["ETag"] = f'"{version}"'
        return out

    @r.patch("/graph", response_model=GraphOut, tags=["graph"], responses=conflict)
    def patch_graph(
        body: GraphPatch,
        response: Response,
        if_match: Annotated[str | None, Header()] = None,
    ) -> Any:
        """Add and remove edges of the given graph (removals first)."""
        cache = _cache()
        with graph_lock:
            expected = _parse_version(if_match, body.version)
            current_graph = cache.get() or DependencyGraph()
            current = cache.version()
            if expected is not None and expected != current:
                return error(409, f"graph version is {current}, not {expected}")
            given = current_graph.given()
            for e in body.remove:
                if given.edge(e.cause, e.effect) is None:
                    raise GraphError(
                        f"cannot remove edge {e.cause!r} -> {e.effect!r}: not in graph"
                    )
            add = [
                Edge.from_dict(e.model_dump(), where=f"add #{i}") for i, e in enumerate(body.add)
            ]
            new = _checked(given.with_edits(add, [(e.cause, e.effect) for e in body.remove]))
            version = cache.put(new)
        response.headers["ETag"] = f'"{version}"'
        return _graph_out(new.with_version(version))

    def _cache() -> GraphCache:
        if graph_cache is None:
            raise BackendError("no graph store is configured in this process", backend="redis")
        return graph_cache

    return r
