"""Shared helpers of the root-cause benchmarks: scoring, progress, tables, DoWhy calls."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from causalwatch.models import Explanation
from explainer.results import ExplanationResult

#: the ranking rules judged by leaving one system out (``ExplainerConfig`` fields)
RULES = ("delay_discount", "same_unit_rule", "coverage")


def add_rule_args(ap: Any) -> None:
    """``--rules-off a,b``: run with those ranking rules off (see :data:`RULES`)."""
    ap.add_argument("--rules-off", default="", help="comma list of " + ",".join(RULES))
    ap.add_argument("--no-graph-ranking", choices=["star", "robust_z"], default=None)


def rule_overrides(args: Any) -> dict[str, Any]:
    """``ExplainerConfig`` keyword arguments that turn off the rules in ``--rules-off``."""
    off = {r for r in str(getattr(args, "rules_off", "")).split(",") if r}
    unknown = off - set(RULES)
    if unknown:
        raise SystemExit(f"--rules-off: unknown {sorted(unknown)} (known: {RULES})")
    out: dict[str, Any] = {}
    if "delay_discount" in off:
        out["delay_discount"] = False
    if "same_unit_rule" in off:
        out["same_unit_rule"] = False
    if "coverage" in off:
        out["coverage_weight"] = 0.0
    if getattr(args, "no_graph_ranking", None):
        out["no_graph_ranking"] = args.no_graph_ranking
    return out


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
