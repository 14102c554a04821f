"""Shared helpers of the root-cause benchmarks: data loaders, scoring, progress, tables,
DoWhy calls."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from causalwatch.models import Explanation
from causalwatch.series import series_key
from explainer.dag import DependencyGraph, Edge
from explainer.results import ExplanationResult

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# --------------------------------------------------------------------------------------
# PetShop (../shared/data/petshop-train, read its README)
# --------------------------------------------------------------------------------------
PETSHOP_DATA = SHARED_DATA / "petshop-train"
PETSHOP_STEP_S = 300.0
PETSHOP_TARGET = "PetSite"
PETSHOP_SCENARIOS = ("low_traffic", "high_traffic")


def add_ranking_args(ap: Any) -> None:
    """``--no-graph-ranking``: the ranking with no given edge to the target."""
    ap.add_argument("--no-graph-ranking", choices=["star", "robust_z"], default=None)


def ranking_overrides(args: Any) -> dict[str, Any]:
    """``ExplainerConfig`` keyword arguments from :func:`add_ranking_args`'s options."""
    out: dict[str, Any] = {}
    if getattr(args, "no_graph_ranking", None):
        out["no_graph_ranking"] = args.no_graph_ranking
    return out


def petshop_graph(path: Path) -> DependencyGraph:
    """The call graph reversed: 1.0 at (row A, column B) means A calls B, so a slow or
    failing callee B degrades its caller A (causal edge B -> A)."""
    adj = pd.read_csv(path, index_col=0)
    edges = []
    for caller in adj.index:
        for callee in adj.columns:
            if adj.loc[caller, callee] == 1:
                edges.append(Edge(str(callee), str(caller)))
    return DependencyGraph(edges, [str(n) for n in adj.index])


def load_metrics(path: Path) -> pd.DataFrame:
    """A PetShop metrics file: three header rows (node, metric, statistic), unix s index."""
    return pd.read_csv(path, header=[0, 1, 2], index_col=0)


def column_keys(df: pd.DataFrame) -> list[str]:
    """One series per column: ``<metric>{service="<node>",stat="<statistic>"}``."""
    return [series_key(str(m), {"service": str(n), "stat": str(s)}) for n, m, s in df.columns]


def issue_times(normal: pd.DataFrame, n_rows: int, step_s: float = PETSHOP_STEP_S) -> np.ndarray:
    """Issue rows re-stamped to follow the normal rows, one step apart."""
    last = float(normal.index.to_numpy(dtype=float)[-1])
    return last + step_s * np.arange(1, n_rows + 1)


def petshop_issues(data: Path = PETSHOP_DATA) -> list[tuple[str, Path]]:
    """(scenario, issue folder) of the training split, in a fixed order."""
    return [
        (sc, d) for sc in PETSHOP_SCENARIOS for d in sorted((data / sc / "train").glob("issue_*"))
    ]


# --------------------------------------------------------------------------------------
# Nezha development days (../shared/data/nezha-dev, read its README)
# --------------------------------------------------------------------------------------
NEZHA_DATA = SHARED_DATA / "nezha-dev"
NEZHA_DAYS = {"nezha-ob": "online-boutique-2022-08-22", "nezha-tt": "train-ticket-2023-01-29"}


@dataclass(frozen=True)
class Injection:
    at: float  # unix seconds (from ``inject_time``, UTC wall clock)
    service: str
    kind: str


def nezha_service(pod: str) -> str:
    """``frontend-579b9bff58-t2dbm`` -> ``frontend`` (the pod name without its last two parts)."""
    return pod.rsplit("-", 2)[0]


def _utc(text: str) -> float:
    return datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


def nezha_metric_name(column: str) -> str:
    """A Prometheus-valid metric name from a Nezha column: ``CpuUsage(m)`` -> ``CpuUsage_m``."""
    out = "".join(c if c.isalnum() else "_" for c in column).strip("_")
    while "__" in out:
        out = out.replace("__", "_")
    return out


