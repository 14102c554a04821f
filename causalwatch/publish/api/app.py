"""The HTTP API (FastAPI): incidents, explanations, on-demand explain, the dependency graph,
feedback, the incoming Alertmanager webhook, health and readiness (adapter).

Why dependency injection: the service process owns the Redis client, the explainer and the
webhook dispatcher; :func:`create_app` only receives small protocol objects, so tests and the
service wire the same app with different backends, and this module holds no algorithm.

Errors are mapped once, at the edge: ``GraphError`` -> 422, ``StateError`` (unknown series,
incident or row) -> 404, ``BackendError`` (Redis, HTTP) -> 503 with ``Retry-After``, other
``CausalwatchError`` -> 422; every body is ``{"detail": <reason>}``. Request validation is
FastAPI's 422 with the field in ``detail[].loc``.

Authentication: when ``token`` is set every route but ``/healthz`` and ``/readyz`` needs
``Authorization: Bearer <token>`` (401 without it, 403 with a wrong one), the OpenAPI schema
(``/openapi.json``) included.

Outgoing deliveries can be inspected and dead ones retried under ``/api/v1/webhooks``.

Incoming Alertmanager webhooks (``POST /api/v1/alertmanager``) are put on a bounded queue and
answered 202 at once (503 with ``Retry-After`` when the queue is full, which Alertmanager
retries). :class:`AlertEnricher` workers explain each firing alert's series at its
``startsAt`` and forward the enriched alert through the outgoing webhooks.
"""

from __future__ import annotations

import hmac
import logging
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Body, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, model_validator

from causalwatch import schemas
from causalwatch.errors import (
    BackendError,
    CausalwatchError,
    GraphError,
    SchemaError,
    StateError,
)
from causalwatch.models import Explanation
from causalwatch.publish.webhooks import AlertEvent
from causalwatch.schemas import FalsePositive, Mute
from causalwatch.series import series_key, split_series_key
from explainer.dag import DependencyGraph, Edge

__all__ = ["AlertEnricher", "alert_target", "create_app", "parse_rfc3339"]

log = logging.getLogger(__name__)

ExplainFn = Callable[[str, str | None, float], Explanation]


# ---------------------------------------------------------------- injected dependencies


class IncidentStore(Protocol):
    def list_incidents(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        node: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]: ...
    def get_incident(self, incident_id: str) -> dict[str, Any] | None: ...
    def get_explanation(self, explanation_id: str) -> Explanation | None: ...
    def latest(self, node: str) -> Explanation | None: ...
    def recent(self, count: int = 100) -> list[Explanation]: ...
    def set_incident_status(self, incident_id: str, status: str) -> bool: ...


class GraphCache(Protocol):
    def get(self) -> DependencyGraph | None: ...
    def put(self, graph: DependencyGraph) -> int: ...
    def version(self) -> int: ...


class Feedback(Protocol):
    def mute(
        self, matchers: dict[str, str], until: float, *, now: float, reason: str | None = None
    ) -> Mute: ...
    def list_mutes(self, now: float | None = None) -> list[Mute]: ...
    def get_mute(self, mute_id_: str) -> Mute | None: ...
    def delete_mute(self, mute_id_: str) -> bool: ...
    def mark_false_positive(
        self,
        incident_id: str,
        *,
        marked_at: float,
        nodes: list[str] | None = None,
        series: list[str] | None = None,
        reason: str | None = None,
    ) -> FalsePositive: ...


class Dispatcher(Protocol):
    def enqueue_alerts(self, events: Sequence[AlertEvent], now: float | None = None) -> int: ...
    def counters(self) -> dict[tuple[str, str], int]: ...
    def outbox_size(self) -> int: ...
    def dead_entries(self) -> list[dict[str, Any]]: ...
    def requeue_dead(self, entry_id: str, now: float | None = None) -> bool: ...


# ---------------------------------------------------------------- bodies


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IncidentTarget(BaseModel):
    model_config = ConfigDict(extra="allow")
    node: str
    explanation_id: str
    version: int
    severity: float
    top_root_cause: str | None = None


