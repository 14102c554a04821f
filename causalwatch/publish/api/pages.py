"""The pages an on-call engineer opens: the incident list, one incident, the login form.

Served by the API app (same process, port and token). With ``api.token`` set, every page
needs a session: the login form takes the token and sets a cookie (``HttpOnly``,
``SameSite=Strict``, ``Secure`` when ``api.external_url`` is https) whose value is an HMAC
of the token, so the token itself is never stored in the browser and changing the token
ends every session. Pages without a session redirect to the login form; the event stream
answers 401. The JSON API accepts the same cookie (the feedback buttons call it), but only
with the ``X-Causalwatch-Page`` header on writes: a cross-site form cannot set it, and
``SameSite=Strict`` already keeps the cookie off cross-site requests.

Everything is rendered on the server (:mod:`causalwatch.publish.render`); the list follows
the Redis pub/sub notifications over server-sent events (``GET /events``), with rows the
server renders, filtered by the same node and status as the page.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, quote

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from causalwatch import schemas
from causalwatch.publish.api.deps import Feedback, IncidentStore, error
from causalwatch.publish.render import (
    incident_page,
    incident_row,
    list_page,
    login_page,
    message_page,
    shares_of,
)
from causalwatch.publish.render.pages_html import STATUSES

__all__ = [
    "PAGE_HEADER",
    "SESSION_COOKIE",
    "Feed",
    "LoginFailures",
    "PageSources",
    "SnapshotReader",
    "has_page_session",
    "incident_url",
    "router",
]

log = logging.getLogger(__name__)

SESSION_COOKIE = "causalwatch_session"
#: header the pages' script sends with its API writes (a cross-site form cannot)
PAGE_HEADER = "x-causalwatch-page"
_SESSION_S = 12 * 3600
_SSE_MAX_S = 600.0  # the browser reconnects after this; bounds a stream's lifetime
_KEEPALIVE_POLLS = 15


class SnapshotReader(Protocol):
    def get(self, explanation_id: str) -> dict[str, Any] | None: ...


class Feed(Protocol):
    def try_acquire(self) -> bool: ...
    def release(self) -> None: ...
    def listen(self, poll_s: float = 1.0) -> Iterator[bytes | None]: ...


@dataclass(frozen=True)
class PageSources:
    """What the pages read besides the incident store: the snapshots written with each
    explanation (None: no plots) and the notification feed (None: no live updates).
    ``secure_cookie`` sets the cookie's ``Secure`` flag (https deployments)."""

    snapshots: SnapshotReader | None = None
    feed: Feed | None = None
    secure_cookie: bool = False


def incident_url(base_url: str, incident_id: str) -> str:
    """The page of an incident under ``api.external_url``.

    >>> incident_url("https://cw.example.com/ops", "ab12")
    'https://cw.example.com/ops/incidents/ab12'
    """
    return f"{base_url.rstrip('/')}/incidents/{quote(incident_id, safe='')}"


class LoginFailures:
    """Wrong tokens per client address: after ``limit`` within ``window_s`` the login form
    answers 429 until the oldest of them is ``window_s`` old (slows guessing; bounded to
    ``max_clients`` addresses, the stalest forgotten first).

    >>> f = LoginFailures(limit=2, window_s=60.0)
    >>> f.add("a", 0.0); f.add("a", 1.0)
    >>> f.wait_s("a", 2.0), f.wait_s("b", 2.0), f.wait_s("a", 61.0)
    (58.0, 0.0, 0.0)
    """

    def __init__(self, limit: int = 10, window_s: float = 60.0, max_clients: int = 1024):
        self.limit = limit
        self.window_s = window_s
        self.max_clients = max_clients
        self._seen: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def add(self, client: str, now: float) -> None:
        with self._lock:
            times = [t for t in self._seen.pop(client, []) if t > now - self.window_s]
            self._seen[client] = [*times, now][-self.limit :]
            while len(self._seen) > self.max_clients:
                self._seen.pop(next(iter(self._seen)))

    def wait_s(self, client: str, now: float) -> float:
        with self._lock:
            times = [t for t in self._seen.get(client, []) if t > now - self.window_s]
        if len(times) < self.limit:
            return 0.0
        return max(0.0, times[0] + self.window_s - now)


