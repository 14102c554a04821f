"""The incident pages over a real Redis: sessions, redirects, headers, escaping, snapshots,
and the event stream fed by the result store's pub/sub notifications."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from causalwatch.publish.api import create_app
from causalwatch.publish.api.pages import SESSION_COOKIE, PageSources
from causalwatch.store.feed import ExplanationFeed
from causalwatch.store.feedback import FeedbackStore
from causalwatch.store.results import ResultStore
from causalwatch.store.snapshots import SnapshotStore
from tests.integration.test_api_live import LiveServer
from tests.unit.publish.test_api import ApiClient
from tests.unit.publish.test_webhooks import make_explanation

TOKEN = "pages-t0ken"


class Pages:
    def __init__(self, url: str, uid: str, *, token: str | None = TOKEN, secure: bool = False):
        self.client = redis.Redis.from_url(url)
        self.prefix = f"cwpages:{uid}:"
        self.store = ResultStore(self.client, prefix=self.prefix)
        self.feedback = FeedbackStore(self.client, self.prefix)
        self.snapshots = SnapshotStore(self.client, prefix=self.prefix)
        self.feed = ExplanationFeed(self.client, prefix=self.prefix, max_listeners=2)
        self.app = create_app(
            store=self.store,
            graph_cache=None,
            feedback=self.feedback,
            explain=None,
            dispatcher=None,
            token=token,
            ready=lambda: True,
            pages=PageSources(self.snapshots, self.feed, secure_cookie=secure),
        )


@pytest.fixture
def pages(redis_server: Any, uid: str) -> Iterator[Pages]:
    p = Pages(redis_server.url, uid)
    yield p
    p.client.close()


def _login(c: ApiClient, token: str = TOKEN, next_path: str = "/") -> httpx.Response:
    return c.post(
        "/login",
        content=f"token={token}&next={next_path}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


def _session(c: ApiClient) -> dict[str, str]:
    r = _login(c)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    return {"Cookie": f"{SESSION_COOKIE}={value}"}


def test_pages_need_a_session_and_login_sets_a_strict_httponly_cookie(pages: Pages) -> None:
    with ApiClient(pages.app) as c:
        r = c.get("/incidents/x?target=a")
        assert r.status_code == 303
        assert r.headers["location"] == "/login?next=%2Fincidents%2Fx%3Ftarget%3Da"
        assert c.get("/").status_code == 303
        assert c.get("/events").status_code == 401
        form = c.get("/login?next=/incidents/x")
        assert form.status_code == 200 and 'name="token"' in form.text
        bad = _login(c, "nope")
        assert bad.status_code == 401 and "Wrong token" in bad.text
        assert "set-cookie" not in bad.headers
        ok = _login(c, next_path="/incidents/x")
        assert ok.status_code == 303 and ok.headers["location"] == "/incidents/x"
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie
        assert TOKEN not in cookie  # an HMAC of the token, not the token
        # an open redirect is refused
        assert _login(c, next_path="//evil.example/x").headers["location"] == "/"
        hdr = _session(c)
        assert c.get("/", headers=hdr).status_code == 200
        assert c.get("/incidents/none", headers=hdr).status_code == 404
        out = c.post("/logout", headers=hdr)
        assert out.status_code == 303 and 'causalwatch_session=""' in out.headers["set-cookie"]


def test_secure_cookie_behind_https(redis_server: Any, uid: str) -> None:
    p = Pages(redis_server.url, uid, secure=True)
    with ApiClient(p.app) as c:
        assert "Secure" in _login(c).headers["set-cookie"]


def test_no_token_configured_pages_are_open(redis_server: Any, uid: str) -> None:
    p = Pages(redis_server.url, uid, token=None)
    with ApiClient(p.app) as c:
        assert c.get("/").status_code == 200
        assert c.get("/login").status_code == 303


def test_the_session_cookie_reads_the_api_and_writes_only_with_the_page_header(
    pages: Pages,
) -> None:
    pages.store.publish([make_explanation("inc-1")])
    with ApiClient(pages.app) as c:
        hdr = _session(c)
        assert c.get("/api/v1/incidents", headers=hdr).status_code == 200
        body = {"matchers": {"service": "api"}, "duration_s": 60}
        r = c.post("/api/v1/mutes", json=body, headers=hdr)
        assert r.status_code == 403 and "x-causalwatch-page" in r.json()["detail"]
        page_hdr = {**hdr, "X-Causalwatch-Page": "1"}
        assert c.post("/api/v1/mutes", json=body, headers=page_hdr).status_code == 201
        fp = c.post("/api/v1/incidents/inc-1/false-positive", json={}, headers=page_hdr)
        assert fp.status_code == 200
        assert pages.store.get_incident("inc-1")["status"] == "false_positive"
        forged = {"Cookie": f"{SESSION_COOKIE}={'0' * 64}"}
        assert c.get("/api/v1/incidents", headers=forged).status_code == 401


def test_incident_page_renders_snapshot_and_escapes_what_it_shows(pages: Pages) -> None:
    exp = make_explanation("inc-<b>", node="api", cause="db<script>alert(1)</script>")
    pages.store.publish([exp])
    t0 = exp.window.start - 600
    ts = [t0 + 60 * i for i in range(16)]
    snap = {
        "schema_version": 1,
        "explanation_id": exp.id,
        "incident_id": exp.incident_id,
        "step_s": 60.0,
        "reference": [t0, exp.window.start],
        "anomaly": [exp.window.start, exp.window.end],
        "series": [
            {
                "series": exp.target.series,
                "node": "api",
                "role": "target",
                "ts": ts,
                "value": [1.0] * 12 + [None, 9.0, 9.5, 9.0],
                "expected": [1.0] * 16,
                "lower": [0.5] * 16,
                "upper": [1.5] * 16,
                "score": [0.1] * 16,
            }
        ],
        "graph": {
            "nodes": [
                {"node": "db<script>alert(1)</script>", "severity": 90},
                {"node": "api", "severity": 60},
            ],
            "edges": [
                {
                    "cause": "db<script>alert(1)</script>",
                    "effect": "api",
                    "provenance": "learned",
                    "strength": 0.4,
                }
            ],
        },
    }
    pages.snapshots.write_batch([snap])
    with ApiClient(pages.app) as c:
        r = c.get("/incidents/inc-%3Cb%3E", headers=_session(c))
    assert r.status_code == 200
    html = r.text
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert "<b>" not in html.replace("<body", "")  # the incident id is escaped too
    csp = r.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert "default-src 'none'" in csp and html.count(f'nonce="{nonce}"') == 2
    assert r.headers["cache-control"] == "no-store" and r.headers["x-frame-options"] == "DENY"
    # the learned edge on the root-cause path: dashed and highlighted
    edge = re.search(r'<path class="edge on-path"[^>]*>', html).group(0)
    assert 'data-provenance="learned"' in edge and "stroke-dasharray" in edge
    # the plot: a gap splits the value line in two; both windows are shaded
    plot = html[html.index('<svg class="plot"') :]
    plot = plot[: plot.index("</svg>")]
    assert plot.count('<polyline class="value"') == 2
    assert 'class="win-reference"' in plot and 'class="win-anomaly"' in plot
    assert 'class="band"' in plot
    # the verdict and the shares with the rest unexplained, as the explanation says
    assert f'data-verdict="{exp.verdict}"' in html
    assert f'data-node="unexplained" data-pct="{100 * exp.unexplained:.1f}"' in html


def test_incident_page_without_snapshot_and_with_new_fields(pages: Pages) -> None:
    exp = make_explanation("inc-2", node="web", cause="api")
    pages.store.publish([exp])
    with ApiClient(pages.app) as c:
        html = c.get("/incidents/inc-2", headers=_session(c)).text
    assert "No snapshot was stored with this explanation" in html
    assert "No series history was kept" in html
    assert 'data-node="web"' in html  # the target is drawn even without a graph


def test_event_stream_sends_rows_from_pubsub(pages: Pages) -> None:
    """Over a real server: the stream subscribes, and an explanation published by the store
    comes out as an ``incident`` event with the rendered row (filtered by node)."""
    with LiveServer(pages.app) as srv, httpx.Client(base_url=srv.url, timeout=10) as http:
        r = http.post("/login", data={"token": TOKEN, "next": "/"})
        assert r.status_code == 303
        events: list[dict[str, Any]] = []
        connected = threading.Event()

        def read() -> None:
            with http.stream("GET", "/events?node=web") as resp:
                assert resp.status_code == 200
                assert resp.headers["content-type"].startswith("text/event-stream")
                connected.set()
                kind = None
                for line in resp.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind == "incident":
                        events.append(json.loads(line[6:]))
                        return

        t = threading.Thread(target=read, daemon=True)
        t.start()
        assert connected.wait(10)
        # subscribed once the server has read the feed (a publish before would be lost)
        deadline = threading.Event()
        for _ in range(50):
            subs = pages.client.pubsub_numsub(pages.feed.channel)[0][1]
            if subs:
                break
            deadline.wait(0.1)
        assert subs == 1
        pages.store.publish([make_explanation("inc-api", node="api")])  # filtered out
        pages.store.publish([make_explanation("inc-web", node="web")])
        t.join(10)
        assert [e["id"] for e in events] == ["inc-web"]
        assert events[0]["html"].startswith('<tr id="inc-inc-web"')


def test_event_stream_listeners_are_bounded(pages: Pages) -> None:
    assert pages.feed.try_acquire() and pages.feed.try_acquire()
    with ApiClient(pages.app) as c:
        r = c.get("/events", headers=_session(c))
        assert r.status_code == 503 and r.headers["retry-after"] == "10"
    pages.feed.release()
    pages.feed.release()


def test_wrong_tokens_are_throttled_per_client(pages: Pages) -> None:
    with ApiClient(pages.app) as c:
        for _ in range(10):
            assert _login(c, "guess").status_code == 401
        r = _login(c, "guess")
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert "Too many wrong tokens" in r.text
        assert _login(c).status_code == 429  # even the right one, until the window passes
