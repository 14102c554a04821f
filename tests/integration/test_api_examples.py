"""The README's "Receive webhooks" and "Use the API" sections, run as written.

``README_SECTIONS`` below is the text handed to the README (``.notes/api_readme.md`` is
written from it). The tests run every ``bash`` block in one shell against a live server
(real Redis, the real explainer), load the ``yaml`` blocks with the settings model, and run
the ``python`` receiver snippet on a real signed delivery. When README.md carries the
sections, a test checks that its code blocks are still exactly these.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from causalwatch.publish.webhooks import WebhookDispatcher
from causalwatch.settings import WebhookSettings, load_settings
from causalwatch.store.outbox import WebhookOutbox
from tests.integration.test_api_live import LiveServer
from tests.unit.publish.test_api import STEP_S, TOKEN, build_explainer, make_stack
from tests.unit.publish.test_webhooks import Receiver, make_explanation

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

README_SECTIONS = r"""
## Receive webhooks

causalwatch POSTs every new or updated incident explanation to each configured URL, and
forwards alerts that Alertmanager sent it, enriched with an explanation (see *Use the API*).
Configure receivers in the YAML file (`--config` / `CAUSALWATCH_CONFIG`) or as JSON in
`CAUSALWATCH_PUBLISH__WEBHOOKS`:

```yaml
publish:
  webhooks:
    - url: https://hooks.example.com/causalwatch     # generic: the explanation JSON
      kind: generic
      secret: change-me-too                          # signs each body (HMAC-SHA256)
    - url: https://hooks.slack.com/services/T000/B000/XXXX
      kind: slack                                    # Slack incoming webhook: text + blocks
    - url: http://alertmanager:9093/api/v2/alerts
      kind: alertmanager                             # a list of alerts for Alertmanager's API
  webhook_give_up_s: 86400        # retried for a day, then kept as dead for inspection
  webhook_backoff_base_s: 1.0     # exponential backoff with full jitter ...
  webhook_backoff_cap_s: 300.0    # ... capped at 5 minutes
  webhook_dead_max: 10000         # dead deliveries kept for inspection, oldest dropped
```

Bodies by `kind`:

- `generic`: the explanation JSON itself (`id`, `incident_id`, `version`, `target`,
  `detected_at`, `window`, `severity`, `root_causes`, `graph_version`). A forwarded alert is
  `{"type": "alert", "alert": {...}, "explanation": {...} | null, "explain_error": ...}`.
- `slack`: `{"text": ..., "blocks": [...]}` with the likely root cause and the ranking.
- `alertmanager`: a JSON list with one alert, the body of Alertmanager's
  `POST /api/v2/alerts`, so Alertmanager routes, groups, silences and inhibits causalwatch's
  findings like any other alert. **One alert per incident**: labels
  `alertname="CausalwatchIncident"`, `source`, `incident_id` and `severity` (`critical` ≥ 80,
  `warning` ≥ 50, else `info`, as when the incident was paged), so every update of the
  incident, on any of its series and nodes, updates the same alert;
  annotations: `summary`, `description` (the ranking), `node`, `series`, `page` (`page` or
  `update`), `severity_now`, `root_cause`, `root_cause_score`, `root_cause_share`,
  `explanation_id`. `deploy/alertmanager/alertmanager.yml` groups them by `incident_id`: one
  notification per incident. `endsAt` is not set: Alertmanager resolves the alert after its
  `resolve_timeout` unless a newer explanation arrives.

**Pages are incidents.** The first explanation of a new incident is its *page*; every later
one (another series or node of the incident, a changed ranking) is an *update*, until the
incident closes (no alert for `explainer.incident_window_points` steps).
`causalwatch_explainer_pages_total{kind="page"|"update"}` counts them.

Every request carries `Content-Type: application/json`, `X-Causalwatch-Event`
(`page` or `update` for explanations, `alert` for a forwarded alert),
`X-Causalwatch-Delivery` (stable per incident, target, version and URL: use it to drop
repeats), `X-Causalwatch-Attempt`, `X-Causalwatch-Timestamp` (unix
seconds) and, when the receiver has a `secret`,
`X-Causalwatch-Signature: sha256=<hex>`: HMAC-SHA256 of `<timestamp>.<raw body>`. Verify it
on the raw bytes before parsing, and reject old timestamps to stop replays:

