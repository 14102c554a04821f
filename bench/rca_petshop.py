"""Root-cause ranking on the PetShop training split (16 issues, low and high traffic).

Data: ``../shared/data/petshop-train`` (read its README): per scenario a call graph
(``graph.csv``: row A, column B = 1 means A calls B, so the causal edge is B -> A), 589 rows
of normal metrics at 300 s steps and 8 training issues of 5 rows each with a target
(always PetSite, metric latency or availability, statistic Average) and the true root node.
Only the train split is used.

Every metric column becomes one series ``<metric>{service="<node>",stat="<statistic>"}``
(latency Average/p50/p90/p95/p99, requests Sum, availability Average); NaN cells (no traffic
in the bucket) are simply not sent. The issue rows (other dates than the normal rows) are
re-stamped to follow the normal rows one step apart, so the stream is continuous and the
state after the normal rows can be computed once per scenario and copied per issue.

Modes:

(a) **given target and time** (the dataset authors' protocol): the explainer gets the
    graph, observes the normal rows and the issue rows up to the trigger row, then
    ``explain("PetSite", <target metric Average>, at_ts=trigger)``. The trigger row is the
    third row (index 2), or the first later row where the target is anomalous (robust z
    against the normal rows beyond ``--trigger-z`` in the bad direction: latency up,
    availability down).
(b) **fully automatic**: the live pipeline (``causalwatch.app.pipeline.build_pipeline``,
    default detector settings, this script's explainer configuration) runs on the stream
    normal + issue rows, one row per batch (``Pipeline.process``: detect -> fired events ->
    incidents and explanations). The answer is the last explanation published during
    the issue rows for PetSite's target metric, else for any PetSite series, else the most
    severe explanation of the issue window; no explanation there is an empty answer.
    Explanations published during the normal rows are counted as false alarms.

Peer (same run, mode a inputs): **z-score change**, which ranks the target node and its
ancestors by the largest robust z of their target-metric Average over the issue rows up
to the trigger, measured against the normal rows. It is the simple baseline family
("ranked correlation") that scored best in the dataset paper.

Figures: top-1 / top-3 recall and the share of empty answers per scenario x target
metric, and overall, for both modes and the peer; ms per explanation.

Note: all 16 training issues have the same root cause (PetSearch); the figures measure the
method on these issues and nothing here is tuned to that node.

Run: ``python bench/rca_petshop.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rca_common import PETSHOP_DATA as DATA
from _rca_common import PETSHOP_STEP_S as STEP_S
from _rca_common import PETSHOP_TARGET as TARGET_NODE
from _rca_common import (
    Progress,
    add_ranking_args,
    column_keys,
    hit_at,
    issue_times,
    load_metrics,
    print_table,
    ranked_nodes,
    ranking_overrides,
)
from _rca_common import petshop_graph as load_graph

from causalwatch.app.pipeline import Cores, Pipeline, build_pipeline
from causalwatch.models import Explanation, SampleBatch
from causalwatch.series import SeriesIndex, series_key
from causalwatch.settings import load_settings
from explainer.core import Explainer, ExplainerConfig
from explainer.dag import DependencyGraph


def used(graph: DependencyGraph, args: argparse.Namespace) -> DependencyGraph:
    """The graph the explainer gets: the call graph, or none with ``--no-graph``."""
    return DependencyGraph([], graph.nodes) if args.no_graph else graph


def trigger_row(normal: pd.DataFrame, issue: pd.DataFrame, metric: str, z_thr: float) -> int:
    col = (TARGET_NODE, metric, "Average")

    ref = normal[col].to_numpy(dtype=float)
    ref = ref[np.isfinite(ref)]
    med = float(np.median(ref))
    mad = float(np.median(np.abs(ref - med))) * 1.4826 or 1e-9
    x = issue[col].to_numpy(dtype=float)
    sign = 1.0 if metric == "latency" else -1.0
    for i in range(2, len(x)):
        if np.isfinite(x[i]) and sign * (x[i] - med) / mad > z_thr:
            return i
    return 2


def frame(df: pd.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(series keys per column, row timestamps, values [rows, cols])."""
    return column_keys(df), df.index.to_numpy(dtype=float), df.to_numpy(dtype=float)


def z_change_peer(
    normal: pd.DataFrame, issue: pd.DataFrame, graph: DependencyGraph, metric: str, trig: int
) -> list[str]:
    cands = sorted(graph.ancestors(TARGET_NODE) | {TARGET_NODE})
    score: dict[str, float] = {}
    for n in cands:
        col = (n, metric, "Average")
        if col not in normal.columns or col not in issue.columns:
            continue
        ref = normal[col].to_numpy(dtype=float)
        ref = ref[np.isfinite(ref)]
        win = issue[col].to_numpy(dtype=float)[: trig + 1]
        win = win[np.isfinite(win)]
        if ref.size < 10 or win.size == 0:
            continue
        med = float(np.median(ref))
        mad = float(np.median(np.abs(ref - med))) * 1.4826
        mad = max(mad, 1e-3 * abs(med), 1e-9)
        score[n] = float(np.max(np.abs(win - med)) / mad)
    return sorted(score, key=lambda n: (-score[n], n))


