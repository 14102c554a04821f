"""Outgoing webhooks: render, sign and POST events through a Redis-backed outbox (adapter).

Why an outbox: a receiver can be down for minutes and this process can restart at any time.
:meth:`WebhookDispatcher.enqueue` writes one entry per (event, configured URL) to the outbox
(:class:`causalwatch.store.outbox.WebhookOutbox`, which documents the Redis layout) *before*
anything is sent; :meth:`WebhookDispatcher.deliver_due` claims due entries, POSTs them with
one long-lived ``httpx.Client`` and removes an entry only once the receiver answered 2xx (or
it went dead). A crash mid-delivery leaves the entry claimed for a lease
(``2 * timeout + 5`` s), after which any dispatcher on the same Redis retries it. Delivery
is therefore at least once; receivers de-duplicate on ``X-Causalwatch-Delivery``.

The entry id hashes (incident_id, target series, version, url) for explanations and
(alert fingerprint, startsAt, status, url) for forwarded alerts, so publishing the same
explanation twice (a replay after a restart) sends it once; a delivered id is remembered for
``publish.webhook_dedupe_ttl_s`` and at most ``publish.webhook_dead_max`` dead entries are
kept.

Retries: connection errors, timeouts, 408, 425, 429 and 5xx are retried with exponential
backoff and full jitter, ``uniform(0, min(cap, base * 2**(attempt-1)))`` seconds, raised to
a numeric ``Retry-After`` when given; other answers (3xx, 4xx) put the entry in the dead
hash. Giving up is time-based: a retried entry goes dead once it is
``publish.webhook_give_up_s`` old (a day by default, so a receiver down for minutes or
hours loses nothing), or after ``publish.webhook_max_attempts`` when that is set. Entries
wait in the Redis outbox meanwhile. After a 2xx the entry's removal is retried while Redis
is away (the dispatcher holds it), so one answered delivery is not sent again by this
process. :func:`render_body` renders the kinds: ``generic`` (the
explanation JSON), ``slack`` (``text`` + ``blocks``) and ``alertmanager`` (a list of alerts
for Alertmanager's ``POST /api/v2/alerts``, so Alertmanager routes, silences and inhibits
causalwatch's findings like any alert; ``endsAt`` is left to Alertmanager's resolve_timeout).

Pages are incidents: the pipeline marks each explanation a ``page`` (the first one of an
incident once it pages, whichever of its series and nodes it is on) or an ``update``
(everything after, until the incident closes): ``pages`` in
:meth:`WebhookDispatcher.enqueue`, ``(kind, severity at the page)`` by explanation id. An
incident pages only once its alerts agree (:mod:`explainer.incidents`); the explanations
of a watching incident (kind ``watch``) are not enqueued here at all. The kind is the
``X-Causalwatch-Event`` header (``page`` / ``update``; ``explanation`` when not given),
Slack's text says "New incident" or "Update", and Alertmanager gets **one alert per
incident**: its labels are ``alertname="CausalwatchIncident"``, ``source``, ``incident_id``
and the severity of the page (fixed, so an update re-sends the same alert with new
annotations instead of opening another); node, series and the ranking are annotations.

Signature (Stripe-like): ``X-Causalwatch-Timestamp: <unix s>`` and
``X-Causalwatch-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``; see
:func:`verify_signature`. Signing the timestamp with the body lets receivers reject replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlencode

import httpx

from causalwatch.errors import BackendError
from causalwatch.models import Explanation
from causalwatch.schemas import explanation_dict, explanation_json
from causalwatch.settings import PublishSettings, WebhookSettings
from causalwatch.store.outbox import WebhookOutbox

__all__ = [
    "AlertEvent",
    "PageInfo",
    "WebhookDispatcher",
    "page_link",
    "render_body",
    "sign",
    "verify_signature",
]

log = logging.getLogger(__name__)

Kind = Literal["generic", "slack", "alertmanager"]
OUTCOMES = ("delivered", "retry", "dead", "duplicate")
_RETRY_STATUS = {408, 425, 429}
SIGNATURE_HEADER = "X-Causalwatch-Signature"
TIMESTAMP_HEADER = "X-Causalwatch-Timestamp"


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One alert received from Alertmanager (an item of a v4 payload's ``alerts``), with
    causalwatch's explanation of its series, or the reason there is none."""

    alert: dict[str, Any]
    explanation: Explanation | None = None
    error: str | None = None
    receiver: str | None = None
    group_key: str | None = None