```python
import hashlib
import hmac
import time


def verify(secret: str, body: bytes, headers: dict[str, str], tolerance_s: float = 300) -> bool:
    timestamp = headers["X-Causalwatch-Timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance_s:
        return False
    expected = (
        "sha256="
        + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    )
    return hmac.compare_digest(expected, headers["X-Causalwatch-Signature"])
```

Delivery is at least once and survives restarts and receiver outages: each delivery is
written to a Redis outbox (`causalwatch:webhooks:*`) before it is sent and removed only
after a 2xx answer. Connection errors, timeouts, 408, 425, 429 (honouring `Retry-After`) and
5xx are retried; other answers, and the last attempt, move the delivery to
`causalwatch:webhooks:dead`. The metrics `causalwatch_webhook_deliveries_total{kind,outcome}`
(`delivered`, `retry`, `dead`, `duplicate`) and `causalwatch_webhook_outbox_size` show how
it goes.

## Use the API

The API listens on `api.host:api.port` (`CAUSALWATCH_API__PORT`, 8080 by default). When
`api.token` is set, every call but `/healthz` and `/readyz` needs
`Authorization: Bearer <token>`; the OpenAPI schema is at `/openapi.json`. Errors come back
as 4xx with `{"detail": ...}` naming the problem (503 when Redis is unreachable).

```bash
export CW_URL=http://127.0.0.1:8080
export CW_TOKEN=change-me
```

Health and readiness (no token):

```bash
curl -fsS "$CW_URL/healthz"
curl -fsS "$CW_URL/readyz"
```

Open incidents of one node (filters: `node`, `status` = `open|closed|false_positive`,
`since`/`until` in unix seconds, `limit`), then one incident and its latest explanation per
target series:

```bash
curl -fsS -H "Authorization: Bearer $CW_TOKEN" "$CW_URL/api/v1/incidents?status=open&node=api"
INCIDENT=$(curl -fsS -H "Authorization: Bearer $CW_TOKEN" "$CW_URL/api/v1/incidents?limit=1" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["incidents"][0]["incident_id"])')
curl -fsS -H "Authorization: Bearer $CW_TOKEN" "$CW_URL/api/v1/incidents/$INCIDENT"
curl -fsS -H "Authorization: Bearer $CW_TOKEN" "$CW_URL/api/v1/incidents/$INCIDENT/explanations"
```

The latest explanation of a node, and the newest explanations of all nodes:

```bash
curl -fsS -H "Authorization: Bearer $CW_TOKEN" "$CW_URL/api/v1/explanations/latest/api"
curl -fsS -H "Authorization: Bearer $CW_TOKEN" "$CW_URL/api/v1/explanations?limit=10"
```

Explain a node now, on demand (optional: `"series"` for one series key, `"at"` in unix
seconds); 404 names an unknown node or series, or a time without data:

```bash
curl -fsS -X POST -H "Authorization: Bearer $CW_TOKEN" -H "Content-Type: application/json" \
  -d '{"node": "web"}' "$CW_URL/api/v1/explain"
```

The dependency graph is versioned. `GET` returns it with `ETag: "<version>"`; `PUT` replaces
it and `PATCH` adds/removes edges; send the version you read as `If-Match` (or `"version"`
in the body) and a concurrent change gets 409 instead of being overwritten. A cycle or a
bad edge gets 422 naming it:

```bash
curl -fsS -H "Authorization: Bearer $CW_TOKEN" "$CW_URL/api/v1/graph"
curl -fsS -X PUT -H "Authorization: Bearer $CW_TOKEN" -H "Content-Type: application/json" \
  -d '{"edges": [{"cause": "db", "effect": "api"}, {"cause": "api", "effect": "web"}]}' \
  "$CW_URL/api/v1/graph"
VERSION=$(curl -fsS -H "Authorization: Bearer $CW_TOKEN" "$CW_URL/api/v1/graph" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')
curl -fsS -X PATCH -H "Authorization: Bearer $CW_TOKEN" -H "Content-Type: application/json" \
  -H "If-Match: \"$VERSION\"" \
  -d '{"add": [{"cause": "cache", "effect": "api"}],
       "remove": [{"cause": "api", "effect": "web"}]}' \
  "$CW_URL/api/v1/graph"
```

