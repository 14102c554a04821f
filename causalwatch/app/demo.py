"""``causalwatch demo``: the whole path on a laptop, with real servers and no Docker.

Starts an embedded Kafka-protocol broker (tansu) and redis-server on free ports, streams a
simulated ten-service shop (daily pattern, noise, one injected fault upstream) into Kafka
in all three input formats plus a few bad records, runs the pipeline (``run all``), waits
for the explanation and prints it with where to look. It keeps the stack up until Ctrl-C,
or exits after the explanation with ``--once``; either way it stops what it started.
"""

from __future__ import annotations

import json
import logging
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from causalwatch.models import Explanation
from causalwatch.settings import load_settings
from causalwatch.tooling.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from causalwatch.tooling.simulate import Scenario, microservice_demo_scenario

__all__ = ["produce_scenario", "run_demo"]

log = logging.getLogger(__name__)

JSON_TOPIC, INFLUX_TOPIC, PROM_TOPIC = "metrics", "telegraf", "prometheus"
INFLUX_SERVICES = {"payment", "payment-provider"}
PROM_SERVICES = {"auth"}


def _influx_line(metric: str, node: str, t: float, v: float) -> str:
    # Ingest names a line-protocol series <measurement>_<field>, as Telegraf's Prometheus
    # output does: "latency,service=x ms=12.5" is the series latency_ms{service="x"}.
    measurement, _, fld = metric.partition("_")
    return f"{measurement},service={node} {fld}={v!r} {int(t * 1e9)}"


def _prom_record(metric: str, node: str, t: float, v: float) -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    return json.dumps(
        {
            "timestamp": stamp,
            "value": repr(v),
            "name": metric,
            "labels": {"__name__": metric, "service": node, "job": "demo"},
        }
    ).encode()


def produce_scenario(
    sink: Any,
    scenario: Scenario,
    start: int,
    stop: int,
    *,
    bad_records: bool = True,
    topics: tuple[str, str, str] = (JSON_TOPIC, INFLUX_TOPIC, PROM_TOPIC),
) -> int:
    """Produce time steps ``[start, stop)``: one JSON array per step for most services,
    Influx lines for payment services, prometheus-kafka-adapter records for auth."""
    sent = 0
    json_items: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []
    influx_items: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []
    prom_items: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []
    for k in range(start, stop):
        t = float(scenario.ts[k])
        samples = []
        lines = []
        for i, (node, metric) in enumerate(
            zip(scenario.series_nodes, scenario.series_metrics, strict=True)
        ):
            v = float(scenario.values[i, k])
            if node in INFLUX_SERVICES:
                lines.append(_influx_line(metric, node, t, v))
            elif node in PROM_SERVICES:
                prom_items.append((node.encode(), _prom_record(metric, node, t, v), []))
            else:
                samples.append(
                    {"name": metric, "labels": {"service": node}, "timestamp": t, "value": v}
                )
        json_items.append((None, json.dumps(samples).encode(), []))
        influx_items.append((None, "\n".join(lines).encode(), []))
        sent += len(samples) + len(lines)
    sent += len(prom_items)
    if bad_records:
        json_items.append((None, b"this is not json", []))
        json_items.append(
            (None, b'{"name": "latency_ms", "labels": {"service": "cart"}, "value": 1}', [])
        )
        json_items.append(
            (
                None,
                b'{"name": "latency_ms", "labels": {"service": "cart"}, '
                b'"timestamp": 1, "value": NaN}',
                [],
            )
        )
    json_topic, influx_topic, prom_topic = topics
    sink.write_batch(json_topic, json_items)
    sink.write_batch(influx_topic, influx_items)
    sink.write_batch(prom_topic, prom_items)
    return sent


