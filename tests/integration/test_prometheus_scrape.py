"""A real Prometheus (the Debian binary) scrapes a running causalwatch and answers PromQL
about an anomaly this test caused.

The service runs as in production (``serve(settings, "all")``: Kafka in, Redis out, the
metrics endpoint on a port), fed through the real broker with one series that spikes and
one that stays calm. Prometheus scrapes it every second with deploy/prometheus's own rules
loaded, so the test also sees the recording rules and the per-node anomaly alert work on
the metrics the service really exports, not on hand-written series.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from causalwatch.embedded import free_port
from causalwatch.service import Service, serve
from causalwatch.settings import Settings, load_settings
from ingest.kafka_sink import KafkaSink, ensure_topics

pytestmark = pytest.mark.integration

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules"
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


class Prometheus:
    """The prometheus binary on a free loopback port with its TSDB in a temp folder."""

    def __init__(self, binary: str, workdir: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(p) for p in sorted(RULES.glob("*.yml"))],
            "scrape_configs": [
                {
                    "job_name": "causalwatch",
                    "static_configs": [{"targets": [target], "labels": {"service": "all"}}],
                }
            ],
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

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.proc.returncode}")
            try:
                return bool(urllib.request.urlopen(f"{self.url}/-/ready", timeout=1).status == 200)
            except OSError:
                return False

        _wait(ready, timeout_s, "prometheus to be ready")

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

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


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
def service(broker: Any, redis_server: Any, uid: str) -> Iterator[tuple[Settings, Service]]:
    settings = load_settings(
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
        publish={"metrics_port": free_port()},
        api={"port": free_port()},
    )
    stop = threading.Event()
    svc = serve(settings, "all", stop=stop, block=False)
    try:
        yield settings, svc
    finally:
        stop.set()
        for close in svc.closers:
            close()


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


def test_prometheus_scrapes_an_anomaly_score_the_test_caused(
    service: tuple[Settings, Service], broker: Any, prometheus_binary: str, tmp_path: Path
) -> None:
    settings, svc = service
    topic = settings.kafka.topics[0].name
    ensure_topics(broker.bootstrap, {topic: 1})
    sink = KafkaSink(settings.kafka)
    sink.write_batch(topic, [(None, value, []) for value in _samples(time.time())])
    sink.close()

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