def _session_value(token: str) -> str:
    return hmac.new(token.encode(), b"causalwatch page session v1", hashlib.sha256).hexdigest()


def has_page_session(request: Request, token: str | None) -> bool:
    """True when no token is configured or the request carries a valid session cookie."""
    if token is None:
        return True
    cookie = request.cookies.get(SESSION_COOKIE)
    return cookie is not None and hmac.compare_digest(
        cookie.encode(), _session_value(token).encode()
    )


#: The pages' own routes: they send a person without a session to the sign-in form, so the
#: API's guard lets them through without a bearer token (see ``session_in_scope``).
PAGE_PATHS = frozenset({"/", "/login", "/logout", "/events"})
PAGE_PREFIXES = ("/incidents/",)


def session_in_scope(scope: MutableMapping[str, Any], token: str) -> bool:
    """True when an ASGI request's ``Cookie`` header carries a valid page session."""
    from http.cookies import CookieError, SimpleCookie

    raw = next((v for k, v in scope.get("headers") or () if k == b"cookie"), None)
    if raw is None:
        return False
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(bytes(raw).decode("latin-1"))
    except CookieError:
        return False
    morsel = jar.get(SESSION_COOKIE)
    return morsel is not None and hmac.compare_digest(
        morsel.value.encode(), _session_value(token).encode()
    )