def nezha_day(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A whole day as (series keys, minute timestamps, values[time, series]).

    Times come from the ``Time`` column (the ``TimeStamp`` of one Online Boutique file is
    off by years); each pod's rows are put on the minute they were scraped in (the pods are
    scraped within a second of each other), one series ``<metric>{service="<svc>"}`` per
    metric column."""
    frames = []
    for f in sorted((folder / "metric").glob("*_metric.csv")):
        df = pd.read_csv(f)
        svc = nezha_service(str(df["PodName"].iloc[0]))
        t = np.array([_utc(s) for s in df["Time"].astype(str)])
        cols = [c for c in df.columns if c not in ("Time", "TimeStamp", "PodName")]
        block = df[cols].apply(pd.to_numeric, errors="coerce")
        block.columns = [series_key(nezha_metric_name(c), {"service": svc}) for c in cols]
        block.index = (np.floor(t / 60.0) * 60.0).astype(np.int64)
        frames.append(block[~block.index.duplicated(keep="last")])
    wide = pd.concat(frames, axis=1).sort_index()
    return list(wide.columns), wide.index.to_numpy(dtype=float), wide.to_numpy(dtype=float)


def nezha_injections(folder: Path) -> list[Injection]:
    """Injections in time order, timed by ``inject_time`` (some ``inject_timestamp`` values
    of the Train Ticket day are 8 hours early)."""
    raw = json.loads((folder / "fault_list.json").read_text())
    out = [
        Injection(_utc(str(x["inject_time"])), nezha_service(str(x["inject_pod"])),
                  str(x["inject_type"]))
        for hour in raw.values()
        for x in hour
    ]  # fmt: skip
    return sorted(out, key=lambda i: i.at)


def nezha_edges(folder: Path) -> list[tuple[str, str]]:
    """Causal edges (callee -> caller) of ``dependency.csv`` (``Source`` calls ``Target``),
    without hosts outside the application (IP addresses) and self-calls."""
    dep = pd.read_csv(folder / "metric" / "dependency.csv")
    out = set()
    for src, dst in zip(dep["Source"].astype(str), dep["Target"].astype(str)):
        if src == dst or dst.replace(".", "").isdigit() or src.replace(".", "").isdigit():
            continue
        out.add((dst, src))
    return sorted(out)


# --------------------------------------------------------------------------------------
# DoWhy microservice example (../shared/data/dowhy-microservice)
# --------------------------------------------------------------------------------------
DOWHY_DATA = SHARED_DATA / "dowhy-microservice"
DOWHY_TARGET = "Website"
DOWHY_TRUTH = "Caching Service"
DOWHY_METRIC = "latency_s"


def dowhy_frames(data: Path = DOWHY_DATA) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(10,000 normal requests, the one outlier request, the 1,000 shifted requests)."""
    return (
        pd.read_csv(data / "rca_microservice_architecture_latencies.csv"),
        pd.read_csv(data / "rca_microservice_architecture_anomaly.csv"),
        pd.read_csv(data / "rca_microservice_architecture_anomaly_1000.csv"),
    )


def ranked_nodes(expl: Explanation | ExplanationResult | None) -> list[str]:
    """Root-cause nodes of an explanation, best first (empty when there is none)."""
    if expl is None:
        return []
    return [rc.node for rc in expl.root_causes]


def hit_at(ranked: Sequence[str], roots: Iterable[str], k: int) -> float:
    """Share of the true roots found in the top ``k`` (capped by ``k``): 1/0 for one root;
    for two roots and k=1, 1 when the first answer is either root."""
    roots = list(roots)
    top = set(ranked[:k])
    found = sum(1 for r in roots if r in top)
    return found / min(k, len(roots))