Event = Explanation | AlertEvent

#: ``(kind, severity 0-100 when the incident was paged)``; kind is ``page`` or ``update``
PageInfo = tuple[str, float]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``b"<timestamp>." + body``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str, body: bytes, timestamp: str, signature: str, *, now: float, tolerance_s: float
) -> bool:
    """What a receiver does: constant-time compare and reject timestamps off by > tolerance."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


# ---------------------------------------------------------------- bodies (pure functions)


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def _severity_label(severity: float) -> str:
    return "critical" if severity >= 80 else "warning" if severity >= 50 else "info"


def _ranking(expl: Explanation, limit: int = 5) -> list[str]:
    lines = [
        f"{i + 1}. {rc.node}{' ' + rc.series if rc.series else ''}: score {rc.score:.2f},"
        f" explains {rc.share:.0%} of the deviation"
        for i, rc in enumerate(expl.root_causes[:limit])
    ]
    lines.append(f"unexplained: {expl.unexplained:.0%}")
    lines.extend(f"pulled the other way: {o.node} ({o.share:.0%})" for o in expl.opposing)
    return lines


def _summary(expl: Explanation) -> str:
    top = expl.root_causes[0] if expl.root_causes else None
    if top is None:
        cause = "no root cause"
    elif expl.verdict == "root_cause":
        cause = f"root cause {top.node} (score {top.score:.2f})"
    else:
        cause = f"inconclusive, best candidate {top.node} (score {top.score:.2f})"
    return f"Anomaly on {expl.target.node} ({expl.target.series}), severity " + (
        f"{expl.severity:.0f}: {cause}"
    )


def page_link(base_url: str | None, event: Event) -> str | None:
    """The incident page of a published explanation (``api.external_url``), or, for an
    enriched alert (explained on demand, so not a stored incident), the incident list
    filtered by its node; None without a base URL.

    >>> from causalwatch.models import Target, TimeWindow
    >>> e = Explanation(id="e", incident_id="i 1", target=Target(node="db", series="x"),
    ...     detected_at=0.0, window=TimeWindow(start=0.0, end=1.0), severity=1.0,
    ...     root_causes=[], graph_version=0)
    >>> page_link("https://cw.example.com/", e)
    'https://cw.example.com/incidents/i%201'
    """
    if not base_url:
        return None
    base = base_url.rstrip("/")
    if isinstance(event, Explanation):
        return f"{base}/incidents/{quote(event.incident_id, safe='')}"
    if event.explanation is not None:
        return f"{base}/?{urlencode({'node': event.explanation.target.node})}"
    return f"{base}/"


def _am_annotations(expl: Explanation, prefix: str = "", url: str | None = None) -> dict[str, str]:
    top = expl.root_causes[0] if expl.root_causes else None
    out = {
        f"{prefix}summary": _summary(expl),
        f"{prefix}description": "\n".join(_ranking(expl)),
        f"{prefix}explanation_id": expl.id,
        f"{prefix}incident_id": expl.incident_id,
        f"{prefix}verdict": expl.verdict,
    }
    if url is not None:
        out[f"{prefix}incident_url"] = url
    if top is not None:
        out[f"{prefix}root_cause"] = top.node
        out[f"{prefix}root_cause_score"] = f"{top.score:.3f}"
        out[f"{prefix}root_cause_share"] = f"{top.share:.3f}"
        if top.series:
            out[f"{prefix}root_cause_series"] = top.series
    return out


def _slack(text: str, lines: list[str], context: str) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    if lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": text, "blocks": blocks}


def _incident_alert(expl: Explanation, page: PageInfo, url: str | None) -> dict[str, Any]:
    """One Alertmanager alert per incident: the labels name the incident only."""
    annotations = _am_annotations(expl, url=url)
    annotations.update({"node": expl.target.node, "series": expl.target.series, "page": page[0]})
    annotations["severity_now"] = _severity_label(expl.severity)
    return {
        "labels": {
            "alertname": "CausalwatchIncident",
            "source": "causalwatch",
            "incident_id": expl.incident_id,
            "severity": _severity_label(page[1]),
        },
        "annotations": annotations,
        "startsAt": _rfc3339(expl.window.start),
    }


def render_body(
    kind: Kind, event: Event, page: PageInfo | None = None, page_base_url: str | None = None
) -> bytes:
    """The request body of one event for one receiver kind (UTF-8 JSON); ``page`` marks an
    explanation as its incident's page or an update (see the module docstring). With
    ``page_base_url`` (``api.external_url``) it links the incident page: ``incident_url``
    in generic bodies and Alertmanager annotations, a link in Slack's context line."""
    url = page_link(page_base_url, event)
    if isinstance(event, Explanation):
        expl = event
        if kind == "generic":
            if url is None:
                return explanation_json(expl).encode()
            return json.dumps({**explanation_dict(expl), "incident_url": url}).encode()
        if kind == "slack":
            ctx = f"incident `{expl.incident_id}` v{expl.version} · graph v{expl.graph_version}"
            if url is not None:
                ctx += f" · <{url}|open the incident page>"
            head = ":rotating_light: "
            if page is not None:
                head += "New incident: " if page[0] == "page" else "Update: "
            body = _slack(head + _summary(expl), _ranking(expl), ctx)
            return json.dumps(body).encode()
        if page is not None:
            return json.dumps([_incident_alert(expl, page, url)]).encode()
        alert = {
            "labels": {
                "alertname": "CausalwatchAnomaly",
                "source": "causalwatch",
                "incident_id": expl.incident_id,
                "node": expl.target.node,
                "series": expl.target.series,
                "severity": _severity_label(expl.severity),
            },
            "annotations": _am_annotations(expl, url=url),
            "startsAt": _rfc3339(expl.window.start),
        }
        return json.dumps([alert]).encode()
    ev = event
    if kind == "generic":
        return json.dumps(
            {
                "type": "alert",
                "receiver": ev.receiver,
                "groupKey": ev.group_key,
                "alert": ev.alert,
                "explanation": None if ev.explanation is None else explanation_dict(ev.explanation),
                "explain_error": ev.error,
                **({"incident_url": url} if url is not None else {}),
            }
        ).encode()
    labels = dict(ev.alert.get("labels") or {})
    if kind == "slack":
        name = labels.get("alertname", "alert")
        status = ev.alert.get("status", "firing")
        head = f":bell: {name} {status} ({', '.join(f'{k}={v}' for k, v in labels.items())})"
        if ev.explanation is not None:
            lines = [_summary(ev.explanation), *_ranking(ev.explanation)]
        elif ev.error:
            lines = [f"no causalwatch explanation: {ev.error}"]
        else:
            lines = []
        ctx = "enriched by causalwatch" + (f" · <{url}|open causalwatch>" if url else "")
        return json.dumps(_slack(head, lines, ctx)).encode()
    annotations = dict(ev.alert.get("annotations") or {})
    if ev.explanation is not None:
        annotations.update(_am_annotations(ev.explanation, prefix="causalwatch_", url=url))
    elif ev.error:
        annotations["causalwatch_error"] = ev.error
    out = {"labels": labels, "annotations": annotations}
    for k in ("startsAt", "endsAt", "generatorURL"):
        v = ev.alert.get(k)
        if v and not str(v).startswith("0001-01-01"):
            out[k] = v
    return json.dumps([out]).encode()


