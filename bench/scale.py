"""Scale: a million active series in one process, and two detector processes against one.

1. **1M active series** (``--series``): the cores of a role (``detector``: series index +
   detector; ``all``: + explainer) are fed ``--points`` points of every series through the
   same steps as the live path (``ingest_records``: decode of native JSON arrays of 1,000
   samples, validation, series index; ``process_samples``: order check + detector (+
   explainer history)). Then the stage's checkpoint is built and saved to a real
   redis-server as the service saves it (``RedisCheckpointStore.save``: streamed into lz4
   chunks, pointer switched); the stage is dropped (a restart), and a fresh stage loads
   and restores it. Printed: RSS (``/proc/self/status`` VmRSS, and the peak VmHWM of
   feeding, of checkpointing and of restoring, reset between them through
   ``clear_refs``), checkpoint size stored and raw, the time of each step. Each role runs
   in a child process of its own so the RSS is that role's alone. Step times are wall
   seconds (CPU seconds printed below each row: on a loaded machine the wall time is
   several times the CPU time).
2. **Two detector processes against one** through the consumer group: the samples topic
   (``kafka.samples_topic``, 4 partitions, the columnar messages ``run ingest`` writes,
   keyed by series group) is filled once; then ``causalwatch run detector`` reads it all
   with one process, then with two processes in a fresh consumer group. The rate is
   samples from the first record seen by any process to the last, read from their
   Prometheus endpoints; CPU seconds per process (``/proc``) and the load show where the
   time goes: the machine has 2 cores, shared by the detectors, the broker (which also
   takes the scores each detector writes) and redis-server.

Run: ``python bench/scale.py`` (about 10 minutes) or ``--quick`` (100k series, about 2).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import PARTITIONS, Procs, cpu_delta, cpu_s, load1, scrape

from causalwatch.tooling.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from causalwatch.wire import encode_columns
from ingest import ensure_topics
from ingest.kafka_sink import KafkaSink


def reset_hwm() -> None:
    """Reset VmHWM to the current RSS (Linux: ``clear_refs`` 5), so a later peak is that of
    the steps after this call."""
    Path("/proc/self/clear_refs").write_text("5")


def rss_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MiB."""
    got = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            got[line.split(":")[0]] = int(line.split()[1]) / 1024
    return got["VmRSS"], got["VmHWM"]


# one native JSON sample, as json.dumps writes it (built as text: no dict per series held)
_SAMPLE = (
    '{"name": "latency_ms", "labels": {"service": "svc-%d", "pod": "pod-%d"}, '
    '"timestamp": %s, "value": %r}'
)


