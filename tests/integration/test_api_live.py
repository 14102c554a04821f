"""The API in a live uvicorn server (thread, free port), exercised over HTTP with httpx:
real Redis, the real explainer, the real Redis graph cache, a real webhook receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from causalwatch.publish.webhooks import verify_signature
from causalwatch.settings import WebhookSettings
from causalwatch.tooling.embedded import free_port
from tests.unit.publish.test_api import ALERT_PAYLOAD, AT_FAULT, TOKEN, Stack, make_stack
from tests.unit.publish.test_webhooks import Receiver, make_explanation

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOOK_SECRET = "whsec"


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1:<free port> in a thread."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@dataclass
class Live:
    stack: Stack
    server: LiveServer
    receiver: Receiver
    http: httpx.Client


@pytest.fixture
def live(redis_server: Any, uid: str) -> Iterator[Live]:
    with Receiver() as rx:
        stack = make_stack(redis_server.url, uid, [WebhookSettings(url=rx.url, secret=HOOK_SECRET)])
        assert stack.dispatcher is not None
        stack.dispatcher.start()
        try:
            with (
                LiveServer(stack.app(token=TOKEN)) as srv,
                httpx.Client(base_url=srv.url, headers=AUTH, timeout=10) as http,
            ):
                yield Live(stack, srv, rx, http)
        finally:
            stack.dispatcher.close()
            stack.client.close()


def test_live_health_auth_and_schema(live: Live) -> None:
    anon = httpx.get(f"{live.server.url}/healthz")
    assert anon.status_code == 200 and anon.json() == {"status": "ok"}
    assert httpx.get(f"{live.server.url}/readyz").status_code == 200
    assert httpx.get(f"{live.server.url}/api/v1/incidents").status_code == 401
    schema = live.http.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.") and "/api/v1/explain" in schema["paths"]


def test_live_incident_flow(live: Live) -> None:
    exps = [make_explanation("inc-9", version=v, node="api", cause="db") for v in (1, 2)]
    live.stack.store.publish(exps)
    live.stack.dispatcher.enqueue(exps)  # type: ignore[union-attr]
    incidents = live.http.get("/api/v1/incidents", params={"node": "api"}).json()["incidents"]
    assert [i["incident_id"] for i in incidents] == ["inc-9"]
    got = live.http.get("/api/v1/incidents/inc-9/explanations").json()["explanations"]
    assert [e["version"] for e in got] == [2]
    # both versions reach the receiver, signed
    reqs = live.receiver.wait_for(2)
    for r in reqs:
        h = r["headers"]
        assert verify_signature(
            HOOK_SECRET,
            r["body"],
            h["X-Causalwatch-Timestamp"],
            h["X-Causalwatch-Signature"],
            now=time.time(),
            tolerance_s=300,
        )
    r = live.http.post("/api/v1/incidents/inc-9/false-positive", json={"reason": "test"})
    assert r.status_code == 200
    closed = live.http.get("/api/v1/incidents", params={"status": "false_positive"}).json()
    assert [i["incident_id"] for i in closed["incidents"]] == ["inc-9"]


def test_live_explain_graph_and_mutes(live: Live) -> None:
    r = live.http.post("/api/v1/explain", json={"node": "web", "at": AT_FAULT})
    assert r.status_code == 200 and r.json()["root_causes"][0]["node"] == "db"
    r = live.http.put(
        "/api/v1/graph",
        json={"edges": [{"cause": "db", "effect": "api"}]},
        headers={"If-Match": '"0"'},
    )
    assert r.status_code == 200
    etag = r.headers["ETag"]
    # a second writer holding the old version loses
    assert (
        live.http.put("/api/v1/graph", json={"edges": []}, headers={"If-Match": '"0"'}).status_code
        == 409
    )
    r = live.http.patch(
        "/api/v1/graph",
        json={"add": [{"cause": "api", "effect": "web"}]},
        headers={"If-Match": etag},
    )
    assert r.status_code == 200 and len(r.json()["edges"]) == 2
    assert live.stack.graph.version() == r.json()["version"]
    r = live.http.post("/api/v1/mutes", json={"matchers": {"service": "db"}, "duration_s": 60})
    assert r.status_code == 201
    assert [m.matchers for m in live.stack.feedback.active_mutes(time.time())] == [
        {"service": "db"}
    ]


def test_live_alertmanager_enrichment(live: Live) -> None:
    t0 = time.perf_counter()
    r = live.http.post("/api/v1/alertmanager", json=ALERT_PAYLOAD)
    answered_s = time.perf_counter() - t0
    assert r.status_code == 202 and answered_s < 1.0
    reqs = live.receiver.wait_for(2)
    by_fp = {}
    for q in reqs:
        body = json.loads(q["body"])
        by_fp[body["alert"]["fingerprint"]] = body
    assert by_fp["a1b2c3"]["explanation"]["root_causes"][0]["node"] == "db"
    assert "unknown-svc" in by_fp["d4e5f6"]["explain_error"]