class Incident(BaseModel):
    model_config = ConfigDict(extra="allow")
    incident_id: str
    status: str = Field(description="open | closed | false_positive")
    opened_at: float = Field(description="unix seconds")
    updated_at: float = Field(description="unix seconds")
    nodes: list[str]
    targets: dict[str, IncidentTarget] = Field(description="by target series key")
    version: int


class IncidentList(BaseModel):
    incidents: list[Incident]


class ExplanationList(BaseModel):
    explanations: list[schemas.Explanation]


class ExplainRequest(_Body):
    node: str = Field(min_length=1, description="graph node (value of the node label)")
    series: str | None = Field(
        default=None, description='series key, e.g. latency{service="api"}; None: the node'
    )
    at: float | None = Field(
        default=None, allow_inf_nan=False, description="unix seconds; default now"
    )


class EdgeIn(_Body):
    cause: str = Field(min_length=1)
    effect: str = Field(min_length=1)


class GraphOut(BaseModel):
    version: int
    nodes: list[str]
    edges: list[dict[str, Any]]


class GraphPut(_Body):
    edges: list[EdgeIn]
    nodes: list[str] = Field(default_factory=list, description="extra isolated nodes")
    version: int | None = Field(default=None, description="expected current version")


class GraphPatch(_Body):
    add: list[EdgeIn] = Field(default_factory=list)
    remove: list[EdgeIn] = Field(default_factory=list)
    version: int | None = Field(default=None, description="expected current version")


class FalsePositiveIn(_Body):
    reason: str | None = None


class MuteIn(_Body):
    matchers: dict[str, str] | None = Field(
        default=None, description='label equality; "__name__" is the metric name'
    )
    series: str | None = Field(default=None, description="a series key, muted exactly")
    until: float | None = Field(default=None, allow_inf_nan=False, description="unix seconds")
    duration_s: float | None = Field(default=None, gt=0, le=366 * 86_400)
    reason: str | None = None

    @model_validator(mode="after")
    def _one_of_each(self) -> MuteIn:
        if (self.matchers is None) == (self.series is None):
            raise ValueError("give exactly one of 'matchers' or 'series'")
        if self.matchers is not None and not self.matchers:
            raise ValueError("'matchers' must name at least one label")
        if (self.until is None) == (self.duration_s is None):
            raise ValueError("give exactly one of 'until' or 'duration_s'")
        return self


class MuteList(BaseModel):
    mutes: list[Mute]


class AmAlert(BaseModel):
    """One alert of an Alertmanager webhook (version 4)."""

    model_config = ConfigDict(extra="allow")
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str
    endsAt: str | None = None
    generatorURL: str | None = None
    fingerprint: str | None = None


class AmWebhook(BaseModel):
    """Alertmanager's webhook payload, version 4."""

    model_config = ConfigDict(extra="allow")
    version: Literal["4"]
    groupKey: str = ""
    truncatedAlerts: int = 0
    status: Literal["firing", "resolved"] = "firing"
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[AmAlert] = Field(max_length=10_000)


class WebhookStatus(BaseModel):
    outbox_size: int = Field(description="deliveries waiting or being retried")
    dead: int = Field(description="deliveries that gave up, kept for inspection")
    deliveries: dict[str, dict[str, int]] = Field(description="kind -> outcome -> count")