# ------------------------------------------------------------------------------ part 1
def one_million(role: str, n_series: int, n_points: int, redis_url: str) -> dict[str, Any]:
    """Runs in a child process (``--child``): the cores of ``role`` with ``n_series``."""
    import redis

    from causalwatch.app.pipeline.stages import STAGES, Sinks
    from causalwatch.app.pipeline.steps import build_cores, ingest_records, process_samples
    from causalwatch.models import RawRecord
    from causalwatch.publish.metrics import PipelineStats
    from causalwatch.settings import load_settings
    from causalwatch.store.checkpoint import RedisCheckpointStore

    settings = load_settings(
        ingest={"max_series": n_series + 1},
        kafka={"topics": [{"name": "m", "format": "json"}]},
        log_level="WARNING",
    )
    rss0 = rss_mb()[0]
    cores = build_cores(settings, explainer=role == "all")
    stage = STAGES["all" if role == "all" else "detector"](
        settings, cores, Sinks(), PipelineStats()
    )
    now = time.time()
    t0 = now - n_points * 60.0
    rng = np.random.default_rng(3)
    per = 1_000
    feed_s = 0.0
    fed = 0
    for k in range(n_points):
        vals = 10.0 + rng.standard_normal(n_series)
        for lo in range(0, n_series, per * 20):  # polls of 20 messages of 1,000 samples
            recs = []
            for j, start in enumerate(range(lo, min(lo + per * 20, n_series), per)):
                ts = repr(t0 + k * 60.0)
                body = (
                    "["
                    + ", ".join(
                        _SAMPLE % (i % 500, i, ts, v)
                        for i, v in enumerate(vals[start : start + per].tolist(), start)
                    )
                    + "]"
                ).encode()
                recs.append(RawRecord("m", 0, k * n_series + start // per + j, body))
            c = time.process_time()
            rows, batch, errors = ingest_records(
                recs, stage.formats, stage.limits, cores.index, now
            )
            process_samples(cores, rows, batch, records=recs)
            feed_s += time.process_time() - c
            fed += len(batch)
            assert not errors, errors[:1]
    rss_fed, hwm_feed = rss_mb()
    n_indexed = len(cores.index)
    client = redis.Redis.from_url(redis_url)
    store = RedisCheckpointStore(client, f"scale-{uuid.uuid4().hex[:6]}:checkpoint:{role}")
    cpu: dict[str, float] = {}
    reset_hwm()  # the peak below is that of checkpointing alone
    c, p = time.perf_counter(), time.process_time()
    cp = stage.snapshot(views=True)  # as the loop's _checkpoint takes it
    snap_s, cpu["snapshot"] = time.perf_counter() - c, time.process_time() - p
    save_error = ""
    c, p = time.perf_counter(), time.process_time()
    size = raw_size = 0
    try:  # as the service writes it: streamed into lz4 chunks, pointer switched
        size = store.save(cp)
        ptr = json.loads(client.get(store.key)[len(b"CWCK-PTR1 ") :])
        raw_size = ptr["bytes"]
    except Exception as exc:  # e.g. Redis refusing a value
        save_error = f"{type(exc).__name__}: {exc}"
    save_s, cpu["save"] = time.perf_counter() - c, time.process_time() - p
    del cp
    _, hwm_save = rss_mb()
    # a restart: the process that wrote the checkpoint is gone
    del stage, cores
    gc.collect()
    rss_gone, _ = rss_mb()
    reset_hwm()
    fresh = STAGES["all" if role == "all" else "detector"](
        settings, build_cores(settings, explainer=role == "all"), Sinks(), PipelineStats()
    )
    load_s = restore_s = float("nan")
    if not save_error:
        c, p = time.perf_counter(), time.process_time()
        cp2 = store.load()
        load_s, cpu["load"] = time.perf_counter() - c, time.process_time() - p
        assert cp2 is not None
        c, p = time.perf_counter(), time.process_time()
        fresh.restore(cp2)
        restore_s, cpu["restore"] = time.perf_counter() - c, time.process_time() - p
        del cp2
        assert len(fresh.cores.index) == n_series
    store.delete()
    rss_end, hwm_restore = rss_mb()
    return {
        "role": role,
        "series": n_indexed,
        "samples": fed,
        "feed_samples_per_cpu_s": fed / feed_s,
        "rss_base_mb": rss0,
        "rss_fed_mb": rss_fed,
        "rss_peak_feed_mb": hwm_feed,
        "rss_peak_save_mb": hwm_save,
        "rss_after_exit_mb": rss_gone,
        "rss_peak_restore_mb": hwm_restore,
        "rss_end_mb": rss_end,
        "checkpoint_mb": size / 2**20,
        "checkpoint_raw_mb": raw_size / 2**20,
        "snapshot_s": snap_s,
        "save_s": save_s,
        "load_s": load_s,
        "restore_s": restore_s,
        "set_error": save_error,
        "cpu_s": cpu,
        "load": load1(),
    }


# ------------------------------------------------------------------------------ part 2
def fill_samples_topic(bootstrap: str, topic: str, n_series: int, n_points: int) -> int:
    """The samples topic as ``run ingest`` writes it: one columnar message per series group
    and step, keyed by the group, in the group's own partition."""
    ensure_topics(bootstrap, {topic: PARTITIONS})
    from causalwatch.app.pipeline.stages import _group_key, _partitioned
    from causalwatch.settings import KafkaSettings

    keys = [f'latency_ms{{pod="pod-{i}",service="svc-{i % 50}"}}' for i in range(n_series)]
    groups = _partitioned(keys, PARTITIONS)
    rng = np.random.default_rng(5)
    t0 = time.time() - n_points * 60.0
    sink = KafkaSink(KafkaSettings(bootstrap_servers=bootstrap))
    items = []
    parts: list[int] = []
    n = 0
    per = 500  # samples per message, as ingest's polls would give at this rate
    for k in range(n_points):
        vals = 10.0 + rng.standard_normal(n_series)
        vals[rng.random(n_series) < 0.01] += 30.0
        for part, idx in groups.items():
            for lo in range(0, len(idx), per):
                sel = idx[lo : lo + per]
                body = encode_columns(
                    [keys[i] for i in sel.tolist()], np.full(len(sel), t0 + k * 60.0), vals[sel]
                )
                items.append((_group_key(part), body, []))
                parts.append(part)
                n += len(sel)
        if len(items) >= 500:
            sink.write_batch(topic, items, parts)
            items, parts = [], []
    if items:
        sink.write_batch(topic, items, parts)
    sink.close()
    return n


def detectors(
    n_proc: int,
    bootstrap: str,
    redis_url: str,
    samples_topic: str,
    n_samples: int,
    procs: Procs,
    tmp: str,
    max_run_s: float,
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    ports = [free_port() for _ in range(n_proc)]
    children = []
    for i, port in enumerate(ports):
        cfg = {
            "log_level": "WARNING",
            "kafka": {
                "bootstrap_servers": bootstrap,
                "group_id": f"scale-{tag}",
                "client_id": f"scale-{tag}-{i}",
                "samples_topic": samples_topic,
                "scores_topic": f"{samples_topic}.scores.{tag}",
                "session_timeout_ms": 6_000,
                "heartbeat_interval_ms": 1_000,
                "max_poll_interval_ms": 120_000,
                "poll_timeout_ms": 100,
            },
            "ingest": {"max_series": 1_100_000},
            "redis": {"url": redis_url, "prefix": f"scale-{tag}:"},
            "publish": {"metrics_port": port, "metrics_max_series": 0},
            "api": {"port": free_port()},
        }
        path = Path(tmp) / f"det-{tag}-{i}.json"
        path.write_text(json.dumps(cfg))
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "causalwatch.app.cli",
                    "--config",
                    str(path),
                    "run",
                    "detector",
                ],
                stdout=subprocess.DEVNULL,
                stderr=(Path(tmp) / f"det-{tag}-{i}.log").open("wb"),
            )
        )
    try:
        load0 = load1()
        deadline = time.monotonic() + 120
        t0 = None
        while time.monotonic() < deadline and t0 is None:
            sent = time.perf_counter()
            cpu0 = {f"det{i}": cpu_s(c.pid) for i, c in enumerate(children)} | procs.snap(0)
            if any(scrape(p).get("causalwatch_ingest_records_total", 0) > 0 for p in ports):
                t0 = sent
            else:
                time.sleep(0.05)
        if t0 is None:
            raise RuntimeError("the detectors read nothing in 120 s")
        per_proc = [0.0] * n_proc
        while time.perf_counter() - t0 < max_run_s:
            got = [scrape(p) for p in ports]
            per_proc = [
                g.get("causalwatch_ingest_samples_total", old)
                for g, old in zip(got, per_proc, strict=True)
            ]
            if sum(per_proc) >= n_samples:
                break
            time.sleep(0.05)
        span = time.perf_counter() - t0
        cpu1 = {f"det{i}": cpu_s(c.pid) for i, c in enumerate(children)} | procs.snap(0)
        load_end = load1()
    finally:
        for c in children:
            c.terminate()
        for c in children:
            try:
                c.wait(30)
            except subprocess.TimeoutExpired:
                c.kill()
    if sum(per_proc) < n_samples:  # cut short: say why, from the detectors' own logs
        for i in range(n_proc):
            log_text = (Path(tmp) / f"det-{tag}-{i}.log").read_text(errors="replace")
            print(f"detector {i} of {n_proc} (log tail):\n{log_text[-3000:]}", file=sys.stderr)
    cpu = cpu_delta(cpu0, cpu1)
    cpu.pop("proc", None)
    return {
        "processes": n_proc,
        "samples": int(sum(per_proc)),
        "per_process": [int(x) for x in per_proc],
        "seconds": span,
        "samples_per_s": sum(per_proc) / span,
        "cpu": cpu,
        "load": (load0, load_end),
        "cut": sum(per_proc) < n_samples,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--series", type=int, default=1_000_000)
    ap.add_argument("--points", type=int, default=3, help="points per series fed (part 1)")
    ap.add_argument("--roles", default="detector,all")
    ap.add_argument("--det-series", type=int, default=10_000, help="series (part 2)")
    ap.add_argument("--det-points", type=int, default=60, help="points per series (part 2)")
    ap.add_argument("--max-run-s", type=float, default=240.0)
    ap.add_argument("--skip", default="", help="'million' or 'detectors' to skip a part")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--redis", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one_million(args.child, args.series, args.points, args.redis)))
        return
    if args.quick:
        args.series, args.det_series, args.det_points = 100_000, 2_000, 50
    loadavg = Path("/proc/loadavg").read_text().split()[:3]
    print(f"# bench/scale.py{' --quick' if args.quick else ''}; load average {loadavg}")
    with EmbeddedRedis() as redis_srv, EmbeddedBroker() as broker:
        if "million" not in args.skip:
            print(
                "\n| role | series | RSS after feed MiB | peak feed / checkpoint / "
                "restore MiB | checkpoint MiB stored (raw) | snapshot s | save s | "
                "load s | restore s | feed samples/CPU-s | load |"
            )
            print("|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|")
            for role in args.roles.split(","):
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        role,
                        "--series",
                        str(args.series),
                        "--points",
                        str(args.points),
                        "--redis",
                        redis_srv.url,
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if out.returncode != 0:
                    print(f"| {role} | failed: {out.stderr.strip().splitlines()[-1:]} |")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(
                    f"| {role} | {r['series']:,} | {r['rss_fed_mb']:,.0f} | "
                    f"{r['rss_peak_feed_mb']:,.0f} / {r['rss_peak_save_mb']:,.0f} / "
                    f"{r['rss_peak_restore_mb']:,.0f} | {r['checkpoint_mb']:,.1f} "
                    f"({r['checkpoint_raw_mb']:,.1f}) | {r['snapshot_s']:.2f} | "
                    f"{r['save_s']:.2f} | {r['load_s']:.2f} | {r['restore_s']:.2f} | "
                    f"{r['feed_samples_per_cpu_s']:,.0f} | {r['load']:.1f} |",
                    flush=True,
                )
                steps = ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_s"].items())
                print(f"|  | CPU seconds of the steps: {steps} |", flush=True)
                if r["set_error"]:
                    print(f"|  | save failed: {r['set_error'][:160]} |", flush=True)
        if "detectors" not in args.skip:
            assert broker.proc is not None and redis_srv.proc is not None
            procs = Procs(broker.proc.pid, redis_srv.proc.pid)
            topic = f"scale-samples-{uuid.uuid4().hex[:6]}"
            n = fill_samples_topic(broker.bootstrap, topic, args.det_series, args.det_points)
            print(
                f"\nsamples topic: {n:,} samples, {args.det_series:,} series, "
                f"{PARTITIONS} partitions"
            )
            print(
                "\n| detectors | samples | s | samples/s | speed-up | per process | "
                "CPU s per detector / broker / redis | load 1 min |"
            )
            print("|---:|---:|---:|---:|---:|---|---|---|")
            base = None
            with tempfile.TemporaryDirectory() as tmp:
                for n_proc in (1, 2):
                    r = detectors(
                        n_proc,
                        broker.bootstrap,
                        redis_srv.url,
                        topic,
                        n,
                        procs,
                        tmp,
                        args.max_run_s,
                    )
                    base = base or r["samples_per_s"]
                    cpu = r["cpu"]
                    dets = " / ".join(f"{cpu[f'det{i}']:.1f}" for i in range(n_proc))
                    print(
                        f"| {n_proc}{' (cut)' if r['cut'] else ''} | {r['samples']:,} | "
                        f"{r['seconds']:.1f} | {r['samples_per_s']:,.0f} | "
                        f"{r['samples_per_s'] / base:.2f} | {r['per_process']} | {dets} / "
                        f"{cpu['broker']:.1f} / {cpu['redis']:.1f} | "
                        f"{r['load'][0]:.1f} -> {r['load'][1]:.1f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
