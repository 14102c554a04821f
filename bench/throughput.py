"""Throughput of ``causalwatch run all`` against the raw Kafka client, same topic, same run.

Starts the embedded tansu broker (4 partitions per topic) and redis-server on loopback
(``causalwatch.tooling.embedded``), then for each workload and alert rate produces one
topic and reads it, in turn, with:

- the **raw client**: kafka-python (and confluent-kafka when installed), partitions
  assigned, poll in a loop, ``json.loads`` on every message (for Influx, the message is
  decoded and split into lines: the least a consumer of that format does);
- the **real service**: ``causalwatch run all`` as a child process (its own settings file,
  a fresh consumer group), for each backend (``kafka.backend``). Progress is read from its
  Prometheus endpoint (``causalwatch_ingest_records_total``, ``..._samples_total``); the
  clock starts when the last scrape that saw no records was sent (the consumer-group join is
  excluded, at most one scrape interval of waiting included) and
  stops when every record is counted, or after ``--max-run-s`` (then the rate is what it
  did in that time, marked ``cut``).

Workloads: (a) ``prometheus``: prometheus-kafka-adapter JSON, one sample per message,
``--series-a`` series; (b) ``json-array``: native JSON arrays of 100 samples, ``--series``
series; (c) ``influx``: line protocol, 100 lines (one field each) per message. Values are
noise around a level with spikes (+30 sd) in ``--spikes`` of the points after a warm-up, so
alerts fire and are explained.

Printed per run: samples/s, the ratio to the raw kafka-python client on the same topic,
samples per CPU-second of the reading process (less sensitive than wall time to what else
runs on the machine),
the alerts and explanations, CPU seconds of each process over the run (``/proc``: the
service or the bench process for raw clients, the broker, redis-server) and the load
average (1 min) before and after: the machine has 2 cores, shared with the broker, with
redis-server and with whatever else runs, so read the figures with the load.

Each case also runs the ``all`` stage in this process on the same records without the
explainer (no Kafka, no Redis; samples per CPU-second): what the hot path costs once
explanation is off it. ``--profile`` repeats that under cProfile (middle spike rate) and
prints where the time goes; ``--py-spy DIR`` records the service's stacks.

Run: ``python bench/throughput.py`` (about 15 minutes) or ``--quick`` (about 3).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from causalwatch.models import RawRecord
from causalwatch.tooling.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from ingest import ensure_topics
from ingest.kafka_sink import KafkaSink

PARTITIONS = 4
FORMATS = {"prometheus": "prometheus", "json-array": "json", "influx": "influx"}
PER_MESSAGE = {"prometheus": 1, "json-array": 100, "influx": 100}
WARMUP_POINTS = 40
CLK_TCK = os.sysconf("SC_CLK_TCK")

try:
    import confluent_kafka  # noqa: F401

    HAVE_CONFLUENT = True
except ImportError:  # pragma: no cover - optional extra
    HAVE_CONFLUENT = False


# ------------------------------------------------------------------------------ workloads
def make_workload(
    kind: str,
    n_samples: int,
    n_series: int,
    spikes: float,
    seed: int,
    end_s: float | None = None,
) -> list[tuple[bytes, bytes]]:
    """(key, message) of ``kind``: ``n_samples`` samples over ``n_series`` series, one-minute
    steps ending now (or at ``end_s``), spikes in a fraction ``spikes`` of the points after
    the warm-up. The key is the series (or block of series) so each series stays in one
    partition, in order, as a keyed producer sends it."""
    rng = np.random.default_rng(seed)
    n_pts = max(n_samples // n_series, WARMUP_POINTS + 10)
    t0 = (time.time() if end_s is None else end_s) - n_pts * 60.0
    level = 10.0 + 5.0 * rng.random(n_series)
    out: list[tuple[bytes, bytes]] = []
    buf: list[Any] = []
    per = PER_MESSAGE[kind]
    for k in range(n_pts):
        vals = level + rng.standard_normal(n_series)
        if k >= WARMUP_POINTS:
            vals[rng.random(n_series) < spikes] += 30.0
        ts = t0 + k * 60.0
        if kind == "prometheus":
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
            for s in range(n_series):
                out.append(
                    (
                        b"node-%d" % s,
                        json.dumps(
                            {
                                "timestamp": stamp,
                                "value": repr(float(vals[s])),
                                "name": "node_load",
                                "labels": {
                                    "__name__": "node_load",
                                    "instance": f"node-{s}:9100",
                                    "job": "node",
                                    "service": f"svc-{s % 20}",
                                },
                            }
                        ).encode(),
                    )
                )
            continue
        for s in range(n_series):
            if kind == "json-array":
                buf.append(
                    {
                        "name": "latency_ms",
                        "labels": {"service": f"svc-{s % 50}", "instance": f"i-{s}"},
                        "timestamp": ts,
                        "value": float(vals[s]),
                    }
                )
            else:
                buf.append(
                    f"latency,service=svc-{s % 50},instance=i-{s} ms={vals[s]:.4f} "
                    f"{int(ts) * 1_000_000_000}"
                )
            if len(buf) == per or s == n_series - 1:
                body = json.dumps(buf) if kind == "json-array" else "\n".join(buf)
                out.append((b"block-%d" % (s // per), body.encode()))
                buf = []
    return out


def count_samples(kind: str, messages: list[bytes]) -> int:
    """Samples in the messages (as the raw client counts them)."""
    if kind == "prometheus":
        return len(messages)
    if kind == "json-array":
        return sum(len(json.loads(m)) for m in messages)
    return sum(m.count(b"\n") + 1 for m in messages)


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    from causalwatch.settings import KafkaSettings

    ensure_topics(bootstrap, {topic: PARTITIONS})
    sink = KafkaSink(KafkaSettings(bootstrap_servers=bootstrap))
    t0 = time.perf_counter()
    for i in range(0, len(messages), 2_000):
        sink.write_batch(topic, [(k, m, []) for k, m in messages[i : i + 2_000]])
    sink.close()
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------ /proc
def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (and its reaped children) from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


@dataclass
class Procs:
    broker: int
    redis: int

    def snap(self, main: int) -> dict[str, float]:
        return {"proc": cpu_s(main), "broker": cpu_s(self.broker), "redis": cpu_s(self.redis)}


def cpu_delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: b[k] - a[k] for k in a}


# ------------------------------------------------------------------------------ raw client
def raw_client(
    backend: str, bootstrap: str, topic: str, n_records: int, kind: str, procs: Procs
) -> dict[str, Any]:
    """The bare client reading the topic from offset 0, json.loads on every message."""
    parse: Callable[[bytes], Any] = (
        (lambda b: b.decode().split("\n")) if kind == "influx" else json.loads
    )
    got = samples = 0
    count = (lambda d: 1 if isinstance(d, dict) else len(d)) if kind != "prometheus" else None
    load0 = load1()
    if backend == "confluent":
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"raw-{uuid.uuid4().hex[:6]}",
                "enable.auto.commit": False,
            }
        )
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        cpu0, t0 = procs.snap(os.getpid()), time.perf_counter()
        while got < n_records and time.perf_counter() - t0 < 300:
            for m in c.consume(5_000, 0.1):
                if m.error() is None:
                    d = parse(m.value())
                    got += 1
                    samples += count(d) if count else 1
        span = time.perf_counter() - t0
        cpu1 = procs.snap(os.getpid())
        c.close()
    else:
        from kafka import KafkaConsumer
        from kafka.structs import TopicPartition as KTP

        k = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False)
        tps = [KTP(topic, p) for p in range(PARTITIONS)]
        k.assign(tps)
        k.seek_to_beginning(*tps)
        cpu0, t0 = procs.snap(os.getpid()), time.perf_counter()
        while got < n_records and time.perf_counter() - t0 < 300:
            for recs in k.poll(timeout_ms=100, max_records=5_000).values():
                for r in recs:
                    d = parse(r.value)
                    got += 1
                    samples += count(d) if count else 1
        span = time.perf_counter() - t0
        cpu1 = procs.snap(os.getpid())
        k.close()
    return {
        "what": f"raw {backend}",
        "records": got,
        "samples": samples,
        "seconds": span,
        "samples_per_s": samples / span,
        "cpu": cpu_delta(cpu0, cpu1),
        "load": (load0, load1()),
        "cut": got < n_records,
    }


# ------------------------------------------------------------------------------ run all
def scrape(port: int) -> dict[str, float]:
    """Sums of the service's counters we follow (names without ``_total``)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    want = (
        "causalwatch_ingest_records_total",
        "causalwatch_ingest_samples_total",
        "causalwatch_ingest_deadletter_total",
        "causalwatch_detector_alerts_total",
        "causalwatch_explainer_explanations_total",
    )
    out = dict.fromkeys(want, 0.0)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in out:
            out[name] += float(line.rsplit(" ", 1)[1])
    return out


