"""Shared pieces of the integration tests: settings for a test's own topics and keys, the
demo shop ending now, waiting on a condition while watching services for failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from causalwatch.app.service import Service
from causalwatch.settings import Settings, load_settings
from causalwatch.tooling.embedded import free_port
from causalwatch.tooling.simulate import Scenario, microservice_demo_scenario


def stage_settings(
    broker: Any,
    redis_server: Any,
    uid: str,
    graph: Path,
    *,
    kafka: dict[str, Any] | None = None,
    redis: dict[str, Any] | None = None,
    explainer: dict[str, Any] | None = None,
) -> Settings:
    """Settings on the session's broker and Redis with this test's own topics, group and
    key prefix (JSON, Influx and prometheus-adapter inputs), and free ports."""
    k: dict[str, Any] = {
        "bootstrap_servers": broker.bootstrap,
        "group_id": f"g{uid}",
        "topics": [
            {"name": f"m{uid}", "format": "json"},
            {"name": f"t{uid}", "format": "influx"},
            {"name": f"p{uid}", "format": "prometheus"},
        ],
        "samples_topic": f"samples{uid}",
        "scores_topic": f"scores{uid}",
        "session_timeout_ms": 6_000,
        "heartbeat_interval_ms": 1_000,
    }
    k.update(kafka or {})
    r: dict[str, Any] = {
        "url": redis_server.url,
        "prefix": f"cw{uid}:",
        "checkpoint_interval_s": 0.5,
    }
    r.update(redis or {})
    e: dict[str, Any] = {"graph_file": graph}
    e.update(explainer or {})
    return load_settings(
        kafka=k,
        redis=r,
        publish={"metrics_port": free_port()},
        api={"port": free_port()},
        explainer=e,
    )


def input_topics(settings: Settings) -> tuple[str, str, str]:
    names = [t.name for t in settings.kafka.topics]
    return names[0], names[1], names[2]


def shop(seed: int, n_points: int, fault_start: int, fault_len: int, tmp: Path) -> Scenario:
    """The demo shop at one-minute steps ending now, its graph written to ``tmp/graph.csv``."""
    now = time.time()
    sc = microservice_demo_scenario(
        seed=seed,
        n_points=n_points,
        step_s=60.0,
        start_ts=float(int(now // 60) * 60 - n_points * 60),
        fault_start=fault_start,
        fault_len=fault_len,
    )
    (tmp / "graph.csv").write_text(sc.graph.to_csv())
    return sc


def wait_for(
    pred: Callable[[], Any],
    timeout_s: float,
    what: str,
    services: Iterable[Service] = (),
) -> Any:
    """Poll ``pred`` until it is truthy; fail early when a watched service failed."""
    deadline = time.monotonic() + timeout_s
    watched = list(services)
    while time.monotonic() < deadline:
        for svc in watched:
            if svc.error is not None:
                raise AssertionError(f"a service failed: {svc.error!r}") from svc.error
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def stop_all(stops: Iterable[threading.Event], services: Iterable[Service]) -> None:
    for stop in stops:
        stop.set()
    for svc in services:
        for close in svc.closers:
            close()
