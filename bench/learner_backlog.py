"""GrangerLearner fed a backlog partition by partition vs in time order, and its cost.

A synthetic system: ``nodes`` nodes in a chain (node i-1 drives node i one bin later),
``per`` series each, spread over ``partitions`` Kafka partitions (node i on partition
``i % partitions``). *In order* is one batch per bin (as ``causalwatch replay`` feeds it);
*backlog* is a consumer catching up: each poll is one partition's next ``fetch_bins`` bins,
partitions in turn, partition 0 first (so partition 0 runs up to ``fetch_bins`` bins ahead
of the others: with one open bin, its poll closed the bins they had not sent yet).
Reported per feed: the share of the window's cells (live series x bins) holding a value at
each refresh (mean, min), the chain edges learned, other edges learned (and whether the
backlog learned the in-order edges), and the CPU seconds in ``observe`` (with the part
outside the Granger update and the refresh: the binning). ``--cost`` times ``observe`` in
time order at ``--series`` series. ``--digest`` prints, per in-time-order feed (one batch
a bin; two batches a bin; 10% of cells missing; both; 7 bins a batch; whole bins missing;
both), a hash of the learned edges, the Granger sums and the window after every
``observe``: equal hashes on two trees mean the same learning call by call. Runs whatever
tree ``PYTHONPATH`` points at, so one command per tree gives the A/B.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from causalwatch.series import SeriesIndex
from explainer.config import ExplainerConfig
from explainer.dag import DependencyGraph
from explainer.learning import GrangerLearner

STEP = 60.0


def chain(nodes: int, per: int, T: int, seed: int) -> np.ndarray:
    """``X[t, node · per + i]``: node n's series i is 0.8 x node n-1's one bin back + noise."""
    rng = np.random.default_rng(seed)
    X = np.zeros((T, nodes * per))
    X[:, :per] = rng.normal(size=(T, per))
    for n in range(1, nodes):
        prev = np.vstack([np.zeros((1, per)), X[:-1, (n - 1) * per : n * per]])
        X[:, n * per : (n + 1) * per] = 0.8 * prev + rng.normal(size=(T, per))
    return X


def in_order(X: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(columns, bins) of each batch: one bin per batch."""
    cols = np.arange(X.shape[1])
    for t in range(X.shape[0]):
        yield cols, np.full(cols.size, t)


