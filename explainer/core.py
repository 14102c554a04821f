"""The explainer stage: history, online graph learning, incidents and explanations.

:class:`Explainer` is a pure core: samples come in as arrays (``observe``), anomaly events
as :class:`~causalwatch.models.AnomalyEvent` (``on_anomalies``), times are passed in, and it
returns :class:`~causalwatch.models.Explanation` objects. The pipeline publishes them.

How one explanation is made (``explain``):

1. **Candidates** are the target's node and its ancestors in the merged graph (given edges
   plus learned Granger edges, a DAG) when the given graph reaches the target. Otherwise
   (no graph, or learned edges only) the other nodes whose series are anomalous in the
   same window become the candidates, as direct parents of the target, ranked by their own
   change and how long they have been anomalous (a fault shows first at its root).
2. **One series per candidate node** (a node may have latency, errors, requests ...): the
   series with the target's metric name and the same other labels; else, among the
   node's series with the target's metric name, the most anomalous; else the node's most
   anomalous series. "Most anomalous" is the largest robust z of the anomaly-window median
   against the reference window.
3. **Windows**: the rows are aligned on the union of their time bins (``step_s``, inferred
   from the data when not set). The anomaly window is the run of bins up to ``at_ts``
   where the target is anomalous (|robust z| > ``anomaly_z``), at least the ``at_ts``
   bin and at most ``anomaly_points`` bins; the reference window is the
   ``reference_points`` bins before it.
4. :func:`explainer.attribution.attribute` fits the linear SCM (parents at lags
   ``0..model_lags``), scores mechanism changes and computes Shapley shares. The ranking
   score in [0, 1] is 0.9 x the attribution score (0.4 identified, own share of the
   deviation + 0.4 confidence of an own mechanism change + 0.2 coverage: the share of the
   anomalous nodes that the node and its descendants make up, for nodes that changed
   themselves) + 0.1 x (1 - Granger q-value) of the candidate's series -> target series
   pair when it is tested. With a given graph, a candidate that was already deviated as
   in the window for longer than the propagation delay (``model_lags`` per hop) while
   the target showed under a quarter of the implied effect is discounted by
   ``(delay + 1) / (run + 1)`` (cause present, effect absent).
5. Incident alerts (``on_anomalies``) are analysed on the target node's least noisy
   series of the alert's metric that is anomalous in the same direction (an alert on a
   p95 is explained on the node's mean: percentiles do not add up along calls); the
   explanation's target stays the alerting series. ``explain`` analyses the series asked.

Works poorly when: the graph misses the true cause's edge to the target (it cannot be a
candidate unless no graph is given at all), two sibling nodes show the same fault (a
service and the client-side view of calls to it, with no edge between them: coverage of
the other anomalous nodes decides, else the larger identified share wins, and a slope
fitted on a very quiet reference under-states the true one), the reference window already
holds the fault (use ``window_start``), or a series has too few points before the anomaly
(``min_reference``).

Incidents: anomalies whose nodes are equal or ancestor/descendant of each other in the
graph, within ``incident_window_s`` of the incident's last event, form one incident; an
incident explains each anomalous target series separately, at that target's most severe
event so far (so recovering points do not dilute the evidence), and republishes a target
only when its ranked content changed (version + 1), with deterministic ids.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from causalwatch.errors import StateError
from causalwatch.models import AnomalyEvent, Explanation, RootCause, Target, TimeWindow
from causalwatch.series import SeriesIndex, split_series_key
from explainer.attribution import Attribution, _nanmedian, attribute, robust_scale
from explainer.dag import DependencyGraph, Edge
from explainer.granger import GrangerResult, GrangerState, select_pairs
from explainer.history import History, infer_step

__all__ = ["SCHEMA_VERSION", "Explainer", "ExplainerConfig", "IncidentSummary"]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ExplainerConfig:
    """Explainer hyperparameters (stored verbatim; see ``causalwatch.settings``).

    Times are unix seconds; ``*_points`` count aligned time bins of ``step_s`` seconds.
    ``step_s=None`` infers the step from the first series with three samples.
    """

    history_points: int = 512
    reference_points: int = 120
    anomaly_points: int = 10
    incident_window_s: float = 900.0
    learn_graph: bool = True
    max_root_causes: int = 5
    step_s: float | None = None
    anomaly_z: float = 3.0
    granger_max_lag: int = 2
    granger_forgetting: float = 0.999
    granger_alpha: float = 0.01
    granger_pairs_per_series: int = 4
    granger_refresh_steps: int = 64
    granger_min_points: int = 48
    granger_window_points: int = 128
    granger_max_screen_series: int = 2000
    n_samples: int = 256
    n_permutations: int = 32
    exact_max: int = 8
    model_lags: int = 1
    propagate_impact: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool, object]] = [
            ("history_points", self.history_points >= 16, self.history_points),
            ("reference_points", self.reference_points >= 3, self.reference_points),
            ("anomaly_points", self.anomaly_points >= 1, self.anomaly_points),
            ("incident_window_s", self.incident_window_s > 0, self.incident_window_s),
            ("max_root_causes", self.max_root_causes >= 1, self.max_root_causes),
            ("step_s", self.step_s is None or self.step_s > 0, self.step_s),
            ("granger_max_lag", self.granger_max_lag >= 1, self.granger_max_lag),
            ("granger_forgetting", 0 < self.granger_forgetting <= 1, self.granger_forgetting),
            ("granger_alpha", 0 < self.granger_alpha < 1, self.granger_alpha),
            ("model_lags", 0 <= self.model_lags <= 5, self.model_lags),
        ]
        for name, ok, value in checks:
            if not ok:
                raise StateError(f"explainer config {name} is invalid (got {value!r})")


@dataclass(frozen=True)
class IncidentSummary:
    """One open incident target, for metrics: root causes as ``(node, score, share)``, best
    first."""

    incident_id: str
    target_node: str
    target_series: str
    version: int
    root_causes: tuple[tuple[str, float, float], ...]


@dataclass
class _TargetState:
    node: str
    series: str
    row: int
    first_ts: float
    last_ts: float
    severity: float
    peak_ts: float = 0.0
    peak_severity: float = 0.0
    version: int = 0
    signature: str = ""
    root_causes: list[tuple[str, float, float]] = field(default_factory=list)


@dataclass
class _Incident:
    incident_id: str
    start_ts: float
    last_ts: float
    nodes: list[str]
    targets: dict[str, _TargetState]


@functools.lru_cache(maxsize=1 << 16)
def _identity(key: str, node_label: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Metric name and the labels other than the node label (cached: keys repeat)."""
    name, labels = split_series_key(key)
    labels.pop(node_label, None)
    return name, tuple(sorted(labels.items()))


