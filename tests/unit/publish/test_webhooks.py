"""Outgoing webhooks against a real local HTTP receiver and a real Redis."""

from __future__ import annotations

import dataclasses
import http.server
import json
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from causalwatch.models import Explanation, Opposing, RootCause, Target, TimeWindow
from causalwatch.publish.webhooks import (
    AlertEvent,
    WebhookDispatcher,
    render_body,
    verify_signature,
)
from causalwatch.schemas import explanation_from_json
from causalwatch.settings import PublishSettings, WebhookSettings
from causalwatch.store.outbox import WebhookOutbox
from causalwatch.tooling.embedded import free_port

SECRET = "s3cret"


class Receiver:
    """A threading http.server that records POSTs and answers ``fail_first`` times with
    ``fail_status`` before answering 200."""

    def __init__(self, fail_first: int = 0, fail_status: int = 503) -> None:
        self.port = free_port()
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.requests: list[dict[str, Any]] = []
        self.attempts = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.attempts += 1
                    fail = outer.attempts <= outer.fail_first
                    if not fail:
                        outer.requests.append(
                            {"path": self.path, "headers": dict(self.headers), "body": body}
                        )
                code = outer.fail_status if fail else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, n: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"receiver got {len(self.requests)} requests, wanted {n}")


def make_explanation(
    incident: str = "inc-1", version: int = 1, node: str = "api", cause: str = "db"
) -> Explanation:
    series = f'latency{{service="{node}"}}'
    return Explanation(
        id=f"{incident}:{series}:{version}",
        incident_id=incident,
        version=version,
        target=Target(node=node, series=series),
        detected_at=1_700_000_000.0 + version,
        window=TimeWindow(start=1_699_999_700.0, end=1_700_000_000.0),
        severity=85.0,
        root_causes=[
            RootCause(node=cause, series=f'latency{{service="{cause}"}}', score=0.9, share=0.7),
            RootCause(node=node, series=series, score=0.3, share=0.3),
        ],
        graph_version=2,
    )


@pytest.fixture
def client(redis_server: Any) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_server.url)
    yield c
    c.close()


def dispatcher(
    client: redis.Redis, uid: str, hooks: list[WebhookSettings], **settings: Any
) -> WebhookDispatcher:
    ps = PublishSettings(
        webhook_backoff_base_s=1.0, webhook_backoff_cap_s=60.0, webhook_timeout_s=2.0, **settings
    )
    outbox = WebhookOutbox(client, f"cwtest:{uid}:")
    return WebhookDispatcher(outbox, hooks, ps, rng=random.Random(7))


def test_generic_delivery_is_signed_and_removed_from_outbox(client, uid):
    with Receiver() as rx:
        d = dispatcher(client, uid, [WebhookSettings(url=rx.url, secret=SECRET)])
        try:
            expl = make_explanation()
            assert d.enqueue([expl]) == 1
            assert d.outbox_size() == 1
            assert d.deliver_due(time.time()) == {"delivered": 1}
            (req,) = rx.wait_for(1)
            assert explanation_from_json(req["body"]) == expl
            h = req["headers"]
            assert h["Content-Type"] == "application/json"
            assert h["X-Causalwatch-Event"] == "explanation"
            assert verify_signature(
                SECRET,
                req["body"],
                h["X-Causalwatch-Timestamp"],
                h["X-Causalwatch-Signature"],
                now=time.time(),
                tolerance_s=300,
            )
            assert not verify_signature(
                "wrong",
                req["body"],
                h["X-Causalwatch-Timestamp"],
                h["X-Causalwatch-Signature"],
                now=time.time(),
                tolerance_s=300,
            )
            assert not verify_signature(
                SECRET,
                req["body"] + b" ",
                h["X-Causalwatch-Timestamp"],
                h["X-Causalwatch-Signature"],
                now=time.time(),
                tolerance_s=300,
            )
            assert d.outbox_size() == 0
            assert d.counters() == {("generic", "delivered"): 1}
        finally:
            d.close()


def test_dedupe_by_incident_target_version_url(client, uid):
    with Receiver() as rx:
        d = dispatcher(client, uid, [WebhookSettings(url=rx.url)])
        try:
            e1 = make_explanation(version=1)
            assert d.enqueue([e1, e1]) == 1  # same batch
            assert d.enqueue([e1]) == 0  # still pending
            d.deliver_due(time.time())
            assert d.enqueue([e1]) == 0  # already delivered
            assert d.enqueue([make_explanation(version=2)]) == 1  # an update is new
            d.deliver_due(time.time())
            reqs = rx.wait_for(2)
            assert [json.loads(r["body"])["version"] for r in reqs] == [1, 2]
            assert d.counters()[("generic", "duplicate")] == 3
            assert "X-Causalwatch-Signature" not in reqs[0]["headers"]  # no secret configured
        finally:
            d.close()