def _safe_next(path: str | None) -> str:
    """Only a local path: an open redirect to another site is refused."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def _html(body: str, nonce: str, status: int = 200) -> HTMLResponse:
    csp = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return HTMLResponse(
        body,
        status_code=status,
        headers={
            "Content-Security-Policy": csp,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
        },
    )


def router(
    store: IncidentStore,
    feedback: Feedback,
    sources: PageSources,
    *,
    token: str | None,
    node_label: str = "service",
    clock: Callable[[], float] = time.time,
) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    logout = token is not None
    failures = LoginFailures()

    def login_redirect(request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    def annotate(inc: dict[str, Any]) -> dict[str, Any]:
        """The incident with its most severe target's verdict and top share (for the list)."""
        targets = [t for t in (inc.get("targets") or {}).values() if isinstance(t, dict)]
        top = max(targets, key=lambda t: float(t.get("severity") or 0.0), default=None)
        if top is None:
            return inc
        exp = store.get_explanation(str(top.get("explanation_id")))
        if exp is None:
            return inc
        doc = schemas.Explanation.from_result(exp).model_dump(mode="json")
        sh = shares_of(doc)
        out = dict(inc)
        out["_verdict"] = doc.get("verdict")
        out["_top_share"] = sh.parts[0][1] if sh.parts else None
        return out

    @r.get("/login")
    def login_form(request: Request, next: str | None = None) -> Response:
        if token is None or has_page_session(request, token):
            return RedirectResponse(_safe_next(next), status_code=303)
        nonce = secrets.token_urlsafe(16)
        return _html(login_page(_safe_next(next), nonce), nonce)

    @r.post("/login")
    async def login(request: Request) -> Response:
        raw = await request.body()
        form = parse_qs(raw[:8192].decode("utf-8", "replace"), keep_blank_values=True)
        given = (form.get("token") or [""])[0]
        dest = _safe_next((form.get("next") or ["/"])[0])
        if token is None:
            return RedirectResponse(dest, status_code=303)
        client = request.client.host if request.client else "?"
        wait_s = failures.wait_s(client, clock())
        if wait_s > 0:
            nonce = secrets.token_urlsafe(16)
            page = login_page(dest, nonce, f"Too many wrong tokens; try again in {wait_s:.0f} s.")
            slow = _html(page, nonce, status=429)
            slow.headers["Retry-After"] = f"{wait_s:.0f}"
            return slow
        if not hmac.compare_digest(given.encode(), token.encode()):
            failures.add(client, clock())
            log.warning("page login refused: wrong token", extra={"client": client})
            nonce = secrets.token_urlsafe(16)
            return _html(login_page(dest, nonce, "Wrong token."), nonce, status=401)
        seen = RedirectResponse(dest, status_code=303)
        seen.set_cookie(
            SESSION_COOKIE,
            _session_value(token),
            max_age=_SESSION_S,
            path="/",
            httponly=True,
            samesite="strict",
            secure=sources.secure_cookie,
        )
        return seen

    @r.post("/logout")
    def logout_now() -> Response:
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return resp

    @r.get("/")
    def incidents(request: Request, node: str | None = None, status: str | None = None) -> Response:
        if not has_page_session(request, token):
            return login_redirect(request)
        node = node or None
        status = status if status in STATUSES else None
        now = clock()
        rows = store.list_incidents(node=node, status=status, limit=100)
        nodes = sorted({n for inc in store.list_incidents(limit=200) for n in inc["nodes"]})
        nonce = secrets.token_urlsafe(16)
        html = list_page(
            [incident_row(annotate(inc), now) for inc in rows],
            nodes=nodes,
            node=node,
            status=status,
            nonce=nonce,
            logout=logout,
        )
        return _html(html, nonce)

    @r.get("/incidents/{incident_id}")
    def incident(request: Request, incident_id: str, target: str | None = None) -> Response:
        if not has_page_session(request, token):
            return login_redirect(request)
        nonce = secrets.token_urlsafe(16)
        inc = store.get_incident(incident_id)
        if inc is None:
            page = message_page("Not found", f"No incident {incident_id!r}.", nonce, logout=logout)
            return _html(page, nonce, status=404)
        targets: dict[str, Any] = inc.get("targets") or {}
        if target not in targets:
            # default: a target whose cause lies elsewhere (a fault that travelled), then
            # the most severe
            target = max(
                targets,
                key=lambda k: (
                    targets[k].get("top_root_cause") not in (None, targets[k].get("node")),
                    float(targets[k].get("severity") or 0.0),
                ),
                default=None,
            )
        doc, snap = None, None
        if target is not None:
            exp_id = str(targets[target].get("explanation_id"))
            exp = store.get_explanation(exp_id)
            if exp is not None:
                doc = schemas.Explanation.from_result(exp).model_dump(mode="json")
                if sources.snapshots is not None:
                    snap = sources.snapshots.get(exp_id)
        nodes = {str(n) for n in inc.get("nodes") or []}
        mutes = [
            m
            for m in feedback.list_mutes(clock())
            if any(m.matches(k) for k in targets)
            or (set(m.matchers) == {node_label} and m.matchers[node_label] in nodes)
        ]
        html = incident_page(
            inc=inc,
            exp=doc,
            snapshot=snap,
            selected=target,
            node_label=node_label,
            mutes=mutes,
            nonce=nonce,
            logout=logout,
        )
        return _html(html, nonce)

    @r.get("/events")
    async def events(request: Request, node: str | None = None, status: str | None = None) -> Any:
        """Server-sent events: ``event: incident`` with ``{"id", "html"}`` per new
        explanation of an incident that passes the filters."""
        if not has_page_session(request, token):
            return error(401, "no page session (sign in at /login)")
        feed = sources.feed
        if feed is None:
            return error(503, "live updates are not configured in this process")
        if not feed.try_acquire():
            return error(503, "too many live listeners", {"Retry-After": "10"})
        node = node or None
        status = status if status in STATUSES else None

        def frames() -> Generator[str, None, None]:
            yield "retry: 3000\n\n"
            quiet = 0
            for msg in feed.listen(1.0):
                if msg is None:
                    quiet += 1
                    if quiet >= _KEEPALIVE_POLLS:
                        quiet = 0
                        yield ": keep-alive\n\n"
                    else:
                        yield ""
                    continue
                try:
                    iid = str(json.loads(msg)["incident_id"])
                except (ValueError, KeyError, TypeError):
                    continue
                inc = store.get_incident(iid)
                if inc is None or (node is not None and node not in inc.get("nodes", [])):
                    continue
                if status is not None and inc.get("status") != status:
                    continue
                row = incident_row(annotate(inc), clock())
                yield f"event: incident\ndata: {json.dumps({'id': iid, 'html': row})}\n\n"

        async def stream() -> AsyncIterator[str]:
            it = frames()
            started = time.monotonic()
            try:
                while time.monotonic() - started < _SSE_MAX_S:
                    if await request.is_disconnected():
                        break
                    frame = await anyio.to_thread.run_sync(next, it, None)
                    if frame is None:
                        break
                    if frame:
                        yield frame
            finally:
                await anyio.to_thread.run_sync(it.close)
                feed.release()

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return r