class DeadDelivery(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    url: str
    kind: str
    event: str
    attempts: int
    last_error: str | None = None
    dead_at: float = Field(description="unix seconds")


class DeadList(BaseModel):
    dead: list[DeadDelivery]


class Accepted(BaseModel):
    accepted: int = Field(description="alerts (or deliveries) queued")


# ---------------------------------------------------------------- alert enrichment

_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_rfc3339(value: str) -> float:
    """Unix seconds of an RFC 3339 time (Go's nanoseconds are cut to microseconds)."""
    try:
        text = _FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00")
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise SchemaError(
            f"startsAt {value!r} is not an RFC 3339 time", reason="bad_time", field="startsAt"
        ) from exc
    if dt.tzinfo is None:
        raise SchemaError(
            f"startsAt {value!r} has no time zone", reason="bad_time", field="startsAt"
        )
    return dt.timestamp()


_DROP_LABELS = ("alertname", "severity")


def alert_target(labels: dict[str, str], node_label: str) -> tuple[str, str | None]:
    """(node, series key or None) that an alert's labels point at.

    The series is the alert's labels minus ``alertname``/``severity``; its metric name is
    ``__name__`` when the rule kept it, else empty (``{service="api",...}`` selects by labels).
    """
    node = labels.get(node_label)
    if not node:
        raise SchemaError(
            f"alert has no {node_label!r} label to name its node: {labels}",
            reason="missing_label",
            field=node_label,
        )
    rest = {k: v for k, v in labels.items() if k not in _DROP_LABELS and k != "__name__"}
    name = labels.get("__name__", "")
    series = series_key(name, rest) if name or len(rest) > 1 else None
    return node, series


class AlertEnricher:
    """A bounded queue of Alertmanager payloads and the threads that enrich them."""

    def __init__(
        self,
        explain: ExplainFn | None,
        dispatcher: Dispatcher | None,
        *,
        queue_size: int = 256,
        workers: int = 2,
        node_label: str = "service",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.explain = explain
        self.dispatcher = dispatcher
        self.node_label = node_label
        self.workers = workers
        self._clock = clock
        self._queue: queue.Queue[AmWebhook | None] = queue.Queue(maxsize=queue_size)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.stats: Counter[str] = Counter()

    def submit(self, payload: AmWebhook) -> bool:
        """Queue a payload; False when the queue is full (the caller answers 503)."""
        self.start()
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            self.stats["rejected"] += 1
            return False
        self.stats["accepted"] += 1
        return True

    def start(self) -> None:
        with self._lock:
            if self._threads:
                return
            for i in range(self.workers):
                t = threading.Thread(target=self._run, name=f"cw-alerts-{i}", daemon=True)
                t.start()
                self._threads.append(t)

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(None)
        for t in threads:
            t.join(timeout_s)

    def drain(self) -> None:
        """Block until every queued payload was handled (tests, shutdown)."""
        self._queue.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._handle(item)
            except Exception:  # a worker must survive any one payload
                self.stats["failed"] += 1
                log.exception("alert enrichment failed")
            finally:
                self._queue.task_done()

    def enrich(self, alert: AmAlert) -> AlertEvent:
        explanation, error = None, None
        if alert.status == "firing" and self.explain is not None:
            try:
                node, series = alert_target(alert.labels, self.node_label)
                at = parse_rfc3339(alert.startsAt)
                try:
                    explanation = self.explain(node, series, at)
                except StateError:
                    if series is None:
                        raise
                    explanation = self.explain(node, None, at)  # unknown series: the node
            except CausalwatchError as exc:
                error = str(exc)
        elif self.explain is None:
            error = "on-demand explanation is not configured"
        return AlertEvent(alert.model_dump(exclude_none=True), explanation, error)

    def _handle(self, payload: AmWebhook) -> None:
        events = []
        for alert in payload.alerts:
            ours = alert.labels.get("source") == "causalwatch"
            if ours or "causalwatch_explanation_id" in alert.annotations:
                self.stats["skipped"] += 1  # already enriched by us: do not loop
                continue
            ev = self.enrich(alert)
            events.append(
                AlertEvent(ev.alert, ev.explanation, ev.error, payload.receiver, payload.groupKey)
            )
            self.stats["enriched" if ev.explanation is not None else "unexplained"] += 1
        if events and self.dispatcher is not None:
            self.dispatcher.enqueue_alerts(events, self._clock())


# ---------------------------------------------------------------- the app


# Module level: FastAPI resolves the (string) annotations of dependencies in module globals.
_BEARER = HTTPBearer(auto_error=False, description="Authorization: Bearer <api.token>")


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


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


def _series_matchers(key: str) -> dict[str, str]:
    try:
        name, labels = split_series_key(key)
    except (ValueError, IndexError) as exc:
        raise SchemaError(
            f'series {key!r} is not a series key like name{{a="b"}}',
            reason="bad_series",
            field="series",
        ) from exc
    if not name and not labels:
        raise SchemaError(f"series {key!r} names no metric and no label", reason="bad_series")
    return {**({"__name__": name} if name else {}), **labels}


def _checked(graph: DependencyGraph) -> DependencyGraph:
    graph.topological_order()  # raises GraphError naming the nodes of a cycle
    return graph


def create_app(
    *,
    store: IncidentStore,
    graph_cache: GraphCache | None,
    feedback: Feedback,
    explain: ExplainFn | None,
    dispatcher: Dispatcher | None,
    token: str | None,
    ready: Callable[[], bool],
    node_label: str = "service",
    alert_queue_size: int = 256,
    alert_workers: int = 2,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """Build the API app; ``app.state.enricher`` is its :class:`AlertEnricher`.

    Parameters
    ----------
    store
        Incidents and explanations (:class:`causalwatch.store.results.ResultStore`).
    graph_cache
        The versioned given graph (:class:`causalwatch.store.graph.RedisDagCache`); None
        makes the graph routes answer 503.
    feedback
        Mutes and false positives (:class:`causalwatch.store.feedback.FeedbackStore`).
    explain
        ``explain(node, series_key | None, at_unix_s) -> Explanation``, raising
        ``StateError`` for an unknown node/series or a time without data. It is called from
        request threads and enrichment workers at once: pass one that takes the explainer's
        lock. None: ``/explain`` answers 503 and alerts are forwarded unexplained.
    dispatcher
        The :class:`~causalwatch.publish.webhooks.WebhookDispatcher` that forwards enriched
        alerts and reports delivery status; None: alerts are explained but not forwarded.
    token
        The bearer token (``api.token``); None disables authentication.
    ready
        Readiness probe for ``/readyz``; an exception counts as not ready.
    node_label, alert_queue_size, alert_workers
        ``ingest.node_label``, ``api.alert_queue_size``, ``api.alert_workers``.
    clock
        Unix seconds now (mute times, the default ``at``).
    """
    enricher = AlertEnricher(
        explain,
        dispatcher,
        queue_size=alert_queue_size,
        workers=alert_workers,
        node_label=node_label,
        clock=clock,
    )
    graph_lock = threading.Lock()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        enricher.start()
        yield
        enricher.stop()

    app = FastAPI(
        title="causalwatch",
        version="1",
        description="Incidents, root-cause explanations, the dependency graph and feedback.",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.enricher = enricher

    def auth(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
        if token is None:
            return
        if creds is None:
            raise _AuthError(401, "missing bearer token (Authorization: Bearer <token>)")
        if not hmac.compare_digest(creds.credentials.encode(), token.encode()):
            raise _AuthError(403, "invalid bearer token")

    @app.exception_handler(_AuthError)
    async def _auth_error(request: Request, exc: _AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.detail, headers)

    @app.exception_handler(CausalwatchError)
    async def _domain_error(request: Request, exc: CausalwatchError) -> JSONResponse:
        if isinstance(exc, BackendError):
            log.warning("backend unavailable: %s", exc)
            return _error(503, str(exc), {"Retry-After": "5"})
        if isinstance(exc, StateError):
            return _error(404, str(exc))
        return _error(422, str(exc))  # GraphError and bad-input domain errors

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "not ready"}})
    def readyz() -> JSONResponse:
        """Readiness: dependencies (Redis, consumer) are usable."""
        try:
            is_ready = bool(ready())
        except Exception:  # a failing probe means "not ready", never a 500
            log.warning("readiness probe failed", exc_info=True)
            is_ready = False
        return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(auth)])
    def openapi() -> dict[str, Any]:
        return app.openapi()

    api = APIRouter(prefix="/api/v1", dependencies=[Depends(auth)])
    not_found: dict[int | str, dict[str, Any]] = {404: {"description": "not found"}}

    @api.get("/incidents", response_model=IncidentList, tags=["incidents"])
    def list_incidents(
        node: str | None = None,
        status: Literal["open", "closed", "false_positive"] | None = None,
        since: Annotated[
            float | None, Query(allow_inf_nan=False, description="updated at or after, unix s")
        ] = None,
        until: Annotated[
            float | None, Query(allow_inf_nan=False, description="updated at or before, unix s")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        if since is not None and until is not None and since > until:
            return _error(422, f"since ({since}) is after until ({until})")
        rows = store.list_incidents(since=since, until=until, node=node, status=status, limit=limit)
        return {"incidents": rows}

    @api.get(
        "/incidents/{incident_id}", response_model=Incident, tags=["incidents"], responses=not_found
    )
    def get_incident(incident_id: str) -> Any:
        inc = store.get_incident(incident_id)
        if inc is None:
            return _error(404, f"unknown incident {incident_id!r}")
        return inc

    @api.get(
        "/incidents/{incident_id}/explanations",
        response_model=ExplanationList,
        tags=["explanations"],
        responses=not_found,
    )
    def incident_explanations(incident_id: str) -> Any:
        """The latest explanation of each target series of the incident."""
        inc = store.get_incident(incident_id)
        if inc is None:
            return _error(404, f"unknown incident {incident_id!r}")
        out = []
        for target in (inc.get("targets") or {}).values():
            exp = store.get_explanation(str(target.get("explanation_id")))
            if exp is not None:
                out.append(exp)
        return {"explanations": out}

    @api.get("/explanations", response_model=ExplanationList, tags=["explanations"])
    def recent_explanations(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> Any:
        """The newest explanations from the stream, newest first."""
        return {"explanations": store.recent(limit)}

    @api.get(
        "/explanations/latest/{node}",
        response_model=schemas.Explanation,
        tags=["explanations"],
        responses=not_found,
    )
    def latest_explanation(node: str) -> Any:
        exp = store.latest(node)
        if exp is None:
            return _error(404, f"no recent explanation for node {node!r}")
        return exp

    @api.get(
        "/explanations/{explanation_id}",
        response_model=schemas.Explanation,
        tags=["explanations"],
        responses=not_found,
    )
    def get_explanation(explanation_id: str) -> Any:
        exp = store.get_explanation(explanation_id)
        if exp is None:
            return _error(404, f"unknown explanation {explanation_id!r}")
        return exp

    @api.post(
        "/explain",
        response_model=schemas.Explanation,
        tags=["explanations"],
        responses={404: {"description": "unknown node or series"}, 422: {"description": "no data"}},
    )
    def explain_now(req: ExplainRequest) -> Any:
        """Explain a node's (or one series') behaviour at a time, on demand."""
        if explain is None:
            return _error(503, "on-demand explanation is not configured in this process")
        return explain(req.node, req.series, clock() if req.at is None else req.at)

    @api.get("/graph", response_model=GraphOut, tags=["graph"])
    def get_graph(response: Response) -> Any:
        g = _graph_out(_cache().get())
        response.headers["ETag"] = f'"{g.version}"'
        return g

    conflict: dict[int | str, dict[str, Any]] = {
        409: {"description": "version conflict"},
        422: {"description": "cycle or bad edge"},
    }

    @api.put("/graph", response_model=GraphOut, tags=["graph"], responses=conflict)
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
                return _error(409, f"graph version is {current}, not {expected}")
            edges = [
                Edge.from_dict(e.model_dump(), where=f"edge #{i}") for i, e in enumerate(body.edges)
            ]
            new = _checked(DependencyGraph(edges, body.nodes))
            version = cache.put(new)
        out = _graph_out(new.with_version(version))
        response.headers["ETag"] = f'"{version}"'
        return out

    @api.patch("/graph", response_model=GraphOut, tags=["graph"], responses=conflict)
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
                return _error(409, f"graph version is {current}, not {expected}")
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

    @api.post(
        "/incidents/{incident_id}/false-positive",
        response_model=FalsePositive,
        tags=["feedback"],
        responses=not_found,
    )
    def false_positive(
        incident_id: str, body: Annotated[FalsePositiveIn | None, Body()] = None
    ) -> Any:
        """Mark an incident a false positive: its status changes and the detector becomes
        less sensitive on its target series."""
        inc = store.get_incident(incident_id)
        if inc is None:
            return _error(404, f"unknown incident {incident_id!r}")
        fp = feedback.mark_false_positive(
            incident_id,
            marked_at=clock(),
            nodes=list(inc.get("nodes") or []),
            series=list((inc.get("targets") or {}).keys()),
            reason=None if body is None else body.reason,
        )
        store.set_incident_status(incident_id, "false_positive")
        return fp

    @api.post("/mutes", response_model=Mute, status_code=201, tags=["feedback"])
    def create_mute(body: MuteIn) -> Any:
        """Mute a series or a label set until a time; the detector raises no alert there."""
        now = clock()
        until = body.until if body.until is not None else now + float(body.duration_s or 0)
        if until <= now:
            return _error(422, f"until ({until}) is not in the future (now {now:.0f})")
        if body.matchers is not None:
            matchers = body.matchers
        else:
            matchers = _series_matchers(str(body.series))
        return feedback.mute(matchers, until, now=now, reason=body.reason)

    @api.get("/mutes", response_model=MuteList, tags=["feedback"])
    def list_mutes() -> Any:
        return {"mutes": feedback.list_mutes(clock())}

    @api.delete("/mutes/{mute_id}", status_code=204, tags=["feedback"], responses=not_found)
    def delete_mute(mute_id: Annotated[str, Path()]) -> Response:
        if not feedback.delete_mute(mute_id):
            return _error(404, f"unknown mute {mute_id!r}")
        return Response(status_code=204)

    @api.post(
        "/alertmanager",
        response_model=Accepted,
        status_code=202,
        tags=["webhooks"],
        responses={503: {"description": "enrichment queue full; Alertmanager retries"}},
    )
    def alertmanager(payload: AmWebhook) -> Any:
        """Alertmanager webhook receiver (``version: "4"``): enriches firing alerts with
        causalwatch's explanation and forwards them to the outgoing webhooks."""
        if not enricher.submit(payload):
            return _error(503, "alert enrichment queue is full", {"Retry-After": "5"})
        return {"accepted": len(payload.alerts)}

    def _dispatcher() -> Dispatcher:
        if dispatcher is None:
            raise BackendError("no webhook dispatcher in this process", backend="webhooks")
        return dispatcher

    @api.get("/webhooks", response_model=WebhookStatus, tags=["webhooks"])
    def webhook_status() -> Any:
        """Outgoing deliveries: outbox size, dead entries and outcome counts since start."""
        d = _dispatcher()
        by_kind: dict[str, dict[str, int]] = {}
        for (kind, outcome), n in sorted(d.counters().items()):
            by_kind.setdefault(kind, {})[outcome] = n
        return {
            "outbox_size": d.outbox_size(),
            "dead": len(d.dead_entries()),
            "deliveries": by_kind,
        }

    @api.get("/webhooks/dead", response_model=DeadList, tags=["webhooks"])
    def dead_deliveries() -> Any:
        """Deliveries that gave up (last error, attempts), oldest first; bodies left out."""
        return {
            "dead": [
                {k: v for k, v in e.items() if k != "body"} for e in _dispatcher().dead_entries()
            ]
        }

    @api.post(
        "/webhooks/dead/{entry_id}/retry",
        status_code=202,
        response_model=Accepted,
        tags=["webhooks"],
        responses=not_found,
    )
    def retry_dead(entry_id: str) -> Any:
        """Put a dead delivery back into the outbox with a fresh attempt budget."""
        if not _dispatcher().requeue_dead(entry_id):
            return _error(404, f"no dead delivery {entry_id!r}")
        return {"accepted": 1}

    app.include_router(api)
    return app


class _AuthError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