def _stop_on_signals(stop: threading.Event) -> None:
    """Ctrl-C and SIGTERM stop the demo cleanly (it then stops everything it started)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _signum, _frame: stop.set())


def produce_only(
    settings: Any,
    *,
    seed: int = 7,
    live_steps: int | None = None,
    echo: Callable[[str], None] = print,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """``causalwatch demo --produce-only``: stream the demo shop into an existing Kafka.

    Two days of history up to now (a fault started 30 minutes ago) go out at once, to the
    ``metrics`` (JSON), ``telegraf`` (Influx) and ``prometheus`` topics of
    ``kafka.bootstrap_servers``; then one step per minute as wall time reaches it, for
    ``live_steps`` steps (default: until the scenario's six spare hours run out). Used by the
    ``demo-producer`` service of docker-compose. Returns the number of samples sent.
    """
    from ingest.kafka_backend import make_sink
    from ingest.kafka_sink import ensure_topics

    if stop is None:  # the command line: Ctrl-C / SIGTERM end it
        stop = threading.Event()
        _stop_on_signals(stop)
    history = 2 * 1440
    spare = 6 * 60
    now = clock()
    start_ts = float(int(now // 60) * 60 - (history - 1) * 60)
    scenario = microservice_demo_scenario(
        seed,
        n_points=history + spare,
        step_s=60.0,
        start_ts=start_ts,
        fault_start=history - 30,
        fault_len=45,
    )
    ensure_topics(settings.kafka, {JSON_TOPIC: 1, INFLUX_TOPIC: 1, PROM_TOPIC: 1})
    sink = make_sink(settings.kafka)
    try:
        sent = produce_scenario(sink, scenario, 0, history)
        echo(
            f"produced {sent:,} samples of {len(scenario.series_keys)} series to "
            f"{settings.kafka.bootstrap_servers} ({JSON_TOPIC}, {INFLUX_TOPIC}, {PROM_TOPIC}); "
            f"fault: {scenario.fault_kind} at {scenario.roots[0]!r} since 30 minutes ago"
        )
        last = history + (spare if live_steps is None else min(live_steps, spare))
        for k in range(history, last):
            due = float(scenario.ts[k])
            while not stop.is_set() and clock() < due:
                stop.wait(min(1.0, max(0.0, due - clock())))
            if stop.is_set():
                break
            sent += produce_scenario(sink, scenario, k, k + 1, bad_records=False)
    finally:
        sink.close()
    return sent


def format_explanation(exp: Explanation) -> str:
    lines = [
        f"  target      {exp.target.series} (node {exp.target.node}), severity "
        f"{exp.severity:.0f}/100",
        f"  window      {time.strftime('%H:%M:%S', time.gmtime(exp.window.start))} - "
        f"{time.strftime('%H:%M:%S', time.gmtime(exp.window.end))} UTC",
        f"  verdict     {exp.verdict} ({exp.verdict_reason}; method {exp.method})",
        "  root causes (best first; share = how much of the deviation it explains):",
    ]
    for i, rc in enumerate(exp.root_causes, start=1):
        ev = rc.evidence
        path = " -> ".join(ev.get("path", [])) if isinstance(ev.get("path"), list) else ""
        extra = f"  path {path}" if path else ""
        lines.append(f"   {i}. {rc.node:<18} score {rc.score:.2f}  share {rc.share:4.0%}{extra}")
    lines.append(f"      {'unexplained':<18}             {exp.unexplained:4.0%}")
    for o in exp.opposing:
        lines.append(f"  pulled the other way: {o.node} ({o.share:.0%})")
    return "\n".join(lines)


def run_demo(
    *,
    once: bool = False,
    timeout_s: float = 120.0,
    seed: int = 7,
    echo: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> int:
    """Run the demo; returns 0 when the injected root cause is ranked first."""
    from causalwatch.app.pipeline import incident_counts
    from causalwatch.app.service import serve
    from ingest.kafka_sink import KafkaSink, ensure_topics

    if stop is None:  # the command line: Ctrl-C / SIGTERM end it
        stop = threading.Event()
        _stop_on_signals(stop)
    echo("causalwatch demo: starting an embedded Kafka-protocol broker and Redis ...")
    with (
        EmbeddedBroker() as broker,
        EmbeddedRedis() as redis_srv,
        tempfile.TemporaryDirectory(prefix="causalwatch-demo-") as tmp,
    ):
        n_points = 2 * 1440
        now = time.time()
        scenario = microservice_demo_scenario(
            seed,
            n_points=n_points,
            step_s=60.0,
            start_ts=float(int(now // 60) * 60 - n_points * 60),
            fault_start=n_points - 60,
            fault_len=45,
        )
        graph_file = Path(tmp) / "graph.csv"
        graph_file.write_text(scenario.graph.to_csv())
        root = scenario.roots[0]
        api_port = free_port()
        settings = load_settings(
            kafka={
                "bootstrap_servers": broker.bootstrap,
                "group_id": "causalwatch-demo",
                "topics": [
                    {"name": JSON_TOPIC, "format": "json"},
                    {"name": INFLUX_TOPIC, "format": "influx"},
                    {"name": PROM_TOPIC, "format": "prometheus"},
                ],
                "session_timeout_ms": 6_000,
                "heartbeat_interval_ms": 1_000,
                "max_poll_interval_ms": 60_000,
            },
            redis={"url": redis_srv.url, "checkpoint_interval_s": 2.0},
            publish={"metrics_port": free_port()},
            api={"port": api_port, "external_url": f"http://127.0.0.1:{api_port}"},
            explainer={"graph_file": graph_file},
        )
        echo(f"  broker  {broker.bootstrap}   redis  {redis_srv.url}")
        sink = KafkaSink(settings.kafka)
        # One partition each: a message holds many series, and a series' samples must stay in
        # order (producers that key by series can use as many partitions as they like).
        ensure_topics(broker.bootstrap, {JSON_TOPIC: 1, INFLUX_TOPIC: 1, PROM_TOPIC: 1})
        sent = produce_scenario(sink, scenario, 0, n_points - 10)
        echo(
            f"  streamed {sent:,} samples of {len(scenario.series_keys)} series "
            f"({len(scenario.nodes)} services, 2 days at 1-minute steps; JSON, Influx line "
            f"protocol and prometheus-kafka-adapter) plus 3 bad records"
        )
        echo(
            f"  injected fault: {scenario.fault_kind} at {root!r}, from an hour ago for 45 minutes"
        )
        svc = serve(settings, "all", stop=stop, block=False)
        best: Explanation | None = None
        started = time.monotonic()
        try:
            while time.monotonic() - started < timeout_s and not stop.is_set():
                time.sleep(0.5)
                in_fault = [
                    e
                    for e in svc.results.recent(500)
                    if e.root_causes
                    and scenario.fault_start_ts <= e.detected_at <= scenario.fault_end_ts
                ]
                if in_fault:
                    # The most downstream target first (that is where users get paged),
                    # then the most severe.
                    best = max(
                        in_fault,
                        key=lambda e: (
                            e.target.series == scenario.target_series,
                            e.target.node != root,
                            e.severity,
                            e.version,
                        ),
                    )
                    if best.target.series == scenario.target_series or (
                        time.monotonic() - started > 30
                    ):
                        break
            if best is None:
                echo(f"no explanation within {timeout_s:.0f}s")
                return 1
            ok = best.root_causes[0].node == root
            echo("")
            echo(
                f"ANOMALY on {best.target.node}: root cause {best.root_causes[0].node!r} "
                f"({'correct' if ok else 'expected ' + repr(root)})"
            )
            echo(format_explanation(best))
            p = settings.redis.prefix
            echo("")
            echo("Where to look:")
            if settings.api.external_url:
                echo(
                    f"  incident page        {settings.api.external_url}/incidents/"
                    f"{quote(best.incident_id, safe='')}  (all incidents: "
                    f"{settings.api.external_url}/)"
                )
            echo(
                f"  latest explanation   redis-cli -u {redis_srv.url} GET {p}latest:"
                f"{best.target.node}"
            )
            echo(
                f"  explanation stream   redis-cli -u {redis_srv.url} XREVRANGE "
                f"{p}explanations + - COUNT 5"
            )
            echo(f"  metrics              {svc.metrics_url}")
            if svc.api_url:
                echo(
                    f"  HTTP API             {svc.api_url}/api/v1/incidents  "
                    f"(OpenAPI: {svc.api_url}/docs)"
                )
            watching, paged, watched = incident_counts(svc.pipeline.cores)
            echo(
                f"  incidents            {paged} paged, {watching + watched} watched but not"
                " paged (their alerts did not agree: explainer.page_agreement)"
            )
            dlq = sum(svc.stats.deadletter_by_reason.values())
            echo(
                f"  dead-lettered        {dlq} records on {JSON_TOPIC}{settings.kafka.dlq_suffix}"
                f" ({dict(svc.stats.deadletter_by_reason)})"
            )
            if not once:
                echo("\nThe stack stays up for exploring; press Ctrl-C to stop.")
                stop.wait()
                echo("stopping ...")
            return 0 if ok else 1
        finally:
            stop.set()
            for close in svc.closers:
                close()
            sink.close()
