"""Hostile records for the fault-injection suite and ``bench/hostile.py``.

A seeded generator (not hypothesis: 100,000 records must be cheap to make and the same on
every run) of records for three topics, one per input format: native JSON,
prometheus-kafka-adapter JSON and Influx line protocol. About a third are good records
(series from a fixed pool per topic, some of them hostile but valid: 512-byte names, 32
labels, 1 kB multi-byte label values, emoji, line-protocol escapes, extreme finite
values), a third are bad as a whole (not JSON, wrong shape, truncated, nested 100,000 deep,
oversized, invalid UTF-8, names of 100-900 kB, lone surrogates, ...) and a third mix good
and bad samples in one record (every good sample must be kept, every bad one dead-lettered).

What the service must end with is computed per record by the in-process decoder with the
service's limits (:func:`expected`): valid samples per series, dead letters per record.
Timestamps are either well inside the accepted window or far outside it, so the service's
later clock cannot change a verdict; good samples of one topic have increasing timestamps
and topics use disjoint series, so nothing is out of order whatever order the partitions
are read in.

:func:`run_hostile` streams them to a real ``causalwatch run all`` process (through
``tests/faults/harness.py``) in chunks, each chunk with another codec (none, gzip, snappy,
lz4, zstd), and scores the outcome (:class:`HostileOutcome`).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from causalwatch.models import RawRecord
from causalwatch.settings import load_settings
from ingest.decode import decode_batch
from ingest.validate import IngestLimits

__all__ = ["CODECS", "HostileOutcome", "Planned", "expected", "generate", "run_hostile"]

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
POOL = 60  # good series per topic (x fields for Influx)


@dataclass(frozen=True, slots=True)
class Planned:
    topic: str
    value: bytes
    kind: str


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Gen:
    """State of one generation: the RNG, per-topic clocks and series pools."""

    def __init__(
        self, seed: int, now: float, topics: dict[str, str], start_s: float = 3_600.0
    ) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.topics = topics
        self.t = {t: now - start_s for t in topics}  # good samples: from start_s ago
        self.pools = {t: self._pool(i, fmt) for i, (t, fmt) in enumerate(topics.items())}

    # ---- pools of valid series (some hostile but within every limit)
    def _pool(self, i: int, fmt: str) -> list[tuple[str, dict[str, str]]]:
        pool: list[tuple[str, dict[str, str]]] = []
        for j in range(POOL):
            name = f"h{i}_m{j % 7}_seconds"
            labels = {"service": f"svc{j % 5}", "pod": f"p{j}"}
            if j == 0:  # the longest name allowed (Influx appends "_value"/"_count")
                name = f"h{i}_" + "n" * (512 - 3 - len(str(i)) - (6 if fmt == "influx" else 0))
            elif j == 1:  # exactly max_labels (a prometheus __name__ label does not count)
                labels = {f"l{k}": f"v{k}" for k in range(32)}
            elif j == 2:
                labels["note"] = "é" * 512  # 1,024 UTF-8 bytes
            elif j == 3:
                labels["emoji"] = "😀🔥" * 100  # 800 bytes, astral plane
            elif j == 4:
                labels["zh"] = "监控" * 50
            elif j == 5 and fmt == "influx":
                labels["path"] = "a b,c=d\\e"  # escaped in line protocol
            elif j == 6:
                labels[f"k{'x' * 120}"] = "v"  # a 121-byte label name (limit 128)
            pool.append((name, labels))
        return pool

    def _ts(self, topic: str) -> float:
        self.t[topic] += 0.01
        return round(self.t[topic], 2)

    def _value(self) -> float:
        r = self.rng.random()
        if r < 0.02:
            return self.rng.choice([1e308, -1e308, 5e-324, 0.0, -0.0, 2.0**53])
        return round(self.rng.gauss(100.0, 15.0), 3)

    def _series(self, topic: str, k: int) -> list[tuple[str, dict[str, str]]]:
        return self.rng.sample(self.pools[topic], k)

    # ---- good samples
    def json_sample(self, topic: str, name: str, labels: dict[str, str], ts: float) -> Any:
        t: Any = ts if self.rng.random() < 0.7 else _rfc3339(ts)
        return {"name": name, "labels": labels, "timestamp": t, "value": self._value()}

    def prom_sample(self, name: str, labels: dict[str, str], ts: float) -> Any:
        v = self._value()
        return {
            "timestamp": _rfc3339(ts),
            "value": repr(v) if self.rng.random() < 0.8 else f"{v:e}",
            "name": name,
            "labels": {"__name__": name, **labels},
        }

    def influx_line(self, name: str, labels: dict[str, str], ts: float) -> str:
        def esc(s: str) -> str:
            return (
                s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")
            )

        tags = "".join(f",{esc(k)}={esc(v)}" for k, v in sorted(labels.items()))
        fields = f"value={self._value()},count={self.rng.randint(0, 10**6)}i"
        return f"{esc(name)}{tags} {fields} {round(ts * 100) * 10_000_000}"

    def good(self, topic: str) -> bytes:
        fmt = self.topics[topic]
        ts = self._ts(topic)
        if fmt == "influx":
            lines = [self.influx_line(n, lb, ts) for n, lb in self._series(topic, 3)]
            return "\n".join(lines).encode()
        if fmt == "prometheus":
            ((name, labels),) = self._series(topic, 1)
            return json.dumps(self.prom_sample(name, labels, ts), ensure_ascii=False).encode()
        items = [self.json_sample(topic, n, lb, ts) for n, lb in self._series(topic, 4)]
        doc = items[0] if self.rng.random() < 0.3 else items
        return json.dumps(doc, ensure_ascii=self.rng.random() < 0.5).encode()

    # ---- bad as a whole
    def bad(self, topic: str) -> tuple[str, bytes]:
        fmt = self.topics[topic]
        now, rng = self.now, self.rng
        if fmt == "influx":
            kinds: list[tuple[str, Any]] = [
                ("garbage", lambda: bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))),
                ("no_fields", lambda: b"cpu,host=a"),
                ("string_field", lambda: b'cpu,host=a msg="hello" %d' % int(now * 1e9)),
                ("bool_field", lambda: b"cpu,host=a up=true %d" % int(now * 1e9)),
                ("bad_number", lambda: b"cpu v=12abc %d" % int(now * 1e9)),
                ("nan", lambda: b"cpu v=nan %d" % int(now * 1e9)),
                ("inf", lambda: b"cpu v=inf %d" % int(now * 1e9)),
                ("ts_overflow", lambda: b"cpu v=1 " + b"9" * 40),
                ("ts_future", lambda: b"cpu v=1 %d" % int((now + 86_400 * 30) * 1e9)),
                ("ts_old", lambda: b"cpu v=1 %d" % int((now - 86_400 * 30) * 1e9)),
                ("not_utf8", lambda: b"cpu,host=\xff\xfe v=1"),
                ("comments", lambda: b"# only\n# comments\n"),
                ("empty", lambda: b""),
                ("spaces", lambda: b"   \n\t "),
                ("long_name", lambda: b"m" * self._size() + b" v=1"),
                ("long_tag_key", lambda: b"m," + b"k" * 200 + b"=v v=1"),
                ("long_tag", lambda: b"m,k=" + b"v" * 2_000 + b" v=1"),
                ("many_tags", lambda: b"m," + b",".join(b"t%d=v" % i for i in range(40)) + b" v=1"),
                ("unterminated", lambda: b'm s="abc'),
                ("oversized", lambda: b"m v=1 1\n" * 140_000),
            ]
        else:
            name = "up"
            labels = {"service": "x"}

            def one(**over: Any) -> bytes:
                base: dict[str, Any] = {"name": name, "labels": labels, "timestamp": now - 60}
                base["value"] = "1" if fmt == "prometheus" else 1.0
                base.update(over)
                return json.dumps({k: v for k, v in base.items() if v is not _DROP}).encode()

            kinds = [
                ("garbage", lambda: bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))),
                ("truncated", lambda: one()[: rng.randint(1, 30)]),
                ("not_object", lambda: rng.choice([b"null", b"42", b'"text"', b"true", b"[]"])),
                ("deep", lambda: b"[" * 100_000 + b"]" * 100_000),
                ("deep_obj", lambda: b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
                ("not_utf8", lambda: b'{"name": "\xff\xfe", "value": 1}'),
                ("surrogate_name", lambda: one().replace(b'"up"', b'"\\ud800"')),
                ("surrogate_label", lambda: one().replace(b'"x"', b'"\\udfff"', 1)),
                ("nan", lambda: one(value=float("nan")).replace(b"NaN", b"NaN")),
                ("inf", lambda: one(value="+Inf" if fmt == "prometheus" else float("inf"))),
                (
                    "big_number",
                    lambda: one().replace(b'"timestamp": ', b'"timestamp": 1e999, "x": '),
                ),
                ("bad_type", lambda: one(value=True)),
                ("bad_value", lambda: one(value="abc" if fmt == "prometheus" else [1])),
                ("no_value", lambda: one(value=_DROP)),
                ("no_name", lambda: one(name=_DROP, labels={"a": "b"})),
                ("no_ts", lambda: one(timestamp=_DROP)),
                (
                    "bad_ts",
                    lambda: one(timestamp=rng.choice(["yesterday", "2020-13-45T00:00:00Z", None])),
                ),
                ("ts_future", lambda: one(timestamp=now + 86_400 * 30)),
                ("ts_old", lambda: one(timestamp=now - 86_400 * 30)),
                ("ts_huge", lambda: one(timestamp=1e300)),
                ("bad_name", lambda: one(name=rng.choice(["1abc", "a.b", "a-b", "", "名前", " "]))),
                ("long_name", lambda: one(name="n" * self._size())),
                ("long_label_name", lambda: one(labels={"k" * (self._size() // 4): "v"})),
                ("long_label", lambda: one(labels={"k": "v" * 5_000})),
                ("many_labels", lambda: one(labels={f"l{i}": "v" for i in range(40)})),
                ("label_not_str", lambda: one(labels={"k": 1})),
                ("labels_not_obj", lambda: one(labels=["a"])),
                ("too_many", lambda: json.dumps([json.loads(one())] * 10_001).encode()),
                ("oversized", lambda: b"[" + b" " * 1_100_000 + b"]"),
                ("bom", lambda: b"\xef\xbb\xbf" + one(value=_DROP)),
            ]
        kind, make = kinds[rng.randrange(len(kinds))]
        if kind in _BULKY and rng.random() > 0.05:  # 100 kB-1 MB records: 1 in 20 draws
            return self.bad(topic)
        return kind, make()

    def _size(self) -> int:
        """A long name's length: 600 B-5 kB mostly, 100-900 kB (the issue's) 1 in 10."""
        if self.rng.random() < 0.1:
            return self.rng.randint(100_000, 900_000)
        return self.rng.randint(600, 5_000)

    # ---- good and bad samples in one record
    def mixed(self, topic: str) -> bytes:
        fmt = self.topics[topic]
        ts = self._ts(topic)
        now = self.now
        if fmt == "influx":
            lines = [self.influx_line(n, lb, ts) for n, lb in self._series(topic, 2)]
            lines.insert(1, self.rng.choice(["garbage line", 'm s="x" 1', "m v=nan"]))
            lines.append(f"m v=1 {int((now + 86_400 * 30) * 1e9)}")
            return "\n".join(lines).encode()
        if fmt == "prometheus":  # one sample per message in that format: bad value string
            ((name, labels),) = self._series(topic, 1)
            s = self.prom_sample(name, labels, ts)
            s["value"] = self.rng.choice(["NaN", "+Inf", "-Inf", "x1"])
            return json.dumps(s).encode()
        items = [self.json_sample(topic, n, lb, ts) for n, lb in self._series(topic, 3)]
        bad = [
            {"name": "up", "timestamp": ts, "value": "1"},
            {"name": "up", "labels": {"a": "\ud800"}, "timestamp": ts, "value": 1},
            {"name": "up", "timestamp": now + 86_400 * 30, "value": 1},
            {"name": "x" * 700, "timestamp": ts, "value": 1},
            42,
        ]
        items[1:1] = self.rng.sample(bad, 2)
        return json.dumps(items).encode()


_DROP = object()
_BULKY = frozenset({"deep", "deep_obj", "too_many", "oversized"})


def generate(n: int, seed: int, topics: dict[str, str], now: float) -> list[Planned]:
    """``n`` records round-robin over ``topics`` (name -> json | prometheus | influx)."""
    g = _Gen(seed, now, topics, start_s=3_500.0)  # after the warm-up's samples
    names = list(topics)
    out: list[Planned] = []
    for i in range(n):
        topic = names[i % len(names)]
        r = g.rng.random()
        if r < 0.34:
            out.append(Planned(topic, g.good(topic), "good"))
        elif r < 0.67:
            kind, value = g.bad(topic)
            out.append(Planned(topic, value, kind))
        else:
            out.append(Planned(topic, g.mixed(topic), "mixed"))
    return out


def warmup(topics: dict[str, str], now: float, seed: int) -> list[Planned]:
    """Good records that touch every pool series once (before RSS is measured)."""
    g = _Gen(seed, now, topics)
    out = []
    for topic, fmt in topics.items():
        for name, labels in g.pools[topic]:
            ts = g._ts(topic)
            if fmt == "influx":
                value = g.influx_line(name, labels, ts).encode()
            elif fmt == "prometheus":
                value = json.dumps(g.prom_sample(name, labels, ts)).encode()
            else:
                value = json.dumps(g.json_sample(topic, name, labels, ts)).encode()
            out.append(Planned(topic, value, "good"))
    return out


@dataclass
class Expected:
    per_series: Counter[str] = field(default_factory=Counter)
    dead_per_record: dict[tuple[str, int], int] = field(default_factory=dict)
    samples_per_record: dict[tuple[str, int], int] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)


def expected(
    planned: list[Planned],
    offsets: list[int],
    topics: dict[str, str],
    limits: IngestLimits,
    now: float,
) -> Expected:
    """What the service must end with, from the in-process decoder with the same limits."""
    exp = Expected()
    step = 2_000
    for a in range(0, len(planned), step):
        recs = [
            RawRecord(p.topic, 0, off, p.value, timestamp_ms=int(now * 1000))
            for p, off in zip(planned[a : a + step], offsets[a : a + step], strict=True)
        ]
        batch, errors = decode_batch(recs, topics, limits, now)
        exp.per_series.update(batch.series_keys)
        origin = np.asarray(batch.origin)
        counts = np.bincount(origin, minlength=len(recs)) if origin.size else np.zeros(len(recs))
        for i, rec in enumerate(recs):
            exp.samples_per_record[(rec.topic, rec.offset)] = int(counts[i])
        for e in errors:
            key = (str(e.topic), int(e.offset or 0))
            exp.dead_per_record[key] = exp.dead_per_record.get(key, 0) + 1
            exp.reasons[e.reason] += 1
    return exp


# ------------------------------------------------------------------------------ the run
@dataclass
class HostileOutcome:
    records: int
    by_kind: dict[str, int]
    records_consumed: int
    samples_expected: int
    samples_in_state: int
    series_wrong: int
    dead_expected: int
    dead_letters: int
    dead_letters_repeated: int
    records_unaccounted: int
    records_wrongly_dead: int
    deadletter_metric: int
    samples_metric: int
    reasons_wrong: dict[str, tuple[int, int]]
    rss_start_mb: float
    rss_warm_mb: float
    #: when the last record is counted in; its samples may still wait in the pacer
    rss_consumed_mb: float
    #: after the checkpoint at the end offsets: every record released and processed
    rss_settled_mb: float
    rss_peak_mb: float
    seconds: float
    records_per_s: float
    starts: int
    alive: bool
    api_codes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @property
    def rss_growth_mb(self) -> float:
        """What the stream left behind: RSS once it is processed, less RSS after the
        warm-up. Records held by the pacer meanwhile (bounded by its byte cap) are not in
        it; ``rss_consumed_mb`` and ``rss_peak_mb`` show them."""
        return self.rss_settled_mb - self.rss_warm_mb


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        fields[key] = rest.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _produce(bootstrap: str, planned: list[Planned], chunk: int) -> dict[str, list[int]]:
    """Produce in chunks, each with the next codec; returns the offsets per topic in order."""
    from kafka import KafkaProducer

    producers = {
        codec: KafkaProducer(
            bootstrap_servers=bootstrap,
            compression_type=None if codec == "none" else codec,
            max_request_size=8 * 1_048_576,
            linger_ms=20,
            acks=1,
        )
        for codec in CODECS
    }
    offsets: list[int] = []
    try:
        for n, a in enumerate(range(0, len(planned), chunk)):
            prod = producers[CODECS[n % len(CODECS)]]
            futures = [
                prod.send(p.topic, value=p.value, partition=0) for p in planned[a : a + chunk]
            ]
            prod.flush(120)
            offsets.extend(f.get(60).offset for f in futures)
    finally:
        for prod in producers.values():
            prod.close(10)
    return {"all": offsets}


def run_hostile(
    bootstrap: str,
    redis_url: str,
    folder: Path,
    uid: str,
    *,
    n: int = 20_000,
    seed: int = 11,
    chunk: int = 1_000,
    timeout_s: float = 600.0,
    during: Callable[[str], dict[str, int]] | None = None,
) -> HostileOutcome:
    """Stream ``n`` hostile records to a fresh ``causalwatch run all`` and score it.

    ``during(api_url)``, when given, runs while the stream is consumed (hostile API calls
    against the same process) and returns status-code counts, kept in ``api_codes``."""
    import redis as redis_lib

    from causalwatch.store.checkpoint import RedisCheckpointStore
    from causalwatch.tooling.embedded import free_port
    from ingest.kafka_sink import ensure_topics
    from tests.faults.harness import ServiceProcess, read_to_end, wait_until

    now = time.time()
    topics = {f"hj{uid}": "json", f"hp{uid}": "prometheus", f"hi{uid}": "influx"}
    ensure_topics(bootstrap, {t: 1 for t in topics})
    settings: dict[str, Any] = {
        "log_level": "WARNING",
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": f"hg{uid}",
            "topics": [{"name": t, "format": f} for t, f in topics.items()],
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 1000,
            "max_poll_records": 500,
        },
        "redis": {"url": redis_url, "prefix": f"hcw{uid}:", "checkpoint_interval_s": 0.5},
        "publish": {"metrics_port": free_port()},
        "api": {"port": free_port()},
    }
    svc = ServiceProcess(settings, folder)
    svc.start()
    assert svc.proc is not None
    pid = svc.proc.pid

    def consumed() -> int:
        return int(
            sum(svc.metric("causalwatch_ingest_records_total", f'topic="{t}"') or 0 for t in topics)
        )

    try:
        wait_until(
            lambda: svc.metric("causalwatch_ingest_samples_total") is not None, 60, "service up"
        )
        rss_start, _ = _rss_mb(pid)
        warm = warmup(topics, now, seed)
        warm_offsets = _produce(bootstrap, warm, chunk)["all"]
        wait_until(lambda: consumed() >= len(warm), 120, "warm-up consumed")
        rss_warm, _ = _rss_mb(pid)
        planned = generate(n, seed, topics, now)
        # the warm-up used the same per-topic clocks: move the stream's clocks past it
        t0 = time.monotonic()
        offsets = _produce(bootstrap, planned, chunk)["all"]
        api_codes = during(svc.api_url) if during is not None else {}
        total = len(warm) + len(planned)
        wait_until(
            lambda: consumed() >= total or not svc.alive, timeout_s, "all consumed", every_s=0.5
        )
        seconds = time.monotonic() - t0
        alive = svc.alive
        rss_consumed, _ = _rss_mb(pid) if alive else (float("nan"), float("nan"))
        ends = {t: 0 for t in topics}
        for p, off in zip([*warm, *planned], [*warm_offsets, *offsets], strict=True):
            ends[p.topic] = max(ends[p.topic], off + 1)
        store = RedisCheckpointStore(
            redis_lib.Redis.from_url(redis_url), f"hcw{uid}:checkpoint:hg{uid}:all"
        )

        def checkpointed() -> bool:
            cp = store.load()
            return cp is not None and all(cp.offsets.get((t, 0)) == e for t, e in ends.items())

        wait_until(checkpointed, 60, "checkpoint at the end offsets")
        rss_settled, rss_peak = _rss_mb(pid) if svc.alive else (float("nan"), float("nan"))
        cp = store.load()
        assert cp is not None
        dlq = [r for t in topics for r in read_to_end(bootstrap, t + ".dlq")]
        metrics = {
            "dead": sum(
                v
                for line in _scrape(svc.metrics_url)
                if line.startswith("causalwatch_ingest_deadletter_total{")
                for v in [float(line.rsplit(" ", 1)[1])]
            ),
            "samples": svc.metric("causalwatch_ingest_samples_total") or 0.0,
        }
        consumed_n = consumed()
    finally:
        svc_alive = svc.alive
        starts = svc.starts
        svc.stop()

    limits = IngestLimits.from_settings(load_settings().ingest)
    exp = expected([*warm, *planned], [*warm_offsets, *offsets], topics, limits, now)
    # samples in the model, per series, from the checkpoint
    keys = cp.meta["index"]["keys"]
    counts = np.asarray(cp.arrays["detector"]["n"][: len(keys)])
    state = Counter({k: int(c) for k, c in zip(keys, counts.tolist(), strict=True) if k})
    series_wrong = sum(1 for k in set(state) | set(exp.per_series) if state[k] != exp.per_series[k])
    positions: Counter[tuple[str, int, str]] = Counter()
    reasons: Counter[str] = Counter()
    dead_per_record: Counter[tuple[str, int]] = Counter()
    for r in dlq:
        h = {k: v.decode() for k, v in r.headers}
        key = (h["x-causalwatch-source-topic"], int(h["x-causalwatch-source-offset"]))
        positions[(*key, h.get("x-causalwatch-sample-index", ""))] += 1
        dead_per_record[key] += 1
        reasons[h["x-causalwatch-reason"]] += 1
    every = {
        (p.topic, off) for p, off in zip([*warm, *planned], [*warm_offsets, *offsets], strict=True)
    }
    fed = {k for k, v in exp.samples_per_record.items() if v > 0}
    unaccounted = len(every - fed - set(dead_per_record))
    wrongly_dead = sum(
        1 for k in every if dead_per_record.get(k, 0) != exp.dead_per_record.get(k, 0)
    )
    reasons_wrong = {
        r: (reasons[r], exp.reasons[r])
        for r in set(reasons) | set(exp.reasons)
        if reasons[r] != exp.reasons[r]
    }
    return HostileOutcome(
        records=len(planned) + len(warm),
        by_kind=dict(Counter(p.kind for p in planned).most_common()),
        records_consumed=consumed_n,
        samples_expected=sum(exp.per_series.values()),
        samples_in_state=sum(state.values()),
        series_wrong=series_wrong,
        dead_expected=sum(exp.dead_per_record.values()),
        dead_letters=len(dlq),
        dead_letters_repeated=sum(positions.values()) - len(positions),
        records_unaccounted=unaccounted,
        records_wrongly_dead=wrongly_dead,
        deadletter_metric=int(metrics["dead"]),
        samples_metric=int(metrics["samples"]),
        reasons_wrong=reasons_wrong,
        rss_start_mb=round(rss_start, 1),
        rss_warm_mb=round(rss_warm, 1),
        rss_consumed_mb=round(rss_consumed, 1),
        rss_settled_mb=round(rss_settled, 1),
        rss_peak_mb=round(rss_peak, 1),
        seconds=round(seconds, 1),
        records_per_s=round(len(planned) / seconds, 1),
        starts=starts,
        alive=alive and svc_alive,
        api_codes=api_codes,
    )


def _scrape(url: str) -> list[str]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode().splitlines()