Feedback. Mark an incident a false positive (the detector becomes less sensitive on its
series); mute a label set (`"__name__"` matches the metric name) or one series (`"series"`)
for a duration or `"until"` a unix time; list and delete mutes:

```bash
curl -fsS -X POST -H "Authorization: Bearer $CW_TOKEN" -H "Content-Type: application/json" \
  -d '{"reason": "planned load test"}' "$CW_URL/api/v1/incidents/$INCIDENT/false-positive"
MUTE=$(curl -fsS -X POST -H "Authorization: Bearer $CW_TOKEN" -H "Content-Type: application/json" \
  -d '{"matchers": {"service": "db"}, "duration_s": 3600, "reason": "maintenance"}' \
  "$CW_URL/api/v1/mutes" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
curl -fsS -X POST -H "Authorization: Bearer $CW_TOKEN" -H "Content-Type: application/json" \
  -d '{"series": "latency{service=\"api\"}", "duration_s": 600}' "$CW_URL/api/v1/mutes"
curl -fsS -H "Authorization: Bearer $CW_TOKEN" "$CW_URL/api/v1/mutes"
curl -fsS -X DELETE -H "Authorization: Bearer $CW_TOKEN" "$CW_URL/api/v1/mutes/$MUTE"
```

Enrich any Prometheus alert: point an Alertmanager receiver at causalwatch. It answers 202
at once (503 when its queue is full; Alertmanager retries), explains the alert's series
(its labels minus `alertname`/`severity`; node from the `service` label) from `startsAt` to now, and
forwards the enriched alert to the webhooks above:

```yaml
receivers:
  - name: causalwatch
    webhook_configs:
      - url: http://causalwatch:8080/api/v1/alertmanager
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: change-me
```

What Alertmanager sends, by hand:

```bash
curl -fsS -X POST -H "Authorization: Bearer $CW_TOKEN" -H "Content-Type: application/json" \
  -d '{"version": "4", "status": "firing", "receiver": "causalwatch", "groupKey": "{}:{}",
       "alerts": [{"status": "firing", "labels": {"alertname": "HighLatency", "service": "web"},
                   "annotations": {"summary": "p99 latency above 1s"},
                   "startsAt": "'"$(date -u +%Y-%m-%dT%H:%M:%SZ)"'", "fingerprint": "1f2e3d"}]}' \
  "$CW_URL/api/v1/alertmanager"
```

Outgoing deliveries: the outbox size, dead deliveries and counts by kind and outcome, the
dead ones with their last error, and a retry of one (by its `id`) once the receiver is fixed:

```bash
curl -fsS -H "Authorization: Bearer $CW_TOKEN" "$CW_URL/api/v1/webhooks"
curl -fsS -H "Authorization: Bearer $CW_TOKEN" "$CW_URL/api/v1/webhooks/dead"
DEAD=$(curl -fsS -H "Authorization: Bearer $CW_TOKEN" "$CW_URL/api/v1/webhooks/dead" \
  | python3 -c 'import json, sys; print(" ".join(d["id"] for d in json.load(sys.stdin)["dead"]))')
for id in $DEAD; do
  curl -fsS -X POST -H "Authorization: Bearer $CW_TOKEN" "$CW_URL/api/v1/webhooks/dead/$id/retry"
done
```
"""


def blocks(markdown: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", markdown, flags=re.S)


def test_bash_examples_run_against_a_live_server(redis_server: Any, uid: str) -> None:
    now = time.time()
    n_points = 200
    explain = build_explainer(t0=now - STEP_S * (n_points - 1))
    with Receiver() as rx, Receiver(fail_first=1, fail_status=400) as bad:
        hooks = [WebhookSettings(url=rx.url), WebhookSettings(url=bad.url)]
        stack = make_stack(redis_server.url, uid, hooks)
        assert stack.dispatcher is not None
        exp = make_explanation("inc-42", node="api", cause="db")
        stack.store.publish([exp])
        stack.dispatcher.enqueue([exp])
        assert stack.dispatcher.deliver_due() == {"delivered": 1, "dead": 1}  # `bad` said 400
        stack.dispatcher.start()
        try:
            with LiveServer(stack.app(token=TOKEN, explain=explain)) as srv:
                bash = [b for b in blocks(README_SECTIONS, "bash") if "export CW_URL" not in b]
                script = "".join(f"echo '@@block {i}'\n{b}\necho\n" for i, b in enumerate(bash))
                path = os.pathsep.join([str(Path(sys.executable).parent), os.defpath])
                env = {"PATH": path, "CW_URL": srv.url, "CW_TOKEN": TOKEN}
                proc = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", script],
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=60,
                )
                assert proc.returncode == 0, proc.stdout + proc.stderr
                out = proc.stdout.split("@@block ")[1:]
                by_block = {int(o.split("\n", 1)[0]): o.split("\n", 1)[1] for o in out}
                assert len(by_block) == len(bash)
                assert '{"status":"ok"}' in by_block[0] and '{"ready":true}' in by_block[0]
                assert '"incident_id":"inc-42"' in by_block[1]
                assert '"explanations":[{' in by_block[1]
                assert '"target":{"node":"api"' in by_block[2]
                explained = json.loads(by_block[3].strip())
                assert explained["target"]["node"] == "web"
                assert explained["root_causes"][0]["node"] == "db"
                assert '"cause":"cache"' in by_block[4] and stack.graph.version() == 2
                assert [e.effect for e in stack.graph.get().edges] == ["api", "api"]
                assert '"incident_id":"inc-42"' in by_block[5]
                assert stack.store.get_incident("inc-42")["status"] == "false_positive"
                mutes = stack.feedback.active_mutes(time.time())
                assert [m.matchers for m in mutes] == [{"__name__": "latency", "service": "api"}]
                assert '{"accepted":1}' in by_block[6]
                body = json.loads(rx.wait_for(2)[-1]["body"])
                assert body["alert"]["fingerprint"] == "1f2e3d"
                assert body["explanation"]["root_causes"][0]["node"] == "db"
                assert '"outbox_size":' in by_block[7] and '"dead":[{' in by_block[7]
                assert '{"accepted":1}' in by_block[7]  # the dead delivery was retried ...
                got = [json.loads(q["body"]) for q in bad.wait_for(2)]  # the alert + the retry
                assert any(g.get("incident_id") == "inc-42" for g in got)
        finally:
            stack.dispatcher.close()
            stack.client.close()


def test_yaml_examples_are_valid(tmp_path: Path) -> None:
    cw_yaml, am_yaml = blocks(README_SECTIONS, "yaml")
    cfg = tmp_path / "causalwatch.yaml"
    cfg.write_text(cw_yaml)
    settings = load_settings(cfg)
    assert [w.kind for w in settings.publish.webhooks] == ["generic", "slack", "alertmanager"]
    assert settings.publish.webhooks[0].secret == "change-me-too"
    am = yaml.safe_load(am_yaml)
    hook = am["receivers"][0]["webhook_configs"][0]
    assert hook["url"].endswith("/api/v1/alertmanager")
    assert hook["http_config"]["authorization"]["type"] == "Bearer"


def test_python_receiver_snippet_verifies_a_real_delivery(redis_server: Any, uid: str) -> None:
    (snippet,) = blocks(README_SECTIONS, "python")
    ns: dict[str, Any] = {}
    exec(compile(snippet, "README receiver snippet", "exec"), ns)
    verify = ns["verify"]
    client = __import__("redis").Redis.from_url(redis_server.url)
    with Receiver() as rx:
        hooks = [WebhookSettings(url=rx.url, secret="change-me-too")]
        d = WebhookDispatcher(WebhookOutbox(client, f"cwtest:{uid}:"), hooks)
        try:
            d.enqueue([make_explanation()])
            d.deliver_due()
            (req,) = rx.wait_for(1)
        finally:
            d.close()
            client.close()
    assert verify("change-me-too", req["body"], req["headers"]) is True
    assert verify("wrong-secret", req["body"], req["headers"]) is False
    assert verify("change-me-too", req["body"] + b"x", req["headers"]) is False


def test_readme_carries_these_examples() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text() if readme.is_file() else ""
    if "## Use the API" not in text:
        pytest.skip("README.md has no 'Use the API' section yet")
    for lang in ("bash", "yaml", "python"):
        for block in blocks(README_SECTIONS, lang):
            assert block in text, f"README.md lacks this {lang} example:\n{block}"
