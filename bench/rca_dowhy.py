"""DoWhy's microservice example: does causalwatch name Caching Service, and how fast?

Data: ``../shared/data/dowhy-microservice`` (read its README): 10,000 normal requests with
one latency column per service, one outlier request (Website about 2 s slower) and 1,000
requests after a lasting shift; the causal graph (13 edges, callee -> caller). Truth for
both anomaly files: Caching Service. Rows have no timestamps; they are streamed one per
second (normal rows first, then the anomaly rows).

Ours: every row goes through ``Explainer.observe`` (series ``latency_s{service=...}``,
given graph, no learning); then ``Explainer.explain("Website", ..., at_ts=<last row>)``,
timed over ``--repeats`` calls (median). For the single outlier the anomaly window is that
one row; for the 1,000-row shift the explainer is asked at the last row with
``window_start`` = the first shifted row (the same input DoWhy's distribution_change
gets: normal rows vs all shifted rows), then, for the record, at the last row with its
default window (the run of anomalous Website bins ending there, at most
``--shift-points``), and streaming-style at the first shifted row where Website's robust
z exceeds 3 (where a detector would alert).

Peer, same inputs, same run: DoWhy 0.14 ``gcm.attribute_anomalies`` on the outlier (an
invertible SCM, mechanisms by ``gcm.auto.assign_causal_mechanisms``, fitted on the normal
rows, as in DoWhy's notebook) and ``gcm.distribution_change`` (normal rows vs the 1,000
shifted rows). Each DoWhy call runs once (they take tens of seconds); ``--quick`` fits
DoWhy on 2,000 normal rows instead of 10,000 and is marked in the output.

Run: ``python bench/rca_dowhy.py`` (about 2 minutes) or ``--quick``; ``--no-dowhy`` skips
the peer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rca_common import DOWHY_DATA as DATA
from _rca_common import DOWHY_METRIC as METRIC
from _rca_common import DOWHY_TARGET as TARGET
from _rca_common import DOWHY_TRUTH as TRUTH
from _rca_common import (
    dowhy_attribute,
    dowhy_distribution_change,
    dowhy_frames,
    print_table,
    ranked_nodes,
)

from causalwatch.series import SeriesIndex, series_key
from explainer.core import Explainer, ExplainerConfig
from explainer.dag import DependencyGraph, load_graph


def ours(
    graph: DependencyGraph, normal: pd.DataFrame, anomalous: pd.DataFrame,
    args: argparse.Namespace, anomaly_points: int, window_from_anomaly_start: bool = False,
) -> tuple[list[str], float]:  # fmt: skip
    cols = list(normal.columns)
    keys = [series_key(METRIC, {"service": c}) for c in cols]
    data = np.vstack([normal[cols].to_numpy(float), anomalous[cols].to_numpy(float)])
    ts_row = np.arange(data.shape[0], dtype=np.float64)  # one row per second
    cfg = ExplainerConfig(
        step_s=1.0,
        learn_graph=False,
        history_points=args.reference_points + anomaly_points + 8,
        reference_points=args.reference_points,
        anomaly_points=anomaly_points,
    )
    idx = SeriesIndex()
    ex = Explainer(cfg, graph, idx)
    rows = idx.rows_for(keys)
    keep_from = max(0, data.shape[0] - cfg.history_points)  # older rows fall out anyway
    for s in range(keep_from, data.shape[0], 500):
        block = data[s : s + 500]
        ex.observe(
            np.tile(rows, block.shape[0]),
            np.repeat(ts_row[s : s + 500], len(cols)),
            block.reshape(-1),
        )
    target_key = series_key(METRIC, {"service": TARGET})
    at = float(ts_row[-1])
    start = float(ts_row[len(normal)]) if window_from_anomaly_start else None
    times = []
    expl = None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        expl = ex.explain(TARGET, target_key, at, window_start=start)
        times.append(time.perf_counter() - t0)
    return ranked_nodes(expl), statistics.median(times)


def first_alert_row(normal: pd.DataFrame, shifted: pd.DataFrame, z: float = 3.0) -> int:
    """First shifted row where Website's robust z against the normal rows exceeds ``z``:
    where a detector would alert and a streaming explainer would be asked."""
    w = normal[TARGET].to_numpy(float)
    med = float(np.median(w))
    mad = float(np.median(np.abs(w - med))) * 1.4826
    zs = (shifted[TARGET].to_numpy(float) - med) / mad
    hits = np.flatnonzero(zs > z)
    return int(hits[0]) if hits.size else len(zs) - 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--reference-points", type=int, default=2000)
    ap.add_argument("--shift-points", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--no-dowhy", action="store_true")
    ap.add_argument("--quick", action="store_true", help="DoWhy fits on 2,000 normal rows")
    args = ap.parse_args(argv)
    graph = load_graph(args.data / "graph.csv")
    normal, outlier, shifted = dowhy_frames(args.data)
    edges = [(e.cause, e.effect) for e in graph.edges]
    print(
        f"# rca_dowhy: reference_points={args.reference_points} "
        f"shift_points={args.shift_points} repeats={args.repeats} quick={args.quick}"
    )
    rows = []
    results: dict[tuple[str, str], tuple[list[str], float]] = {}
    print("[rca_dowhy] ours ...", file=sys.stderr, flush=True)
    results[("outlier", "ours")] = ours(graph, normal, outlier, args, 1)
    results[("shift", "ours")] = ours(
        graph, normal, shifted, args, args.shift_points, window_from_anomaly_start=True
    )
    results[("shift-default", "ours")] = ours(graph, normal, shifted, args, args.shift_points)
    first = first_alert_row(normal, shifted)
    results[("shift-early", "ours")] = ours(
        graph, normal, shifted.iloc[: first + 1], args, args.shift_points
    )
    if not args.no_dowhy:
        fit_rows = normal.iloc[:2000] if args.quick else normal
        print("[rca_dowhy] DoWhy attribute_anomalies ...", file=sys.stderr, flush=True)
        results[("outlier", "dowhy")] = dowhy_attribute(edges, TARGET, fit_rows, outlier)
        print("[rca_dowhy] DoWhy distribution_change ...", file=sys.stderr, flush=True)
        results[("shift", "dowhy")] = dowhy_distribution_change(edges, TARGET, fit_rows, shifted)
    peer_name = {
        "outlier": "DoWhy gcm.attribute_anomalies",
        "shift": "DoWhy gcm.distribution_change",
    }
    cases = (
        ("outlier", "1 outlier row"),
        ("shift", "1,000-row shift, window = all 1,000 rows (window_start)"),
        ("shift-default", "1,000-row shift, asked at its last row, default window"),
        ("shift-early", f"1,000-row shift, asked at its first alerting row ({first})"),
    )
    for case, label in cases:
        for who in ("ours", "dowhy"):
            if (case, who) not in results:
                continue
            ranked, sec = results[(case, who)]
            rank = ranked.index(TRUTH) + 1 if TRUTH in ranked else "-"
            name = "causalwatch explain" if who == "ours" else peer_name[case]
            if who == "dowhy" and args.quick:
                name += " (fit on 2,000 rows)"
            rows.append([label, name, rank, ", ".join(ranked[:3]), 1e3 * sec])
    print_table(["case", "method", "rank of Caching Service", "top 3", "ms per explanation"], rows)
    for case in ("outlier", "shift"):
        if (case, "dowhy") in results:
            r = results[(case, "dowhy")][1] / results[(case, "ours")][1]
            print(f"speed-up on {case}: {r:.0f}x")
    ok = all(results[(c, "ours")][0][:1] == [TRUTH] for c in ("outlier", "shift"))
    ok_early = results[("shift-early", "ours")][0][:1] == [TRUTH]
    print(f"Caching Service first on the shift asked at its first alert: {ok_early}")
    print(f"Caching Service first for both files: {'yes' if ok else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