def make_config(args: argparse.Namespace, learn: bool) -> ExplainerConfig:
    return ExplainerConfig(
        step_s=STEP_S,
        history_points=args.history_points,
        reference_points=args.reference_points,
        anomaly_points=args.anomaly_points,
        learn_graph=learn,
        incident_window_s=args.incident_window_s,
        **ranking_overrides(args),
    )


def feed_rows(
    ex: Explainer, idx: SeriesIndex, keys: list[str], ts: np.ndarray, V: np.ndarray
) -> None:
    """Stream rows into the explainer alone (mode a: the target and time are given)."""
    rows_all = idx.rows_for(keys)
    for i in range(len(ts)):
        ok = np.isfinite(V[i])
        ex.observe(rows_all[ok], np.full(int(ok.sum()), ts[i]), V[i][ok])


def feed_pipeline(
    pipe: Pipeline, keys: list[str], ts: np.ndarray, V: np.ndarray
) -> list[tuple[int, list[Explanation], int]]:
    """Stream rows through the live pipeline, one row per batch; returns per row (row
    number, explanations published, alerts fired)."""
    out = []
    for i in range(len(ts)):
        ok = np.flatnonzero(np.isfinite(V[i]))
        batch = SampleBatch.from_lists(
            [keys[j] for j in ok.tolist()], [float(ts[i])] * ok.size, V[i][ok].tolist()
        )
        step = pipe.process(batch)
        out.append((i, step.explanations, len(step.events)))
    return out


def run_given(
    normal: pd.DataFrame, issue: pd.DataFrame, trig: int, graph: DependencyGraph,
    target_key: str, args: argparse.Namespace,
) -> tuple[list[str], float]:  # fmt: skip
    idx = SeriesIndex()
    ex = Explainer(make_config(args, args.learn_graph), graph, idx)
    feed_rows(ex, idx, *frame(normal))
    t_issue = issue_times(normal, len(issue))
    feed_rows(
        ex, idx, column_keys(issue), t_issue[: trig + 1], issue.to_numpy(dtype=float)[: trig + 1]
    )
    t0 = time.perf_counter()
    expl = ex.explain(TARGET_NODE, target_key, float(t_issue[trig]))
    return ranked_nodes(expl), time.perf_counter() - t0


def auto_prefix(
    normal: pd.DataFrame, graph: DependencyGraph, args: argparse.Namespace
) -> tuple[Pipeline, int]:
    """The pipeline after the normal rows, and the explanations it published there."""
    pipe = build_pipeline(
        load_settings(), "all", graph=graph, replay=True,
        explainer_cfg=make_config(args, args.learn_graph),
    )  # fmt: skip
    out = feed_pipeline(pipe, *frame(normal))
    return pipe, sum(len(e) for _, e, _ in out)


def copy_pipeline(pipe: Pipeline) -> Pipeline:
    """An independent copy of a pipeline's state (index, detector, explainer together)."""
    c = pipe.cores
    idx, det, ex = copy.deepcopy((c.index, c.detector, c.explainer))
    cores = Cores(index=idx, detector=det, explainer=ex, sensitivity=c.sensitivity)
    return build_pipeline(pipe.settings, "all", cores=cores, replay=True)


def run_auto(
    prefix: tuple[Pipeline, int], normal: pd.DataFrame, issue: pd.DataFrame, target_key: str,
) -> tuple[list[str], int, Explanation | None]:  # fmt: skip
    pipe = copy_pipeline(prefix[0])
    out = feed_pipeline(
        pipe, column_keys(issue), issue_times(normal, len(issue)), issue.to_numpy(dtype=float)
    )
    expls = [e for _, es, _ in out for e in es]
    chosen = pick_answer(expls, target_key)
    return ranked_nodes(chosen), sum(n for _, _, n in out), chosen


