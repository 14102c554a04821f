"""Redis adapter: the dependency graph shared by every explainer process, versioned.

Layout (``p`` is the prefix, ``causalwatch:`` by default)::

    {p}graph            hash: ``version`` (int) and ``json`` (the graph, DependencyGraph.to_dict)
    {p}graph:version    counter, INCR on every write; never goes back
    {p}graph:changes    pub/sub channel; message = the new version

A write (``put`` or ``patch``) bumps the counter and stores graph and version in one atomic
step, so a reader never sees a graph with the wrong version. Explainers poll
:meth:`RedisDagCache.version` (one GET) and reload with :meth:`get` when it moved; this is
how a graph is reloaded without a restart. ``patch`` is an optimistic transaction (WATCH
/ MULTI, retried on conflict), so concurrent editors never lose each other's edits.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from typing import Any

import redis
import redis.exceptions

from causalwatch.errors import BackendError, GraphError
from causalwatch.store.client import map_redis_errors
from explainer.dag import DependencyGraph, Edge

__all__ = ["RedisDagCache"]

log = logging.getLogger(__name__)

_PUT_LUA = """
local v = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], 'version', v, 'json', ARGV[1])
redis.call('PUBLISH', KEYS[3], v)
return v
"""


def _encode(graph: DependencyGraph) -> str:
    d = graph.to_dict()
    d.pop("version", None)
    return json.dumps(d, separators=(",", ":"), sort_keys=True)


def _decode(raw: bytes | str, version: int) -> DependencyGraph:
    try:
        d = json.loads(raw)
    except ValueError as exc:
        raise GraphError(f"stored graph is not valid JSON: {exc}") from exc
    d["version"] = version
    return DependencyGraph.from_dict(d)


class RedisDagCache:
    """Stores and loads the given dependency graph in Redis with a version.

    Parameters
    ----------
    client
        A redis-py client (``causalwatch.store.results.connect``); owned by the caller.
    prefix
        Key prefix, ``causalwatch:`` by default.
    max_retries
        Optimistic-transaction retries of :meth:`patch` before giving up.
    """

    def __init__(
        self, client: redis.Redis, prefix: str = "causalwatch:", max_retries: int = 20
    ) -> None:
        self.client: Any = client
        self.prefix = prefix
        self.max_retries = max_retries
        self._put = client.register_script(_PUT_LUA)

    @property
    def graph_key(self) -> str:
        return f"{self.prefix}graph"

    @property
    def version_key(self) -> str:
        return f"{self.prefix}graph:version"

    @property
    def channel(self) -> str:
        return f"{self.prefix}graph:changes"

    def version(self) -> int:
        """The current version (0 when no graph was ever stored). One GET."""
        with map_redis_errors("graph version"):
            raw = self.client.get(self.version_key)
        return int(raw) if raw is not None else 0

    def get(self) -> DependencyGraph | None:
        """The stored graph with its version, or None when nothing is stored."""
        with map_redis_errors("graph get"):
            version, raw = self.client.hmget(self.graph_key, ["version", "json"])
        if raw is None:
            return None
        return _decode(raw, int(version))

    def put(self, graph: DependencyGraph) -> int:
        """Store ``graph`` (its own version is ignored); returns the new version."""
        with map_redis_errors("graph put"):
            v = self._put(
                keys=[self.version_key, self.graph_key, self.channel], args=[_encode(graph)]
            )
        log.info("graph stored", extra={"version": int(v), "edges": len(graph.edges)})
        return int(v)

    @property
    def learned_key(self) -> str:
        return f"{self.prefix}graph:learned"

    def put_learned(self, edges: Iterable[Edge], updated_at: float) -> None:
        """Share the edges an explainer learned (with strength, p-value and lag).

        They are evidence, not configuration: they never bump the given graph's version.
        """
        rows = [
            {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in d.items()}
            for d in (e.to_dict() for e in edges)
        ]
        body = json.dumps({"updated_at": updated_at, "edges": rows}, allow_nan=False)
        with map_redis_errors("graph put learned"):
            self.client.set(self.learned_key, body)

    def get_learned(self) -> list[Edge]:
        with map_redis_errors("graph get learned"):
            raw = self.client.get(self.learned_key)
        if raw is None:
            return []
        return [Edge.from_dict(d) for d in json.loads(raw)["edges"]]

    def patch(self, add: Iterable[Edge] = (), remove: Iterable[tuple[str, str]] = ()) -> int:
        """Atomically add and remove edges of the stored graph; returns the new version.

        ``remove`` holds ``(cause, effect)`` pairs; removing an absent edge is not an error.
        Starts from an empty graph when none is stored.
        """
        add, remove = list(add), list(remove)
        for _ in range(self.max_retries):
            with map_redis_errors("graph patch"):
                try:
                    return self._patch_once(add, remove)
                except redis.exceptions.WatchError:
                    continue  # another writer got in between: read again
        raise BackendError(
            f"redis graph patch gave up after {self.max_retries} conflicting writers",
            backend="redis",
            retryable=True,
        )

    def _patch_once(self, add: list[Edge], remove: list[tuple[str, str]]) -> int:
        """One optimistic attempt; raises WatchError when the graph moved meanwhile."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.watch(self.graph_key, self.version_key)
            raw = pipe.hget(self.graph_key, "json")
            current = pipe.get(self.version_key)
            base = _decode(raw, 0) if raw is not None else DependencyGraph()
            new = base.with_edits(add=add, remove=remove)
            v = (int(current) if current is not None else 0) + 1
            pipe.multi()
            pipe.set(self.version_key, v)
            pipe.hset(self.graph_key, mapping={"version": v, "json": _encode(new)})
            pipe.publish(self.channel, v)
            pipe.execute()
            return v
