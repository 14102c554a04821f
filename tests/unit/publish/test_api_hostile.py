"""Hostile inputs to the HTTP API (issue 11): none gets a 5xx, far-away times are refused
without work proportional to the distance, bodies are capped and authentication comes
before the body. Real Redis, the real explainer (tests/unit/publish/test_api.py's stack)."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from causalwatch.publish.api.guard import check_json, json_safe
from tests.unit.publish.test_api import AT_FAULT, AUTH, T0, ApiClient, Stack, make_stack

FAR = 1e11  # year 5138
EXPLAIN = "/api/v1/explain"

# (name, method, path, raw JSON body or None, expected status or None for "any 4xx")
CASES: list[tuple[str, str, str, bytes | None, int | None]] = [
    ("surrogate in node", "POST", EXPLAIN, b'{"node": "\\ud800"}', 422),
    (
        "low surrogate in series",
        "POST",
        EXPLAIN,
        b'{"node": "api", "series": "a\\udfff"}',
        422,
    ),
    ("surrogate as key", "POST", EXPLAIN, b'{"\\udbff": 1, "node": "api"}', 422),
    ("at NaN", "POST", EXPLAIN, b'{"node": "api", "at": NaN}', 422),
    ("at Infinity", "POST", EXPLAIN, b'{"node": "api", "at": Infinity}', 422),
    ("at -Infinity", "POST", EXPLAIN, b'{"node": "api", "at": -Infinity}', 422),
    ("at 1e999", "POST", EXPLAIN, b'{"node": "api", "at": 1e999}', 422),
    ("at -1e999", "POST", EXPLAIN, b'{"node": "api", "at": -1e999}', 422),
    ("at 1e300", "POST", EXPLAIN, b'{"node": "api", "at": 1e300}', 404),
    ("at -1e300", "POST", EXPLAIN, b'{"node": "api", "at": -1e300}', 404),
    ("at far future", "POST", EXPLAIN, b'{"node": "api", "at": %d}' % FAR, 404),
    ("at 0", "POST", EXPLAIN, b'{"node": "api", "at": 0}', 404),
    ("at string NaN", "POST", EXPLAIN, b'{"node": "api", "at": "NaN"}', 422),
    (
        "at huge int",
        "POST",
        EXPLAIN,
        b'{"node": "api", "at": 1' + b"0" * 400 + b"}",
        None,
    ),
    (
        "series far future",
        "POST",
        EXPLAIN,
        b'{"node": "api", "series": "latency{service=\\"api\\"}", "at": 1e15}',
        404,
    ),
    (
        "mute until 1e300",
        "POST",
        "/api/v1/mutes",
        b'{"matchers": {"service": "api"}, "until": 1e300}',
        422,
    ),
    (
        "mute until NaN",
        "POST",
        "/api/v1/mutes",
        b'{"matchers": {"service": "api"}, "until": NaN}',
        422,
    ),
    (
        "mute reason surrogate",
        "POST",
        "/api/v1/mutes",
        b'{"matchers": {"service": "api"}, "duration_s": 60, "reason": "\\ud83d"}',
        422,
    ),
    (
        "mute matcher surrogate",
        "POST",
        "/api/v1/mutes",
        b'{"matchers": {"service": "\\udc80"}, "duration_s": 60}',
        422,
    ),
    (
        "graph node surrogate",
        "PUT",
        "/api/v1/graph",
        b'{"edges": [{"cause": "\\ud800", "effect": "api"}]}',
        422,
    ),
    (
        "graph version huge",
        "PUT",
        "/api/v1/graph",
        b'{"edges": [], "version": 1' + b"0" * 5000 + b"}",
        None,
    ),
    (
        "false positive reason surrogate",
        "POST",
        "/api/v1/incidents/inc-1/false-positive",
        b'{"reason": "\\ud800"}',
        422,
    ),
    (
        "alert startsAt 9999",
        "POST",
        "/api/v1/alertmanager",
        b'{"version": "4", "alerts": [{"status": "firing", "labels": {"service": "api"},'
        b' "startsAt": "9999-12-31T23:59:59Z"}]}',
        202,
    ),
    (
        "alert startsAt year 1",
        "POST",
        "/api/v1/alertmanager",
        b'{"version": "4", "alerts": [{"status": "firing", "labels": {"service": "api"},'
        b' "startsAt": "0001-01-01T00:00:00Z"}]}',
        202,
    ),
    (
        "alert label surrogate",
        "POST",
        "/api/v1/alertmanager",
        b'{"version": "4", "alerts": [{"status": "firing", "labels": {"service": "\\ud800"},'
        b' "startsAt": "2023-11-14T22:13:20Z"}]}',
        422,
    ),
    (
        "alert extra NaN",
        "POST",
        "/api/v1/alertmanager",
        b'{"version": "4", "x": NaN, "alerts": []}',
        422,
    ),
    ("deep nesting", "POST", EXPLAIN, b"[" * 100_000 + b"]" * 100_000, None),
    ("not UTF-8", "POST", EXPLAIN, b'{"node": "\xff\xfe"}', None),
    ("empty body", "POST", EXPLAIN, b"", 422),
    ("not JSON", "POST", EXPLAIN, b"{node", 422),
    ("JSON array", "POST", EXPLAIN, b"[1, 2]", 422),
]

QUERY_CASES = [
    "/api/v1/incidents?since=nan",
    "/api/v1/incidents?since=1e999",
    "/api/v1/incidents?since=-inf&until=inf",
    "/api/v1/incidents?limit=99999999999999999999999",
    "/api/v1/incidents/%ED%A0%80",
    "/api/v1/incidents/" + "x" * 60_000,
    "/api/v1/explanations/%00%ff",
    "/api/v1/explanations/latest/%F0%9F%98%80",
]


@pytest.fixture
def stack(redis_server: Any, uid: str) -> Iterator[Stack]:
    s = make_stack(redis_server.url, uid)
    yield s
    s.client.close()


@pytest.fixture
def app_client(stack: Stack) -> Iterator[ApiClient]:
    with ApiClient(stack.app(), headers=AUTH) as c:
        yield c


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "want"), CASES, ids=[c[0] for c in CASES]
)
def test_hostile_body_gets_no_5xx(
    app_client: ApiClient, name: str, method: str, path: str, body: bytes | None, want: int | None
) -> None:
    r = app_client.request(
        method, path, content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert r.status_code < 500, (name, r.status_code, r.text[:300])
    if want is None:
        assert 400 <= r.status_code < 500, (name, r.status_code)
    else:
        assert r.status_code == want, (name, r.status_code, r.text[:300])
    r.json()  # every error body is JSON


@pytest.mark.parametrize("url", QUERY_CASES)
def test_hostile_query_and_path_get_no_5xx(app_client: ApiClient, url: str) -> None:
    r = app_client.get(url)
    assert r.status_code < 500, (url[:80], r.status_code, r.text[:300])
    r.json()


def test_far_future_explain_allocates_nothing_in_proportion(app_client: ApiClient) -> None:
    """300 years ahead took 1.3 GB (a lookup table as long as the distance); now a 404
    after work bounded by the history held."""
    for at in (AT_FAULT + 300 * 365 * 86_400, 1e18, T0 - 10**12):
        tracemalloc.start()
        r = app_client.post("/api/v1/explain", json={"node": "api", "at": at})
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert r.status_code == 404 and "outside the history held" in r.json()["detail"], r.text
        assert peak < 20 * 1_048_576, peak
    # the bound does not hide a good request: a time inside the history is explained
    r = app_client.post("/api/v1/explain", json={"node": "api", "at": AT_FAULT})
    assert r.status_code == 200, r.text


def test_alertmanager_start_far_away_is_unexplained_not_huge(stack: Stack) -> None:
    """An alert with startsAt 9999-12-31 (it tried 31 GiB) is forwarded with the reason."""
    events: list[Any] = []

    class Sink:
        def enqueue_alerts(self, evs: Any, now: float | None = None) -> int:
            events.extend(evs)
            return len(evs)

    app = stack.app()
    app.state.enricher.dispatcher = Sink()
    with ApiClient(app, headers=AUTH) as c:
        payload = {
            "version": "4",
            "alerts": [
                {"status": "firing", "labels": {"service": "api"}, "startsAt": s}
                for s in ("9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z")
            ],
        }
        tracemalloc.start()
        assert c.post("/api/v1/alertmanager", json=payload).status_code == 202
        app.state.enricher.drain()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert len(events) == 2
    assert all(e.explanation is None for e in events)
    assert all("outside the history held" in str(e.error) for e in events), events
    assert peak < 20 * 1_048_576, peak


def test_body_cap_is_413(stack: Stack) -> None:
    with ApiClient(stack.app(max_body_bytes=4_096), headers=AUTH) as c:
        body = b'{"node": "' + b"a" * 5_000 + b'"}'
        r = c.post("/api/v1/explain", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "api.max_body_bytes=4096" in r.json()["detail"]
        r = c.post("/api/v1/explain", json={"node": "api", "at": AT_FAULT})
        assert r.status_code == 200

        async def chunks() -> Any:  # no Content-Length: counted while read
            for _ in range(10):
                yield b" " * 1_000

        r = c.post("/api/v1/explain", content=chunks())
        assert r.status_code == 413


def test_auth_is_checked_before_the_body_is_read(stack: Stack) -> None:
    """Without a token the answer is 401 and the body is never pulled from the client."""
    pulled = []

    async def body() -> Any:
        for _ in range(50):
            pulled.append(1)
            yield b"x" * 1_048_576

    with ApiClient(stack.app()) as c:
        r = c.post("/api/v1/explain", content=body(), headers={"Content-Length": str(50 << 20)})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.headers["connection"] == "close"
        r = c.post(
            "/api/v1/explain",
            content=b"{}",
            headers={"Authorization": "Bearer wrong"},
        )
        assert r.status_code == 403
        assert c.get("/healthz").status_code == 200  # probes stay open
        assert c.get("/openapi.json").status_code == 401
    assert len(pulled) <= 1  # httpx may prime the first chunk; the app read none of it


def test_check_json_and_json_safe() -> None:
    assert check_json(b'{"a": "\\ud83d\\ude00"}') is None  # a surrogate *pair* is fine
    assert "lone UTF-16 surrogate" in str(check_json(b'["\\ud83d"]'))
    assert "NaN" in str(check_json(b"[NaN]"))
    assert "out of range" in str(check_json(b"[1e400]"))
    assert check_json(b"not json") is None  # FastAPI reports that itself
    safe = json_safe({"x": [float("nan"), "\ud800" * 300, b"\xff"]}, limit=20)
    assert safe == {"x": ["nan", "\\ud800\\ud800\\ud80...", "\\xff"]}


def test_api_never_5xx_under_load_of_hostile_cases(app_client: ApiClient) -> None:
    """All cases again, interleaved, in under a few seconds (no case is slow)."""
    t0 = time.monotonic()
    for _, method, path, body, _want in CASES * 2:
        r = app_client.request(
            method, path, content=body, headers={**AUTH, "Content-Type": "application/json"}
        )
        assert r.status_code < 500
    assert time.monotonic() - t0 < 30


_SURROGATES = st.sampled_from(["\ud800", "a\udfff", "\udbff\udbff", "\ud83d\ude00"])
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([1e300, -1e300, 1e18, 0.0, AT_FAULT])
    | st.text(max_size=20)
    | _SURROGATES,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(
        st.sampled_from(["node", "series", "at", "matchers", "until", "duration_s", "reason",
                         "edges", "cause", "effect", "version", "alerts", "status", "labels",
                         "startsAt"]) | st.text(max_size=5) | _SURROGATES,
        inner,
        max_size=5,
    ),
    max_leaves=12,
)  # fmt: skip
_TARGETS = [
    ("POST", "/api/v1/explain"),
    ("POST", "/api/v1/mutes"),
    ("PUT", "/api/v1/graph"),
    ("PATCH", "/api/v1/graph"),
    ("POST", "/api/v1/alertmanager"),
    ("POST", "/api/v1/incidents/inc-1/false-positive"),
]


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    target=st.sampled_from(_TARGETS),
    body=_JSON.map(lambda d: json.dumps(d).encode()) | st.binary(max_size=64),
)  # fmt: skip
def test_generated_bodies_never_get_a_5xx(
    redis_server: Any, target: tuple[str, str], body: bytes
) -> None:
    """Property: whatever JSON-ish body (NaN, huge numbers, lone surrogates, wrong shapes)
    or bytes reach the write endpoints, the answer is below 500 and is JSON."""
    client = _shared_client(redis_server)
    method, path = target
    r = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code < 500, (method, path, body[:200], r.status_code, r.text[:300])
    r.json()


_CLIENT: list[ApiClient] = []


def _shared_client(redis_server: Any) -> ApiClient:
    """One app for all examples (hypothesis cannot use function-scoped fixtures)."""
    if not _CLIENT:
        stack = make_stack(redis_server.url, "hyp-hostile")
        _CLIENT.append(ApiClient(stack.app(), headers=AUTH))
    return _CLIENT[0]


@pytest.fixture(autouse=True, scope="module")
def _close_shared_client() -> Iterator[None]:
    yield
    while _CLIENT:
        _CLIENT.pop().__exit__(None, None, None)


def test_guard_open_paths_and_session_hook() -> None:
    """A route that authenticates on its own (a login page) can be opened by prefix, and a
    session judged on the headers can stand in for the bearer token."""
    from fastapi import FastAPI

    from causalwatch.publish.api.guard import RequestGuard

    inner = FastAPI()

    class _NoEnricher:  # ApiClient stops the app's enricher on exit
        def stop(self) -> None:
            pass

    inner.state.enricher = _NoEnricher()

    @inner.post("/login/x")
    def login() -> dict[str, bool]:
        return {"ok": True}

    @inner.post("/api/v1/thing")
    def thing() -> dict[str, bool]:
        return {"ok": True}

    def session(scope: Any) -> bool:
        return any(k == b"cookie" and v == b"s=good" for k, v in scope["headers"])

    inner.add_middleware(
        RequestGuard,
        token="tok",
        max_body_bytes=4_096,
        open_prefixes=("/login/",),
        session=session,
    )
    with ApiClient(inner) as c:
        assert c.post("/login/x", content=b"{}").status_code == 200
        assert c.post("/login/x", content=b"x" * 5_000).status_code == 413  # still capped
        assert c.post("/api/v1/thing", content=b"{}").status_code == 401
        assert c.post("/api/v1/thing", headers={"Cookie": "s=bad"}).status_code == 401
        assert c.post("/api/v1/thing", headers={"Cookie": "s=good"}).status_code == 200
        assert c.post("/api/v1/thing", headers={"Authorization": "Bearer tok"}).status_code == 200