def _finite(x: object) -> float | None:
    """A float, or None for NaN/inf (explanations are strict JSON)."""
    v = float(x)  # type: ignore[arg-type]
    return v if math.isfinite(v) else None


def _clean(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None, recursively."""
    if isinstance(obj, float):
        return _finite(obj)
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def _hops_to(parents: Sequence[Sequence[int]], target: int) -> FloatArray:
    """Per node: edges on the shortest directed path to ``target`` (0 for the target and for
    nodes that do not reach it), over parent index lists; breadth-first, ``O(edges)``."""
    hops = np.full(len(parents), -1.0)
    hops[target] = 0.0
    frontier = [target]
    while frontier:
        nxt = []
        for j in frontier:
            for k in parents[j]:
                if hops[k] < 0:
                    hops[k] = hops[j] + 1.0
                    nxt.append(int(k))
        frontier = nxt
    return np.asarray(np.maximum(hops, 0.0), dtype=np.float64)


def _digest(text: str, size: int = 8) -> str:
    return hashlib.blake2b(text.encode(), digest_size=size).hexdigest()


class Explainer:
    """Explains anomalous series by ranking root causes among their graph ancestors.

    Parameters
    ----------
    config
        :class:`ExplainerConfig`.
    graph
        The given dependency graph (learned edges are added when ``learn_graph``).
    index
        The shared :class:`~causalwatch.series.SeriesIndex` (rows -> series keys -> nodes).

    Cost: ``observe`` is ``O(batch)`` plus ``O(pairs · k²)`` per closed time bin (Granger);
    one explanation is ``O(nodes · T)`` for the fits and ``O(perm · nodes² · samples)`` for
    Shapley, a few milliseconds for 50 nodes.

    Examples
    --------
    >>> from causalwatch.series import SeriesIndex
    >>> idx = SeriesIndex()
    >>> g = DependencyGraph([Edge("db", "api")])
    >>> ex = Explainer(ExplainerConfig(step_s=60.0, learn_graph=False), g, idx)
    >>> rows = idx.rows_for(['lat{service="db"}', 'lat{service="api"}'])
    >>> rng = np.random.default_rng(0)
    >>> for t in range(200):
    ...     db = rng.normal(10, 1) + (8 if t >= 195 else 0)
    ...     ex.observe(rows, np.full(2, 60.0 * t), np.array([db, 2 * db + rng.normal()]))
    >>> e = ex.explain("api", 'lat{service="api"}', at_ts=60.0 * 199)
    >>> e.root_causes[0].node
    'db'
    """

    def __init__(self, config: ExplainerConfig, graph: DependencyGraph, index: SeriesIndex):
        self.config = config
        self.index = index
        self._given = graph.given()  # learned edges live in the explainer
        self._history = History(config.history_points)
        self._step_s = float(config.step_s or 0.0)
        self._granger = GrangerState.empty(
            0, np.zeros((0, 2), dtype=np.int64), config.granger_max_lag, config.granger_forgetting
        )
        self._open_bin = -1
        self._acc_sum = np.zeros(0)
        self._acc_cnt = np.zeros(0)
        self._since_refresh = 0
        # the last granger_window_points closed bin vectors (what Granger saw), oldest first
        # after a roll; candidate pairs are chosen from these, so batching cannot change them
        self._recent = np.full((config.granger_window_points, 0), np.nan)
        self._recent_n = 0
        self._recent_head = 0
        self._prev_vec = np.zeros(0)
        self._learned: list[Edge] = []
        self._result: GrangerResult | None = None
        self._pair_pos: dict[tuple[int, int], int] = {}
        self._merged: DependencyGraph | None = None
        self._incidents: dict[str, _Incident] = {}

    # -- graph ---------------------------------------------------------------------------
    @property
    def graph(self) -> DependencyGraph:
        """The merged graph (given edges win, learned edges added when acyclic); a DAG."""
        if self._merged is None:
            learned = self._learned if self.config.learn_graph else []
            self._merged = self._given.merged_with(learned)
        return self._merged

    def set_graph(self, given: DependencyGraph) -> None:
        """Replace the given graph (a reload); learned edges are kept.

        Edges of ``given`` with ``provenance="learned"`` are dropped: the explainer's own
        tests own the learned edges (passing :attr:`graph` back in is therefore safe).
        """
        self._given = given.given()
        self._merged = None

    def learned_edges(self) -> list[Edge]:
        """Node-level edges whose Granger test passed the FDR level at the last refresh."""
        return list(self._learned)

    @property
    def step_s(self) -> float:
        """The aligned time step in seconds (0.0 until inferred)."""
        return self._step_s

    # -- learning ------------------------------------------------------------------------
    def observe(self, rows: IntArray, ts: FloatArray, x: FloatArray) -> None:
        """Record samples (history) and feed closed time bins to the Granger tests.

        ``rows`` are :class:`SeriesIndex` rows, ``ts`` unix seconds, ``x`` values; a row may
        repeat. Samples older than the open Granger bin still enter the history. ``O(batch)``.
        """
        rows = np.asarray(rows, dtype=np.int64)
        ts = np.asarray(ts, dtype=np.float64)
        x = np.asarray(x, dtype=np.float64)
        if not (rows.shape == ts.shape == x.shape):
            raise StateError(
                f"observe: rows, ts, x lengths differ ({rows.size}, {ts.size}, {x.size})"
            )
        if rows.size == 0:
            return
        self._history.append(rows, ts, x)
        if self._step_s <= 0:
            self._infer_step(rows)
        if self.config.learn_graph and self._step_s > 0:
            self._granger_observe(rows, ts, x)

    def _infer_step(self, rows: IntArray) -> None:
        for r in np.unique(rows)[:16].tolist():
            if self._history.count[r] >= 3:
                step = infer_step(self._history.row_ts(r))
                if step > 0:
                    self._step_s = step
                    log.info("explainer step inferred", extra={"step_s": step})
                    return

    def _ensure_capacity(self) -> None:
        cap = self._history.capacity
        if self._granger.n_series < cap:
            self._granger.resize(cap)
            pad = cap - self._acc_sum.size
            self._acc_sum = np.concatenate([self._acc_sum, np.zeros(pad)])
            self._acc_cnt = np.concatenate([self._acc_cnt, np.zeros(pad)])
            self._prev_vec = np.concatenate([self._prev_vec, np.full(pad, np.nan)])
            extra = np.full((self._recent.shape[0], cap - self._recent.shape[1]), np.nan)
            self._recent = np.concatenate([self._recent, extra], axis=1)

    def _granger_observe(self, rows: IntArray, ts: FloatArray, x: FloatArray) -> None:
        self._ensure_capacity()
        ok = np.isfinite(ts) & np.isfinite(x)
        bins = np.floor(ts / self._step_s).astype(np.int64)
        ok &= bins >= self._open_bin
        if not ok.any():
            return
        rows, bins, x = rows[ok], bins[ok], x[ok]
        cap = self._acc_sum.size
        closed: list[FloatArray] = []
        for u in np.unique(bins).tolist():
            if self._open_bin >= 0 and u > self._open_bin:
                closed.append(self._close_bin())
                gap = min(u - self._open_bin - 1, self.config.granger_max_lag)
                closed.extend(np.full(cap, np.nan) for _ in range(gap))
            self._open_bin = u
            sel = bins == u
            self._acc_sum += np.bincount(rows[sel], weights=x[sel], minlength=cap)
            self._acc_cnt += np.bincount(rows[sel], minlength=cap)
        pending: list[FloatArray] = []
        for vec in closed:
            # Granger sees first differences: levels share the daily load curve, which makes
            # almost every pair "significant" (a common driver, not causation)
            pending.append(vec - self._prev_vec)
            self._prev_vec = vec
            self._recent[self._recent_head] = vec
            self._recent_head = (self._recent_head + 1) % self._recent.shape[0]
            self._recent_n = min(self._recent_n + 1, self._recent.shape[0])
            self._since_refresh += 1
            due = self.config.granger_refresh_steps
            if self._result is None:
                due = min(due, 32)
            if self._since_refresh >= due:
                self._granger.update_many(np.vstack(pending))
                pending = []
                self._refresh_pairs()
        if pending:
            self._granger.update_many(np.vstack(pending))

    def _close_bin(self) -> FloatArray:
        with np.errstate(invalid="ignore", divide="ignore"):
            vec = np.where(self._acc_cnt > 0, self._acc_sum / np.maximum(self._acc_cnt, 1), np.nan)
        self._acc_sum[:] = 0.0
        self._acc_cnt[:] = 0.0
        return vec

    def _live_rows(self) -> IntArray:
        return np.array(sorted(r for _, r in self.index.items()), dtype=np.int64)

    def _refresh_pairs(self) -> None:
        """Re-select candidate pairs and re-read the tests into learned node edges."""
        self._since_refresh = 0
        live = self._live_rows()
        live = live[live < self._granger.n_series]
        if live.size >= 2:
            ordered = np.roll(self._recent, -self._recent_head, axis=0)
            V = ordered[ordered.shape[0] - self._recent_n :][:, live].T
            nodes = [self.index.node_of(int(r)) for r in live.tolist()]
            node_id = {n: i for i, n in enumerate(sorted(set(nodes)))}
            gid = np.array([node_id[n] for n in nodes], dtype=np.int64)
            forced = self._forced_pairs(live, nodes)
            local = select_pairs(
                V.T,
                # the correlation screen is O(series² · window): above the cap only the
                # given graph's pairs are tested
                per_effect=(
                    self.config.granger_pairs_per_series
                    if live.size <= self.config.granger_max_screen_series
                    else 0
                ),
                forced=forced,
                exclude_same_group=gid,
            )
            self._granger.set_pairs(live[local] if local.size else np.zeros((0, 2), np.int64))
        self._read_tests()

    def _forced_pairs(self, live: IntArray, nodes: list[str]) -> IntArray:
        """Given edges, in both directions, between series of the same metric name."""
        by: dict[tuple[str, str], list[int]] = {}
        for i, r in enumerate(live.tolist()):
            name = _identity(self.index.key_of(r), self.index.node_label)[0]
            by.setdefault((nodes[i], name), []).append(i)
        out: list[tuple[int, int]] = []
        names = {name for _, name in by}
        for e in self._given.edges:
            for name in names:
                for a in by.get((e.cause, name), []):
                    for b in by.get((e.effect, name), []):
                        out.extend([(a, b), (b, a)])
        return np.array(out, dtype=np.int64).reshape(-1, 2)

    def _read_tests(self) -> None:
        res = self._granger.test(min_n=float(self.config.granger_min_points))
        self._result = res
        self._pair_pos = {
            (int(a), int(b)): i for i, (a, b) in enumerate(self._granger.pairs.tolist())
        }
        best: dict[tuple[str, str], Edge] = {}
        for i in np.flatnonzero(res.q_value <= self.config.granger_alpha).tolist():
            ca, ef = (int(v) for v in self._granger.pairs[i])
            try:
                u, v = self.index.node_of(ca), self.index.node_of(ef)
            except StateError:
                continue
            if u == v:
                continue
            e = Edge(
                u, v, "learned", float(res.strength[i]), float(res.q_value[i]), int(res.lag[i])
            )
            old = best.get((u, v))
            if old is None or (e.strength or 0.0) > (old.strength or 0.0):
                best[(u, v)] = e
        self._learned = sorted(best.values(), key=lambda e: (e.cause, e.effect))
        self._merged = None

    # -- explaining ----------------------------------------------------------------------
    def _node_rows(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for _, row in self.index.items():
            out.setdefault(self.index.node_of(row), []).append(row)
        for rows in out.values():
            rows.sort()
        return out

    def _step_for(self, row: int) -> float:
        if self._step_s > 0:
            return self._step_s
        step = infer_step(self._history.row_ts(row))
        if step <= 0:
            raise StateError(f"explainer: cannot infer step_s from series row {row}")
        return step

    def explain(
        self,
        node: str,
        series_key: str | None,
        at_ts: float,
        *,
        window_start: float | None = None,
    ) -> Explanation:
        """Explain ``series_key`` of ``node`` at ``at_ts`` (on demand; ``incident_id`` ad hoc).

        With ``series_key=None`` the node's most anomalous series at ``at_ts`` is the target.
        ``window_start`` (unix seconds) fixes the anomaly window to ``[window_start, at_ts]``
        (e.g. a known change point; the history must hold it plus ``reference_points``);
        by default the window is the run of anomalous target bins ending at ``at_ts``.
        Raises :class:`~causalwatch.errors.StateError` when the node has no series.
        """
        target_row = self._pick_target(node, series_key, at_ts)
        key = self.index.key_of(target_row)
        inc = "adhoc-" + _digest(f"{node}|{key}|{at_ts!r}", 6)
        rcs, window, severity = self._rank(node, target_row, at_ts, window_start)
        return self._build(inc, 1, node, key, at_ts, window, severity, rcs)

    def _pick_target(self, node: str, series_key: str | None, at_ts: float) -> int:
        if series_key is not None:
            row = self.index.get(series_key)
            if row is None:
                raise StateError(f"explain: unknown series {series_key!r}")
            return row
        rows = self._node_rows().get(node)
        if not rows:
            raise StateError(f"explain: node {node!r} has no series")
        step = self._step_for(rows[0])
        _, V = self._history.aligned(
            np.array(rows), at_ts, step, self.config.reference_points + self.config.anomaly_points
        )
        z = self._zscores(V, min(self.config.anomaly_points, max(V.shape[1] - 3, 1)))
        return rows[int(np.argmax(np.abs(np.nan_to_num(z))))]

    @staticmethod
    def _zscores(V: FloatArray, n_anom: int) -> FloatArray:
        """Robust z of the last ``n_anom`` bins' median against the bins before them."""
        if V.shape[1] <= n_anom:
            return np.zeros(V.shape[0])
        ref, an = V[:, :-n_anom], V[:, -n_anom:]
        med = _nanmedian(ref, axis=1)
        am = _nanmedian(an, axis=1)
        with np.errstate(all="ignore"):
            sc = robust_scale(ref, axis=1) if ref.size else np.full(V.shape[0], np.nan)
            floor = np.maximum(1e-3 * np.abs(np.nan_to_num(med)), 1e-9)
            sc = np.where(np.isfinite(sc) & (sc > floor), sc, floor)
            z = (am - med) / sc
        return np.where(np.isfinite(z), z, 0.0)

    def _analysis_row(
        self, node: str, target_row: int, at_ts: float, step: float, rows: list[int]
    ) -> int:
        """The series of ``node`` to analyse for an alert on ``target_row``: among the node's
        series of the same metric name that deviate in the alert's direction (|robust z| >
        ``anomaly_z`` over the alert's anomaly window), the one with the smallest noise
        relative to its level.

        Why: a node's fault shows in all its views (mean, percentiles), but the linear
        SCM fits and the mechanism tests are only as good as the series: tail percentiles
        are noisy and do not add up along calls (a caller's p99 is not its callees' p99s
        plus its own), while a mean does. Detectors often fire on the noisier view first.
        """
        name = _identity(self.index.key_of(target_row), self.index.node_label)[0]
        sibs = [
            r for r in rows if _identity(self.index.key_of(r), self.index.node_label)[0] == name
        ]
        if len(sibs) < 2 or target_row not in sibs:
            return target_row
        cfg = self.config
        _, V = self._history.aligned(
            np.array(sibs), at_ts, step, cfg.reference_points + cfg.anomaly_points
        )
        if V.shape[1] < 4:
            return target_row
        t = sibs.index(target_row)
        n_anom = self._anomaly_bins(V[t], cfg.anomaly_points)
        z = self._zscores(V, n_anom)
        if abs(z[t]) <= cfg.anomaly_z:
            return target_row
        ref = V[:, : V.shape[1] - n_anom]
        with np.errstate(all="ignore"):
            med = np.abs(_nanmedian(ref, axis=1))
            rel = robust_scale(ref, axis=1) / med
        ok = (np.sign(z) == np.sign(z[t])) & (np.abs(z) > cfg.anomaly_z) & np.isfinite(rel)
        ok &= np.isfinite(ref).sum(axis=1) >= max(cfg.reference_points // 2, 3)
        if not ok.any():
            return target_row
        cand = np.flatnonzero(ok)
        return sibs[int(cand[np.argmin(rel[cand])])]

    def _rank(
        self,
        node: str,
        target_row: int,
        at_ts: float,
        window_start: float | None = None,
        *,
        analyse_sibling: bool = False,
    ) -> tuple[list[RootCause], tuple[float, float], float]:
        cfg = self.config
        graph = self.graph
        step = self._step_for(target_row)
        node_rows = self._node_rows()
        alert_row = target_row
        if analyse_sibling:
            target_row = self._analysis_row(node, target_row, at_ts, step, node_rows.get(node, []))
        anc = graph.ancestors(node) if node in graph else set()
        # Learned (Granger) edges alone are too imprecise to be the structure (they miss
        # same-step effects and pick up common drivers): when no given edge reaches the
        # target, rank like with no graph and keep the learned edges as evidence only.
        if not (node in self._given and self._given.ancestors(node)):
            anc = set()
        star = not anc
        cand_nodes = sorted(anc) if anc else sorted(n for n in node_rows if n != node)
        # descendants of the candidates outside the ancestor set (another caller of a
        # candidate): their anomalies are evidence for the candidate that explains them
        desc: dict[str, set[str]] = {n: graph.descendants(n) for n in cand_nodes} if anc else {}
        extra = sorted(set().union(*desc.values()) - anc - {node}) if desc else []
        # all rows of candidate nodes (and those descendants), aligned once with the target
        rows_all: list[int] = [target_row]
        owner: list[str] = [node]
        for n in [*cand_nodes, *extra]:
            for r in node_rows.get(n, []):
                rows_all.append(r)
                owner.append(n)
        n_win = cfg.anomaly_points
        if window_start is not None:
            n_win = max(math.floor((at_ts - window_start) / step + 1e-9) + 1, 1)
        n_points = cfg.reference_points + n_win
        t_bins, V = self._history.aligned(np.array(rows_all), at_ts, step, n_points)
        if V.shape[1] < 4:
            raise StateError(
                f"explain: only {V.shape[1]} time bins of history for"
                f" {self.index.key_of(target_row)!r}"
            )
        if window_start is None:
            n_anom = self._anomaly_bins(V[0], cfg.anomaly_points)
        else:
            n_anom = int(min(max((t_bins > window_start - 1e-9).sum(), 1), V.shape[1] - 3))
        z_all = self._zscores(V, n_anom)
        t_name, t_labels = _identity(self.index.key_of(target_row), self.index.node_label)
        reasons = ("same metric and labels", "same metric, most anomalous", "most anomalous")
        chosen: dict[str, tuple[int, int, str]] = {}  # node -> (col, row, reason)
        best: dict[str, tuple[int, float]] = {}  # node -> (rank, -|z|) of the chosen series
        for col in range(1, len(rows_all)):
            n, r = owner[col], rows_all[col]
            name, labels = _identity(self.index.key_of(r), self.index.node_label)
            rank = 0 if (name == t_name and labels == t_labels) else 1 if name == t_name else 2
            key_rank = (rank, -abs(float(z_all[col])))
            if n not in best or key_rank < best[n]:
                best[n] = key_rank
                chosen[n] = (col, r, reasons[rank])
        if star:
            # no graph: the other nodes anomalous now become direct parents of the target
            ranked = sorted(
                (n for n in chosen if abs(z_all[chosen[n][0]]) > cfg.anomaly_z),
                key=lambda n: (-abs(z_all[chosen[n][0]]), n),
            )[:20]
            nodes = [*ranked, node]
            parents: list[list[int]] = [[] for _ in ranked] + [list(range(len(ranked)))]
            order = list(range(len(nodes)))
        else:
            sub = [n for n in graph.topological_order([*anc, node])]
            have = [n for n in sub if n == node or n in chosen]
            pos = {n: i for i, n in enumerate(have)}
            parents = []
            for n in have:
                ps: set[int] = set()
                todo = list(graph.parents(n))
                seen: set[str] = set()
                while todo:  # contract ancestors without data
                    p = todo.pop()
                    if p in seen:
                        continue
                    seen.add(p)
                    if p in pos:
                        ps.add(pos[p])
                    else:
                        todo.extend(graph.parents(p))
                parents.append(sorted(ps))
            nodes = have
            order = list(range(len(nodes)))
        cols = [0 if n == node else chosen[n][0] for n in nodes]
        Vn = V[cols]
        ref, anom = Vn[:, : V.shape[1] - n_anom], Vn[:, V.shape[1] - n_anom :]
        ref = ref[:, -cfg.reference_points :]
        res: Attribution = attribute(
            parents,
            order,
            ref,
            anom,
            nodes.index(node),
            seed=cfg.seed,
            n_samples=cfg.n_samples,
            n_permutations=cfg.n_permutations,
            exact_max=cfg.exact_max,
            lags=cfg.model_lags,
            support=(
                self._support(nodes, node, desc, chosen, z_all)
                if desc
                else self._onset(nodes, node, chosen, V)
                if star
                else None
            ),
            # with no graph the star regression's shares say which node *predicts* the
            # target, not which caused it: rank by own change and onset instead
            weights=(0.1, 0.5, 0.4) if star else (0.4, 0.4, 0.2),
            # one-to-one propagation room only between series of the target's metric
            unit_slope=np.array([n == node or best[n][0] < 2 for n in nodes], dtype=bool),
            saturate=not star,
        )
        tgt = nodes.index(node)
        rcs: list[RootCause] = []
        granger_bonus = np.zeros(len(nodes))
        gev: list[dict[str, Any] | None] = []
        for i, n in enumerate(nodes):
            row_i = target_row if i == tgt else chosen[n][1]
            ev = self._granger_evidence(n, row_i, node, target_row, graph)
            gev.append(ev)
            if ev is not None and ev.get("q_value") is not None:
                granger_bonus[i] = 1.0 - float(ev["q_value"])
        score = np.clip(0.9 * res.score + 0.1 * granger_bonus * (res.score > 0), 0.0, 1.0)
        # a change already in place for longer than the propagation lag while the target
        # stayed normal did not produce the target's anomaly (cause present, effect absent)
        # (a lagged effect may take up to model_lags bins per hop on the way to the target)
        # Without a graph the delay is unknown and an early onset is the evidence (_onset).
        if not star:
            early = self._early_run(Vn, tgt, n_anom)
            delay = cfg.model_lags * _hops_to(parents, tgt)
            score = score * np.where(early > delay, (delay + 1.0) / (early + 1.0), 1.0)
        ranking = np.argsort(-score, kind="stable")
        for i in ranking[: cfg.max_root_causes].tolist():
            n = nodes[i]
            row_i = target_row if i == tgt else chosen[n][1]
            reason = "target series" if i == tgt else chosen[n][2]
            if i == tgt and target_row != alert_row:
                reason = "target node's least noisy anomalous series of the alert's metric"
            path = [n] if i == tgt else (graph.path(n, node) or [n, node])
            rcs.append(
                RootCause(
                    node=n,
                    series=self.index.key_of(row_i),
                    score=float(score[i]),
                    share=_finite(res.share[i]) or 0.0,
                    evidence=_clean(
                        {
                            "share": float(res.share[i]),
                            "contribution": float(res.contribution[i]),
                            "target_deviation": float(res.deviation),
                            "mechanism_change": {
                                "score": float(1.0 - res.p_value[i]),
                                "p_value": float(res.p_value[i]),
                                "z": float(res.shift_z[i]),
                                "shift": float(res.shift[i]),
                            },
                            "total_effect": float(res.effect[i]),
                            "path": path,
                            "granger": gev[i],
                            "ci": [float(res.ci_low[i]), float(res.ci_high[i])],
                            "series_choice": reason,
                            "points": {
                                "reference": int(res.n_reference[i]),
                                "anomaly": int(res.n_anomaly[i]),
                            },
                        }
                    ),
                )
            )
        start = float(t_bins[V.shape[1] - n_anom] - step)
        severity = float(min(100.0, 100.0 * (1.0 - math.exp(-abs(z_all[0]) / 6.0))))
        return rcs, (start, float(at_ts)), severity

    def _early_run(self, Vn: FloatArray, tgt: int, n_anom: int) -> FloatArray:
        """Per node: how many bins right before the anomaly window the node was already
        deviated as in the window while the target showed less than a quarter of the effect
        that deviation implies (0 for the target; a NaN bin ends the run).

        "Deviated as in the window": |robust z| > ``anomaly_z``, the window's sign and at
        least half the window's deviation (so the early part of a slow drift, whose cause
        crosses the threshold before its effect does, does not count). "The effect it
        implies": the target's window deviation scaled by the node's pre-bin deviation over
        its window deviation (linear propagation, as the node models assume)."""
        T = Vn.shape[1]
        ref = Vn[:, : T - n_anom]
        out = np.zeros(Vn.shape[0])
        if ref.shape[1] < 4:
            return out
        med = _nanmedian(ref, axis=1)
        with np.errstate(all="ignore"):
            sc = robust_scale(ref, axis=1)
            floor = np.maximum(1e-3 * np.abs(np.nan_to_num(med)), 1e-9)
            sc = np.where(np.isfinite(sc) & (sc > floor), sc, floor)
            dev = _nanmedian(Vn[:, T - n_anom :], axis=1) - med
            D = Vn - med[:, None]
        if not np.isfinite(dev[tgt]) or dev[tgt] == 0.0:
            return out
        zthr = self.config.anomaly_z
        first = T - n_anom - 1
        last = max(first - self.config.anomaly_points, -1)
        for j in range(Vn.shape[0]):
            if j == tgt or not np.isfinite(dev[j]) or abs(dev[j]) <= zthr * sc[j]:
                continue
            run = 0
            for b in range(first, last, -1):
                d = D[j, b]
                if not np.isfinite(d) or d * dev[j] <= 0 or abs(d) <= zthr * sc[j]:
                    break
                if abs(d) < 0.5 * abs(dev[j]):
                    break
                implied = dev[tgt] * d / dev[j]
                seen = D[tgt, b]
                if not np.isfinite(seen) or seen / implied >= 0.25:
                    break  # the target responded (or is unobserved): not "effect absent"
                run += 1
            out[j] = run
        return out

    def _support(
        self,
        nodes: list[str],
        target: str,
        desc: dict[str, set[str]],
        chosen: dict[str, tuple[int, int, str]],
        z_all: FloatArray,
    ) -> FloatArray:
        """Per node: the share of the anomalous nodes (|z| > anomaly_z, the target, its
        ancestors and their other descendants) that the node's own change could explain,
        i.e. the node itself and its anomalous descendants (coverage: one fault that
        explains more of the observed symptoms is the simpler story)."""
        hot = {n for n, (col, _, _) in chosen.items() if abs(z_all[col]) > self.config.anomaly_z}
        if abs(z_all[0]) > self.config.anomaly_z:
            hot.add(target)
        if not hot:
            return np.zeros(len(nodes))
        count = np.array([len((desc.get(n, set()) | {n}) & hot) for n in nodes], dtype=np.float64)
        return count / len(hot)

    def _onset(
        self, nodes: list[str], target: str, chosen: dict[str, tuple[int, int, str]], V: FloatArray
    ) -> FloatArray:
        """No graph: how long each node has been anomalous (a fault shows first at its root),
        over the longest run, looking back ``3 x anomaly_points`` bins."""
        look = 3 * self.config.anomaly_points
        run = np.array(
            [self._anomaly_bins(V[0 if n == target else chosen[n][0]], look) for n in nodes],
            dtype=np.float64,
        )
        return run / run.max() if run.max() > 0 else run

    def _anomaly_bins(self, v: FloatArray, max_bins: int) -> int:
        """Length of the run of target bins ending at the last bin that are anomalous in the
        same direction as the last bin (at least 1, at most ``max_bins``)."""
        T = v.size
        ref = v[: max(T - max_bins, 3)]
        ok = ref[np.isfinite(ref)]
        if ok.size < 3:
            return 1
        med = float(np.median(ok))
        sc = float(robust_scale(ok))
        floor = max(1e-3 * abs(med), 1e-9)
        sc = sc if np.isfinite(sc) and sc > floor else floor
        last = v[T - 1]
        sign = np.sign(last - med) if np.isfinite(last) else 0.0
        n = 1
        for k in range(2, min(max_bins, T - 3) + 1):
            val = v[T - k]
            if not np.isfinite(val) or sign * (val - med) / sc <= self.config.anomaly_z:
                break
            n = k
        return n

    def _granger_evidence(
        self, n: str, row: int, target_node: str, target_row: int, graph: DependencyGraph
    ) -> dict[str, Any] | None:
        if self._result is None or n == target_node:
            return None
        res = self._result
        i = self._pair_pos.get((row, target_row))
        if i is not None:
            return {
                "statistic": float(res.f[i]),
                "p_value": float(res.p_value[i]),
                "q_value": float(res.q_value[i]),
                "lag": int(res.lag[i]),
                "pair": [self.index.key_of(row), self.index.key_of(target_row)],
            }
        path = graph.path(n, target_node)
        for a, b in itertools.pairwise(path):
            e = graph.edge(a, b)
            if e is not None and e.provenance == "learned":
                return {
                    "statistic": e.strength,
                    "p_value": e.p_value,
                    "q_value": e.p_value,
                    "lag": e.lag,
                    "edge": [a, b],
                }
        return None

    def _build(
        self,
        incident_id: str,
        version: int,
        node: str,
        key: str,
        detected_at: float,
        window: tuple[float, float],
        severity: float,
        rcs: list[RootCause],
    ) -> Explanation:
        return Explanation(
            id=_digest(f"{incident_id}|{key}|{version}"),
            incident_id=incident_id,
            version=version,
            target=Target(node=node, series=key),
            detected_at=float(detected_at),
            window=TimeWindow(start=window[0], end=window[1]),
            severity=max(0.0, min(100.0, severity)),
            root_causes=rcs,
            graph_version=self._given.version,
        )

    # -- incidents -----------------------------------------------------------------------
    def _related(self, a: str, nodes: Iterable[str], graph: DependencyGraph) -> bool:
        anc_a = graph.ancestors(a) if a in graph else set()
        for b in nodes:
            if a == b or b in anc_a:
                return True
            if b in graph and a in graph.ancestors(b):
                return True
        return False

    def on_anomalies(self, events: Sequence[AnomalyEvent], now_ts: float) -> list[Explanation]:
        """Group events into incidents and return new or changed explanations.

        Each target series with events in this call is (re-)explained at its latest event;
        an explanation is returned only if its ranked content differs from the last one
        returned for that target (then ``version`` increments). With
        ``config.propagate_impact`` the series of graph descendants of an event's node that
        deviate in the event's direction (same metric and labels, no alert needed) join the
        incident as targets too, so the user-facing impact of an inner fault is explained
        (see :meth:`_propagate_impact`). ``now_ts`` closes nothing here; call
        :meth:`close_stale`.
        """
        graph = self.graph
        touched: dict[str, set[str]] = {}
        for ev in sorted(events, key=lambda e: (e.ts, e.row)):
            match = [
                inc
                for inc in sorted(
                    self._incidents.values(), key=lambda i: (i.start_ts, i.incident_id)
                )
                if ev.ts - inc.last_ts <= self.config.incident_window_s
                and inc.start_ts - ev.ts <= self.config.incident_window_s
                and self._related(ev.node, inc.nodes, graph)
            ]
            if not match:
                iid = "inc-" + _digest(f"{ev.node}|{ev.series_key}|{ev.ts!r}", 6)
                inc = _Incident(iid, ev.ts, ev.ts, [], {})
                self._incidents[iid] = inc
            else:
                inc = match[0]
                for other in match[1:]:  # evidence connects incidents: merge into the oldest
                    for n in other.nodes:
                        if n not in inc.nodes:
                            inc.nodes.append(n)
                    for k, t in other.targets.items():
                        inc.targets.setdefault(k, t)
                    inc.start_ts = min(inc.start_ts, other.start_ts)
                    inc.last_ts = max(inc.last_ts, other.last_ts)
                    touched.setdefault(inc.incident_id, set()).update(
                        touched.pop(other.incident_id, set())
                    )
                    del self._incidents[other.incident_id]
            if ev.node not in inc.nodes:
                inc.nodes.append(ev.node)
            inc.last_ts = max(inc.last_ts, ev.ts)
            found = inc.targets.get(ev.series_key)
            if found is None:
                t = _TargetState(ev.node, ev.series_key, ev.row, ev.ts, ev.ts, ev.severity)
                inc.targets[ev.series_key] = t
            else:
                t = found
            t.last_ts = max(t.last_ts, ev.ts)
            # Explanations stay anchored at the strongest recent evidence: the most severe
            # event within the last anomaly window (an older peak is another episode).
            horizon = self.config.anomaly_points * max(self._step_s, 0.0)
            if (
                found is None
                or float(ev.severity) >= t.peak_severity
                or ev.ts - t.peak_ts > horizon
            ):
                t.peak_ts, t.peak_severity = ev.ts, float(ev.severity)
            t.severity = max(t.severity, float(ev.severity))
            touched.setdefault(inc.incident_id, set()).add(ev.series_key)
        if self.config.propagate_impact and touched:
            self._propagate_impact(events, touched, graph)
        out: list[Explanation] = []
        for iid in sorted(touched):
            inc = self._incidents[iid]
            for key in sorted(touched[iid]):
                t = inc.targets[key]
                try:
                    rcs, window, _sev = self._rank(t.node, t.row, t.peak_ts, analyse_sibling=True)
                except StateError as exc:
                    log.info("explainer cannot explain yet", extra={"series": key, "why": str(exc)})
                    continue
                sig = json.dumps(
                    [[rc.node, rc.series, round(rc.score, 2), round(rc.share, 2)] for rc in rcs]
                )
                if sig == t.signature:
                    continue
                t.signature = sig
                t.version += 1
                t.root_causes = [(rc.node, rc.score, rc.share) for rc in rcs]
                window = (min(window[0], t.first_ts), window[1])
                out.append(
                    self._build(iid, t.version, t.node, key, t.last_ts, window, t.severity, rcs)
                )
        return out

    def _propagate_impact(
        self, events: Sequence[AnomalyEvent], touched: dict[str, set[str]], graph: DependencyGraph
    ) -> None:
        """Add the downstream impact of this call's events to their incidents as targets.

        Why: a fault deep in the call graph often reaches the user-facing services below
        their alert threshold (or while their detector is still muted after an earlier
        alarm), so the incident would be explained only at the inner nodes. For each event
        on node ``a``, every series of a graph descendant of ``a`` with the same metric name
        and non-node labels that deviates in the event's direction (robust z beyond
        ``anomaly_z`` over its current anomalous run, against the bins before it) becomes an
        incident target and is explained. Cost: one aligned history read per incident over
        the candidate series. Works poorly when the graph misses edges (no impact found) or
        when a shared load swing moves all services at once (impact on unrelated
        descendants is added, though its explanation then ranks that swing's source).
        """
        cfg = self.config
        label = self.index.node_label
        inc_of: dict[str, str] = {}
        for iid, keys in touched.items():
            for k in keys:
                inc_of[k] = iid
        by_ident: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, list[int]]] = {}
        for _, row in self.index.items():
            ident = _identity(self.index.key_of(row), label)
            by_ident.setdefault(ident, {}).setdefault(self.index.node_of(row), []).append(row)
        cand: dict[str, dict[int, AnomalyEvent]] = {}
        for ev in sorted(events, key=lambda e: (e.ts, e.row)):
            found = inc_of.get(ev.series_key)
            if found is None or found not in self._incidents or ev.node not in graph:
                continue
            iid = found
            if not (np.isfinite(ev.value) and np.isfinite(ev.expected)) or ev.value == ev.expected:
                continue
            nodes_rows = by_ident.get(_identity(ev.series_key, label), {})
            for d in graph.descendants(ev.node):
                for r in nodes_rows.get(d, []):
                    prev = cand.setdefault(iid, {}).get(r)
                    if prev is None or ev.severity > prev.severity:
                        cand[iid][r] = ev
        n_pts = cfg.reference_points + cfg.anomaly_points
        horizon = cfg.anomaly_points * max(self._step_s, 0.0)
        for iid in sorted(cand):
            inc = self._incidents[iid]
            rows = sorted(cand[iid])
            now = max(cand[iid][r].ts for r in rows)
            try:
                step = self._step_for(rows[0])
            except StateError:
                continue
            _, V = self._history.aligned(np.array(rows, dtype=np.int64), now, step, n_pts)
            if V.shape[1] < 4:
                continue
            for i, r in enumerate(rows):
                ev = cand[iid][r]
                v = V[i]
                n_anom = self._anomaly_bins(v, cfg.anomaly_points)
                if np.isfinite(v[: v.size - n_anom]).sum() < max(cfg.reference_points // 2, 3):
                    continue
                z = float(self._zscores(v[None, :], n_anom)[0])
                if abs(z) <= cfg.anomaly_z or np.sign(z) != np.sign(ev.value - ev.expected):
                    continue
                key = self.index.key_of(r)
                node = self.index.node_of(r)
                t = inc.targets.get(key)
                if t is None:
                    t = _TargetState(node, key, r, ev.ts, ev.ts, float(ev.severity))
                    t.peak_ts, t.peak_severity = ev.ts, float(ev.severity)
                    inc.targets[key] = t
                elif float(ev.severity) >= t.peak_severity or ev.ts - t.peak_ts > horizon:
                    t.peak_ts, t.peak_severity = ev.ts, float(ev.severity)
                t.last_ts = max(t.last_ts, ev.ts)
                if node not in inc.nodes:
                    inc.nodes.append(node)
                touched[iid].add(key)

    def close_stale(self, now_ts: float) -> list[str]:
        """Close incidents without an event for ``incident_window_s``; returns their ids."""
        gone = [
            iid
            for iid, inc in self._incidents.items()
            if now_ts - inc.last_ts > self.config.incident_window_s
        ]
        for iid in gone:
            del self._incidents[iid]
        return sorted(gone)

    def forget_rows(self, rows: IntArray) -> None:
        """Forget evicted series: their history, the open time bin and Granger pairs.

        Called before a row is handed to a new series, so nothing of the old one leaks in.
        """
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return
        self._history.clear(rows)
        inside = rows[rows < self._acc_sum.size]
        self._acc_sum[inside] = 0.0
        self._acc_cnt[inside] = 0.0
        self._recent[:, rows[rows < self._recent.shape[1]]] = np.nan
        pairs = self._granger.pairs
        if pairs.size:
            keep = ~np.isin(pairs, rows).any(axis=1)
            if not keep.all():
                self._granger.set_pairs(pairs[keep])
                self._read_tests()

    def open_incidents(self) -> list[IncidentSummary]:
        out = []
        for iid in sorted(self._incidents):
            inc = self._incidents[iid]
            for key in sorted(inc.targets):
                t = inc.targets[key]
                out.append(IncidentSummary(iid, t.node, key, t.version, tuple(t.root_causes)))
        return out

    # -- snapshot ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, np.ndarray]:
        """All learned state as plain arrays (an immutable copy), with ``schema_version``."""
        incidents = [
            {
                "incident_id": inc.incident_id,
                "start_ts": inc.start_ts,
                "last_ts": inc.last_ts,
                "nodes": inc.nodes,
                "targets": [asdict(t) for t in inc.targets.values()],
            }
            for inc in self._incidents.values()
        ]
        meta = {
            "incidents": incidents,
            "learned": [e.to_dict() for e in self._learned],
        }
        arrays: dict[str, np.ndarray] = {
            "schema_version": np.array([SCHEMA_VERSION], dtype=np.int64),
            "explainer.scalars": np.array(
                [self._step_s, float(self._open_bin), float(self._since_refresh)]
            ),
            "explainer.acc_sum": self._acc_sum.copy(),
            "explainer.acc_cnt": self._acc_cnt.copy(),
            "explainer.recent": self._recent.copy(),
            "explainer.prev_vec": self._prev_vec.copy(),
            "explainer.recent_n": np.array([self._recent_n, self._recent_head], dtype=np.int64),
            "explainer.meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8).copy(),
        }
        arrays.update(self._history.to_arrays())
        arrays.update(self._granger.to_arrays())
        if self._result is not None:
            r = self._result
            arrays.update(
                {
                    "result.f": r.f.copy(),
                    "result.p_value": r.p_value.copy(),
                    "result.q_value": r.q_value.copy(),
                    "result.lag": r.lag.copy(),
                    "result.strength": r.strength.copy(),
                    "result.n": r.n.copy(),
                    "result.pairs": np.array(
                        sorted(self._pair_pos, key=self._pair_pos.__getitem__), dtype=np.int64
                    ).reshape(-1, 2),
                }
            )
        return arrays

    @classmethod
    def restore(
        cls,
        snap: dict[str, np.ndarray],
        config: ExplainerConfig,
        graph: DependencyGraph,
        index: SeriesIndex,
    ) -> Explainer:
        """Rebuild from :meth:`snapshot`; :class:`StateError` on a schema/config mismatch."""
        got = int(np.asarray(snap.get("schema_version", [-1]))[0])
        if got != SCHEMA_VERSION:
            raise StateError(
                f"explainer snapshot schema_version {got} != supported {SCHEMA_VERSION}"
            )
        ex = cls(config, graph, index)
        hist = History.from_arrays(snap)
        if hist.points != config.history_points:
            raise StateError(
                f"explainer snapshot history_points {hist.points} != config {config.history_points}"
            )
        ex._history = hist
        ex._granger = GrangerState.from_arrays(snap)
        if ex._granger.max_lag != config.granger_max_lag:
            raise StateError(
                f"explainer snapshot granger_max_lag {ex._granger.max_lag}"
                f" != config {config.granger_max_lag}"
            )
        step, open_bin, since = (float(v) for v in snap["explainer.scalars"])
        ex._step_s = float(config.step_s or step)
        ex._open_bin = int(open_bin)
        ex._since_refresh = int(since)
        ex._acc_sum = np.array(snap["explainer.acc_sum"], dtype=np.float64)
        ex._acc_cnt = np.array(snap["explainer.acc_cnt"], dtype=np.float64)
        ex._recent = np.array(snap["explainer.recent"], dtype=np.float64)
        ex._prev_vec = np.array(snap["explainer.prev_vec"], dtype=np.float64)
        ex._recent_n, ex._recent_head = (int(v) for v in np.asarray(snap["explainer.recent_n"]))
        if ex._recent.shape[0] != config.granger_window_points:
            raise StateError(
                f"explainer snapshot granger_window_points {ex._recent.shape[0]}"
                f" != config {config.granger_window_points}"
            )
        meta = json.loads(bytes(np.asarray(snap["explainer.meta"], dtype=np.uint8)).decode())
        for d in meta["incidents"]:
            targets = {}
            for t in d["targets"]:
                # (node, score) in snapshots from before shares were kept
                t["root_causes"] = [
                    (x[0], x[1], x[2] if len(x) > 2 else float("nan")) for x in t["root_causes"]
                ]
                targets[t["series"]] = _TargetState(**t)
            ex._incidents[d["incident_id"]] = _Incident(
                d["incident_id"], d["start_ts"], d["last_ts"], list(d["nodes"]), targets
            )
        ex._learned = [Edge.from_dict(e) for e in meta["learned"]]
        if "result.f" in snap:
            ex._result = GrangerResult(
                f=np.array(snap["result.f"], dtype=np.float64),
                p_value=np.array(snap["result.p_value"], dtype=np.float64),
                q_value=np.array(snap["result.q_value"], dtype=np.float64),
                lag=np.array(snap["result.lag"], dtype=np.int64),
                strength=np.array(snap["result.strength"], dtype=np.float64),
                n=np.array(snap["result.n"], dtype=np.float64),
            )
            pairs = np.asarray(snap["result.pairs"], dtype=np.int64).reshape(-1, 2)
            ex._pair_pos = {(int(a), int(b)): i for i, (a, b) in enumerate(pairs.tolist())}
        return ex
