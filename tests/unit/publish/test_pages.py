"""Pages are incidents: one page per incident across its series and nodes, updates after;
receivers see the kind, Alertmanager gets one alert per incident; pages are counted."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from causalwatch.app.pipeline import Adapters, build_pipeline
from causalwatch.app.pipeline.worker import ExplainQueue
from causalwatch.models import RawRecord
from causalwatch.publish.webhooks import render_body
from causalwatch.settings import Settings, WebhookSettings
from causalwatch.tooling.simulate import simulate
from explainer.dag import DependencyGraph, Edge
from tests.unit.publish.test_webhooks import Receiver, dispatcher, make_explanation


@pytest.fixture
def client(redis_server: Any) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_server.url)
    yield c
    c.close()


def test_the_first_explanation_of_an_incident_is_its_page_the_rest_updates() -> None:
    q = ExplainQueue()
    a = make_explanation("inc-1", 1, node="api")
    b = make_explanation("inc-1", 1, node="web")  # another series and node, same incident
    c = make_explanation("inc-1", 2, node="api")
    kinds, new = q.pages_for([a, b])
    assert [kinds[e.id][0] for e in (a, b)] == ["page", "update"] and new == {
        "page": 1,
        "update": 1,
    }
    again, new = q.pages_for([a])  # a publish retried keeps its kind, counted once
    assert again[a.id][0] == "page" and not new
    q.published([a.id, b.id])
    assert q.pages_for([c])[0][c.id][0] == "update"
    q.forget(["inc-1"])  # closed: the next one pages again
    assert (
        q.pages_for([make_explanation("inc-1", 3)])[0]['inc-1:latency{service="api"}:3'][0]
        == "page"
    )


def test_alertmanager_gets_one_alert_per_incident() -> None:
    a = make_explanation("inc-1", 1, node="api")
    b = make_explanation("inc-1", 2, node="web")
    bodies = [
        json.loads(render_body("alertmanager", e, (k, 85.0)))
        for e, k in ((a, "page"), (b, "update"))
    ]
    labels = [body[0]["labels"] for body in bodies]
    assert (
        labels[0]
        == labels[1]
        == {
            "alertname": "CausalwatchIncident",
            "source": "causalwatch",
            "incident_id": "inc-1",
            "severity": "critical",
        }
    )
    assert [body[0]["annotations"]["node"] for body in bodies] == ["api", "web"]
    assert bodies[1][0]["annotations"]["page"] == "update"
    slack = json.loads(render_body("slack", a, ("page", 85.0)))
    assert slack["text"].startswith(":rotating_light: New incident")


def test_a_replayed_incident_pages_once_through_the_pipeline(client: redis.Redis, uid: str) -> None:
    """The live stage (inline worker) publishes a simulated fault: receivers get one
    ``page`` per paging incident and ``update`` for everything after, nothing of an incident
    whose alerts never agreed (watched: published to Redis, not paged); pages are counted.

    The fault is an error burst, seen on two related nodes (its incident pages); the input
    before this rule, a latency shift that alerts on one series once, is now watched and
    not paged (``explainer.page_agreement``)."""
    sc = simulate(6, n_points=600, step_s=60.0, seed=3, fault_kind="error_burst")
    with Receiver() as rx:
        d = dispatcher(client, uid, [WebhookSettings(url=rx.url)])
        try:
            pipe = build_pipeline(
                Settings(),
                "all",
                Adapters(outbox=d),
                graph=DependencyGraph([Edge(a, b) for a, b in sc.edges]),
                replay=True,
                formats={"m": "json"},
            )
            for k in range(sc.n_points):
                t = float(sc.ts[k])
                body = [
                    {"name": m, "labels": {"service": n}, "timestamp": t, "value": float(v)}
                    for n, m, v in zip(
                        sc.series_nodes, sc.series_metrics, sc.values[:, k], strict=True
                    )
                ]
                pipe.stage.handle([RawRecord("m", 0, k, json.dumps(body).encode())], time.time())
            n = sum(pipe.stats.pages.values())  # explanations sent to receivers
            assert n >= 2 and pipe.stats.explanations_total > n  # and some only watched
            watching, paged, watched = pipe.cores.explainer.incident_counts()
            assert paged >= 1 and watching + watched >= 1
            while sum(d.deliver_due(time.time()).values()):
                pass
            reqs = rx.wait_for(n)
        finally:
            d.close()
    kinds: dict[str, Counter[str]] = {}
    for r in reqs:
        iid = json.loads(r["body"])["incident_id"]
        kinds.setdefault(iid, Counter())[r["headers"]["X-Causalwatch-Event"]] += 1
    assert len(kinds) == paged
    assert all(c["page"] == 1 for c in kinds.values()), kinds
    assert sum(c["update"] for c in kinds.values()) == n - len(kinds)
    assert pipe.stats.pages == Counter({"page": len(kinds), "update": n - len(kinds)})
