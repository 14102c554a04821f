"""The API's front door (ASGI middleware): authentication before the body, a body cap, and
JSON that the rest of the app can hold.

Why a middleware and not a FastAPI dependency: FastAPI reads and parses the whole request
body before it resolves any dependency, so a 50 MiB body sent without a token was read in
full before the 401. Here the token is checked on the headers alone; an unauthenticated
request, or one whose ``Content-Length`` is over ``max_body_bytes``, is answered at once
with ``Connection: close`` and not one byte of its body is read. A body without a length
(chunked) is read up to the cap and refused past it (413).

JSON bodies are checked once more than RFC 8259 asks of a parser: Python's ``json`` accepts
``NaN``/``Infinity``, turns ``1e999`` into ``inf`` and keeps a lone surrogate (``"\\ud800"``)
as a str that cannot be encoded as UTF-8. Each of those reached a handler or an error body
and ended as a 500 (``allow_nan=False`` in the JSON response, ``UnicodeEncodeError`` in
redis-py); they are answered 422 here, with the position. Invalid JSON passes through so
FastAPI reports it as usual.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["RequestGuard", "json_safe"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Unrepresentable(ValueError):
    pass


def _reject_constant(name: str) -> float:
    raise _Unrepresentable(f"{name} is not a JSON number (RFC 8259)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Unrepresentable(f"number {text[:40]} is out of range for a 64-bit float")
    return value


def _lone_surrogate(doc: Any) -> str | None:
    """The first string (key or value) that UTF-8 cannot encode, or None."""
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def check_json(body: bytes) -> str | None:
    """Why ``body`` is JSON the app cannot hold (non-finite number, lone surrogate), or None
    (also None for text that is not JSON at all: FastAPI reports that itself)."""
    try:
        doc = json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
    except _Unrepresentable as exc:
        return str(exc)
    except (ValueError, RecursionError):
        return None
    bad = _lone_surrogate(doc)
    if bad is not None:
        return f"string {json_safe(bad, 40)!r} holds a lone UTF-16 surrogate (not Unicode text)"
    return None


def json_safe(value: Any, limit: int = 200) -> Any:
    """``value`` made safe for a strict JSON error body: non-finite floats and bytes become
    strings, strings lose lone surrogates (``\\udXXX`` spelled out) and are cut to
    ``limit`` characters, containers are walked (and cut to ``limit`` items)."""
    if isinstance(value, str):
        if not value.isascii():
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value if len(value) <= limit else value[: limit - 3] + "..."
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bool | int) or value is None:
        return value
    if isinstance(value, bytes | bytearray):
        return json_safe(bytes(value[: limit + 1]).decode("utf-8", "backslashreplace"), limit)
    if isinstance(value, dict):
        items = list(value.items())[:limit]
        return {str(json_safe(k, limit)): json_safe(v, limit) for k, v in items}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v, limit) for v in list(value)[:limit]]
    return json_safe(repr(value), limit)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope.get("headers") or ():
        if k.lower() == name:
            return bytes(v)
    return None


class RequestGuard:
    """ASGI middleware: token on the headers, ``Content-Length`` cap, bounded body read,
    JSON check; everything else is passed to ``app`` unchanged.

    Parameters
    ----------
    app
        The wrapped ASGI app.
    token
        ``api.token``; None: no authentication (loopback, or ``api.allow_unauthenticated``).
    max_body_bytes
        ``api.max_body_bytes``: larger bodies get 413 (unread when the length is declared).
    open_paths, open_prefixes
        Paths (exact, or by prefix) served without a token: the liveness and readiness
        probes, and any route that authenticates on its own (a login page).
    session
        Another way in, judged on the headers alone (e.g. a signed session cookie):
        ``session(scope)`` True lets a request without a bearer token through to the app,
        whose own dependency then decides what it may do.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        max_body_bytes: int,
        open_paths: frozenset[str] = frozenset({"/healthz", "/readyz"}),
        open_prefixes: tuple[str, ...] = (),
        session: Callable[[Scope], bool] | None = None,
    ) -> None:
        self.app = app
        self._token = None if token is None else token.encode()
        self.max_body_bytes = int(max_body_bytes)
        self.open_paths = open_paths
        self.open_prefixes = open_prefixes
        self.session = session

    def _is_open(self, path: str) -> bool:
        return path in self.open_paths or (
            bool(self.open_prefixes) and path.startswith(self.open_prefixes)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._token is not None and not self._is_open(str(scope.get("path", ""))):
            refused = self._auth_problem(scope)
            if refused is not None:
                await _answer(send, *refused)
                return
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                await _answer(send, 400, "Content-Length is not a number")
                return
            if int(length) > self.max_body_bytes:
                await _answer(send, 413, self._too_large(int(length)))
                return
        body, more = await self._read_body(receive)
        if body is None:
            await _answer(send, 413, self._too_large(None))
            return
        ctype = (_header(scope, b"content-type") or b"").lower()
        if body and (not ctype or b"json" in ctype):
            problem = check_json(body)
            if problem is not None:
                await _answer(send, 422, f"request body: {problem}", close=False)
                return
        await self.app(scope, _replay(body, more, receive), send)

    def _auth_problem(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        assert self._token is not None
        raw = _header(scope, b"authorization")
        scheme, _, credentials = (raw or b"").strip().partition(b" ")
        if raw is None or scheme.lower() != b"bearer" or not credentials.strip():
            if raw is None and self.session is not None and self.session(scope):
                return None
            return (
                401,
                "missing bearer token (Authorization: Bearer <token>)",
                {"www-authenticate": "Bearer"},
            )
        if not hmac.compare_digest(credentials.strip(), self._token):
            return (403, "invalid bearer token", {})
        return None

    def _too_large(self, length: int | None) -> str:
        size = "" if length is None else f" ({length} bytes)"
        return f"request body{size} is over api.max_body_bytes={self.max_body_bytes}"

    async def _read_body(self, receive: Receive) -> tuple[bytes | None, bool]:
        """The body, or None past the cap; and whether the client's stream went on
        (a disconnect message that the app must still see)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), True  # disconnected: let the app see it
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None, False
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), False


def _replay(body: bytes, disconnected: bool, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            if not disconnected:
                return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(
    send: Send,
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
    *,
    close: bool = True,
) -> None:
    """A JSON ``{"detail": ...}`` response; ``close``: end the connection after it (the
    request body, if any, is left unread)."""
    payload = json.dumps({"detail": detail}).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    if close:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
