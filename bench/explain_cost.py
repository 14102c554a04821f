"""Time per explanation for a target with a 50-node ancestor set (p50 / p99).

Data: :func:`causalwatch.tooling.simulate.simulate` graphs of ``--nodes`` services; the
target is the node with the most ancestors (``--ancestors`` of them are kept by picking the
graph size). The explainer observes ``--history`` points of 60 s data with the given graph
and learned edges off, then explains the target at each of ``--repeats`` times inside and
around the fault (``Explainer.explain``, the on-demand path incidents also call).

Run: ``python bench/explain_cost.py`` (about a minute; numbers are per call on this
machine, under whatever else runs on it).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from causalwatch.series import SeriesIndex
from causalwatch.tooling.simulate import simulate
from explainer.config import ExplainerConfig
from explainer.core import Explainer
from explainer.dag import DependencyGraph, Edge


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ancestors", type=int, default=50)
    ap.add_argument("--history", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-graph", action="store_true", help="no graph (star ranking)")
    args = ap.parse_args()
    n_nodes = args.ancestors + 1
    for _ in range(40):
        sc = simulate(n_nodes, n_points=args.history + 80, fault_start=args.history, seed=args.seed)
        full = DependencyGraph([Edge(c, e) for c, e in sc.edges], sc.nodes)
        target = max(sc.nodes, key=lambda n: (len(full.ancestors(n)), n))
        if len(full.ancestors(target)) >= args.ancestors:
            break
        n_nodes += 2
    n_anc = len(full.ancestors(target))
    graph = DependencyGraph([], sc.nodes) if args.no_graph else full
    idx = SeriesIndex()
    ex = Explainer(ExplainerConfig(learn_graph=False), graph, idx)
    keys, ts, x = sc.columns(0, sc.n_points)
    ex.observe(idx.rows_for(keys), ts, x)
    key = f'{sc.metrics[0]}{{service="{target}"}}'
    times = []
    at_idx = np.linspace(sc.fault_start - 20, sc.n_points - 1, args.repeats).astype(int)
    ex.explain(target, key, float(sc.ts[at_idx[0]]))  # warm-up
    for i in at_idx:
        t0 = time.perf_counter()
        ex.explain(target, key, float(sc.ts[i]))
        times.append(1000.0 * (time.perf_counter() - t0))
    t = np.array(times)
    print(
        f"explain_latency: {len(sc.nodes)} nodes, target {target} with {n_anc} ancestors,"
        f" graph={'none' if args.no_graph else 'given'}, {args.repeats} calls:"
        f" p50 {np.percentile(t, 50):.1f} ms, p99 {np.percentile(t, 99):.1f} ms,"
        f" max {t.max():.1f} ms"
    )


if __name__ == "__main__":
    main()