def pick_answer(expls: list[Explanation], target_key: str) -> Explanation | None:
    if not expls:
        return None
    for pred in (
        lambda e: e.target.series == target_key,
        lambda e: e.target.node == TARGET_NODE,
    ):
        hits = [e for e in expls if pred(e)]
        if hits:
            return hits[-1]
    return max(expls, key=lambda e: (e.severity, e.detected_at))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--history-points", type=int, default=600)
    ap.add_argument("--reference-points", type=int, default=120)
    ap.add_argument("--anomaly-points", type=int, default=10)
    ap.add_argument("--incident-window-s", type=float, default=900.0)
    ap.add_argument("--learn-graph", action="store_true", help="add Granger-learned edges")
    ap.add_argument("--trigger-z", type=float, default=3.0)
    ap.add_argument("--modes", default="given,auto")
    ap.add_argument("--verbose", action="store_true", help="print each issue's ranking")
    ap.add_argument("--no-graph", action="store_true", help="give the explainer no graph")
    add_ranking_args(ap)
    args = ap.parse_args(argv)
    modes = args.modes.split(",")
    print(
        f"# rca_petshop: data={args.data} history={args.history_points} "
        f"reference={args.reference_points} anomaly={args.anomaly_points} "
        f"learn_graph={args.learn_graph} trigger_z={args.trigger_z}"
    )
    issues = []
    for sc in ("low_traffic", "high_traffic"):
        for d in sorted((args.data / sc / "train").glob("issue_*")):
            issues.append((sc, d))
    prog = Progress(len(issues), "rca_petshop")
    res: dict[tuple[str, str, str], list[tuple[float, float, float]]] = defaultdict(list)
    times: dict[str, list[float]] = defaultdict(list)
    false_alarms: dict[str, list[int]] = defaultdict(list)
    details: list[str] = []
    cache: dict[str, tuple[DependencyGraph, pd.DataFrame]] = {}
    prefixes: dict[str, tuple[Pipeline, int]] = {}
    for sc, d in issues:
        if sc not in cache:
            cache[sc] = (load_graph(args.data / sc / "graph.csv"),
                         load_metrics(args.data / sc / "noissue" / "metrics.csv"))  # fmt: skip
        graph, normal = cache[sc]
        issue = load_metrics(d / "metrics.csv")
        meta: dict[str, Any] = json.loads((d / "target.json").read_text())
        metric = meta["target"]["metric"]
        root = meta["root_cause"]["node"]
        target_key = series_key(metric, {"service": TARGET_NODE, "stat": "Average"})
        trig = trigger_row(normal, issue, metric, args.trigger_z)
        answers: dict[str, list[str]] = {}
        if "given" in modes:
            ranked, dt = run_given(normal, issue, trig, used(graph, args), target_key, args)
            answers["ours (given target/time)"] = ranked
            times["given"].append(dt)
            answers["z-score change (given target/time)"] = z_change_peer(
                normal, issue, graph, metric, trig
            )
        if "auto" in modes:
            if sc not in prefixes:
                t0 = time.perf_counter()
                prefixes[sc] = auto_prefix(normal, used(graph, args), args)
                times["auto prefix (s)"].append(time.perf_counter() - t0)
                false_alarms[sc].append(prefixes[sc][1])
            ranked, n_fired, chosen = run_auto(prefixes[sc], normal, issue, target_key)
            answers["ours (automatic)"] = ranked
            if chosen is not None:
                details.append(
                    f"    auto: explained {chosen.target.series} (detected "
                    f"{chosen.detected_at:.0f}), {n_fired} alerts in the issue rows"
                )
            else:
                details.append(f"    auto: no explanation in the issue rows ({n_fired} alerts)")
        for method, ranked in answers.items():
            res[(method, sc, metric)].append(
                (hit_at(ranked, [root], 1), hit_at(ranked, [root], 3), float(not ranked))
            )
        line = f"{sc}/{d.name} {metric} root={root} trigger_row={trig}: " + "; ".join(
            f"{m.split(' ')[0] if 'ours' not in m else m}: {r[:3]}" for m, r in answers.items()
        )
        details.append(line)
        prog.step(f"{sc}/{d.name}")

    rows = []
    methods = sorted({m for m, _, _ in res})
    for m in methods:
        for sc in ("low_traffic", "high_traffic", "all"):
            for metric in ("latency", "availability", "all"):
                vals = [
                    v
                    for (mm, s, me), vs in res.items()
                    for v in vs
                    if mm == m and (sc == "all" or s == sc) and (metric == "all" or me == metric)
                ]
                if not vals or (sc == "all") != (metric == "all"):
                    continue
                a = np.array(vals)
                rows.append(
                    [m, sc, metric, len(vals), a[:, 0].mean(), a[:, 1].mean(), a[:, 2].mean()]
                )
    print_table(["method", "scenario", "target metric", "issues", "top-1", "top-3", "empty"], rows)
    if times.get("given"):
        ms = [1e3 * t for t in times["given"]]
        print(
            f"ms per explanation (given mode): median {statistics.median(ms):.1f},"
            f" max {max(ms):.1f}"
        )
    for sc, fa in false_alarms.items():
        print(f"automatic mode, {sc}: explanations published during the 589 normal rows: {fa[0]}")
    if args.verbose:
        print("\n".join(details))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