def backlog(
    X: np.ndarray, per: int, partitions: int, fetch_bins: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One partition's next ``fetch_bins`` bins per poll, partitions in turn."""
    node = np.arange(X.shape[1]) // per
    T = X.shape[0]
    for t0 in range(0, T, fetch_bins):
        tt = np.arange(t0, min(t0 + fetch_bins, T))
        for p in range(partitions):
            cols = np.flatnonzero(node % partitions == p)
            yield np.tile(cols, tt.size), np.repeat(tt, cols.size)


class Timed:
    """Wraps a method to sum its CPU seconds."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn, self.s = fn, 0.0

    def __call__(self, *a: Any, **k: Any) -> Any:
        t0 = time.process_time()
        try:
            return self.fn(*a, **k)
        finally:
            self.s += time.process_time() - t0


def run(X: np.ndarray, per: int, batches: Iterator[tuple[np.ndarray, np.ndarray]]) -> dict:
    nodes = X.shape[1] // per
    idx = SeriesIndex()
    keys = [f'm{{service="n{n:03d}",i="{i}"}}' for n in range(nodes) for i in range(per)]
    rows = idx.rows_for(keys)
    ln = GrangerLearner(ExplainerConfig(step_s=STEP), idx)
    shares: list[float] = []
    refresh = ln._refresh_pairs

    def counted(given: DependencyGraph) -> None:
        ordered = np.roll(ln.recent, -ln.recent_head, axis=0)[ln.recent.shape[0] - ln.recent_n :]
        shares.append(float(np.isfinite(ordered[:, rows]).mean()))
        refresh(given)

    timed_refresh = Timed(counted)
    ln._refresh_pairs = timed_refresh  # type: ignore[method-assign]
    timed_update = Timed(ln.state.update_many)
    ln.state.update_many = timed_update  # type: ignore[method-assign]
    g, cap, n, total = DependencyGraph(), 1 << int(np.ceil(np.log2(max(8, X.shape[1])))), 0, 0.0
    for cols, bins in batches:
        if ln.state.update_many is not timed_update:  # resize() keeps the state object
            ln.state.update_many = timed_update  # type: ignore[method-assign]
        t0 = time.process_time()
        ln.observe(rows[cols], bins * STEP, X[bins, cols], step_s=STEP, capacity=cap, given=g)
        total += time.process_time() - t0
        n += cols.size
    truth = {(f"n{i - 1:03d}", f"n{i:03d}") for i in range(1, nodes)}
    got = {(e.cause, e.effect) for e in ln.learned}
    return {
        "samples": n,
        "refreshes": len(shares),
        "window_share_mean": round(float(np.mean(shares)), 4) if shares else None,
        "window_share_min": round(float(np.min(shares)), 4) if shares else None,
        "chain_edges": f"{len(got & truth)} of {len(truth)}",
        "other_edges": len(got - truth),
        "edges": sorted(got),
        "observe_cpu_s": round(total, 3),
        "binning_cpu_s": round(total - timed_update.s - timed_refresh.s, 3),
        "binning_us_per_sample": round(1e6 * (total - timed_update.s - timed_refresh.s) / n, 3),
    }


def digest(mode: str, T: int = 400) -> str:
    """The per-``observe`` hash of one in-time-order feed of a 4-node chain (see module)."""
    rng = np.random.default_rng(1)
    X = chain(4, 5, T, 1)
    if "gappy" in mode:
        X[rng.random(X.shape) < 0.1] = np.nan
    if "holes" in mode:
        X[100:105] = X[200:202] = X[300] = np.nan
    idx = SeriesIndex()
    rows = idx.rows_for([f'm{{service="n{n}",i="{i}"}}' for n in range(4) for i in range(5)])
    ln, g = GrangerLearner(ExplainerConfig(step_s=STEP), idx), DependencyGraph()
    h = hashlib.sha256()
    sub, chunk = (2 if "sub" in mode else 1), (7 if "chunk" in mode else 1)
    for s in range(0, T, chunk):
        for k in range(sub):
            ok = np.isfinite(X[s : s + chunk])
            t, c = np.nonzero(ok)
            r, ts, x = rows[c], (s + t) * STEP + 20.0 * k, X[s + t, c] + k
            ln.observe(r, ts, x, step_s=STEP, capacity=32, given=g)
            h.update(repr([(e.cause, e.effect, e.strength, e.lag) for e in ln.learned]).encode())
            for a in (ln.state.A, ln.state.b, ln.state.n, ln.recent):
                h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--per", type=int, default=4)
    ap.add_argument("--bins", type=int, default=2000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--fetch-bins", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cost", action="store_true", help="time in-order observe only")
    ap.add_argument("--series", type=int, default=1000, help="with --cost")
    ap.add_argument("--digest", action="store_true", help="per-observe hashes, time order")
    a = ap.parse_args()
    if a.digest:
        modes = ("step", "sub", "gappy", "gappy_sub", "chunk", "holes", "holes_chunk")
        print(json.dumps({m: digest(m) for m in modes}, indent=1))
        return
    if a.cost:
        per = 10
        X = chain(a.series // per, per, a.bins, a.seed)
        out = {"in_order": run(X, per, in_order(X))}
    else:
        X = chain(a.nodes, a.per, a.bins, a.seed)
        out = {
            "in_order": run(X, a.per, in_order(X)),
            "backlog": run(X, a.per, backlog(X, a.per, a.partitions, a.fetch_bins)),
        }
        out["backlog"]["same_edges_as_in_order"] = (
            out["backlog"]["edges"] == out["in_order"]["edges"]
        )
    for v in out.values():
        v.pop("edges")
    print(json.dumps({"args": vars(a), **out}, indent=1))


if __name__ == "__main__":
    main()
