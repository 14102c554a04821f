"""Root-cause ranking on simulated service graphs with known truth.

Scenarios: :func:`causalwatch.tooling.simulate.simulate` (random service DAGs of 10/50/200 nodes,
lagged linear and non-linear callee -> caller effects, daily load, AR(1) noise) with one
fault (latency_shift, error_burst, saturation, variance_change, slow_drift) at one root
(``--roots 2`` for two). The series explained is the scenario's ``target_series``: the
fault metric of the most downstream node where the fault is still clearly visible
(robust z >= 4); scenarios where no descendant shows it are skipped and counted.

Protocol: every series is streamed through ``Explainer.observe`` (60-step batches, in time
order) up to ``at`` = fault start + ``--at-offset`` steps (capped by the fault length), then
``Explainer.explain(target_node, target_series, at_ts)`` is timed. Graph modes:

- ``given``: the true graph, no learning (``learn_graph=False``);
- ``learned``: no given edges, Granger-learned edges only (``--learn-points`` steps fed);
- ``none``: no graph and no learning (the explainer falls back to the anomalous nodes).

Peer: DoWhy 0.14 ``gcm.attribute_anomalies`` on the same windows (given graph restricted to
the target's ancestors, one column per node = the fault metric, fitted on the reference
window, attributing the anomaly-window rows); a subset (``--dowhy-sizes``,
``--dowhy-seeds``) because each call costs seconds to minutes.

Figures: top-1 / top-3 recall per size x fault kind x mode, the share of empty answers,
milliseconds per explanation (median, p95) and the ancestor-set size. Seeded.

Run: ``python bench/rca_simulated.py`` (full), ``--quick`` (fewer seeds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rca_common import (
    Progress,
    add_ranking_args,
    dowhy_attribute,
    hit_at,
    print_table,
    ranked_nodes,
    ranking_overrides,
)

from causalwatch.series import SeriesIndex
from causalwatch.tooling.simulate import FAULT_KINDS, Scenario, simulate
from explainer.core import Explainer, ExplainerConfig
from explainer.dag import DependencyGraph, Edge

MODES = ("given", "learned", "none")


def make_explainer(
    sc: Scenario, mode: str, args: argparse.Namespace
) -> tuple[Explainer, SeriesIndex]:
    idx = SeriesIndex()
    if mode == "given":
        graph = DependencyGraph([Edge(c, e) for c, e in sc.edges], sc.nodes)
    else:
        graph = DependencyGraph([], sc.nodes)
    cfg = ExplainerConfig(
        step_s=sc.step_s,
        learn_graph=(mode == "learned"),
        history_points=args.history_points,
        reference_points=args.reference_points,
        anomaly_points=args.anomaly_points,
        seed=0,
        **ranking_overrides(args),
    )
    return Explainer(cfg, graph, idx), idx


def feed(ex: Explainer, idx: SeriesIndex, sc: Scenario, start: int, stop: int, batch: int) -> None:
    for s in range(start, stop, batch):
        keys, ts, x = sc.columns(s, min(stop, s + batch))
        ex.observe(idx.rows_for(keys), ts, x)


def at_index(sc: Scenario, offset: int) -> int:
    fault_len = round((sc.fault_end_ts - sc.fault_start_ts) / sc.step_s)
    return sc.fault_start + min(offset, fault_len - 1)


def run_ours(sc: Scenario, mode: str, args: argparse.Namespace) -> tuple[list[str], float, int]:
    ex, idx = make_explainer(sc, mode, args)
    at = at_index(sc, args.at_offset)
    need = args.learn_points if mode == "learned" else args.history_points + 1
    feed(ex, idx, sc, max(0, at + 1 - need), at + 1, 60)
    t0 = time.perf_counter()
    expl = ex.explain(sc.target_node, sc.target_series, float(sc.ts[at]))
    dt = time.perf_counter() - t0
    n_anc = len(ex.graph.ancestors(sc.target_node)) + 1
    return ranked_nodes(expl), dt, n_anc


def run_dowhy(sc: Scenario, args: argparse.Namespace) -> tuple[list[str], float]:
    import pandas as pd

    at = at_index(sc, args.at_offset)
    n_anom = min(args.anomaly_points, at - sc.fault_start + 1)
    ref_stop = at + 1 - n_anom
    ref = slice(max(0, ref_stop - args.dowhy_reference), ref_stop)
    anom = slice(ref_stop, at + 1)
    cols = {v: sc.series(v, sc.fault_metric) for v in sc.nodes}
    normal = pd.DataFrame({v: x[ref] for v, x in cols.items()})
    anomalous = pd.DataFrame({v: x[anom] for v, x in cols.items()})
    return dowhy_attribute(
        list(sc.edges), sc.target_node, normal, anomalous, seed=0, linear=args.dowhy_linear
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10,50,200")
    ap.add_argument("--kinds", default=",".join(FAULT_KINDS))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--seed-start", type=int, default=0, help="first seed")
    ap.add_argument("--roots", type=int, default=1, choices=[1, 2])
    ap.add_argument("--points", type=int, default=1500, help="simulated steps (60 s)")
    ap.add_argument("--sim-max-lag", type=int, default=1, help="edge lags 0..k steps")
    ap.add_argument("--nonlinear-share", type=float, default=0.4)
    ap.add_argument("--magnitude", type=float, default=1.0)
    ap.add_argument("--at-offset", type=int, default=9, help="explain this many steps in")
    ap.add_argument("--history-points", type=int, default=512)
    ap.add_argument("--reference-points", type=int, default=120)
    ap.add_argument("--anomaly-points", type=int, default=10)
    ap.add_argument("--learn-points", type=int, default=1200, help="steps fed in learned mode")
    ap.add_argument("--dowhy-sizes", default="10,50", help="'' to skip DoWhy")
    ap.add_argument("--dowhy-kinds", default="latency_shift,error_burst")
    ap.add_argument("--dowhy-seeds", type=int, default=2)
    ap.add_argument("--dowhy-reference", type=int, default=120, help="normal rows DoWhy fits on")
    ap.add_argument("--dowhy-linear", action="store_true", help="linear ANMs, not gcm.auto")
    ap.add_argument("--quick", action="store_true", help="3 seeds, DoWhy on 10 nodes only")
    add_ranking_args(ap)
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds = 3
        args.dowhy_sizes = "10" if args.dowhy_sizes else ""
        args.dowhy_seeds = 1
    sizes = [int(s) for s in args.sizes.split(",") if s]
    kinds = [k for k in args.kinds.split(",") if k]
    modes = [m for m in args.modes.split(",") if m]
    dw_sizes = {int(s) for s in args.dowhy_sizes.split(",") if s}
    dw_kinds = {k for k in args.dowhy_kinds.split(",") if k}
    print(
        f"# rca_simulated: seeds={args.seeds} roots={args.roots} points={args.points} "
        f"at_offset={args.at_offset} reference={args.reference_points} "
        f"anomaly={args.anomaly_points} learn_points={args.learn_points} "
        f"sim_max_lag={args.sim_max_lag} nonlinear_share={args.nonlinear_share} "
        f"magnitude={args.magnitude}"
    )

    # (size, kind, method) -> list of (top1, top3, empty, seconds, n_anc)
    res: dict[tuple[int, str, str], list[tuple[float, float, float, float, int]]] = defaultdict(
        list
    )
    skipped: dict[tuple[int, str], int] = defaultdict(int)
    misses: list[str] = []
    pairs: dict[int, list[tuple[float, float]]] = defaultdict(list)  # (ours, DoWhy) seconds
    total = len(sizes) * len(kinds) * args.seeds
    prog = Progress(total, "rca_simulated")
    for n in sizes:
        for kind in kinds:
            for seed in range(args.seed_start, args.seed_start + args.seeds):
                sc = simulate(
                    n,
                    n_points=args.points,
                    fault_kind=kind,
                    seed=seed,
                    n_roots=args.roots,
                    max_lag=args.sim_max_lag,
                    nonlinear_share=args.nonlinear_share,
                    magnitude=args.magnitude,
                )
                if sc.visibility[sc.target_node] < 4.0:
                    skipped[(n, kind)] += 1
                    prog.step(f"n={n} {kind} seed={seed} skipped (fault not visible downstream)")
                    continue
                ours_dt: dict[str, float] = {}
                for mode in modes:
                    ranked, dt, n_anc = run_ours(sc, mode, args)
                    ours_dt[mode] = dt
                    h1, h3 = hit_at(ranked, sc.roots, 1), hit_at(ranked, sc.roots, 3)
                    res[(n, kind, mode)].append((h1, h3, float(not ranked), dt, n_anc))
                    if mode == "given" and h1 < 1:
                        misses.append(
                            f"n={n} {kind} seed={seed}: roots={list(sc.roots)} target="
                            f"{sc.target_node} got={ranked[:3]}"
                        )
                if n in dw_sizes and kind in dw_kinds and seed < args.seed_start + args.dowhy_seeds:
                    ranked, dt = run_dowhy(sc, args)
                    h1, h3 = hit_at(ranked, sc.roots, 1), hit_at(ranked, sc.roots, 3)
                    res[(n, kind, "dowhy")].append((h1, h3, float(not ranked), dt, 0))
                    if "given" in ours_dt:
                        pairs[n].append((ours_dt["given"], dt))
                prog.step(f"n={n} {kind} seed={seed}")

    rows = []
    methods = [*modes, "dowhy"]
    for n in sizes:
        for kind in [*kinds, "all"]:
            for m in methods:
                if kind == "all":
                    vals = [v for k in kinds for v in res.get((n, k, m), [])]
                else:
                    vals = res.get((n, kind, m), [])
                if not vals:
                    continue
                arr = np.array([v[:4] for v in vals])
                ms = sorted(1e3 * v[3] for v in vals)
                anc = statistics.median(v[4] for v in vals) if m != "dowhy" else float("nan")
                sk = sum(skipped[(n, k)] for k in kinds) if kind == "all" else skipped[(n, kind)]
                rows.append([
                    n, kind, m, len(vals), sk, arr[:, 0].mean(), arr[:, 1].mean(),
                    arr[:, 2].mean(), statistics.median(ms), float(np.percentile(ms, 95)), anc,
                ])  # fmt: skip
    print_table(
        ["nodes", "fault", "method", "cases", "skipped", "top-1", "top-3", "empty",
         "ms median", "ms p95", "ancestors (median)"],
        rows,
    )  # fmt: skip
    # speed-up against DoWhy on exactly the cases both ran (ours: given graph)
    for n in sorted(pairs):
        ours_s = statistics.median(p[0] for p in pairs[n])
        peer_s = statistics.median(p[1] for p in pairs[n])
        print(
            f"speed-up vs DoWhy at {n} nodes ({len(pairs[n])} cases): median "
            f"{peer_s * 1e3:.0f} ms (DoWhy) / {ours_s * 1e3:.1f} ms (ours) = "
            f"{peer_s / ours_s:.0f}x"
        )
    if misses:
        print(f"\ngiven-graph top-1 misses ({len(misses)}):")
        for m in misses[:40]:
            print("  " + m)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