def run_all(
    backend: str,
    bootstrap: str,
    redis_url: str,
    topic: str,
    kind: str,
    n_records: int,
    n_samples: int,
    procs: Procs,
    tmp: str,
    max_run_s: float,
    py_spy: str | None = None,
    overrides: dict[str, Any] | None = None,
    label: str = "",
    tree: str | None = None,
    *,
    py_spy_mode: str = "gil",
    scrape_s: float = 0.05,
    trace: str | None = None,
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    port = free_port()
    cfg = {
        "log_level": "INFO" if trace else "WARNING",
        "kafka": {
            "backend": backend,
            "bootstrap_servers": bootstrap,
            "group_id": f"thru-{tag}",
            "topics": [{"name": topic, "format": FORMATS[kind]}],
            "session_timeout_ms": 6_000,
            "heartbeat_interval_ms": 1_000,
            "max_poll_interval_ms": 120_000,
            "poll_timeout_ms": 100,
        },
        "redis": {"url": redis_url, "prefix": f"thru-{tag}:"},
        # no per-series gauges: this bench scrapes every 0.25 s, a real Prometheus every 15 s
        "publish": {"metrics_port": port, "metrics_max_series": 0},
        "api": {"port": free_port()},
    }
    for dotted, value in (overrides or {}).items():  # --set section.field=value
        section, _, name = dotted.partition(".")
        cfg.setdefault(section, {})[name] = value  # type: ignore[index]
    path = Path(tmp) / f"settings-{tag}.json"  # JSON is YAML
    path.write_text(json.dumps(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAUSALWATCH_")}
    if tree is not None:  # --tree-b: the service from another checkout
        env["PYTHONPATH"] = tree
    cmd = [sys.executable, "-m", "causalwatch.app.cli", "--config", str(path), "run", "all"]
    log_path = Path(trace) / f"{kind}-{backend}-{tag}.log" if trace else None
    proc = subprocess.Popen(
        cmd,
        env=env,
        # `python -m` puts the working directory first on sys.path, before PYTHONPATH: run
        # from the tree's own directory, or an A/B started inside one checkout imports that
        # checkout's code on both sides
        cwd=tree,
        stdout=subprocess.DEVNULL,
        stderr=log_path.open("wb") if log_path is not None else subprocess.PIPE,
    )
    series: list[tuple[float, float, float]] = []  # (s since t0, records, samples)
    spy: subprocess.Popen[bytes] | None = None
    try:
        load0 = load1()
        deadline = time.monotonic() + 120
        first: dict[str, float] = {}
        # Records are counted when a batch begins, and a scrape can wait for the batch in
        # hand (the collector takes the cores' lock after reading the counters), so the
        # first batch began after the last scrape that saw no records was *sent*: the clock
        # starts there (at most one scrape interval early). Starting it at the first scrape
        # that saw records, or when the last empty one returned, can miss part or all of
        # the first batch, which is the whole topic when one poll takes it.
        zero_at, cpu_zero = time.perf_counter(), procs.snap(proc.pid)
        while time.monotonic() < deadline:  # wait for the first records (group joined)
            if proc.poll() is not None:
                err = (
                    log_path.read_text()[-2000:]
                    if log_path is not None
                    else proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
                )
                raise RuntimeError(f"run all exited: {err}")
            sent, cpu_sent = time.perf_counter(), procs.snap(proc.pid)
            m = scrape(port)
            if m.get("causalwatch_ingest_records_total", 0) > 0:
                first = m
                break
            zero_at, cpu_zero = sent, cpu_sent
            time.sleep(0.02)
        if not first:
            raise RuntimeError("run all read nothing in 120 s")
        t0, cpu0 = zero_at, cpu_zero
        last = first
        if py_spy:  # sample the service's threads over the timed window (SIGINT writes)
            out = Path(py_spy) / f"{kind}-{backend}-{tag}.txt"
            spy_cmd = ["py-spy", "record", "--format", "raw", "--threads", "-r", "200"]
            # gil: only samples holding the GIL (pauses the process at each sample, which
            # slows it); nonblocking: every thread's stack, the process never paused
            spy_cmd.append("--gil" if py_spy_mode == "gil" else "--nonblocking")
            spy = subprocess.Popen(
                [*spy_cmd, "--pid", str(proc.pid), "-o", str(out)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        while time.perf_counter() - t0 < max_run_s:
            m = scrape(port)
            if m:
                last = m
                series.append(
                    (
                        time.perf_counter() - t0,
                        m["causalwatch_ingest_records_total"],
                        m["causalwatch_ingest_samples_total"],
                    )
                )
            done = last["causalwatch_ingest_samples_total"]
            done += last["causalwatch_ingest_deadletter_total"]
            if last["causalwatch_ingest_records_total"] >= n_records and done >= n_samples:
                break
            time.sleep(scrape_s)
        span = time.perf_counter() - t0
        cpu1 = procs.snap(proc.pid)
        load_end = load1()
        if trace:  # the rate over the run, and the whole metrics page at its end
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                Path(trace, f"{kind}-{backend}-{tag}.metrics").write_bytes(resp.read())
            Path(trace, f"{kind}-{backend}-{tag}.progress.json").write_text(
                json.dumps({"label": label, "samples": n_samples, "series": series})
            )
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    # every sample counts: the clock started when the first poll's records were counted,
    # before that poll's samples were (records are counted when a poll is handed over)
    samples = last["causalwatch_ingest_samples_total"]
    return {
        "what": f"run all {backend}{label}" + (f" <{tag}>" if trace else ""),
        "records": int(last["causalwatch_ingest_records_total"]),
        "samples": int(samples),
        "seconds": span,
        "samples_per_s": samples / span,
        "alerts": int(last["causalwatch_detector_alerts_total"]),
        "explanations": int(last["causalwatch_explainer_explanations_total"]),
        "deadletters": int(last["causalwatch_ingest_deadletter_total"]),
        "cpu": cpu_delta(cpu0, cpu1),
        "load": (load0, load_end),
        "cut": last["causalwatch_ingest_records_total"] < n_records,
    }


# ------------------------------------------------------------------------------ profile
def in_process(
    kind: str, messages: list[bytes], explain: bool, profile: bool, top: int
) -> dict[str, Any]:
    """The ``all`` stage in this process on the same records (no Kafka, no Redis; polls of
    5,000 records): the CPU cost of decode -> detect (-> explain) alone, i.e. what the hot
    path costs once explanation is off it. With ``profile``, under cProfile (slower) and
    the top functions by own time are printed."""
    from causalwatch.app.pipeline.stages import AllStage, Sinks
    from causalwatch.app.pipeline.steps import build_cores
    from causalwatch.publish.metrics import PipelineStats
    from causalwatch.settings import load_settings

    settings = load_settings(
        kafka={"topics": [{"name": "t", "format": FORMATS[kind]}]}, log_level="WARNING"
    )
    records = [RawRecord("t", i % PARTITIONS, i, m) for i, m in enumerate(messages)]
    stats = PipelineStats()
    stage = AllStage(settings, build_cores(settings, explainer=explain), Sinks(), stats)
    prof = cProfile.Profile() if profile else None
    load0 = load1()
    c0, w0 = time.process_time(), time.perf_counter()
    if prof is not None:
        prof.enable()
    for j in range(0, len(records), 5_000):
        stage.handle(records[j : j + 5_000], time.time())
    if prof is not None:
        prof.disable()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    if prof is not None:
        print(
            f"\n-- cProfile {kind}, explainer {'on' if explain else 'off'}: {stats.samples} "
            f"samples, {stats.alerts_total} alerts, {cpu:.2f} CPU-s under cProfile"
        )
        pstats.Stats(prof).sort_stats("tottime").print_stats(top)
    return {
        "what": f"in-process stage, explainer {'on' if explain else 'off'}, per CPU-s"
        + (" (cProfile)" if profile else ""),
        "records": len(records),
        "samples": stats.samples,
        "seconds": cpu,
        "samples_per_s": stats.samples / cpu,
        "wall_s": wall,
        "alerts": stats.alerts_total,
        "explanations": stats.explanations_total,
        "cpu": {"proc": cpu, "broker": 0.0, "redis": 0.0},
        "load": (load0, load1()),
        "cut": False,
    }


# ------------------------------------------------------------------------------ main
def fmt_row(kind: str, spikes: float, r: dict[str, Any], raw_kp: float) -> str:
    cpu = r["cpu"]
    extra = f"{r.get('alerts', '-')} / {r.get('explanations', '-')}" if "alerts" in r else "- / -"
    return (
        f"| {kind} | {spikes * 100:g} % | {r['what']}{' (cut)' if r['cut'] else ''} | "
        f"{r['samples']:,} | {r['seconds']:.1f} | {r['samples_per_s']:,.0f} | "
        f"{r['samples_per_s'] / raw_kp:.2f} | {r['samples'] / max(cpu['proc'], 1e-9):,.0f} | "
        f"{extra} | {cpu['proc']:.1f} / "
        f"{cpu['broker']:.1f} / {cpu['redis']:.1f} | {r['load'][0]:.1f} -> {r['load'][1]:.1f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small topics, short runs")
    ap.add_argument("--workloads", default="prometheus,json-array,influx")
    ap.add_argument("--spikes", default="0.001,0.01,0.05", help="spike rates, comma-separated")
    ap.add_argument("--backends", default="kafka-python,confluent")
    ap.add_argument("--samples-a", type=int, default=100_000, help="samples, one per message")
    ap.add_argument("--samples", type=int, default=300_000, help="samples, batched workloads")
    ap.add_argument("--series-a", type=int, default=200)
    ap.add_argument("--series", type=int, default=1_000)
    ap.add_argument("--max-run-s", type=float, default=90.0, help="cut a run-all run after")
    ap.add_argument("--profile", action="store_true", help="also cProfile the stage in-process")
    ap.add_argument(
        "--py-spy",
        metavar="DIR",
        help="py-spy record the service's timed window (threads holding the GIL)",
    )
    ap.add_argument(
        "--py-spy-mode",
        choices=("gil", "nonblocking"),
        default="gil",
        help="gil: samples holding the GIL, process paused per sample (slows it); "
        "nonblocking: all threads, never paused",
    )
    ap.add_argument("--scrape-s", type=float, default=0.05, help="seconds between progress scrapes")
    ap.add_argument(
        "--trace",
        metavar="DIR",
        help="keep each run all's log (INFO), progress scrapes and final metrics page in DIR",
    )
    ap.add_argument("--no-in-process", action="store_true", help="skip the in-process stage")
    ap.add_argument("--top", type=int, default=18, help="functions shown per profile")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=JSON",
        help="a setting of the service (repeatable); with --ab, runs both without and with",
    )
    ap.add_argument("--ab", action="store_true", help="each run all twice: default, --set")
    ap.add_argument(
        "--tree-b",
        metavar="DIR",
        help="each run all twice, back to back: this checkout, then the service from DIR "
        "(another checkout, put first on PYTHONPATH): code A/B in one run",
    )
    args = ap.parse_args()
    if args.quick:
        args.samples_a, args.samples, args.max_run_s = 20_000, 50_000, 30.0
    backends = [b for b in args.backends.split(",") if b != "confluent" or HAVE_CONFLUENT]
    overrides = {k: json.loads(v) for k, _, v in (a.partition("=") for a in args.set)}
    variants = [({}, " (defaults)"), (overrides, f" ({' '.join(args.set)})")] if args.ab else []
    variants = variants or [(overrides, f" ({' '.join(args.set)})" if args.set else "")]
    trees: list[tuple[str | None, str]] = [(None, "")]
    if args.tree_b:
        here = str(Path(__file__).resolve().parent.parent)
        trees = [(here, f" [{Path(here).name}]"), (args.tree_b, f" [{Path(args.tree_b).name}]")]
    spikes = [float(s) for s in args.spikes.split(",")]
    print(
        f"# bench/throughput.py {'--quick ' if args.quick else ''}on {os.cpu_count()} cores; "
        f"load average at start {Path('/proc/loadavg').read_text().split()[:3]}"
    )
    print(
        "| workload | spikes | reader | samples | s | samples/s | vs raw kafka-python | "
        "samples per reader CPU-s | alerts / explanations | CPU s reader / broker / redis | "
        "load 1 min |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|")
    with (
        EmbeddedBroker() as broker,
        EmbeddedRedis() as redis_srv,
        tempfile.TemporaryDirectory() as tmp,
    ):
        assert broker.proc is not None and redis_srv.proc is not None
        procs = Procs(broker.proc.pid, redis_srv.proc.pid)
        case = -1
        for kind in args.workloads.split(","):
            n_series = args.series_a if kind == "prometheus" else args.series
            n_samples = args.samples_a if kind == "prometheus" else args.samples
            for p in spikes:
                case += 1
                keyed = make_workload(kind, n_samples, n_series, p, seed=int(p * 1e4) + 1)
                topic = f"thru-{kind}-{uuid.uuid4().hex[:6]}"
                produce(broker.bootstrap, topic, keyed)
                n_rec = len(keyed)
                n_total = count_samples(kind, [m for _, m in keyed])
                raws = [
                    raw_client(b, broker.bootstrap, topic, n_rec, kind, procs) for b in backends
                ]
                raw_kp = raws[0]["samples_per_s"]
                for r in raws:
                    print(fmt_row(kind, p, r, raw_kp), flush=True)
                for b in backends:
                    # the order of the trees alternates between cases (the first run all on
                    # a topic can be the slower one)
                    flip = trees[::-1] if case % 2 else trees
                    for (over, label), (tree, where) in product(variants, flip):
                        try:
                            r = run_all(
                                b,
                                broker.bootstrap,
                                redis_srv.url,
                                topic,
                                kind,
                                n_rec,
                                n_total,
                                procs,
                                tmp,
                                args.max_run_s,
                                args.py_spy,
                                over,
                                label + where,
                                tree,
                                py_spy_mode=args.py_spy_mode,
                                scrape_s=args.scrape_s,
                                trace=args.trace,
                            )
                        except RuntimeError as exc:  # a run that never started: say so
                            print(f"| {kind} | {p * 100:g} % | run all {b}: {exc} |", flush=True)
                            continue
                        print(fmt_row(kind, p, r, raw_kp), flush=True)
                msgs = [m for _, m in keyed]
                if args.no_in_process:
                    continue
                r = in_process(kind, msgs, explain=False, profile=False, top=args.top)
                print(fmt_row(kind, p, r, raw_kp), flush=True)
                if args.profile and p == spikes[len(spikes) // 2]:
                    in_process(kind, msgs, explain=False, profile=True, top=args.top)


if __name__ == "__main__":
    main()