def test_retries_with_backoff_until_receiver_recovers(client, uid):
    with Receiver(fail_first=2, fail_status=503) as rx:
        d = dispatcher(client, uid, [WebhookSettings(url=rx.url, secret=SECRET)])
        try:
            d.enqueue([make_explanation()], now=1000.0)
            assert d.deliver_due(1000.0) == {"retry": 1}
            due = client.zscore(d.outbox.k_due, client.zrange(d.outbox.k_due, 0, 0)[0])
            assert 1000.0 <= due <= 1001.0  # full jitter within base * 2**0 = 1 s
            assert d.deliver_due(1000.0) == {}  # not due yet unless jitter gave 0
            assert d.deliver_due(1002.0) == {"retry": 1}
            entry = json.loads(next(iter(client.hgetall(d.outbox.k_outbox).values())))
            assert entry["attempts"] == 2 and entry["last_error"].startswith("HTTP 503")
            assert d.deliver_due(1010.0) == {"delivered": 1}
            (req,) = rx.wait_for(1)
            assert req["headers"]["X-Causalwatch-Attempt"] == "3"
            assert rx.attempts == 3
            assert d.outbox_size() == 0
            c = d.counters()
            assert c[("generic", "retry")] == 2 and c[("generic", "delivered")] == 1
        finally:
            d.close()


def test_receiver_down_then_dead_after_max_attempts_and_requeue(client, uid):
    port = free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}/hook"
    d = dispatcher(client, uid, [WebhookSettings(url=url)], webhook_max_attempts=3)
    try:
        d.enqueue([make_explanation()], now=0.0)
        outcomes = [d.deliver_due(t) for t in (0.0, 100.0, 200.0)]
        assert outcomes == [{"retry": 1}, {"retry": 1}, {"dead": 1}]
        assert d.outbox_size() == 0
        (dead,) = d.dead_entries()
        assert dead["attempts"] == 3 and "ConnectError" in dead["last_error"]
        assert d.enqueue([make_explanation()]) == 0  # dead entries still de-duplicate
        with Receiver() as rx:
            # the receiver comes back on another port: point a new config at it and requeue
            d.close()
            d = dispatcher(client, uid, [WebhookSettings(url=url), WebhookSettings(url=rx.url)])
            assert d.requeue_dead(dead["id"], now=300.0)
            assert d.outbox_size() == 1
    finally:
        d.close()


def test_non_retryable_4xx_goes_dead_at_once(client, uid):
    with Receiver(fail_first=100, fail_status=400) as rx:
        d = dispatcher(client, uid, [WebhookSettings(url=rx.url)])
        try:
            d.enqueue([make_explanation()])
            assert d.deliver_due(time.time()) == {"dead": 1}
            assert d.dead_entries()[0]["last_error"].startswith("HTTP 400")
        finally:
            d.close()


def test_restart_delivers_what_was_pending(client, uid):
    with Receiver(fail_first=1) as rx:
        hooks = [WebhookSettings(url=rx.url, secret=SECRET)]
        d1 = dispatcher(client, uid, hooks)
        d1.enqueue([make_explanation(version=1), make_explanation(version=2)], now=50.0)
        assert sum(d1.deliver_due(50.0).values()) == 2  # first fails, second delivered
        d1.close()  # "crash": the failed entry stays in Redis
        d2 = dispatcher(client, uid, hooks)
        try:
            assert d2.outbox_size() == 1
            d2.start()
            reqs = rx.wait_for(2)
            assert sorted(json.loads(r["body"])["version"] for r in reqs) == [1, 2]
            deadline = time.monotonic() + 5
            while d2.outbox_size() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert d2.outbox_size() == 0
        finally:
            d2.close()


def test_claimed_entry_is_retried_after_lease_when_a_dispatcher_dies(client, uid):
    with Receiver() as rx:
        d = dispatcher(client, uid, [WebhookSettings(url=rx.url)])
        try:
            d.enqueue([make_explanation()], now=10.0)
            # claim without delivering, as a process that died right after claiming would
            claimed = d.outbox.claim(10.0, 10, lease_until=10.0 + 9.0)
            assert len(claimed) == 1
            assert d.deliver_due(15.0) == {}  # leased
            assert d.deliver_due(20.0) == {"delivered": 1}
            assert len(rx.wait_for(1)) == 1
        finally:
            d.close()


