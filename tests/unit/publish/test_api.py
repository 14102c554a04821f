"""The HTTP API on a real Redis, called through httpx (Starlette's ApiClient transport)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio.from_thread
import httpx
import numpy as np
import pytest
import redis
from fastapi import FastAPI

from causalwatch.models import Explanation
from causalwatch.publish.api import alert_target, create_app, parse_rfc3339
from causalwatch.publish.webhooks import WebhookDispatcher
from causalwatch.schemas import explanation_from_dict
from causalwatch.series import SeriesIndex
from causalwatch.settings import PublishSettings, WebhookSettings
from causalwatch.store.feedback import FeedbackStore
from causalwatch.store.graph import RedisDagCache
from causalwatch.store.outbox import WebhookOutbox
from causalwatch.store.results import ResultStore
from explainer.core import Explainer, ExplainerConfig
from explainer.dag import DependencyGraph, Edge
from tests.unit.publish.test_webhooks import Receiver, make_explanation

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class ApiClient:
    """A sync client over httpx's ASGITransport (the app runs in an anyio portal's loop)."""

    def __init__(self, app: FastAPI, headers: dict[str, str] | None = None) -> None:
        self.app = app
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api", headers=headers
        )

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        return self._portal.call(partial(self._client.request, method, url, **kw))

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def put(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("PUT", url, **kw)

    def patch(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("PATCH", url, **kw)

    def delete(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", url, **kw)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._portal.call(self._client.aclose)
        self._portal_cm.__exit__(None, None, None)
        self.app.state.enricher.stop()


T0 = 1_700_000_000.0
STEP_S = 60.0
N_POINTS = 200


def build_explainer(t0: float = T0) -> Callable[[str, str | None, float], Explanation]:
    """A real Explainer over db -> api -> web with a fault injected in db in the last bins
    (samples every STEP_S from ``t0``); returns its ``explain`` behind a lock (the explainer
    is not thread-safe)."""
    idx = SeriesIndex()
    graph = DependencyGraph([Edge("db", "api"), Edge("api", "web")])
    ex = Explainer(ExplainerConfig(step_s=STEP_S, learn_graph=False), graph, idx)
    keys = [f'latency{{service="{n}"}}' for n in ("db", "api", "web")]
    rows = idx.rows_for(keys)
    rng = np.random.default_rng(0)
    for t in range(N_POINTS):
        db = rng.normal(10, 1) + (8 if t >= N_POINTS - 5 else 0)
        api = 2 * db + rng.normal()
        web = api + 5 + rng.normal()
        ex.observe(rows, np.full(3, t0 + STEP_S * t), np.array([db, api, web]))
    lock = threading.Lock()

    def explain(
        node: str, series: str | None, at: float, since: float | None = None
    ) -> Explanation:
        with lock:
            return Explanation.from_result(ex.explain(node, series, at, window_start=since))

    return explain


EXPLAIN = build_explainer()
AT_FAULT = T0 + STEP_S * (N_POINTS - 1)


@dataclass
class Stack:
    client: redis.Redis
    prefix: str
    store: ResultStore
    feedback: FeedbackStore
    graph: Any
    dispatcher: WebhookDispatcher | None
    is_ready: list[bool] = field(default_factory=lambda: [True])

    def app(self, token: str | None = TOKEN, **kw: Any) -> FastAPI:
        return create_app(
            store=self.store,
            graph_cache=self.graph,
            feedback=self.feedback,
            explain=kw.pop("explain", EXPLAIN),
            dispatcher=self.dispatcher,
            token=token,
            ready=lambda: self.is_ready[0],
            **kw,
        )


def make_stack(redis_url: str, uid: str, hooks: list[WebhookSettings] | None = None) -> Stack:
    client = redis.Redis.from_url(redis_url)
    prefix = f"cwtest:{uid}:"
    disp = None
    if hooks is not None:
        disp = WebhookDispatcher(
            WebhookOutbox(client, prefix), hooks, PublishSettings(webhook_backoff_base_s=0.05)
        )
    return Stack(
        client,
        prefix,
        ResultStore(client, prefix=prefix),
        FeedbackStore(client, prefix),
        RedisDagCache(client, prefix),
        disp,
    )


@pytest.fixture
def stack(redis_server, uid) -> Iterator[Stack]:
    s = make_stack(redis_server.url, uid)
    yield s
    s.client.close()


@pytest.fixture
def http(stack) -> Iterator[ApiClient]:
    with ApiClient(stack.app(), headers=AUTH) as c:
        yield c


def seed(stack: Stack) -> list[Explanation]:
    exps = [
        make_explanation("inc-1", version=1, node="api", cause="db"),
        make_explanation("inc-1", version=2, node="api", cause="db"),
        make_explanation("inc-2", version=1, node="web", cause="api"),
    ]
    stack.store.publish(exps)
    return exps


def test_health_and_readiness_need_no_token(stack):
    with ApiClient(stack.app()) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").status_code == 200
        stack.is_ready[0] = False
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json() == {"ready": False}


def test_bearer_token(stack):
    with ApiClient(stack.app()) as c:
        r = c.get("/api/v1/incidents")
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
        assert "bearer token" in r.json()["detail"]
        assert c.get("/api/v1/incidents", headers={"Authorization": "Bearer no"}).status_code == 403
        assert c.get("/openapi.json").status_code == 401
        assert c.get("/api/v1/incidents", headers=AUTH).status_code == 200
    with ApiClient(stack.app(token=None)) as c:  # no token configured: open
        assert c.get("/api/v1/incidents").status_code == 200


def test_openapi_schema_lists_the_endpoints(http):
    schema = http.get("/openapi.json").json()
    paths = set(schema["paths"])
    assert {
        "/api/v1/incidents",
        "/api/v1/incidents/{incident_id}",
        "/api/v1/incidents/{incident_id}/explanations",
        "/api/v1/explain",
        "/api/v1/graph",
        "/api/v1/mutes",
        "/api/v1/alertmanager",
        "/healthz",
        "/readyz",
    } <= paths
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_incidents_list_filter_get(stack, http):
    seed(stack)
    inc = http.get("/api/v1/incidents").json()["incidents"]
    assert {i["incident_id"] for i in inc} == {"inc-1", "inc-2"}
    assert [
        i["incident_id"] for i in http.get("/api/v1/incidents?node=web").json()["incidents"]
    ] == ["inc-2"]
    assert http.get("/api/v1/incidents?status=closed").json()["incidents"] == []
    # inc-1 was last updated at 1_700_000_002, inc-2 at 1_700_000_001
    r = http.get("/api/v1/incidents", params={"since": 1_700_000_002})
    assert [i["incident_id"] for i in r.json()["incidents"]] == ["inc-1"]
    r = http.get("/api/v1/incidents", params={"since": 5, "until": 1})
    assert r.status_code == 422 and "after until" in r.json()["detail"]
    assert http.get("/api/v1/incidents?status=bogus").status_code == 422
    one = http.get("/api/v1/incidents/inc-1").json()
    assert one["status"] == "open" and one["nodes"] == ["api"]
    r = http.get("/api/v1/incidents/nope")
    assert r.status_code == 404 and "nope" in r.json()["detail"]


def test_explanations(stack, http):
    exps = seed(stack)
    got = http.get("/api/v1/incidents/inc-1/explanations").json()["explanations"]
    assert [explanation_from_dict(e) for e in got] == [exps[1]]  # latest version per target
    latest = http.get("/api/v1/explanations/latest/web").json()
    assert explanation_from_dict(latest) == exps[2]
    assert http.get("/api/v1/explanations/latest/zzz").status_code == 404
    assert explanation_from_dict(http.get(f"/api/v1/explanations/{exps[0].id}").json()) == exps[0]
    recent = http.get("/api/v1/explanations?limit=2").json()["explanations"]
    assert [e["id"] for e in recent] == [exps[2].id, exps[1].id]


def test_explain_on_demand(http):
    r = http.post("/api/v1/explain", json={"node": "web", "at": AT_FAULT})
    assert r.status_code == 200, r.text
    e = explanation_from_dict(r.json())
    assert e.root_causes[0].node == "db" and e.target.node == "web"
    r = http.post(
        "/api/v1/explain",
        json={"node": "api", "series": 'latency{service="api"}', "at": AT_FAULT},
    )
    assert r.status_code == 200 and r.json()["target"]["series"] == 'latency{service="api"}'
    r = http.post("/api/v1/explain", json={"node": "nosuch", "at": AT_FAULT})
    assert r.status_code == 404 and "'nosuch' has no series" in r.json()["detail"]
    r = http.post("/api/v1/explain", json={"node": "api", "series": "nope", "at": AT_FAULT})
    assert r.status_code == 404 and "unknown series 'nope'" in r.json()["detail"]
    r = http.post("/api/v1/explain", json={"node": "api", "at": T0 - 86_400})
    assert r.status_code == 404 and "history" in r.json()["detail"]  # no data then
    r = http.post("/api/v1/explain", json={"series": "x"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "node"]
    assert http.post("/api/v1/explain", content=b'{"node":"api","at":NaN}').status_code == 422


def test_explain_not_configured(stack):
    with ApiClient(stack.app(explain=None), headers=AUTH) as c:
        r = c.post("/api/v1/explain", json={"node": "api"})
        assert r.status_code == 503 and "not configured" in r.json()["detail"]


def test_graph_put_patch_versions_and_errors(http):
    g0 = http.get("/api/v1/graph")
    assert g0.json() == {"version": 0, "nodes": [], "edges": []}
    r = http.put(
        "/api/v1/graph",
        json={"edges": [{"cause": "db", "effect": "api"}, {"cause": "api", "effect": "web"}]},
        headers={"If-Match": '"0"'},
    )
    assert r.status_code == 200, r.text
    v1 = r.json()["version"]
    assert r.headers["ETag"] == f'"{v1}"' and v1 >= 1
    g = http.get("/api/v1/graph")
    assert g.headers["ETag"] == f'"{v1}"'
    assert {(e["cause"], e["effect"]) for e in g.json()["edges"]} == {("db", "api"), ("api", "web")}
    # stale version -> 409
    r = http.put("/api/v1/graph", json={"edges": []}, headers={"If-Match": '"0"'})
    assert r.status_code == 409 and f"is {v1}" in r.json()["detail"]
    r = http.patch("/api/v1/graph", json={"add": [], "version": v1 + 5})
    assert r.status_code == 409
    # a cycle -> 422 naming the nodes
    r = http.patch("/api/v1/graph", json={"add": [{"cause": "web", "effect": "db"}]})
    assert r.status_code == 422 and "cycle" in r.json()["detail"]
    # a self-loop -> 422
    r = http.put("/api/v1/graph", json={"edges": [{"cause": "a", "effect": "a"}]})
    assert r.status_code == 422 and "self-loop" in r.json()["detail"]
    # removing an edge that is not there -> 422
    r = http.patch("/api/v1/graph", json={"remove": [{"cause": "x", "effect": "y"}]})
    assert r.status_code == 422 and "not in graph" in r.json()["detail"]
    assert (
        http.patch("/api/v1/graph", json={"add": [{"cause": "", "effect": "y"}]}).status_code == 422
    )
    r = http.patch(
        "/api/v1/graph",
        json={
            "add": [{"cause": "cache", "effect": "api"}],
            "remove": [{"cause": "api", "effect": "web"}],
        },
        headers={"If-Match": f'"{v1}"'},
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] > v1
    edges = {(e["cause"], e["effect"]) for e in http.get("/api/v1/graph").json()["edges"]}
    assert edges == {("db", "api"), ("cache", "api")}
    assert (
        http.put("/api/v1/graph", json={"edges": []}, headers={"If-Match": "abc"}).status_code
        == 422
    )


def test_false_positive(stack, http):
    seed(stack)
    r = http.post("/api/v1/incidents/inc-1/false-positive", json={"reason": "deploy"})
    assert r.status_code == 200
    assert r.json()["series"] == ['latency{service="api"}']
    assert http.get("/api/v1/incidents/inc-1").json()["status"] == "false_positive"
    fps = stack.feedback.false_positives_since(0.0)
    assert [f.incident_id for f in fps] == ["inc-1"] and fps[0].reason == "deploy"
    assert http.post("/api/v1/incidents/inc-1/false-positive").status_code == 200  # no body
    assert http.post("/api/v1/incidents/nope/false-positive").status_code == 404
    filt = http.get("/api/v1/incidents?status=false_positive").json()["incidents"]
    assert [i["incident_id"] for i in filt] == ["inc-1"]


def test_mutes(stack, http):
    now = time.time()
    r = http.post("/api/v1/mutes", json={"matchers": {"service": "db"}, "duration_s": 600})
    assert r.status_code == 201
    m = r.json()
    assert now + 590 < m["until"] < now + 700
    r = http.post(
        "/api/v1/mutes", json={"series": 'latency{service="api"}', "until": now + 60, "reason": "x"}
    )
    assert r.json()["matchers"] == {"__name__": "latency", "service": "api"}
    listed = http.get("/api/v1/mutes").json()["mutes"]
    assert {tuple(sorted(x["matchers"])) for x in listed} == {("service",), ("__name__", "service")}
    active = stack.feedback.active_mutes(time.time())
    assert len(active) == 2 and any(a.matches('errors{service="db"}') for a in active)
    for bad, why in [
        ({"matchers": {"a": "b"}}, "until"),
        ({"matchers": {"a": "b"}, "series": "x", "until": now + 5}, "exactly one"),
        ({"matchers": {}, "until": now + 5}, "at least one"),
        ({"series": "lat{oops", "until": now + 5}, "series key"),
    ]:
        r = http.post("/api/v1/mutes", json=bad)
        assert r.status_code == 422 and why in json.dumps(r.json()), (bad, r.text)
    r = http.post("/api/v1/mutes", json={"matchers": {"a": "b"}, "until": now - 5})
    assert r.status_code == 422 and "not in the future" in r.json()["detail"]
    assert http.delete(f"/api/v1/mutes/{m['id']}").status_code == 204
    assert http.delete(f"/api/v1/mutes/{m['id']}").status_code == 404
    assert len(http.get("/api/v1/mutes").json()["mutes"]) == 1


def test_backend_error_maps_to_503(redis_server, uid):
    s = make_stack(redis_server.url, uid)
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    s.store = ResultStore(dead, prefix=s.prefix)
    with ApiClient(s.app(), headers=AUTH) as c:
        r = c.get("/api/v1/incidents")
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        assert "redis" in r.json()["detail"]


def test_alert_target_and_time():
    labels = {"alertname": "HighLatency", "severity": "page", "service": "api", "le": "0.99"}
    assert alert_target(labels, "service") == ("api", '{le="0.99",service="api"}')
    assert alert_target({"alertname": "X", "service": "api"}, "service") == ("api", None)
    named = {"__name__": "latency", "service": "api", "alertname": "A"}
    assert alert_target(named, "service") == ("api", 'latency{service="api"}')
    expected = datetime(2026, 11, 26, 6, 0, 0, 123456, tzinfo=UTC).timestamp()
    assert parse_rfc3339("2026-11-26T06:00:00.123456789Z") == pytest.approx(expected)
    with pytest.raises(Exception, match="service"):
        alert_target({"alertname": "X"}, "service")


ALERT_PAYLOAD = {
    "version": "4",
    "groupKey": '{}:{alertname="HighLatency"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "causalwatch",
    "groupLabels": {"alertname": "HighLatency"},
    "commonLabels": {"alertname": "HighLatency", "service": "api"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "HighLatency", "service": "web", "severity": "page"},
            "annotations": {"summary": "p99 latency high"},
            "startsAt": datetime.fromtimestamp(AT_FAULT, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": "a1b2c3",
        },
        {
            "status": "firing",
            "labels": {"alertname": "Down", "service": "unknown-svc"},
            "annotations": {},
            "startsAt": "2026-11-26T06:01:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": "d4e5f6",
        },
    ],
}


def test_explain_with_since_is_bounded_by_the_held_data(http):
    """``since`` fixes the window's start; outside the held data it is a 404, never an
    allocation sized by the stray time."""
    body = {"node": "web", "at": AT_FAULT, "since": AT_FAULT - 3 * STEP_S}
    r = http.post("/api/v1/explain", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["window"]["start"] <= AT_FAULT - 2 * STEP_S
    for since in (0.0, T0 - 86_400):
        r = http.post("/api/v1/explain", json={**body, "since": since})
        assert r.status_code == 404 and "outside the history held" in r.json()["detail"]
    r = http.post("/api/v1/explain", json={**body, "since": AT_FAULT + STEP_S})
    assert r.status_code == 200  # after the data: its latest time (a scrape ahead)
    r = http.post("/api/v1/explain", json={**body, "since": "nan"})
    assert r.status_code == 422


def test_alertmanager_webhook_is_enriched_and_forwarded(redis_server, uid):
    with Receiver() as rx:
        s = make_stack(redis_server.url, uid, [WebhookSettings(url=rx.url, secret="k")])
        assert s.dispatcher is not None
        s.dispatcher.start()
        try:
            with ApiClient(s.app(), headers=AUTH) as c:
                r = c.post("/api/v1/alertmanager", json=ALERT_PAYLOAD)
                assert r.status_code == 202 and r.json() == {"accepted": 2}
                c.app.state.enricher.drain()  # type: ignore[attr-defined]
                reqs = rx.wait_for(2)
                bodies = {
                    json.loads(q["body"])["alert"]["fingerprint"]: json.loads(q["body"])
                    for q in reqs
                }
                ok = bodies["a1b2c3"]
                assert ok["explanation"]["root_causes"][0]["node"] == "db"
                assert ok["explanation"]["target"]["node"] == "web"
                assert ok["explanation"]["detected_at"] == pytest.approx(AT_FAULT)
                assert ok["receiver"] == "causalwatch"
                assert reqs[0]["headers"]["X-Causalwatch-Event"] == "alert"
                bad = bodies["d4e5f6"]
                assert bad["explanation"] is None and "unknown-svc" in bad["explain_error"]
                stats = c.app.state.enricher.stats  # type: ignore[attr-defined]
                assert stats["enriched"] == 1 and stats["unexplained"] == 1
                # Alertmanager resends the same group: de-duplicated, nothing new goes out
                assert c.post("/api/v1/alertmanager", json=ALERT_PAYLOAD).status_code == 202
                c.app.state.enricher.drain()  # type: ignore[attr-defined]
                time.sleep(0.3)
                assert len(rx.requests) == 2
                # bad payloads
                r = c.post("/api/v1/alertmanager", json={**ALERT_PAYLOAD, "version": "3"})
                assert r.status_code == 422
                r = c.post("/api/v1/alertmanager", json={"version": "4"})
                assert r.status_code == 422 and "alerts" in r.text
        finally:
            s.dispatcher.close()
            s.client.close()


def test_alertmanager_queue_full_answers_503(stack):
    gate_open = False

    def slow_explain(
        node: str, series: str | None, at: float, since: float | None = None
    ) -> Explanation:
        while not gate_open:
            time.sleep(0.01)
        return EXPLAIN(node, series, at, since)

    app = stack.app(explain=slow_explain, alert_queue_size=1, alert_workers=1)
    with ApiClient(app, headers=AUTH) as c:
        assert c.post("/api/v1/alertmanager", json=ALERT_PAYLOAD).status_code == 202
        deadline = time.monotonic() + 5
        while app.state.enricher._queue.qsize() and time.monotonic() < deadline:
            time.sleep(0.01)  # the worker took it and now blocks in explain
        codes = [c.post("/api/v1/alertmanager", json=ALERT_PAYLOAD).status_code for _ in range(3)]
        assert codes == [202, 503, 503]  # one waits in the queue, the rest are refused
        r = c.post("/api/v1/alertmanager", json=ALERT_PAYLOAD)
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        gate_open = True
        app.state.enricher.drain()
        assert c.post("/api/v1/alertmanager", json=ALERT_PAYLOAD).status_code == 202


def test_webhook_status_dead_list_and_retry(redis_server, uid):
    with Receiver(fail_first=1, fail_status=400) as rx:
        s = make_stack(redis_server.url, uid, [WebhookSettings(url=rx.url)])
        assert s.dispatcher is not None
        try:
            s.dispatcher.enqueue([make_explanation()])
            assert s.dispatcher.deliver_due() == {"dead": 1}
            with ApiClient(s.app(), headers=AUTH) as c:
                st = c.get("/api/v1/webhooks").json()
                assert st == {"outbox_size": 0, "dead": 1, "deliveries": {"generic": {"dead": 1}}}
                (dead,) = c.get("/api/v1/webhooks/dead").json()["dead"]
                assert dead["last_error"].startswith("HTTP 400") and "body" not in dead
                assert c.post(f"/api/v1/webhooks/dead/{dead['id']}/retry").status_code == 202
                assert c.post(f"/api/v1/webhooks/dead/{dead['id']}/retry").status_code == 404
                assert c.get("/api/v1/webhooks").json()["outbox_size"] == 1
            assert s.dispatcher.deliver_due() == {"delivered": 1}  # the receiver is fixed now
            assert len(rx.wait_for(1)) == 1
        finally:
            s.dispatcher.close()
            s.client.close()


def test_webhook_endpoints_without_dispatcher(http):
    r = http.get("/api/v1/webhooks")
    assert r.status_code == 503 and "no webhook dispatcher" in r.json()["detail"]


def test_readiness_probe_that_raises_means_not_ready(stack):
    def probe() -> bool:
        raise RuntimeError("consumer thread died")

    app = create_app(
        store=stack.store,
        graph_cache=stack.graph,
        feedback=stack.feedback,
        explain=None,
        dispatcher=None,
        token=None,
        ready=probe,
    )
    with ApiClient(app) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json() == {
            "ready": False,
            "reasons": ["readiness probe failed: RuntimeError"],
        }


def test_readiness_reasons_are_returned(stack):
    app = create_app(
        store=stack.store,
        graph_cache=stack.graph,
        feedback=stack.feedback,
        explain=None,
        dispatcher=None,
        token=None,
        ready=lambda: (False, ["redis unreachable for 3 s: connection refused"]),
    )
    with ApiClient(app) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["reasons"] == ["redis unreachable for 3 s: connection refused"]


def test_own_alerts_are_not_enriched_again(stack):
    ours = {
        "version": "4",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "CausalwatchAnomaly", "source": "causalwatch"},
                "startsAt": "2026-11-26T06:00:00Z",
            },
            {
                "status": "firing",
                "labels": {"alertname": "X", "service": "web"},
                "annotations": {"causalwatch_explanation_id": "e1"},
                "startsAt": "2026-11-26T06:00:00Z",
            },
        ],
    }
    app = stack.app()
    with ApiClient(app, headers=AUTH) as c:
        assert c.post("/api/v1/alertmanager", json=ours).status_code == 202
        app.state.enricher.drain()
        assert app.state.enricher.stats["skipped"] == 2
        assert app.state.enricher.stats["enriched"] == 0
