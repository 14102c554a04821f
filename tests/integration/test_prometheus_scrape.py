"""A real Prometheus (the Debian binary) scrapes a running causalwatch and answers PromQL
about an anomaly this test caused.

The service runs as in production (``serve(settings, "all")``: Kafka in, Redis out, the
metrics endpoint on a port), fed through the real broker with one series that spikes and
one that stays calm. Prometheus scrapes it every second with deploy/prometheus's own rules
loaded, so the test also sees the recording rules and the per-node anomaly alert work on
the metrics the service really exports, not on hand-written series.

A second test adds Debian's Alertmanager running deploy/alertmanager's routes: an alert from
a user's rule travels Prometheus -> Alertmanager -> causalwatch's incoming webhook (bearer
token read from a file, as in compose) -> on-demand explanation -> the outgoing webhook,
while causalwatch's own anomaly alert stays on the `default` route.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
import yaml

from causalwatch.app.service import Service, serve
from causalwatch.settings import Settings, load_settings
from causalwatch.tooling.embedded import free_port
from ingest.kafka_sink import KafkaSink, ensure_topics

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "rules"
N_POINTS = 240
SPIKE_FROM = N_POINTS - 1  # the detector scores a new surprise; a held level fades


def _wait(pred: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


class _Server:
    """A child process with an HTTP readiness endpoint, stopped politely."""

    url: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.proc.args!r} exited with {self.proc.returncode}")
            try:
                return bool(urllib.request.urlopen(f"{self.url}/-/ready", timeout=1).status == 200)
            except OSError:
                return False

        _wait(ready, timeout_s, f"{self.url} to be ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


class Prometheus(_Server):
    """The prometheus binary on a free loopback port with its TSDB in a temp folder."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        target: str,
        *,
        extra_rules: Sequence[Path] = (),
        alertmanager: str | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(p) for p in [*sorted(RULES.glob("*.yml")), *extra_rules]],
            "scrape_configs": [
                {
                    "job_name": "causalwatch",
                    "static_configs": [{"targets": [target], "labels": {"service": "all"}}],
                }
            ],
        }
        if alertmanager is not None:
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]
            }
        cfg = workdir / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(config))
        self.log = (workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={cfg}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def api(self, path: str, **params: str) -> Any:
        qs = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{qs}", timeout=5) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])


@pytest.fixture
def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.skip(
            "prometheus is not installed: run deploy/ci-install.sh (apt-get install "
            "prometheus); .ci/run does this on CI"
        )
    return path


@pytest.fixture
def start_service(
    broker: Any, redis_server: Any, uid: str
) -> Iterator[Callable[..., tuple[Settings, Service]]]:
    """Start ``serve(settings, "all")`` on the test's broker and Redis; stopped at teardown."""
    running: list[tuple[threading.Event, Service]] = []

    def start(**overrides: Any) -> tuple[Settings, Service]:
        settings = _settings(broker, redis_server, uid, **overrides)
        stop = threading.Event()
        svc = serve(settings, "all", stop=stop, block=False)
        running.append((stop, svc))
        return settings, svc

    yield start
    for stop, svc in running:
        stop.set()
        for close in svc.closers:
            close()


def _settings(broker: Any, redis_server: Any, uid: str, **overrides: Any) -> Settings:
    return load_settings(
        kafka={
            "bootstrap_servers": broker.bootstrap,
            "group_id": f"g{uid}",
            "topics": [{"name": f"m{uid}", "format": "json"}],
            "session_timeout_ms": 6_000,
            "heartbeat_interval_ms": 1_000,
            "max_poll_interval_ms": 30_000,
            "samples_topic": f"s{uid}",
            "scores_topic": f"sc{uid}",
            "internal_partitions": 1,
        },
        redis={"url": redis_server.url, "prefix": f"cw{uid}:"},
        publish={"metrics_port": free_port(), **overrides.pop("publish", {})},
        api={"port": free_port(), **overrides.pop("api", {})},
        **overrides,
    )


def _samples(now: float) -> list[bytes]:
    """One JSON record per minute: checkout's latency spikes at the last point,
    search's stays calm. Seeded noise, timestamps ending now."""
    rng = np.random.default_rng(5)
    start = float(int(now // 60) * 60 - N_POINTS * 60)
    records = []
    for k in range(N_POINTS):
        t = start + 60.0 * k
        checkout = 100.0 + rng.normal(0, 2.0) + (400.0 if k >= SPIKE_FROM else 0.0)
        search = 50.0 + rng.normal(0, 1.0)
        samples = [
            {
                "name": "latency_ms",
                "labels": {"service": "checkout"},
                "timestamp": t,
                "value": checkout,
            },
            {
                "name": "latency_ms",
                "labels": {"service": "search"},
                "timestamp": t,
                "value": search,
            },
        ]
        records.append(json.dumps(samples).encode())
    return records


def _produce(broker: Any, settings: Settings) -> None:
    topic = settings.kafka.topics[0].name
    ensure_topics(broker.bootstrap, {topic: 1})
    sink = KafkaSink(settings.kafka)
    sink.write_batch(topic, [(None, value, []) for value in _samples(time.time())])
    sink.close()


def test_prometheus_scrapes_an_anomaly_score_the_test_caused(
    start_service: Callable[..., tuple[Settings, Service]],
    broker: Any,
    prometheus_binary: str,
    tmp_path: Path,
) -> None:
    settings, svc = start_service()
    _produce(broker, settings)

    target = svc.metrics_url.removeprefix("http://").removesuffix("/metrics")
    prom = Prometheus(prometheus_binary, tmp_path, target)
    try:
        prom.wait_ready()
        checkout = 'latency_ms{service="checkout"}'
        expr = f"causalwatch_detector_anomaly_score{{series={json.dumps(checkout)}}}"

        def spiked() -> list[dict[str, Any]]:
            got = prom.query(f"{expr} >= {settings.detector.alert_threshold}")
            return got

        (sample,) = _wait(spiked, 90, f"Prometheus to hold a high score for {checkout}")
        assert sample["metric"]["node"] == "checkout"
        assert sample["metric"]["job"] == "causalwatch"
        assert float(sample["value"][1]) >= settings.detector.alert_threshold

        # The calm series is scored too, and low.
        (calm,) = _wait(
            lambda: prom.query('causalwatch_detector_anomaly_score{node="search"}'),
            30,
            "a score for the calm series",
        )
        assert float(calm["value"][1]) < settings.detector.clear_threshold

        # The shipped recording rule and the per-node alert work on the real metrics.
        (node_max,) = _wait(
            lambda: prom.query('node:causalwatch_detector_node_score:max{node="checkout"}'),
            30,
            "the recording rule",
        )
        assert float(node_max["value"][1]) >= settings.detector.alert_threshold

        def firing() -> list[dict[str, Any]]:
            alerts = prom.api("alerts")["alerts"]
            return [
                a
                for a in alerts
                if a["labels"]["alertname"] == "CausalwatchNodeAnomaly" and a["state"] == "firing"
            ]

        (alert,) = _wait(firing, 30, "CausalwatchNodeAnomaly to fire")
        assert alert["labels"]["node"] == "checkout"
        assert alert["annotations"]["summary"].startswith("checkout is anomalous (score ")
        assert alert["annotations"]["root_cause"]  # a node, or "not explained yet"
        # Scrape health as Prometheus sees it.
        (up,) = prom.query('up{job="causalwatch"}')
        assert up["value"][1] == "1"
    finally:
        prom.stop()


def test_compose_healthchecks_pass_against_the_running_service(
    start_service: Callable[..., tuple[Settings, Service]],
) -> None:
    """docker-compose.yml's probes, run as written (only the host:port swapped for this
    test's), succeed against a live service: /metrics for every stage, /readyz for the API."""
    settings, svc = start_service()
    assert svc.api_url is not None
    compose = yaml.safe_load((DEPLOY.parent / "docker-compose.yml").read_text())["services"]
    checked = 0
    for name in ("ingest", "detector", "explainer"):
        test = compose[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], test
        url = urllib.parse.urlsplit(test[-1])
        live = svc.api_url if url.port == settings.api.port else svc.metrics_url
        live_url = urllib.parse.urlsplit(live)._replace(path=url.path).geturl()

        def probe(cmd: list[str] = test, target: str = live_url) -> bool:
            proc = subprocess.run(
                [sys.executable, *cmd[2:-1], target], capture_output=True, timeout=20
            )
            return proc.returncode == 0

        _wait(probe, 30, f"{name}'s healthcheck to pass against {live_url}")
        checked += 1
    assert checked == 3


class Alertmanager(_Server):
    """Debian's alertmanager on a free loopback port, running deploy/alertmanager's config
    with only what differs outside compose rewritten: the webhook's host and port, the token
    file's path, and a 1 s group_wait so the test need not wait 10 s."""

    def __init__(self, binary: str, workdir: Path, api_url: str, token: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
        token_file = workdir / "causalwatch-api-token"
        token_file.write_text(token)
        (enrich,) = [r for r in cfg["receivers"] if r["name"] == "causalwatch-enrich"]
        hook = enrich["webhook_configs"][0]
        path = urllib.parse.urlsplit(hook["url"]).path
        hook["url"] = f"{api_url}{path}"
        hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
        for route in cfg["route"]["routes"]:
            if route["receiver"] == "causalwatch-enrich":
                route["group_wait"] = "1s"
        path_cfg = workdir / "alertmanager.yml"
        path_cfg.write_text(yaml.safe_dump(cfg))
        self.log = (workdir / "alertmanager.log").open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={path_cfg}",
                f"--storage.path={workdir / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as resp:
            return list(json.load(resp))


class Receiver:
    """A plain HTTP server standing in for a user's webhook endpoint."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", 0))
                bodies.append(json.loads(self.rfile.read(n)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_alert_from_a_user_rule_comes_back_enriched_through_alertmanager(
    start_service: Callable[..., tuple[Settings, Service]],
    broker: Any,
    prometheus_binary: str,
    tmp_path: Path,
) -> None:
    """Prometheus rule -> Alertmanager (the shipped routes) -> causalwatch's incoming webhook
    with the bearer token from a file -> on-demand explanation -> the outgoing webhook."""
    am_binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if am_binary is None:
        pytest.skip("alertmanager is not installed: run deploy/ci-install.sh")
    receiver = Receiver()
    token = "integration-token"
    settings, svc = start_service(
        api={"token": token},
        publish={"webhooks": [{"url": receiver.url, "kind": "generic"}]},
    )
    assert svc.api_url is not None
    _produce(broker, settings)
    # A rule of "the user's own": any alert without source="causalwatch" is enriched.
    user_rules = tmp_path / "user.rules.yml"
    user_rules.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "user",
                        "rules": [
                            {
                                "alert": "CheckoutLatencyHigh",
                                "expr": 'max(causalwatch_detector_value{node="checkout"}) > 300',
                                # causalwatch finds the node in settings.ingest.node_label
                                "labels": {"severity": "page", "service": "checkout"},
                            }
                        ],
                    }
                ]
            }
        )
    )
    am = Alertmanager(am_binary, tmp_path, svc.api_url, token)
    target = svc.metrics_url.removeprefix("http://").removesuffix("/metrics")
    prom = Prometheus(
        prometheus_binary,
        tmp_path,
        target,
        extra_rules=[user_rules],
        alertmanager=f"127.0.0.1:{am.port}",
    )
    try:
        am.wait_ready()
        prom.wait_ready()

        def enriched() -> list[dict[str, Any]]:
            return [
                b
                for b in receiver.bodies
                if b.get("type") == "alert"
                and b["alert"]["labels"].get("alertname") == "CheckoutLatencyHigh"
            ]

        body = _wait(enriched, 90, "the enriched user alert at the outgoing webhook")[0]
        assert body["receiver"] == "causalwatch-enrich"
        assert body["alert"]["labels"]["service"] == "checkout"
        assert body["alert"]["status"] == "firing"
        # causalwatch explained the alerted node at the alert's start.
        assert body["explain_error"] is None, body
        explanation = body["explanation"]
        assert explanation["target"]["node"] == "checkout"
        assert explanation["root_causes"], explanation
        assert {"node", "score", "share"} <= set(explanation["root_causes"][0])

        # Our own anomaly alert reached Alertmanager too, routed to `default`, and was not
        # sent back to causalwatch (no enrichment loop).
        def ours() -> list[dict[str, Any]]:
            return [a for a in am.alerts() if a["labels"]["alertname"] == "CausalwatchNodeAnomaly"]

        (anomaly,) = _wait(ours, 30, "CausalwatchNodeAnomaly in Alertmanager")
        assert [r["name"] for r in anomaly["receivers"]] == ["default"]
        assert not [
            b
            for b in receiver.bodies
            if b.get("type") == "alert"
            and b["alert"]["labels"].get("alertname") == "CausalwatchNodeAnomaly"
        ]
    finally:
        prom.stop()
        am.stop()
        receiver.stop()
