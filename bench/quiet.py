"""Pages on normal days: how often the product pages at its default settings when nothing
is wrong, and how much of the labelled faults of the same data it still sees.

Usage::

    python bench/quiet.py [--data ../shared/data] [--only petshop nezha sim demo]
                          [--seeds 3] [--markdown FILE] [--set detector.alert_threshold=0.999]

Every dataset is streamed through the live replay code path
(:func:`causalwatch.app.pipeline.build_pipeline`, role ``all`` with ``replay=True``, one
batch per time step, as ``causalwatch replay`` runs it), so alerts are the detector's own
(``fired``: a new alert of one series) and pages are what receivers (webhooks,
Alertmanager) would get: the ``page`` of an incident, decided by the same code as the live
publisher (``Pipeline.process`` -> ``Stage.page_kinds`` -> ``ExplainQueue.pages_for``): one
per incident, and only once the incident's alerts agree (``explainer.page_agreement``:
two related nodes, or one node at two times; :mod:`explainer.incidents`). Incidents that
were explained but never paged are *watched* and counted apart; "incidents explained" is
the count of distinct incident ids of published explanations (the page count before the
agreement rule).

Datasets (normal data; series = series that delivered at least one sample):

* ``petshop-low`` / ``petshop-high``: PetShop ``noissue`` (about 49 h at 5 min);
* ``nezha-ob`` / ``nezha-tt``: the Nezha development days, streamed whole; only the quiet
  hours count (from 30 min after the last injection to the end of the recording);
* ``sim``: the simulator's normal day (``causalwatch.tooling.simulate``, 20-node random
  service graph, three metrics, 1,440 one-minute points, ``magnitude=0``), ``--seeds`` runs;
* ``demo``: the demo shop's normal day (``microservice_demo_scenario``, ``magnitude=0``).

Warm-up, counted apart: the first ``max(30 points, 30 min)`` of each series. Rates are per 100
series-days of counted (post-warm-up, quiet) time, summed over series.

Recall on labelled faults of the same data:

* Nezha: each injection is detected when a series of the injected service alerts from the
  injection until the next one (at most 10 min); "paged" when receivers get a page or an
  update of a paging incident on a target of the injected service in that time; "any
  explanation" when any explanation is published (watched or paged, any node) then;
* sim / demo: the same seeds with a fault of each kind (``latency_shift``, ``error_burst``,
  ``saturation``, ``variance_change``, ``slow_drift``; magnitude 1): detected when a series
  of a root or of the target node alerts during the fault; "paged" when receivers get a
  page or an update on a target of a root or the target node during the fault.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from causalwatch.app.pipeline import build_pipeline
from causalwatch.models import SampleBatch
from causalwatch.series import series_key
from causalwatch.settings import Settings, load_settings
from causalwatch.tooling.simulate import (
    FAULT_KINDS,
    Scenario,
    microservice_demo_scenario,
    simulate,
)
from explainer.dag import DependencyGraph, Edge

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WARMUP_POINTS = 30
WARMUP_S = 1800.0
DAY_S = 86_400.0


@dataclass
class Fault:
    nodes: frozenset[str]  # a series of one of these nodes must alert
    start: float
    end: float


@dataclass
class Dataset:
    """Values ``[series, steps]`` (NaN = no sample) at step times ``ts``."""

    name: str
    keys: list[str]
    nodes: list[str]
    ts: np.ndarray
    values: np.ndarray
    graph: DependencyGraph | None
    count_from: float = -np.inf  # quiet time counted from ...
    count_to: float = np.inf  # ... to
    faults: list[Fault] = field(default_factory=list)


@dataclass
class Outcome:
    alerts: list[tuple[float, str, str]]  # (ts, series key, node)
    incidents: dict[str, float]  # incident id -> first explanation time
    explained: list[tuple[float, str]]  # every new or changed explanation: (time, node)
    seconds: float
    pages: dict[str, float] = field(default_factory=dict)  # incident id -> page time
    sent: list[tuple[float, str]] = field(default_factory=list)  # pages + updates: (t, node)


def run(ds: Dataset, settings: Settings) -> Outcome:
    """Stream ``ds`` through the replay pipeline, one batch per time step."""
    pipe = build_pipeline(settings, "all", graph=ds.graph, replay=True)
    keys = np.array(ds.keys, dtype=object)
    alerts: list[tuple[float, str, str]] = []
    incidents: dict[str, float] = {}
    explained: list[tuple[float, str]] = []
    pages: dict[str, float] = {}
    sent: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    for k, t in enumerate(ds.ts.tolist()):
        col = ds.values[:, k]
        ok = np.isfinite(col)
        if not ok.any():
            continue
        n = int(ok.sum())
        batch = SampleBatch(
            keys[ok].tolist(), np.full(n, t), col[ok].astype(np.float64), np.full(n, -1)
        )
        out = pipe.process(batch)
        for ev in out.events:
            alerts.append((ev.ts, ev.series_key, ev.node))
        for exp in out.explanations:
            incidents.setdefault(exp.incident_id, exp.detected_at)
            explained.append((exp.detected_at, exp.target.node))
            kind = out.pages.get(exp.id, ("watch", 0.0))[0]
            if kind == "page":
                pages.setdefault(exp.incident_id, t)
            if kind != "watch":
                sent.append((t, exp.target.node))
    return Outcome(alerts, incidents, explained, time.perf_counter() - t0, pages, sent)


def summarise(ds: Dataset, out: Outcome) -> dict[str, Any]:
    """Alerts and pages in the counted time, per 100 series per day of post-warm-up time.

    A series' warm-up is its first ``max(30 points, 30 min)``; alerts before its end count as
    warm-up alerts. The counted span starts at the median end of warm-up (and at the
    dataset's ``count_from``); an incident counts when its first explanation is in the
    span, a page when it was sent in the span, a watched incident when it was explained in
    the span and never paged; the exposure is the sum over series of their post-warm-up
    time in the span.
    """
    present = np.isfinite(ds.values)
    has_any = present.any(axis=1)
    n_series = int(has_any.sum())
    step = float(np.median(np.diff(ds.ts))) if len(ds.ts) > 1 else 0.0
    warm_end: dict[str, float] = {}
    last_seen: dict[str, float] = {}
    for i in np.flatnonzero(has_any):
        idx = np.flatnonzero(present[i])
        by_points = float(ds.ts[idx[min(WARMUP_POINTS, len(idx) - 1)]])
        warm_end[ds.keys[i]] = max(by_points, float(ds.ts[idx[0]]) + WARMUP_S)
        last_seen[ds.keys[i]] = float(ds.ts[idx[-1]]) + step
    lo = max(ds.count_from, float(np.median(list(warm_end.values()))) if warm_end else 0.0)
    hi = min(ds.count_to, float(ds.ts[-1]) + step)
    exposure_s = sum(max(0.0, min(hi, last_seen[k]) - max(lo, w)) for k, w in warm_end.items())
    series_days = exposure_s / DAY_S
    in_warm = sum(1 for t, key, _ in out.alerts if t < warm_end.get(key, -np.inf))
    counted = [a for a in out.alerts if lo <= a[0] < hi and a[0] >= warm_end.get(a[1], np.inf)]
    inc_counted = [i for i, t in out.incidents.items() if lo <= t < hi]
    pages = [i for i, t in out.pages.items() if lo <= t < hi]
    watched = [i for i in inc_counted if i not in out.pages]
    norm = 100.0 / max(series_days, 1e-9)
    row: dict[str, Any] = {
        "dataset": ds.name,
        "series": n_series,
        "days": max(hi - lo, 0.0) / DAY_S,
        "series_days": series_days,
        "warmup_alerts": in_warm,
        "alerts": len(counted),
        "incidents": len(inc_counted),
        "pages": len(pages),
        "watched": len(watched),
        "alerts_per_100_day": len(counted) * norm,
        "incidents_per_100_day": len(inc_counted) * norm,
        "pages_per_100_day": len(pages) * norm,
        "seconds": out.seconds,
    }
    if ds.faults:
        hit = pagehit = anyhit = 0
        for f in ds.faults:
            if any(f.start <= t < f.end and nd in f.nodes for t, _, nd in out.alerts):
                hit += 1
            if _paged(f, out):
                pagehit += 1
            if any(f.start <= t < f.end for t, _ in out.explained):
                anyhit += 1
        row["faults"] = len(ds.faults)
        row["recall"] = hit / len(ds.faults)
        row["recall_paged"] = pagehit / len(ds.faults)
        row["recall_any_incident"] = anyhit / len(ds.faults)
    return row


def _paged(f: Fault, out: Outcome) -> bool:
    """Receivers got a page or an update on a target of the fault's nodes during it."""
    return any(f.start <= t < f.end and nd in f.nodes for t, nd in out.sent)


# ----------------------------------------------------------------------------- datasets
def petshop(root: Path, scenario: str) -> Dataset:
    base = root / "petshop-train" / scenario
    df = pd.read_csv(base / "noissue" / "metrics.csv", header=[0, 1, 2], index_col=0)
    keys = [series_key(str(m), {"service": str(n), "stat": str(s)}) for n, m, s in df.columns]
    nodes = [str(n) for n, _, _ in df.columns]
    adj = pd.read_csv(base / "graph.csv", index_col=0)
    edges = [
        Edge(str(callee), str(caller))
        for caller in adj.index
        for callee in adj.columns
        if adj.loc[caller, callee] == 1
    ]
    graph = DependencyGraph(edges, [str(n) for n in adj.index])
    return Dataset(
        f"petshop-{scenario.split('_')[0]}",
        keys,
        nodes,
        df.index.to_numpy(dtype=np.float64),
        df.to_numpy(dtype=np.float64).T.copy(),
        graph,
    )


def _service(pod: str) -> str:
    return "-".join(pod.split("-")[:-2])


def _wall(text: str) -> float:
    return float(np.datetime64(text[:19].replace(" ", "T"), "s").astype(np.int64))


def nezha(root: Path, day: str, short: str) -> Dataset:
    base = root / "nezha-dev" / day
    frames = {}
    for path in sorted((base / "metric").glob("*_metric.csv")):
        df = pd.read_csv(path)
        # the Time column is right in every file (adservice's TimeStamp is years off)
        t = np.array([_wall(s) for s in df["Time"].astype(str)], dtype=np.float64)
        t = np.round(t / 60.0) * 60.0
        pod = str(df["PodName"].iloc[0])
        df = df.drop(columns=["Time", "TimeStamp", "PodName"]).set_index(t)
        df = df[~df.index.duplicated(keep="first")]
        frames[_service(pod)] = df
    grid = np.unique(np.concatenate([f.index.to_numpy() for f in frames.values()]))
    keys, nodes, rows = [], [], []
    for svc, df in frames.items():
        df = df.reindex(grid)
        for col in df.columns:
            keys.append(series_key(str(col), {"service": svc}))
            nodes.append(svc)
            rows.append(df[col].to_numpy(dtype=np.float64))
    edges = []
    dep = base / "metric" / "dependency.csv"
    if dep.is_file():
        d = pd.read_csv(dep)
        for a, b in zip(d["Source"].astype(str), d["Target"].astype(str)):
            a_s, b_s = _service(a) or a, _service(b) or b
            if a_s in frames and b_s in frames and a_s != b_s:
                edges.append(Edge(b_s, a_s))  # callee -> caller
    graph = DependencyGraph(sorted(set(edges), key=lambda e: (e.cause, e.effect)), list(frames))
    inj = json.loads((base / "fault_list.json").read_text())
    starts = sorted(
        (_wall(f["inject_time"]), _service(f["inject_pod"])) for v in inj.values() for f in v
    )
    faults = []
    for i, (t, svc) in enumerate(starts):
        nxt = starts[i + 1][0] if i + 1 < len(starts) else t + 600.0
        faults.append(Fault(frozenset({svc}), t, min(nxt, t + 600.0)))
    return Dataset(
        f"nezha-{short}",
        keys,
        nodes,
        grid,
        np.vstack(rows),
        graph,
        count_from=starts[-1][0] + 1800.0,
        faults=faults,
    )


def _from_scenario(name: str, sc: Scenario) -> Dataset:
    graph = DependencyGraph([Edge(a, b) for a, b in sc.graph.edges], list(sc.graph.nodes))
    return Dataset(name, list(sc.series_keys), list(sc.series_nodes), sc.ts, sc.values, graph)


def _fault_of(sc: Scenario) -> Fault:
    return Fault(frozenset(set(sc.roots) | {sc.target_node}), sc.fault_start_ts, sc.fault_end_ts)


def simulated(seed: int, demo: bool, kind: str | None) -> tuple[Dataset, Fault | None]:
    mag = 0.0 if kind is None else 1.0
    fk = kind or "latency_shift"
    if demo:
        sc = microservice_demo_scenario(seed=seed, fault_kind=fk, magnitude=mag)
    else:
        sc = simulate(
            20,
            n_points=1440,
            seed=seed,
            fault_kind=fk,
            magnitude=mag,
            metrics=("latency_ms", "error_rate", "requests_per_s"),
        )
    name = ("demo" if demo else "sim") + ("" if kind is None else f"-{kind}")
    return _from_scenario(name, sc), (None if kind is None else _fault_of(sc))


def recall_runs(seeds: int, demo: bool, settings: Settings) -> tuple[int, int, int]:
    """(faults detected by an alert, faults paged, faults) over seeds x fault kinds."""
    hit = paged = total = 0
    for seed in range(seeds):
        for kind in FAULT_KINDS:
            ds, fault = simulated(seed, demo, kind)
            assert fault is not None
            out = run(ds, settings)
            total += 1
            hit += any(
                fault.start <= t < fault.end and nd in fault.nodes for t, _, nd in out.alerts
            )
            paged += _paged(fault, out)
    return hit, paged, total


def merge(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """Pool several runs of one dataset (seeds): sums, and rates over the pooled time."""
    out: dict[str, Any] = {"dataset": name, "series": rows[0]["series"]}
    keys = ("warmup_alerts", "alerts", "incidents", "pages", "watched", "seconds", "days")
    for k in (*keys, "series_days"):
        out[k] = sum(r[k] for r in rows)
    norm = 100.0 / max(out["series_days"], 1e-9)
    out["alerts_per_100_day"] = out["alerts"] * norm
    out["incidents_per_100_day"] = out["incidents"] * norm
    out["pages_per_100_day"] = out["pages"] * norm
    return out


def fmt(rows: list[dict[str, Any]]) -> str:
    head = (
        "| dataset | series | days counted | alerts in warm-up | alerts / 100 series / day |"
        " incidents explained / 100 series / day | **pages / 100 series / day** |"
        " watched, not paged | recall on faults (series / paged / any explanation) |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        rec = "–"
        if "recall" in r:
            rec = (
                f"{r['recall']:.2f} / {r['recall_paged']:.2f} / {r['recall_any_incident']:.2f}"
                f" ({r['faults']} faults)"
            )
        elif "recall_sim" in r:
            rec = f"{r['recall_sim']:.2f} / {r['recall_sim_paged']:.2f} / – ({r['faults']} faults)"
        lines.append(
            f"| {r['dataset']} | {r['series']} | {r['days']:.2f} | {r['warmup_alerts']} |"
            f" {r['alerts_per_100_day']:.1f} ({r['alerts']}) |"
            f" {r['incidents_per_100_day']:.1f} ({r['incidents']}) |"
            f" **{r['pages_per_100_day']:.1f}** ({r['pages']}) | {r['watched']} | {rec} |"
        )
    return "\n".join(lines)


def _overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for it in items:
        k, _, v = it.partition("=")
        sect, _, name = k.partition(".")
        out.setdefault(sect, {})[name] = json.loads(v)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument(
        "--only", nargs="+", default=["petshop", "nezha", "sim", "demo"],
        choices=["petshop", "nezha", "sim", "demo"],
    )  # fmt: skip
    ap.add_argument("--seeds", type=int, default=3, help="simulated days per generator")
    ap.add_argument("--no-recall", action="store_true", help="skip the simulated fault runs")
    ap.add_argument("--set", action="append", default=[], help="section.field=JSON value")
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args(argv)
    settings = load_settings(**_overrides(args.set))
    rows: list[dict[str, Any]] = []
    if "petshop" in args.only:
        for sc in ("low_traffic", "high_traffic"):
            if (args.data / "petshop-train" / sc).is_dir():
                ds = petshop(args.data, sc)
                rows.append(summarise(ds, run(ds, settings)))
                print(fmt(rows[-1:]).splitlines()[-1], flush=True)
    if "nezha" in args.only:
        for day, short in (("online-boutique-2022-08-22", "ob"), ("train-ticket-2023-01-29", "tt")):
            if (args.data / "nezha-dev" / day).is_dir():
                ds = nezha(args.data, day, short)
                rows.append(summarise(ds, run(ds, settings)))
                print(fmt(rows[-1:]).splitlines()[-1], flush=True)
    for gen in ("sim", "demo"):
        if gen not in args.only:
            continue
        runs = []
        for seed in range(args.seeds):
            ds, _ = simulated(seed, gen == "demo", None)
            runs.append(summarise(ds, run(ds, settings)))
        row = merge(runs, f"{gen} ({args.seeds} normal days)")
        if not args.no_recall:
            hit, paged, total = recall_runs(args.seeds, gen == "demo", settings)
            row["recall_sim"], row["faults"] = hit / max(total, 1), total
            row["recall_sim_paged"] = paged / max(total, 1)
        rows.append(row)
        print(fmt(rows[-1:]).splitlines()[-1], flush=True)
    table = fmt(rows)
    print(table)
    worst = max((r["pages_per_100_day"] for r in rows), default=0.0)
    print(f"worst pages / 100 series / day: {worst:.2f}")
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
