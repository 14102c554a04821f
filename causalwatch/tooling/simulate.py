"""Scenario generator with known truth: service call graphs, their metrics and injected faults.

Why: a root-cause explainer can only be measured where the cause is known. Real incident
data is scarce (PetShop has 16 training issues), so benchmarks, the demo and users who want
to try causalwatch get seeded synthetic scenarios whose truth (the graph, the root nodes and
the fault window) is written next to the samples.

Model
-----
A service graph is a DAG of *calls*: a frontend calls mid-tier services, which call
databases, caches and external providers at the leaves. The *causal* direction for latency
and errors is the reverse, callee -> caller: a slow database makes its callers slow. So
``edges`` are ``(cause, effect) == (callee, caller)``.

Per node and time step (``step_s`` seconds):

- ``requests_per_s`` flows down the call graph: a daily load curve at the frontend, split
  to callees by a per-edge call fraction, with multiplicative noise.
- ``latency_ms`` = own processing time + sum over callees of ``w * g(callee latency at
  t - lag)``. ``g`` is linear, convex (power 1.5 of the ratio to the callee's normal level)
  or concave (square root), lags are 0 to ``max_lag`` steps. Own time follows a queueing
  factor ``1 / (1 - utilisation)`` (so latency has a daily pattern and saturates) plus AR(1)
  noise.
- ``error_rate`` = own error rate (noisy, around 0.1-0.5 %) + call fraction times each
  callee's error rate (lagged), clipped to [0, 1].

Faults act on one or two root nodes in ``[fault_start, fault_start +
fault_len)``: ``latency_shift`` (latency + ``2 x magnitude x`` its normal level),
``error_burst`` (own error rate + about ``0.1 x magnitude``, jittered), ``saturation``
(capacity drops, utilisation rises to about 0.9: latency explodes non-linearly with load
and errors rise), ``variance_change`` (extra AR(1) noise of sd ``4 x magnitude x noise``
times the level) and ``slow_drift`` (latency ramps up to ``3 x magnitude x`` its normal
level). Latency faults scale with the root's observed latency level (own time plus
callees). Callers degrade only through the graph, so the truth is unambiguous.

Everything here is pure and seeded (NumPy ``default_rng(seed)``); only :func:`write_scenario`
does I/O. Cost: ``O(n_nodes x n_points)`` array work, about 10 ms for 200 nodes x 2,000
points.

Works poorly as a stand-in for: bursty, heavy-tailed real latencies (noise here is
Gaussian AR(1)), feedback loops (retries that load a callee more when it fails) and
request-rate faults; those are not modelled.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from causalwatch.errors import ConfigError
from causalwatch.series import series_key

__all__ = [
    "FAULT_KINDS",
    "METRICS",
    "Scenario",
    "ServiceGraph",
    "demo_service_graph",
    "microservice_demo_scenario",
    "random_service_dag",
    "scenario_samples",
    "simulate",
    "write_scenario",
]

FloatArray = npt.NDArray[np.float64]

FAULT_KINDS = ("latency_shift", "error_burst", "saturation", "variance_change", "slow_drift")
METRICS = ("latency_ms", "error_rate", "requests_per_s")
_FAULT_METRIC = {
    "latency_shift": "latency_ms",
    "error_burst": "error_rate",
    "saturation": "latency_ms",
    "variance_change": "latency_ms",
    "slow_drift": "latency_ms",
}

_SERVICE_NAMES = (
    "checkout", "cart", "catalog", "payment", "auth", "search", "recommendation",
    "shipping", "inventory", "orders", "pricing", "user-profile", "notification",
    "reviews", "ads", "currency", "email", "fraud-check", "session", "media",
)  # fmt: skip
_BACKENDS = ("db", "cache", "provider")


@dataclass(frozen=True)
class ServiceGraph:
    """A service call graph with its causal edges.

    ``nodes`` are ordered callers before callees (the frontend first), so ``reversed(nodes)``
    is a causal topological order. ``edges`` are causal ``(cause, effect)`` pairs, i.e.
    ``(callee, caller)``. ``kinds[node]`` is one of ``frontend``, ``gateway``, ``service``,
    ``db``, ``cache``, ``provider``.
    """

    nodes: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    kinds: Mapping[str, str]

    def callees(self, node: str) -> list[str]:
        """Causal parents of ``node`` (the services it calls)."""
        return [c for c, e in self.edges if e == node]

    def callers(self, node: str) -> list[str]:
        """Causal children of ``node`` (the services that call it)."""
        return [e for c, e in self.edges if c == node]

    def descendants(self, node: str) -> set[str]:
        """Every node that ``node`` can degrade (transitive callers)."""
        children: dict[str, list[str]] = {}
        for c, e in self.edges:
            children.setdefault(c, []).append(e)
        seen: set[str] = set()
        stack = [node]
        while stack:
            for nxt in children.get(stack.pop(), []):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    def ancestors(self, node: str) -> set[str]:
        """Every node that can degrade ``node`` (transitive callees)."""
        parents: dict[str, list[str]] = {}
        for c, e in self.edges:
            parents.setdefault(e, []).append(c)
        seen: set[str] = set()
        stack = [node]
        while stack:
            for nxt in parents.get(stack.pop(), []):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    def to_csv(self) -> str:
        """``cause,effect`` CSV text with a header, one causal edge per line."""
        return "cause,effect\n" + "".join(f"{c},{e}\n" for c, e in self.edges)


def _check_int(name: str, value: int, lo: int, hi: int | None = None) -> None:
    if not isinstance(value, (int, np.integer)) or value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise ConfigError(f"simulate: {name}={value!r} must be an integer {bound}", setting=name)


def random_service_dag(
    n_nodes: int,
    seed: int = 0,
    *,
    max_callees: int = 3,
    leaf_share: float = 0.35,
    extra_caller_prob: float = 0.25,
) -> ServiceGraph:
    """A random but realistic service call graph: frontend -> services -> backends.

    Node 0 is ``frontend``, node 1 ``api-gateway`` (called only by the frontend). About
    ``leaf_share`` of the nodes are backends (``*-db``, ``*-cache``, ``*-provider``) that call
    nothing; the rest are services, each calling one to ``max_callees`` nodes further down.
    Every node but the frontend has a caller; a node gets a second caller with probability
    ``extra_caller_prob``, so the graph is a DAG, not a tree (shared databases, diamonds).
    Names come from a list of common service names for small graphs and are generated
    (``svc-17``, ``svc-17-db``) beyond it.

    Parameters
    ----------
    n_nodes
        10 to 200 is the tested range (at least 3).
    seed
        The graph is a pure function of its arguments.

    Examples
    --------
    >>> g = random_service_dag(12, seed=1)
    >>> len(g.nodes), g.nodes[0], g.kinds[g.nodes[0]]
    (12, 'frontend', 'frontend')
    >>> all(g.nodes.index(c) > g.nodes.index(e) for c, e in g.edges)  # callee after caller
    True
    """
    _check_int("n_nodes", n_nodes, 3, 5000)
    rng = np.random.default_rng(seed)
    n_leaf = max(1, round(leaf_share * n_nodes))
    n_mid = n_nodes - 2 - n_leaf  # services besides frontend and gateway
    if n_mid < 1:
        n_leaf = n_nodes - 3
        n_mid = 1

    # Names: services then backends, each backend named after a service it belongs to.
    if n_mid <= len(_SERVICE_NAMES):
        mids = list(rng.permutation(np.array(_SERVICE_NAMES))[:n_mid].tolist())
    else:
        mids = [f"svc-{i:03d}" for i in range(n_mid)]
    leaf_kinds = rng.choice(np.array(_BACKENDS), size=n_leaf, p=[0.55, 0.3, 0.15]).tolist()
    leaves: list[str] = []
    used: set[str] = set()
    for i, kind in enumerate(leaf_kinds):
        owner = mids[i % len(mids)]
        name = f"{owner}-{kind}"
        k = 2
        while name in used:
            name = f"{owner}-{kind}-{k}"
            k += 1
        used.add(name)
        leaves.append(name)
    nodes = ["frontend", "api-gateway", *mids, *leaves]
    kinds: dict[str, str] = {"frontend": "frontend", "api-gateway": "gateway"}
    kinds.update({m: "service" for m in mids})
    kinds.update({name: kind for name, kind in zip(leaves, leaf_kinds)})

    n = len(nodes)
    first_leaf = 2 + n_mid
    calls: set[tuple[int, int]] = {(0, 1)}  # (caller, callee) by index
    has_caller = [False] * n
    has_caller[1] = True
    # Each node j >= 2 gets a caller among the non-leaf nodes before it; prefer nearby ones
    # (a layered look) but allow long jumps (gateway straight to a cache).
    for j in range(2, n):
        hi = min(j, first_leaf)
        lo = 1
        weights = np.exp(-0.15 * (hi - 1 - np.arange(lo, hi)))
        i = int(rng.choice(np.arange(lo, hi), p=weights / weights.sum()))
        calls.add((i, j))
        has_caller[j] = True
        if rng.random() < extra_caller_prob and hi - lo > 1:
            i2 = int(rng.integers(lo, hi))
            calls.add((i2, j))
    # Services call one to max_callees nodes; top up those with too few callees.
    out_deg = [0] * n
    for i, _ in calls:
        out_deg[i] += 1
    for i in range(2, first_leaf):
        want = int(rng.integers(1, max_callees + 1))
        while out_deg[i] < want:
            j = int(rng.integers(i + 1, n))
            if (i, j) not in calls:
                calls.add((i, j))
                out_deg[i] += 1
            elif out_deg[i] >= n - i - 1:
                break
    edges = tuple(
        sorted(
            ((nodes[j], nodes[i]) for i, j in calls),
            key=lambda e: (nodes.index(e[1]), nodes.index(e[0])),
        )
    )
    return ServiceGraph(nodes=tuple(nodes), edges=edges, kinds=kinds)


def demo_service_graph() -> ServiceGraph:
    """The fixed ten-service shop used by ``causalwatch demo`` (see
    :func:`microservice_demo_scenario`).

    >>> g = demo_service_graph()
    >>> sorted(g.callers("catalog-db"))
    ['catalog']
    """
    calls = [
        ("frontend", "api-gateway"),
        ("api-gateway", "auth"),
        ("api-gateway", "catalog"),
        ("api-gateway", "cart"),
        ("api-gateway", "checkout"),
        ("checkout", "cart"),
        ("checkout", "payment"),
        ("checkout", "catalog"),
        ("cart", "cart-db"),
        ("catalog", "catalog-db"),
        ("payment", "payment-provider"),
    ]
    nodes = (
        "frontend", "api-gateway", "checkout", "auth", "cart", "catalog", "payment",
        "cart-db", "catalog-db", "payment-provider",
    )  # fmt: skip
    kinds = {
        "frontend": "frontend", "api-gateway": "gateway", "checkout": "service",
        "auth": "service", "cart": "service", "catalog": "service", "payment": "service",
        "cart-db": "db", "catalog-db": "db", "payment-provider": "provider",
    }  # fmt: skip
    return ServiceGraph(nodes=nodes, edges=tuple((b, a) for a, b in calls), kinds=kinds)


@dataclass
class Scenario:
    """Samples of one simulated run plus its truth.

    ``values[i]`` is the time series of ``series_keys[i]`` (metric ``series_metrics[i]`` of
    node ``series_nodes[i]``) at times ``ts`` (unix seconds, every ``step_s``). ``roots`` are
    the faulty nodes; the fault is active for ``fault_start_ts <= t < fault_end_ts``.
    ``target_node`` is the node furthest downstream of the roots where the fault is clearly
    visible in ``fault_metric`` (the natural series to alert on and explain); with two roots
    a node both degrade is preferred. ``visibility[node]`` is that robust z (fault window
    against the 240 steps before it). ``edge_lags[(cause, effect)]`` is the delay in steps
    with which an edge acts and ``edge_shapes`` its form (``linear``, ``convex``,
    ``concave``), for judging learned graphs (Granger sees only lags >= 1).
    """

    graph: ServiceGraph
    metrics: tuple[str, ...]
    ts: FloatArray
    series_keys: list[str]
    series_nodes: list[str]
    series_metrics: list[str]
    values: FloatArray
    roots: tuple[str, ...]
    fault_kind: str
    fault_metric: str
    fault_start_ts: float
    fault_end_ts: float
    target_node: str
    step_s: float
    seed: int
    visibility: dict[str, float] = field(default_factory=dict)
    edge_lags: dict[tuple[str, str], int] = field(default_factory=dict)
    edge_shapes: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def nodes(self) -> tuple[str, ...]:
        return self.graph.nodes

    @property
    def edges(self) -> tuple[tuple[str, str], ...]:
        return self.graph.edges

    @property
    def n_points(self) -> int:
        return int(self.ts.shape[0])

    @property
    def fault_start(self) -> int:
        """Index of the first faulty time step."""
        return round((self.fault_start_ts - float(self.ts[0])) / self.step_s)

    @property
    def target_series(self) -> str:
        return series_key(self.fault_metric, {"service": self.target_node})

    def series(self, node: str, metric: str) -> FloatArray:
        """The values of one node's metric (a view, do not modify)."""
        row = self.series_keys.index(series_key(metric, {"service": node}))
        out: FloatArray = self.values[row]
        return out

    def columns(
        self, start: int = 0, stop: int | None = None
    ) -> tuple[list[str], FloatArray, FloatArray]:
        """Time steps ``[start, stop)`` as flat, time-ordered columns ``(keys, ts, value)``,
        the shape of a :class:`causalwatch.models.SampleBatch`."""
        stop = self.n_points if stop is None else stop
        n_series = len(self.series_keys)
        width = max(0, stop - start)
        keys = self.series_keys * width
        ts = np.repeat(self.ts[start:stop], n_series)
        value = self.values[:, start:stop].T.reshape(-1).copy()
        return keys, ts, value

    def truth(self) -> dict[str, Any]:
        """The truth as plain JSON-ready data (what ``truth.json`` holds)."""
        return {
            "roots": list(self.roots),
            "fault_kind": self.fault_kind,
            "fault_metric": self.fault_metric,
            "fault_start_ts": self.fault_start_ts,
            "fault_end_ts": self.fault_end_ts,
            "target": {"node": self.target_node, "series": self.target_series},
            "metrics": list(self.metrics),
            "nodes": list(self.graph.nodes),
            "kinds": dict(self.graph.kinds),
            "edges": [list(e) for e in self.graph.edges],
            "step_s": self.step_s,
            "n_points": self.n_points,
            "seed": self.seed,
        }


