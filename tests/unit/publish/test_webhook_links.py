"""Webhook bodies link the incident page when ``api.external_url`` is set."""

from __future__ import annotations

import json
import time
from typing import Any

from causalwatch.publish.webhooks import AlertEvent, WebhookDispatcher, render_body
from causalwatch.settings import PublishSettings, WebhookSettings
from causalwatch.store.outbox import WebhookOutbox
from tests.unit.publish.test_webhooks import Receiver, client, make_explanation  # noqa: F401

BASE = "https://cw.example.com/ops"


def test_explanation_bodies_link_the_incident_page() -> None:
    exp = make_explanation("inc 7/x", cause="db")
    url = "https://cw.example.com/ops/incidents/inc%207%2Fx"
    generic = json.loads(render_body("generic", exp, page_base_url=BASE))
    assert generic["incident_url"] == url and generic["id"] == exp.id
    slack = json.loads(render_body("slack", exp, page_base_url=BASE + "/"))
    assert f"<{url}|open the incident page>" in json.dumps(slack["blocks"])
    (alert,) = json.loads(render_body("alertmanager", exp, page_base_url=BASE))
    assert alert["annotations"]["incident_url"] == url
    # without a base URL the bodies are as before
    assert "incident_url" not in json.loads(render_body("generic", exp))
    assert "incident page" not in render_body("slack", exp).decode()


def test_enriched_alerts_link_the_list_filtered_by_node() -> None:
    alert = {"status": "firing", "labels": {"alertname": "Hi", "service": "api"}}
    ev = AlertEvent(alert=alert, explanation=make_explanation(node="api"))
    (am,) = json.loads(render_body("alertmanager", ev, page_base_url=BASE))
    assert am["annotations"]["causalwatch_incident_url"] == f"{BASE}/?node=api"
    assert (
        json.loads(render_body("generic", ev, page_base_url=BASE))["incident_url"]
        == f"{BASE}/?node=api"
    )


def test_dispatcher_puts_the_link_in_what_it_delivers(client: Any, uid: str) -> None:  # noqa: F811
    with Receiver() as rx:
        d = WebhookDispatcher(
            WebhookOutbox(client, f"cwlinks:{uid}:"),
            [WebhookSettings(url=rx.url)],
            PublishSettings(),
            page_base_url=BASE,
        )
        try:
            d.enqueue([make_explanation("inc-9")])
            assert d.deliver_due(time.time()) == {"delivered": 1}
            body = json.loads(rx.wait_for(1)[0]["body"])
            assert body["incident_url"] == f"{BASE}/incidents/inc-9"
        finally:
            d.close()