def _event_key(event: Event) -> tuple[str, str]:
    """(event type, dedupe key without the url)."""
    if isinstance(event, Explanation):
        t = event.target
        return "explanation", f"{event.incident_id}|{t.node}|{t.series}|{event.version}"
    a = event.alert
    ident = a.get("fingerprint") or json.dumps(a.get("labels") or {}, sort_keys=True)
    return "alert", f"{ident}|{a.get('startsAt')}|{a.get('status')}"


def _entry_id(key: str, url: str) -> str:
    return hashlib.blake2b(f"{key}|{url}".encode(), digest_size=12).hexdigest()


class WebhookDispatcher:
    """Enqueue events into the Redis outbox and deliver them to the configured webhooks.

    Parameters
    ----------
    outbox
        The durable outbox (:class:`~causalwatch.store.outbox.WebhookOutbox`).
    webhooks
        Receivers (``publish.webhooks``); the secret is looked up at send time, never stored.
    settings
        ``publish`` settings: timeout, attempts, backoff base/cap (seconds), batch size.
    http, rng, clock
        Injected for tests; defaults are one ``httpx.Client``, ``random.Random()`` and
        ``time.time``.
    page_base_url
        ``api.external_url``: bodies link the incident page; None: no links.
    """

    def __init__(
        self,
        outbox: WebhookOutbox,
        webhooks: Sequence[WebhookSettings],
        settings: PublishSettings | None = None,
        *,
        http: httpx.Client | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        page_base_url: str | None = None,
    ) -> None:
        self.outbox = outbox
        self.page_base_url = page_base_url
        self.webhooks = list(webhooks)
        self.settings = settings or PublishSettings()
        self._secrets = {w.url: w.secret for w in self.webhooks}
        self._kinds: dict[str, Kind] = {w.url: w.kind for w in self.webhooks}
        self._own_http = http is None
        self.http = http or httpx.Client(
            timeout=self.settings.webhook_timeout_s,
            headers={"User-Agent": "causalwatch-webhooks/1", "Content-Type": "application/json"},
        )
        self._rng = rng or random.Random()
        self._clock = clock
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self.settings.webhook_concurrency, "cw-webhook")
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_size = 0

    # ---------------------------------------------------------------- enqueue

    def enqueue(
        self,
        explanations: Sequence[Explanation],
        now: float | None = None,
        *,
        pages: Mapping[str, PageInfo] | None = None,
    ) -> int:
        """Durably add one outbox entry per (explanation, webhook); returns how many are new.
        ``pages``: explanation id -> (``page`` | ``update``, severity at the page)."""
        return self._enqueue_events(list(explanations), now, pages or {})

    def enqueue_alerts(self, events: Sequence[AlertEvent], now: float | None = None) -> int:
        """Same for enriched alerts from the incoming Alertmanager endpoint."""
        return self._enqueue_events(list(events), now)

    def _enqueue_events(
        self, events: list[Event], now: float | None, pages: Mapping[str, PageInfo] | None = None
    ) -> int:
        if not events or not self.webhooks:
            return 0
        t = self._clock() if now is None else now
        kinds: list[str] = []
        entries: list[dict[str, Any]] = []
        for ev in events:
            etype, key = _event_key(ev)
            page = pages.get(ev.id) if pages and isinstance(ev, Explanation) else None
            if page is not None:
                etype = page[0]
            for hook in self.webhooks:
                entries.append(
                    {
                        "id": _entry_id(key, hook.url),
                        "url": hook.url,
                        "kind": hook.kind,
                        "event": etype,
                        "key": key,
                        "body": render_body(hook.kind, ev, page, self.page_base_url).decode(),
                        "attempts": 0,
                        "created_at": t,
                        "last_error": None,
                    }
                )
                kinds.append(hook.kind)
        added = self.outbox.add(entries, due=t)
        n_new = 0
        with self._lock:
            for kind, ok in zip(kinds, added, strict=True):
                if ok:
                    n_new += 1
                else:
                    self._counts[(kind, "duplicate")] += 1
        if n_new:
            self._wake.set()
        return n_new

    # ---------------------------------------------------------------- deliver

    def deliver_due(self, now: float | None = None) -> dict[str, int]:
        """Claim the entries due at ``now`` (up to ``webhook_batch``), POST them, and record
        each outcome. Returns the outcome counts of this call."""
        t = self._clock() if now is None else now
        lease = t + 2 * self.settings.webhook_timeout_s + 5
        entries = self.outbox.claim(t, self.settings.webhook_batch, lease)
        outcomes = list(self._pool.map(lambda e: self._deliver_one(e, t), entries))
        return dict(Counter(outcomes))

    def _deliver_one(self, entry: dict[str, Any], now: float) -> str:
        url: str = entry["url"]
        kind: str = entry["kind"]
        entry["attempts"] = int(entry["attempts"]) + 1
        retry_after = 0.0
        if url not in self._kinds:
            outcome, error = "dead", f"url {url!r} is no longer in publish.webhooks"
        else:
            body = entry["body"].encode()
            ts = int(self._clock())
            headers = {
                "X-Causalwatch-Event": entry["event"],
                "X-Causalwatch-Delivery": entry["id"],
                "X-Causalwatch-Attempt": str(entry["attempts"]),
                TIMESTAMP_HEADER: str(ts),
            }
            secret = self._secrets.get(url)
            if secret:
                headers[SIGNATURE_HEADER] = sign(secret, ts, body)
            try:
                resp = self.http.post(url, content=body, headers=headers)
                code = resp.status_code
                error = f"HTTP {code}: {resp.text[:200]}"
                retry_after = _retry_after_s(resp.headers.get("Retry-After"))
                if 200 <= code < 300:
                    outcome = "delivered"
                elif code in _RETRY_STATUS or code >= 500:
                    outcome = "retry"
                else:
                    outcome = "dead"
            except httpx.HTTPError as exc:
                outcome, error = "retry", f"{type(exc).__name__}: {exc}"
        if outcome == "retry" and self._gives_up(entry, now):
            outcome = "dead"
        eid = entry["id"]
        if outcome == "delivered":
            self._until_stored(self.outbox.delivered, eid, self.settings.webhook_dedupe_ttl_s)
        elif outcome == "retry":
            entry["last_error"] = error
            cap = min(
                self.settings.webhook_backoff_cap_s,
                self.settings.webhook_backoff_base_s * 2 ** (entry["attempts"] - 1),
            )
            delay = max(
                self._rng.uniform(0, cap), min(retry_after, self.settings.webhook_backoff_cap_s)
            )
            self.outbox.retry_at(entry, now + delay)
        else:
            entry["last_error"] = error
            entry["dead_at"] = now
            self.outbox.dead(entry, now, self.settings.webhook_dead_max)
            log.warning(
                "webhook entry dead",
                extra={"url": url, "entry": eid, "attempts": entry["attempts"], "error": error},
            )
        with self._lock:
            self._counts[(kind, outcome)] += 1
        return outcome

    def _gives_up(self, entry: dict[str, Any], now: float) -> bool:
        cap = self.settings.webhook_max_attempts
        if cap is not None and int(entry["attempts"]) >= cap:
            return True
        created = float(entry.get("created_at") or now)
        return now - created >= self.settings.webhook_give_up_s

    def _until_stored(self, fn: Callable[..., None], *args: Any) -> None:
        """Record a delivery in Redis, retrying while Redis is away: the receiver answered,
        and forgetting that would send the entry again after its lease."""
        delay = 0.05
        while True:
            try:
                fn(*args)
                return
            except BackendError as exc:
                if not exc.retryable or self._stop.is_set():
                    raise
                log.info("recording a delivery failed; retrying", extra={"error": str(exc)})
                self._stop.wait(self._rng.uniform(0, delay))
                delay = min(1.0, delay * 2)

    # ---------------------------------------------------------------- inspection

    def counters(self) -> dict[tuple[str, str], int]:
        """``{(kind, outcome): n}`` since start: ``causalwatch_webhook_deliveries_total``."""
        with self._lock:
            return dict(self._counts)

    def outbox_size(self) -> int:
        """Entries waiting (pending or retrying): ``causalwatch_webhook_outbox_size``; the last
        size read while Redis does not answer (a metric must never stop the pipeline)."""
        try:
            self._last_size = self.outbox.size()
        except BackendError as exc:
            log.debug("outbox size unavailable", extra={"error": str(exc)})
        return self._last_size

    def dead_entries(self) -> list[dict[str, Any]]:
        return self.outbox.dead_entries()

    def requeue_dead(self, entry_id: str, now: float | None = None) -> bool:
        """Move a dead entry back into the outbox with a fresh attempt budget."""
        if not self.outbox.requeue_dead(entry_id, self._clock() if now is None else now):
            return False
        self._wake.set()
        return True

    # ---------------------------------------------------------------- background thread

    def run(self) -> None:
        """Deliver until :meth:`stop`; Redis outages are logged once per streak and retried."""
        failing = False
        while not self._stop.is_set():
            try:
                done = self.deliver_due()
                failing = False
            except BackendError as exc:
                if not failing:
                    log.warning("webhook outbox unavailable: %s", exc)
                failing = True
                done = {}
            if sum(done.values()) < self.settings.webhook_batch:
                self._wake.wait(self.settings.webhook_poll_interval_s)
                self._wake.clear()

    def start(self) -> WebhookDispatcher:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="cw-webhooks", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def close(self) -> None:
        self.stop()
        self._pool.shutdown(wait=True)
        if self._own_http:
            self.http.close()


def _retry_after_s(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        return 0.0
