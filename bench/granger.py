"""Incremental Granger: precision/recall of learned edges against the true graph, and cost.

Data: :func:`causalwatch.tooling.simulate.simulate` service graphs (latency per node, lagged linear
and non-linear effects, daily load pattern, AR(1) noise), the normal part only (before the
fault). The true causal edges are callee -> caller; each acts with a lag of 0..max_lag
steps, and Granger can only see lags >= 1, so recall is reported for all edges and for the
lagged ones.

Protocol per scenario: candidate pairs from :func:`explainer.granger.select_pairs` on the
first ``--select-points`` steps (bounded: ``per_effect`` causes per effect), then
``GrangerState.update_many`` step by step in batches of ``--batch`` steps over the rest,
then one ``test()``; an edge is learned when its BH q-value <= ``--alpha``.

- precision: learned edges that are true edges;
- ancestral precision: learned edges whose cause is a true ancestor of the effect
  (an indirect but correctly directed dependency);
- recall: true edges learned; lagged recall: true edges with lag >= 1 learned;
- cost: wall time of ``update_many`` per step (µs) and per pair-step (ns), and of ``test``.

Run: ``python bench/granger.py`` (about a minute) or ``--quick``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from causalwatch.tooling.simulate import simulate
from explainer.granger import GrangerState, select_pairs


def _prepare(x: np.ndarray, transform: str) -> np.ndarray:
    if transform == "diff":
        return np.diff(x, axis=0)
    return x


def run_one(n_nodes: int, seed: int, args: argparse.Namespace) -> dict[str, float]:
    sc = simulate(
        n_nodes,
        n_points=args.points,
        seed=seed,
        max_lag=args.sim_max_lag,
        fault_start=args.points - 10,
        fault_len=5,
    )
    nodes = list(sc.nodes)
    X = np.stack([sc.series(v, "latency_ms") for v in nodes], axis=1)[: sc.fault_start]
    X = _prepare(X, args.transform)
    true = set(sc.edges)
    lagged = {e for e in true if sc.edge_lags[e] >= 1}
    anc = {v: sc.graph.ancestors(v) for v in nodes}

    head = X[: args.select_points]
    pairs = select_pairs(head, per_effect=args.per_effect)
    st = GrangerState.empty(len(nodes), pairs, max_lag=args.max_lag, forgetting=args.forgetting)
    t0 = time.perf_counter()
    for s in range(0, X.shape[0], args.batch):
        st.update_many(X[s : s + args.batch])
    t_update = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = st.test()
    t_test = time.perf_counter() - t0

    learned = {
        (nodes[int(c)], nodes[int(e)])
        for (c, e), q in zip(st.pairs.tolist(), res.q_value.tolist())
        if q <= args.alpha
    }
    tp = len(learned & true)
    anc_ok = sum(1 for c, e in learned if c in anc[e])
    cand = {(nodes[int(c)], nodes[int(e)]) for c, e in pairs.tolist()}
    return {
        "pairs": float(len(pairs)),
        "learned": float(len(learned)),
        "precision": tp / len(learned) if learned else float("nan"),
        "anc_precision": anc_ok / len(learned) if learned else float("nan"),
        "recall": tp / len(true),
        "lag_recall": len(learned & lagged) / len(lagged) if lagged else float("nan"),
        "cand_recall": len(cand & true) / len(true),
        "us_per_step": 1e6 * t_update / X.shape[0],
        "ns_per_pair_step": 1e9 * t_update / (X.shape[0] * max(1, len(pairs))),
        "test_ms": 1e3 * t_test,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10,50,200")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--points", type=int, default=2000, help="steps simulated (60 s each)")
    ap.add_argument("--select-points", type=int, default=300)
    ap.add_argument("--per-effect", type=int, default=5)
    ap.add_argument("--max-lag", type=int, default=2, help="Granger lags p")
    ap.add_argument("--sim-max-lag", type=int, default=1, help="simulated edge lags 0..k")
    ap.add_argument("--forgetting", type=float, default=1.0)
    ap.add_argument("--alpha", type=float, default=0.01, help="BH q-value threshold")
    ap.add_argument("--batch", type=int, default=1, help="steps per update_many call")
    ap.add_argument("--transform", choices=["diff", "level"], default="diff")
    ap.add_argument("--quick", action="store_true", help="2 seeds, 1000 points")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.points = 2, 1000
    sizes = [int(s) for s in args.sizes.split(",")]
    cols = [
        "pairs", "learned", "precision", "anc_precision", "recall", "lag_recall",
        "cand_recall", "us_per_step", "ns_per_pair_step", "test_ms",
    ]  # fmt: skip
    print(
        f"# granger: seeds={args.seeds} points={args.points} p={args.max_lag} "
        f"alpha={args.alpha} transform={args.transform} per_effect={args.per_effect} "
        f"batch={args.batch} sim_max_lag={args.sim_max_lag}"
    )
    print("| nodes | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for n in sizes:
        rows = []
        for seed in range(args.seeds):
            print(f"  nodes={n} seed={seed} ...", file=sys.stderr, flush=True)
            rows.append(run_one(n, seed, args))
        means = {c: float(np.nanmean([r[c] for r in rows])) for c in cols}
        cells = [
            f"{means[c]:.0f}" if c in ("pairs", "learned") else f"{means[c]:.3g}" for c in cols
        ]
        print(f"| {n} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
