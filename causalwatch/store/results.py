"""Redis adapter for results: explanations, incidents, latest-per-node, notifications.

Layout (``p`` is the configurable prefix, ``causalwatch:`` by default)::

    {p}explanations            stream, one entry per explanation (MAXLEN ~ stream_maxlen)
                               fields: id, incident_id, node, json
    {p}explanations            pub/sub channel, message = explanation JSON
    {p}explanation:{id}        explanation JSON; also the de-duplication guard (TTL)
    {p}latest:{node}           latest explanation JSON for a node (TTL latest_ttl_s)
    {p}incident:{incident_id}  incident summary JSON (status, nodes, targets, version ...)
    {p}incidents               sorted set of incident ids scored by updated_at

Writes for one batch of explanations go out in one pipeline. Publishing is idempotent:
an explanation id that was already published (a replay after a restart) is skipped, so
the stream never holds the same explanation twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import redis

from causalwatch.models import Explanation
from causalwatch.schemas import explanation_from_json, explanation_json
from causalwatch.store.client import map_redis_errors

__all__ = ["ResultStore"]

log = logging.getLogger(__name__)

# Set the guard and publish in one round trip: only the first writer of an id proceeds.
_PUBLISH_LUA = """
local guard = KEYS[1]
if redis.call('SET', guard, ARGV[1], 'NX', 'EX', ARGV[6]) == false then
  return 0
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*',
           'id', ARGV[2], 'incident_id', ARGV[3], 'node', ARGV[4], 'json', ARGV[1])
redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[7])
redis.call('SET', KEYS[4], ARGV[8])
redis.call('ZADD', KEYS[5], ARGV[9], ARGV[3])
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 1
"""


class ResultStore:
    """Publishes explanations and keeps the incident index, over one Redis client."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "causalwatch:",
        stream_maxlen: int = 10_000,
        latest_ttl_s: int = 86_400,
        guard_ttl_s: int = 7 * 86_400,
    ) -> None:
        # redis-py's return types are unions over RESP2/RESP3; the adapter narrows them itself.
        self.client: Any = client
        self.prefix = prefix
        self.stream_maxlen = stream_maxlen
        self.latest_ttl_s = latest_ttl_s
        self.guard_ttl_s = guard_ttl_s
        self._incidents: dict[str, dict[str, Any]] = {}
        self._publish = client.register_script(_PUBLISH_LUA)

    # -- keys ---------------------------------------------------------------------------
    @property
    def stream_key(self) -> str:
        return f"{self.prefix}explanations"

    def latest_key(self, node: str) -> str:
        return f"{self.prefix}latest:{node}"

    def incident_key(self, incident_id: str) -> str:
        return f"{self.prefix}incident:{incident_id}"

    @property
    def incidents_key(self) -> str:
        return f"{self.prefix}incidents"

    # -- writes -------------------------------------------------------------------------
    def publish(self, explanations: Sequence[Explanation], *, status: str = "open") -> int:
        """Publish a batch; returns how many were new (not published before)."""
        if not explanations:
            return 0
        summaries = self._merge_incidents(explanations, status)
        pipe = self.client.pipeline(transaction=False)
        for exp in explanations:
            body = explanation_json(exp)
            summary = summaries[exp.incident_id]
            self._publish(
                keys=[
                    f"{self.prefix}explanation:{exp.id}",
                    self.stream_key,
                    self.latest_key(exp.target.node),
                    self.incident_key(exp.incident_id),
                    self.incidents_key,
                ],
                args=[
                    body,
                    exp.id,
                    exp.incident_id,
                    exp.target.node,
                    self.stream_maxlen,
                    self.guard_ttl_s,
                    self.latest_ttl_s,
                    json.dumps(summary),
                    summary["updated_at"],
                ],
                client=pipe,
            )
        with map_redis_errors("publish"):
            results = pipe.execute()
        return int(sum(int(r) for r in results))

    def _merge_incidents(
        self, explanations: Iterable[Explanation], status: str
    ) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for exp in explanations:
            inc = out.get(exp.incident_id) or self._incidents.get(exp.incident_id)
            if inc is None:
                inc = self.get_incident(exp.incident_id) or {
                    "incident_id": exp.incident_id,
                    "status": status,
                    "opened_at": exp.detected_at,
                    "nodes": [],
                    "targets": {},
                    "version": 0,
                }
            inc = dict(inc)
            inc["updated_at"] = max(float(inc.get("updated_at", 0.0)), exp.detected_at)
            inc["nodes"] = sorted(set(inc["nodes"]) | {exp.target.node})
            targets = dict(inc["targets"])
            targets[exp.target.series] = {
                "node": exp.target.node,
                "explanation_id": exp.id,
                "version": exp.version,
                "severity": exp.severity,
                "top_root_cause": exp.root_causes[0].node if exp.root_causes else None,
            }
            inc["targets"] = targets
            inc["version"] = int(inc["version"]) + 1
            inc["graph_version"] = exp.graph_version
            out[exp.incident_id] = inc
        self._incidents.update(out)
        if len(self._incidents) > 10_000:  # bounded cache; Redis holds the truth
            for key in list(self._incidents)[:5_000]:
                del self._incidents[key]
        return out

    def set_incident_status(self, incident_id: str, status: str) -> bool:
        inc = self.get_incident(incident_id)
        if inc is None:
            return False
        inc["status"] = status
        self._incidents[incident_id] = inc
        with map_redis_errors("set incident status"):
            self.client.set(self.incident_key(incident_id), json.dumps(inc))
        return True

    # -- reads --------------------------------------------------------------------------
    def get_incident(self, incident_id: str) -> dict[str, Any] | None:
        with map_redis_errors("get incident"):
            raw = self.client.get(self.incident_key(incident_id))
        return json.loads(raw) if raw else None

    def list_incidents(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        node: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Incidents updated in [since, until], newest first, filtered by node and status."""
        lo = "-inf" if since is None else since
        hi = "+inf" if until is None else until
        with map_redis_errors("list incidents"):
            ids: list[bytes] = list(self.client.zrevrangebyscore(self.incidents_key, hi, lo))
            keys = [self.incident_key(i.decode()) for i in ids]
            raws = self.client.mget(keys) if keys else []
        out = []
        for raw in raws:
            if not raw:
                continue
            inc = json.loads(raw)
            if node is not None and node not in inc["nodes"]:
                continue
            if status is not None and inc["status"] != status:
                continue
            out.append(inc)
            if len(out) >= limit:
                break
        return out

    def get_explanation(self, explanation_id: str) -> Explanation | None:
        with map_redis_errors("get explanation"):
            raw = self.client.get(f"{self.prefix}explanation:{explanation_id}")
        return explanation_from_json(raw) if raw else None

    def latest(self, node: str) -> Explanation | None:
        with map_redis_errors("get latest"):
            raw = self.client.get(self.latest_key(node))
        return explanation_from_json(raw) if raw else None

    def recent(self, count: int = 100) -> list[Explanation]:
        """The newest ``count`` explanations from the stream, newest first."""
        with map_redis_errors("read stream"):
            entries: list[tuple[bytes, dict[bytes, bytes]]] = list(
                self.client.xrevrange(self.stream_key, count=count) or []
            )
        return [explanation_from_json(fields[b"json"]) for _id, fields in entries]