def test_slack_and_alertmanager_bodies(client, uid):
    with Receiver() as slack, Receiver() as am:
        hooks = [
            WebhookSettings(url=slack.url, kind="slack"),
            WebhookSettings(url=am.url, kind="alertmanager"),
        ]
        d = dispatcher(client, uid, hooks)
        try:
            d.enqueue([make_explanation(cause="db")])
            assert d.deliver_due(time.time()) == {"delivered": 2}
            body = json.loads(slack.wait_for(1)[0]["body"])
            assert "db" in body["text"] and body["blocks"][0]["type"] == "section"
            alerts = json.loads(am.wait_for(1)[0]["body"])
            assert isinstance(alerts, list) and len(alerts) == 1
            a = alerts[0]
            assert a["labels"]["alertname"] == "CausalwatchAnomaly"
            assert a["labels"]["node"] == "api" and a["labels"]["severity"] == "critical"
            assert a["annotations"]["root_cause"] == "db"
            assert a["startsAt"].endswith("Z")
            assert set(a) <= {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
            assert d.counters() == {("slack", "delivered"): 1, ("alertmanager", "delivered"): 1}
        finally:
            d.close()


def test_enriched_alert_bodies_keep_the_alert_and_add_the_explanation():
    alert = {
        "status": "firing",
        "labels": {"alertname": "HighLatency", "service": "api", "severity": "page"},
        "annotations": {"summary": "p99 high"},
        "startsAt": "2026-11-26T06:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "abc",
    }
    ev = AlertEvent(alert=alert, explanation=make_explanation(cause="db"), receiver="cw")
    generic = json.loads(render_body("generic", ev))
    assert generic["alert"] == alert and generic["explanation"]["root_causes"][0]["node"] == "db"
    (am,) = json.loads(render_body("alertmanager", ev))
    assert am["labels"] == alert["labels"]
    assert am["annotations"]["summary"] == "p99 high"
    assert am["annotations"]["causalwatch_root_cause"] == "db"
    assert "endsAt" not in am  # Alertmanager's zero time is not forwarded
    slack = json.loads(render_body("slack", AlertEvent(alert=alert, error="unknown series")))
    assert "HighLatency" in slack["text"] and "unknown series" in json.dumps(slack["blocks"])


def test_resolved_alert_slack_body_has_no_error_line():
    alert = {"status": "resolved", "labels": {"alertname": "HighLatency"}, "fingerprint": "f"}
    body = json.loads(render_body("slack", AlertEvent(alert=alert)))
    assert "resolved" in body["text"] and "None" not in json.dumps(body)


def test_dead_entries_are_bounded_oldest_dropped(client, uid):
    with Receiver(fail_first=100, fail_status=410) as rx:
        d = dispatcher(client, uid, [WebhookSettings(url=rx.url)], webhook_dead_max=2)
        try:
            for v, t in ((1, 10.0), (2, 20.0), (3, 30.0)):
                d.enqueue([make_explanation(version=v)], now=t)
                assert d.deliver_due(t) == {"dead": 1}
            dead = d.dead_entries()
            assert [json.loads(e["body"])["version"] for e in dead] == [2, 3]
            assert client.zcard(d.outbox.k_dead_ts) == 2
            assert d.requeue_dead(dead[0]["id"], now=40.0)
            assert client.zcard(d.outbox.k_dead_ts) == 1 and d.outbox_size() == 1
        finally:
            d.close()


def test_bodies_state_the_verdict_shares_unexplained_and_opposing() -> None:
    expl = dataclasses.replace(
        make_explanation(),
        root_causes=[
            RootCause(node="db", series='latency{service="db"}', score=0.9, share=0.6),
            RootCause(node="api", series='latency{service="api"}', score=0.3, share=0.3),
        ],
        verdict="root_cause",
        unexplained=0.1,
        opposing=[Opposing(node="cache", series='latency{service="cache"}', share=0.2)],
    )
    slack = json.loads(render_body("slack", expl))
    lines = slack["blocks"][1]["text"]["text"]
    assert "root cause db" in slack["text"] and "inconclusive" not in slack["text"]
    assert "explains 60% of the deviation" in lines and "unexplained: 10%" in lines
    assert "pulled the other way: cache (20%)" in lines
    (am,) = json.loads(render_body("alertmanager", expl))
    assert am["annotations"]["verdict"] == "root_cause"
    vague = dataclasses.replace(expl, verdict="inconclusive")
    assert "inconclusive, best candidate db" in json.loads(render_body("slack", vague))["text"]
    assert explanation_from_json(render_body("generic", expl)) == expl
