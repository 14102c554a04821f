"""The ``causalwatch`` command line: run, demo, replay, explain, simulate, graph.

Settings are loaded once here (``--config FILE`` or ``CAUSALWATCH_CONFIG``, plus
``CAUSALWATCH_*`` variables); logging is configured here and nowhere else (JSON lines on
stderr). Errors from causalwatch print one line naming the problem and exit 2 (bad
configuration or input) or 3 (a backend is unreachable).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from causalwatch import __version__
from causalwatch.errors import BackendError, CausalwatchError
from causalwatch.settings import load_settings

__all__ = ["main"]

_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the structured ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("kafka").setLevel(max(logging.WARNING, root.level))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="causalwatch",
        description="Streaming anomaly detection with causal root-cause explanations.",
    )
    p.add_argument("--version", action="version", version=f"causalwatch {__version__}")
    p.add_argument("--config", type=Path, help="YAML settings file (else CAUSALWATCH_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the service (all stages, or one)")
    run.add_argument(
        "stage", nargs="?", default="all", choices=["all", "ingest", "detector", "explainer"]
    )

    demo = sub.add_parser("demo", help="end-to-end demo with an embedded broker and Redis")
    demo.add_argument("--once", action="store_true", help="exit after the explanation")
    demo.add_argument("--timeout", type=float, default=120.0, help="seconds to wait")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument(
        "--produce-only",
        action="store_true",
        help="only stream the demo metrics into kafka.bootstrap_servers (docker-compose)",
    )
    demo.add_argument(
        "--live-steps",
        type=int,
        default=None,
        help="with --produce-only: live one-minute steps after the history",
    )

    rp = sub.add_parser("replay", help="run detector and explainer over a file, offline")
    rp.add_argument("input", type=Path, help="JSONL native samples or CSV timestamp,value")
    rp.add_argument("--graph", type=Path, help="dependency graph (CSV cause,effect or YAML)")
    rp.add_argument("--scores-out", type=Path, help="CSV series,timestamp,value,score,alert")
    rp.add_argument("--explanations-out", type=Path, help="explanations, one JSON per line")
    rp.add_argument(
        "--targets", type=Path, help="CSV node,series,at[,start]: explain these on demand"
    )
    rp.add_argument("--no-progress", action="store_true")

    ex = sub.add_parser("explain", help="explain a target series at a time, on demand")
    ex.add_argument("--node", required=True)
    ex.add_argument(
        "--series", default=None, help="series key (default: the node's most anomalous series)"
    )
    ex.add_argument("--at", required=True, help="unix seconds or ISO 8601")
    ex.add_argument(
        "--since",
        default=None,
        help="start of the anomaly window, unix seconds or ISO 8601 (default: from the data)",
    )
    ex.add_argument("--input", type=Path, help="replay this file first (offline explain)")
    ex.add_argument("--graph", type=Path, help="graph for offline explain")
    ex.add_argument(
        "--api",
        default=None,
        help="URL of a running causalwatch API (default: from settings api.host/api.port)",
    )

    sim = sub.add_parser("simulate", help="generate a scenario with known root cause")
    sim.add_argument("--nodes", type=int, default=20)
    sim.add_argument("--points", type=int, default=2880)
    sim.add_argument("--step-s", type=float, default=60.0)
    sim.add_argument("--fault", default="latency_shift")
    sim.add_argument("--roots", type=int, default=1, choices=[1, 2])
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--demo", action="store_true", help="the fixed ten-service demo shop")
    sim.add_argument(
        "--out", type=Path, required=True, help="folder for samples.jsonl, graph.csv, truth.json"
    )

    gr = sub.add_parser("graph", help="load or show the dependency graph cached in Redis")
    gsub = gr.add_subparsers(dest="graph_command", required=True)
    gl = gsub.add_parser("load", help="replace the given graph with a file's edges")
    gl.add_argument("file", type=Path)
    gsub.add_parser("show", help="print the cached graph as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except BackendError as exc:
        print(f"causalwatch: {exc}", file=sys.stderr)
        return 3
    except CausalwatchError as exc:
        print(f"causalwatch: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo" and args.produce_only:
        from causalwatch.app.demo import produce_only

        settings = load_settings(args.config)
        configure_logging(settings.log_level)
        produce_only(settings, seed=args.seed, live_steps=args.live_steps)
        return 0
    if args.command == "demo":
        logging.basicConfig(level=logging.WARNING)
        logging.getLogger("kafka").setLevel(logging.ERROR)
        logging.getLogger("explainer").setLevel(logging.WARNING)
        from causalwatch.app.demo import run_demo

        return run_demo(once=args.once, timeout_s=args.timeout, seed=args.seed)
    if args.command == "simulate":
        return _simulate(args)
    settings = load_settings(args.config)
    configure_logging(settings.log_level)
    if args.command == "run":
        from causalwatch.app.service import serve

        stop = threading.Event()

        def _stop(signum: int, _frame: Any) -> None:
            logging.getLogger(__name__).info("stopping", extra={"signal": signum})
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        from causalwatch.app.ridethrough import Stopping

        try:
            serve(settings, args.stage, stop=stop)
        except Stopping:  # stopped while still waiting for a backend at start-up
            return 0
        return 0
    if args.command == "replay":
        from causalwatch.app.replay import replay_file

        summary = replay_file(
            args.input,
            settings=settings,
            graph_file=args.graph,
            scores_out=args.scores_out,
            explanations_out=args.explanations_out,
            targets_file=args.targets,
            show_progress=not args.no_progress,
        )
        rate = summary.samples / summary.seconds if summary.seconds > 0 else 0.0
        print(
            json.dumps(
                {
                    "samples": summary.samples,
                    "rejected": dict(summary.rejected),
                    "alerts": summary.alerts,
                    "explanations": summary.explanations,
                    "incidents_paged": summary.incidents_paged,
                    "incidents_watched_not_paged": summary.incidents_watched,
                    "seconds": round(summary.seconds, 3),
                    "samples_per_s": round(rate),
                }
            )
        )
        return 0
    if args.command == "explain":
        return _explain(args, settings)
    if args.command == "graph":
        return _graph(args, settings)
    raise AssertionError(args.command)  # pragma: no cover


def _explain(args: argparse.Namespace, settings: Any) -> int:
    from causalwatch.app.replay import Target, parse_timestamp

    at = parse_timestamp(args.at)
    since = parse_timestamp(args.since) if args.since else None
    if args.input is not None:
        from causalwatch.app.replay import explain_offline

        exp, error = explain_offline(
            args.input,
            Target(args.node, args.series, at, since),
            settings=settings,
            graph_file=args.graph,
        )
        if exp is None:
            print(json.dumps({"error": error}))
            return 1
        from causalwatch.schemas import explanation_json

        print(explanation_json(exp))
        return 0
    import httpx

    base = args.api or f"http://{settings.api.host}:{settings.api.port}"
    token = settings.api.token
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
    body = {"node": args.node, "series": args.series, "at": at, "since": since}
    try:
        resp = httpx.post(f"{base}/api/v1/explain", json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise BackendError(f"cannot reach the API at {base}: {exc}", backend="http") from exc
    print(resp.text)
    return 0 if resp.status_code == 200 else 1


def _simulate(args: argparse.Namespace) -> int:
    from causalwatch.tooling.simulate import microservice_demo_scenario, simulate, write_scenario

    t0 = time.perf_counter()
    if args.demo:
        scenario = microservice_demo_scenario(args.seed, n_points=args.points, step_s=args.step_s)
    else:
        scenario = simulate(
            args.nodes,
            n_points=args.points,
            step_s=args.step_s,
            fault_kind=args.fault,
            n_roots=args.roots,
            seed=args.seed,
        )
    paths = write_scenario(scenario, args.out)
    print(
        json.dumps(
            {
                "nodes": len(scenario.nodes),
                "series": len(scenario.series_keys),
                "points": scenario.n_points,
                "roots": list(scenario.roots),
                "fault": scenario.fault_kind,
                "target": scenario.target_series,
                "files": {k: str(v) for k, v in paths.items()},
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
    )
    return 0


def _graph(args: argparse.Namespace, settings: Any) -> int:
    from causalwatch.store.client import connect
    from causalwatch.store.graph import RedisDagCache
    from explainer.dag import load_graph

    cache = RedisDagCache(connect(settings.redis), prefix=settings.redis.prefix)
    if args.graph_command == "load":
        version = cache.put(load_graph(args.file))
        print(json.dumps({"graph_version": version}))
        return 0
    graph = cache.get()
    out = graph.to_dict() if graph is not None else {"edges": []}
    out["learned"] = [e.to_dict() for e in cache.get_learned()]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