class Progress:
    """A one-line progress report on stderr, at most every ``every_s`` seconds."""

    def __init__(self, total: int, label: str, every_s: float = 2.0) -> None:
        self.total, self.label, self.every_s = total, label, every_s
        self.done = 0
        self.t0 = time.perf_counter()
        self._last = 0.0

    def step(self, note: str = "") -> None:
        self.done += 1
        now = time.perf_counter()
        if now - self._last >= self.every_s or self.done == self.total:
            self._last = now
            el = now - self.t0
            eta = el / self.done * (self.total - self.done)
            print(
                f"\r[{self.label}] {self.done}/{self.total} {el:.0f}s eta {eta:.0f}s"
                f" {note[:60]:<60}",
                end="\n" if self.done == self.total else "",
                file=sys.stderr,
                flush=True,
            )


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Markdown table on stdout (floats with 3 significant digits)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if np.isnan(v):
                return "-"
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for r in rows:
        print("| " + " | ".join(fmt(v) for v in r) + " |")
    sys.stdout.flush()


def dowhy_attribute(
    edges: Sequence[tuple[str, str]],
    target: str,
    normal: Any,
    anomalous: Any,
    seed: int = 0,
    linear: bool = False,
) -> tuple[list[str], float]:
    """DoWhy 0.14 ``gcm.attribute_anomalies``: fit an invertible SCM on ``normal`` (a
    DataFrame, one column per node), attribute the ``anomalous`` rows' outlier score of
    ``target``. Returns (nodes ranked by mean attribution, seconds for fit + attribute).

    ``linear=False`` assigns mechanisms with ``gcm.auto`` (the library's recommended
    default, as in its microservice notebook); ``linear=True`` uses additive-noise linear
    models, DoWhy's cheapest setting."""
    import networkx as nx
    from dowhy import gcm

    gcm.config.disable_progress_bars()
    gcm.util.general.set_random_seed(seed)
    g = nx.DiGraph(list(edges))
    g.add_nodes_from(normal.columns)
    keep = nx.ancestors(g, target) | {target}
    g = g.subgraph(keep).copy()
    cols = [c for c in normal.columns if c in keep]
    t0 = time.perf_counter()
    scm = gcm.InvertibleStructuralCausalModel(g)
    if linear:
        for n in g.nodes:
            if g.in_degree(n) == 0:
                scm.set_causal_mechanism(n, gcm.EmpiricalDistribution())
            else:
                scm.set_causal_mechanism(
                    n, gcm.AdditiveNoiseModel(gcm.ml.create_linear_regressor())
                )
    else:
        gcm.auto.assign_causal_mechanisms(scm, normal[cols])
    gcm.fit(scm, normal[cols])
    contrib = gcm.attribute_anomalies(scm, target, anomaly_samples=anomalous[cols])
    dt = time.perf_counter() - t0
    score = {n: float(np.mean(v)) for n, v in contrib.items()}
    return sorted(score, key=lambda n: -score[n]), dt


def dowhy_distribution_change(
    edges: Sequence[tuple[str, str]],
    target: str,
    normal: Any,
    shifted: Any,
    seed: int = 0,
) -> tuple[list[str], float]:
    """DoWhy 0.14 ``gcm.distribution_change`` (auto-assigned mechanisms): which nodes'
    mechanisms changed between ``normal`` and ``shifted`` to move ``target``. Returns
    (nodes ranked by contribution, seconds)."""
    import networkx as nx
    from dowhy import gcm

    gcm.config.disable_progress_bars()
    gcm.util.general.set_random_seed(seed)
    g = nx.DiGraph(list(edges))
    g.add_nodes_from(normal.columns)
    keep = nx.ancestors(g, target) | {target}
    g = g.subgraph(keep).copy()
    cols = [c for c in normal.columns if c in keep]
    t0 = time.perf_counter()
    scm = gcm.ProbabilisticCausalModel(g)
    gcm.auto.assign_causal_mechanisms(scm, normal[cols])
    contrib = gcm.distribution_change(scm, normal[cols], shifted[cols], target)
    dt = time.perf_counter() - t0
    return sorted(contrib, key=lambda n: -contrib[n]), dt