def _shift(x: FloatArray, lag: int) -> FloatArray:
    if lag <= 0:
        return x
    out = np.empty_like(x)
    out[:lag] = x[0]
    out[lag:] = x[:-lag]
    return out


def _ar1(rng: np.random.Generator, n: int, phi: float) -> FloatArray:
    """Unit-variance AR(1) noise (stationary from the first point)."""
    e = rng.standard_normal(n) * math.sqrt(1.0 - phi * phi)
    e[0] = rng.standard_normal()
    return np.asarray(lfilter([1.0], [1.0, -phi], e), dtype=np.float64)


def _pick_roots(graph: ServiceGraph, n_roots: int, rng: np.random.Generator) -> tuple[str, ...]:
    candidates = [n for n in graph.nodes if graph.kinds[n] not in ("frontend",)]
    if n_roots == 1:
        return (str(rng.choice(np.array(candidates))),)
    # Two roots neither of which is upstream of the other, so both are distinct causes.
    for _ in range(200):
        a, b = (str(v) for v in rng.choice(np.array(candidates), size=2, replace=False))
        if b not in graph.descendants(a) and a not in graph.descendants(b):
            return (a, b)
    raise ConfigError("simulate: no two independent root nodes in this graph", setting="n_roots")


def simulate(
    graph_or_n_nodes: ServiceGraph | int,
    n_points: int = 2000,
    step_s: float = 60.0,
    start_ts: float = 1_767_225_600.0,
    fault_kind: str = "latency_shift",
    n_roots: int = 1,
    fault_start: int | None = None,
    fault_len: int | None = None,
    seed: int = 0,
    *,
    metrics: Sequence[str] = ("latency_ms",),
    roots: Sequence[str] | None = None,
    magnitude: float = 1.0,
    noise: float = 0.08,
    max_lag: int = 1,
    nonlinear_share: float = 0.4,
    daily_amplitude: float = 0.4,
) -> Scenario:
    """Simulate a service graph's metrics with a fault at one or two root nodes.

    Parameters
    ----------
    graph_or_n_nodes
        A :class:`ServiceGraph`, or a node count for :func:`random_service_dag` (same seed).
    n_points, step_s, start_ts
        Length, sampling interval (seconds) and first timestamp (unix seconds; default
        2026-01-01T00:00Z, midnight, so the daily pattern starts at its trough).
    fault_kind
        One of :data:`FAULT_KINDS`.
    n_roots
        1 or 2 faulty nodes (two are chosen so that neither is upstream of the other).
    fault_start, fault_len
        First faulty step and number of faulty steps; default: 80 % into the run and
        ``max(10, n_points // 20)`` steps (clipped to the run).
    metrics
        Which of :data:`METRICS` to emit; the fault's own metric is always included.
    roots
        Force the faulty nodes instead of drawing them.
    magnitude
        Scales every fault (1.0: clearly visible at the root and usually two hops down).
    noise
        Own-latency noise sd as a fraction of the node's normal own latency.
    max_lag
        Callee effects reach callers 0 to ``max_lag`` steps later (drawn per edge).
    nonlinear_share
        Share of edges whose latency effect is convex or concave instead of linear.
    daily_amplitude
        Relative amplitude of the daily load curve.

    Examples
    --------
    >>> sc = simulate(10, n_points=300, fault_kind="latency_shift", seed=3)
    >>> sc.values.shape, len(sc.roots), sc.fault_metric
    ((10, 300), 1, 'latency_ms')
    >>> root = sc.series(sc.roots[0], "latency_ms")
    >>> bool(root[sc.fault_start:].mean() > 1.5 * root[: sc.fault_start].mean())
    True
    """
    if fault_kind not in FAULT_KINDS:
        raise ConfigError(
            f"simulate: fault_kind={fault_kind!r} is not one of {', '.join(FAULT_KINDS)}",
            setting="fault_kind",
        )
    _check_int("n_roots", n_roots, 1, 2)
    _check_int("n_points", n_points, 20)
    _check_int("max_lag", max_lag, 0, 10)
    if not step_s > 0:
        raise ConfigError(f"simulate: step_s={step_s!r} must be > 0 seconds", setting="step_s")
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise ConfigError(
            f"simulate: metrics {bad!r} unknown; choose from {', '.join(METRICS)}",
            setting="metrics",
        )
    if isinstance(graph_or_n_nodes, ServiceGraph):
        graph = graph_or_n_nodes
    else:
        graph = random_service_dag(int(graph_or_n_nodes), seed=seed)
    if fault_start is None:
        fault_start = int(0.8 * n_points)
    if fault_len is None:
        fault_len = max(10, n_points // 20)
    _check_int("fault_start", fault_start, 1, n_points - 1)
    _check_int("fault_len", fault_len, 1)
    fault_end = min(n_points, fault_start + fault_len)

    rng = np.random.default_rng(np.random.SeedSequence([seed, 7919]))
    if roots is None:
        root_nodes = _pick_roots(graph, n_roots, rng)
    else:
        unknown = [r for r in roots if r not in graph.kinds]
        if unknown:
            raise ConfigError(f"simulate: roots {unknown!r} are not nodes", setting="roots")
        root_nodes = tuple(roots)

    nodes = graph.nodes
    n = len(nodes)
    pos = {v: i for i, v in enumerate(nodes)}
    t = np.arange(n_points)
    ts: FloatArray = start_ts + t.astype(np.float64) * float(step_s)
    in_fault = (t >= fault_start) & (t < fault_end)
    ramp = np.where(in_fault, (t - fault_start + 1) / max(1, fault_end - fault_start), 0.0)

    # Per-edge parameters: call fraction, latency weight, shape, lag (caller, callee order).
    callees: list[list[tuple[int, float, float, str, int]]] = [[] for _ in range(n)]
    edge_lags: dict[tuple[str, str], int] = {}
    edge_shapes: dict[tuple[str, str], str] = {}
    for cause, effect in graph.edges:
        frac = float(rng.uniform(0.3, 1.0))
        weight = float(rng.uniform(0.6, 1.0))
        u = rng.random()
        shape = (
            "linear"
            if u >= nonlinear_share
            else ("convex" if u < nonlinear_share / 2 else "concave")
        )
        lag = int(rng.integers(0, max_lag + 1))
        callees[pos[effect]].append((pos[cause], frac, weight, shape, lag))
        edge_lags[(cause, effect)] = lag
        edge_shapes[(cause, effect)] = shape

    # Load: daily curve (trough at midnight UTC) with slow AR noise.
    day = 2 * math.pi * ((ts % 86400.0) / 86400.0)
    load = 1.0 - daily_amplitude * np.cos(day) + 0.05 * _ar1(rng, n_points, 0.9)
    load = np.maximum(load, 0.05)

    # Requests flow from callers to callees (nodes are in call order).
    base_rps = np.zeros(n)
    base_rps[0] = 200.0
    for i in range(n):
        for j, frac, _w, _s, _lag in callees[i]:
            base_rps[j] += frac * base_rps[i]
    rps = base_rps[:, None] * load[None, :] * (1.0 + 0.03 * rng.standard_normal((n, n_points)))
    rps = np.maximum(rps, 0.0)

    own_base = np.empty(n)
    for i, v in enumerate(nodes):
        kind = graph.kinds[v]
        lo, hi = {
            "frontend": (5.0, 15.0), "gateway": (2.0, 6.0), "service": (5.0, 30.0),
            "db": (3.0, 15.0), "cache": (0.5, 3.0), "provider": (40.0, 150.0),
        }.get(kind, (5.0, 30.0))  # fmt: skip
        own_base[i] = rng.uniform(lo, hi)
    # Capacity such that utilisation peaks around 0.45-0.6 in normal operation.
    peak = 1.0 + daily_amplitude
    capacity = base_rps * peak / rng.uniform(0.45, 0.6, size=n)
    capacity = np.maximum(capacity, 1e-9)
    sat_factor = np.ones((n, n_points))
    err_add = np.zeros((n, n_points))
    for r in root_nodes:
        i = pos[r]
        if fault_kind == "error_burst":
            jitter = rng.uniform(0.6, 1.4, size=n_points)
            err_add[i] += in_fault * 0.1 * magnitude * jitter
        elif fault_kind == "saturation":
            # Capacity drops so that utilisation averages about 0.9 in the window, whatever
            # the time of day (the queueing factor then grows about six-fold).
            rho_win = float(np.mean(rps[i, in_fault])) / capacity[i]
            boost = max(1.0, min(0.9, 0.5 + 0.4 * magnitude) / max(rho_win, 1e-6))
            sat_factor[i] = np.where(in_fault, boost, 1.0)
    is_root = np.zeros(n, dtype=bool)
    is_root[[pos[r] for r in root_nodes]] = True

    latency = np.zeros((n, n_points))
    errors = np.zeros((n, n_points))
    base_level = np.zeros(n)  # normal latency level per node, for the non-linear shapes
    for i in reversed(range(n)):  # callees before callers
        rho_normal = np.clip(rps[i] / capacity[i], 0.0, 0.97)
        rho = np.clip(rps[i] * sat_factor[i] / capacity[i], 0.0, 0.97)
        queue = (1.0 - 0.5) / (1.0 - rho_normal)  # 1.0 at 50 % utilisation
        own = own_base[i] * (0.6 + 0.4 * queue)
        own = own + noise * own_base[i] * _ar1(rng, n_points, 0.5)
        lat = np.maximum(own, 0.05 * own_base[i])
        for j, _frac, weight, shape, lag in callees[i]:
            x = _shift(latency[j], lag)
            ref = max(base_level[j], 1e-6)
            if shape == "convex":
                g = ref * (np.maximum(x, 0.0) / ref) ** 1.5
            elif shape == "concave":
                g = ref * np.sqrt(np.maximum(x, 0.0) / ref)
            else:
                g = x
            lat = lat + weight * g
        level = float(np.median(lat[: max(1, fault_start)]))
        if is_root[i]:
            # Faults scale with the node's observed latency (own time plus its callees'),
            # the level an operator sees, so their size means the same at every depth.
            if fault_kind == "latency_shift":
                lat = lat + in_fault * 2.0 * magnitude * level
            elif fault_kind == "slow_drift":
                lat = lat + ramp * 3.0 * magnitude * level
            elif fault_kind == "variance_change":
                extra = 4.0 * magnitude * noise * level * _ar1(rng, n_points, 0.5)
                lat = np.maximum(lat + in_fault * extra, 0.05 * level)
            elif fault_kind == "saturation":
                # An exhausted worker pool makes every request wait: the whole response
                # time grows with the queueing factor, not just the own processing time.
                q_fault = (1.0 - 0.5) / (1.0 - rho)
                lat = lat * (0.6 + 0.4 * q_fault) / (0.6 + 0.4 * queue)
        latency[i] = lat
        base_level[i] = level
        own_err = rng.uniform(0.001, 0.005) * np.abs(1.0 + 0.3 * rng.standard_normal(n_points))
        own_err = own_err + 0.5 * np.maximum(0.0, rho - 0.85) + err_add[i]
        err = own_err
        for j, frac, _w, _s, lag in callees[i]:
            err = err + frac * _shift(errors[j], lag)
        errors[i] = np.clip(err, 0.0, 1.0)

    fault_metric = _FAULT_METRIC[fault_kind]
    wanted = [m for m in METRICS if m in metrics or m == fault_metric]
    data = {"latency_ms": latency, "error_rate": errors, "requests_per_s": rps}
    keys: list[str] = []
    s_nodes: list[str] = []
    s_metrics: list[str] = []
    rows: list[FloatArray] = []
    for v in nodes:
        for m in wanted:
            keys.append(series_key(m, {"service": v}))
            s_nodes.append(v)
            s_metrics.append(m)
            rows.append(data[m][pos[v]])
    values = np.vstack(rows)

    visibility = _visibility(data[fault_metric], fault_start, fault_end, fault_kind)
    vis = {v: float(visibility[pos[v]]) for v in nodes}
    target = _target_node(graph, root_nodes, vis)
    return Scenario(
        graph=graph,
        metrics=tuple(wanted),
        ts=ts,
        series_keys=keys,
        series_nodes=s_nodes,
        series_metrics=s_metrics,
        values=values,
        roots=root_nodes,
        fault_kind=fault_kind,
        fault_metric=fault_metric,
        fault_start_ts=float(ts[fault_start]),
        fault_end_ts=float(start_ts + fault_end * float(step_s)),
        target_node=target,
        step_s=float(step_s),
        seed=seed,
        visibility=vis,
        edge_lags=edge_lags,
        edge_shapes=edge_shapes,
    )


def _visibility(x: FloatArray, start: int, end: int, fault_kind: str) -> FloatArray:
    """How clearly the fault shows per node: a robust z of the fault window vs before.

    For a variance change the statistic is the log ratio of spreads scaled like a z."""
    ref = x[:, max(0, start - 240) : start]
    win = x[:, start:end]
    med = np.median(ref, axis=1)
    mad = np.median(np.abs(ref - med[:, None]), axis=1) * 1.4826 + 1e-9
    if fault_kind == "variance_change":
        wmad = np.median(np.abs(win - np.median(win, axis=1)[:, None]), axis=1) * 1.4826
        return np.asarray(np.log((wmad + 1e-9) / mad) * np.sqrt(win.shape[1] / 2.0))
    return np.asarray(np.abs(np.median(win, axis=1) - med) / mad)


def _target_node(graph: ServiceGraph, roots: tuple[str, ...], vis: Mapping[str, float]) -> str:
    """The most downstream node where the fault still clearly shows (visibility >= 4):
    preferably one affected by every root, else one affected by any root, else the most
    visible affected node."""
    sets = [graph.descendants(r) for r in roots]
    common = set.intersection(*sets)
    union = set.union(*sets)
    for pool in (common, union):
        clear = sorted((v for v in pool if vis[v] >= 4.0), key=graph.nodes.index)
        if clear:
            return clear[0]  # nodes are in call order: the first is the furthest downstream
    if not union:
        return roots[0]
    return max(sorted(union), key=lambda v: vis[v])


def microservice_demo_scenario(
    seed: int = 0,
    *,
    n_points: int = 1440,
    step_s: float = 60.0,
    start_ts: float = 1_767_225_600.0,
    fault_node: str = "catalog-db",
    fault_kind: str = "latency_shift",
    fault_start: int | None = None,
    fault_len: int = 45,
    magnitude: float = 6.0,
) -> Scenario:
    """The demo shop: ten services with latency, error rate and request rate, one fault.

    ``frontend -> api-gateway -> {auth, catalog, cart, checkout}``, ``checkout -> {cart,
    payment, catalog}``, ``cart -> cart-db``, ``catalog -> catalog-db``, ``payment ->
    payment-provider`` (calls; causal edges are the reverse). X
    latency shifts up for 45 minutes at 80 % of a day of one-minute samples, so
    ``catalog``, ``checkout``, ``api-gateway`` and ``frontend`` degrade after it.

    >>> sc = microservice_demo_scenario(seed=0, n_points=200, fault_start=150, fault_len=30)
    >>> sc.roots, len(sc.series_keys)
    (('catalog-db',), 30)
    """
    return simulate(
        demo_service_graph(),
        n_points=n_points,
        step_s=step_s,
        start_ts=start_ts,
        fault_kind=fault_kind,
        fault_start=fault_start,
        fault_len=fault_len,
        seed=seed,
        metrics=METRICS,
        roots=(fault_node,),
        magnitude=magnitude,
    )


def scenario_samples(scenario: Scenario) -> Iterator[dict[str, Any]]:
    """Native samples, time-ordered: ``{"name", "labels": {"service"}, "timestamp",
    "value"}`` (timestamp in unix seconds), the JSON format the ingest stage decodes."""
    for k in range(scenario.n_points):
        t = float(scenario.ts[k])
        for i, (node, metric) in enumerate(zip(scenario.series_nodes, scenario.series_metrics)):
            yield {
                "name": metric,
                "labels": {"service": node},
                "timestamp": t,
                "value": float(scenario.values[i, k]),
            }


def write_scenario(scenario: Scenario, out_dir: str | Path) -> dict[str, Path]:
    """Write ``samples.jsonl``, ``graph.csv`` (``cause,effect``) and ``truth.json``.

    Creates ``out_dir`` if needed and overwrites the three files. Returns their paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "samples": out / "samples.jsonl",
        "graph": out / "graph.csv",
        "truth": out / "truth.json",
    }
    with paths["samples"].open("w", encoding="utf-8") as fh:
        for sample in scenario_samples(scenario):
            fh.write(json.dumps(sample, separators=(",", ":")))
            fh.write("\n")
    paths["graph"].write_text(scenario.graph.to_csv(), encoding="utf-8")
    paths["truth"].write_text(json.dumps(scenario.truth(), indent=2) + "\n", encoding="utf-8")
    return paths
