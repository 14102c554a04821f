"""The HTTP API (FastAPI): incidents, explanations, on-demand explain, the dependency graph,
feedback, the incoming Alertmanager webhook, health and readiness (adapter).

Why dependency injection: the service process owns the Redis client, the explainer and the
webhook dispatcher; :func:`create_app` only receives small protocol objects
(:mod:`~causalwatch.publish.api.deps`), so tests and the service wire the same app with
different backends, and the package holds no algorithm. One ``APIRouter`` module per
resource: :mod:`~causalwatch.publish.api.incidents` (incidents and explanations),
:mod:`~causalwatch.publish.api.explain`, :mod:`~causalwatch.publish.api.graph`,
:mod:`~causalwatch.publish.api.feedback` (false positives, mutes),
:mod:`~causalwatch.publish.api.alertmanager`, :mod:`~causalwatch.publish.api.webhooks`,
:mod:`~causalwatch.publish.api.health` and the pages for people,
:mod:`~causalwatch.publish.api.pages`; bodies in :mod:`~causalwatch.publish.api.bodies`.
Every lookup goes through :func:`~causalwatch.publish.api.deps.get_or_404`.

Errors are mapped once, at the edge: ``GraphError`` -> 422, ``StateError`` (unknown series,
incident or row) -> 404, ``BackendError`` (Redis, HTTP) -> 503 with ``Retry-After``, other
``CausalwatchError`` -> 422; every body is ``{"detail": <reason>}``. Request validation is
FastAPI's 422 with the field in ``detail[].loc``.

Authentication: when ``token`` is set every route but ``/healthz`` and ``/readyz`` needs
``Authorization: Bearer <token>`` (401 without it, 403 with a wrong one), the OpenAPI schema
(``/openapi.json``) included. The pages' session cookie is accepted too, for writes only with
the pages' own header (see :mod:`~causalwatch.publish.api.pages`).

Hostile requests: the token is checked on the headers, before any byte of the body is read,
and bodies are capped at ``max_body_bytes`` (413):
:class:`~causalwatch.publish.api.guard.RequestGuard`, which also answers 422 for JSON the
app cannot hold (``NaN``, ``1e999``, lone surrogates). Validation errors (422) are rendered
with their inputs made JSON-safe, so no input turns into a 500 while it is reported.

Incoming Alertmanager webhooks (``POST /api/v1/alertmanager``) are put on a bounded queue and
answered 202 at once (503 with ``Retry-After`` when the queue is full, which Alertmanager
retries). :class:`~causalwatch.publish.api.enrich.AlertEnricher` workers explain each firing
alert's series at its ``startsAt`` and forward the enriched alert through the outgoing
webhooks.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from causalwatch.errors import BackendError, CausalwatchError, StateError
from causalwatch.publish.api import alertmanager, health, incidents
from causalwatch.publish.api import explain as explain_route
from causalwatch.publish.api import feedback as feedback_route
from causalwatch.publish.api import graph as graph_route
from causalwatch.publish.api import pages as pages_route
from causalwatch.publish.api import webhooks as webhooks_route
from causalwatch.publish.api.deps import (
    Dispatcher,
    ExplainFn,
    Feedback,
    GraphCache,
    IncidentStore,
    error,
)
from causalwatch.publish.api.enrich import AlertEnricher
from causalwatch.publish.api.guard import RequestGuard, json_safe

__all__ = ["create_app"]

log = logging.getLogger(__name__)

# Module level: FastAPI resolves the (string) annotations of dependencies in module globals.
_BEARER = HTTPBearer(auto_error=False, description="Authorization: Bearer <api.token>")


class _AuthError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def create_app(
    *,
    store: IncidentStore,
    graph_cache: GraphCache | None,
    feedback: Feedback,
    explain: ExplainFn | None,
    dispatcher: Dispatcher | None,
    token: str | None,
    ready: health.Readiness,
    max_body_bytes: int = 8 * 1_048_576,
    node_label: str = "service",
    alert_queue_size: int = 256,
    alert_workers: int = 2,
    clock: Callable[[], float] = time.time,
    pages: pages_route.PageSources | None = None,
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
    max_body_bytes
        ``api.max_body_bytes``: larger request bodies are refused (413) unread.
    token
        The bearer token (``api.token``); None disables authentication.
    ready
        Readiness probe for ``/readyz``; an exception counts as not ready.
    node_label, alert_queue_size, alert_workers
        ``ingest.node_label``, ``api.alert_queue_size``, ``api.alert_workers``.
    clock
        Unix seconds now (mute times, the default ``at``).
    pages
        What the incident pages read besides ``store`` (:mod:`~causalwatch.publish.api.pages`);
        None: no pages are served.
    """
    enricher = AlertEnricher(
        explain,
        dispatcher,
        queue_size=alert_queue_size,
        workers=alert_workers,
        node_label=node_label,
        clock=clock,
    )

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
    page_token = token
    app.add_middleware(
        RequestGuard,
        token=token,
        max_body_bytes=max_body_bytes,
        # the pages send a person without a session to their sign-in form; elsewhere a
        # valid session cookie stands in for the bearer token (``auth`` then allows writes
        # only with the pages' header)
        open_paths=frozenset({"/healthz", "/readyz"})
        | (pages_route.PAGE_PATHS if pages is not None else frozenset()),
        open_prefixes=pages_route.PAGE_PREFIXES if pages is not None else (),
        session=(
            (lambda scope: pages_route.session_in_scope(scope, page_token))
            if pages is not None and page_token is not None
            else None
        ),
    )

    def auth(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> None:
        if token is None:
            return
        if creds is None and pages is not None and pages_route.has_page_session(request, token):
            # the pages' session cookie; writes only from the pages' script (custom header)
            if request.method in ("GET", "HEAD") or pages_route.PAGE_HEADER in request.headers:
                return
            raise _AuthError(403, f"page session writes need the {pages_route.PAGE_HEADER} header")
        if creds is None:
            raise _AuthError(401, "missing bearer token (Authorization: Bearer <token>)")
        if not hmac.compare_digest(creds.credentials.encode(), token.encode()):
            raise _AuthError(403, "invalid bearer token")

    @app.exception_handler(_AuthError)
    async def _auth_error(request: Request, exc: _AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error(exc.status, exc.detail, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each input: a NaN or a lone surrogate in it made
        # the error body itself fail to render (a 500 for a bad request).
        return JSONResponse({"detail": json_safe(jsonable_encoder(exc.errors()))}, 422)

    @app.exception_handler(CausalwatchError)
    async def _domain_error(request: Request, exc: CausalwatchError) -> JSONResponse:
        if isinstance(exc, BackendError):
            log.warning("backend unavailable: %s", exc)
            return error(503, str(exc), {"Retry-After": "5"})
        if isinstance(exc, StateError):
            return error(404, str(exc))
        return error(422, str(exc))  # GraphError and bad-input domain errors

    app.include_router(health.router(ready))

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(auth)])
    def openapi() -> dict[str, Any]:
        return app.openapi()

    api = APIRouter(prefix="/api/v1", dependencies=[Depends(auth)])
    api.include_router(incidents.router(store))
    api.include_router(explain_route.router(explain, clock))
    api.include_router(graph_route.router(graph_cache))
    api.include_router(feedback_route.router(store, feedback, clock))
    api.include_router(alertmanager.router(enricher))
    api.include_router(webhooks_route.router(dispatcher))
    app.include_router(api)
    if pages is not None:
        app.include_router(
            pages_route.router(
                store, feedback, pages, token=token, node_label=node_label, clock=clock
            )
        )
    return app
