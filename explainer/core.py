"""The explainer stage: one facade over history, Granger learning, incidents and ranking.

:class:`Explainer` is a pure core: samples come in as arrays (``observe``), anomaly events
as :class:`~causalwatch.models.AnomalyEvent` (``on_anomalies``), times are passed in, and it
returns :class:`~explainer.results.ExplanationResult` dataclasses; the pipeline turns them
into the published :class:`~causalwatch.models.Explanation` at its edge. The ideas live in
their own modules, composed here:

- :mod:`explainer.history`: per-series ring buffers, aligned on time bins of ``step_s``
  (inferred from the data when not configured);
- :mod:`explainer.learning`: online Granger tests over closed time bins -> learned edges,
  merged into the given graph (:attr:`Explainer.graph`);
- :mod:`explainer.ranking` (with :mod:`explainer.candidates`, :mod:`explainer.windows`
  and :mod:`explainer.scoring`): the root causes of one series at one time;
- :mod:`explainer.incidents` (with :mod:`explainer.impact`): events grouped into
  incidents, which targets are explained again and when, versions.

Works poorly when: see :mod:`explainer.ranking` (ranking) and :mod:`explainer.learning`
(learned edges).
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from causalwatch.errors import StateError
from causalwatch.models import AnomalyEvent
from causalwatch.series import SeriesIndex
from explainer.attribution import robust_scale
from explainer.candidates import pick_target
from explainer.config import ExplainerConfig
from explainer.dag import DependencyGraph, Edge
from explainer.history import History, infer_step
from explainer.impact import find_impact
from explainer.incidents import Grouped, ImpactFinder, Incidents
from explainer.learning import GrangerLearner
from explainer.ranking import rank
from explainer.results import (
    ExplanationResult,
    IncidentSummary,
    Ranking,
    TargetRef,
    digest,
)
from explainer.view import View

__all__ = ["SCHEMA_VERSION", "Explainer", "ExplainerConfig", "IncidentSummary"]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SCHEMA_VERSION = 1


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
        self._learner = GrangerLearner(config, index)
        self._incidents = Incidents(
            config.incident_window_s,
            config.anomaly_points,
            config.incident_window_points,
            config.page_agreement,
            config.page_overwhelming_p,
            config.explain_window,
        )
        self._merged: DependencyGraph | None = None
        self._merged_from: list[Edge] | None = None  # the learned list _merged was built on

    # -- graph ---------------------------------------------------------------------------
    @property
    def graph(self) -> DependencyGraph:
        """The merged graph (given edges win, learned edges added when acyclic); a DAG."""
        learned = self._learner.learned
        if self._merged is None or self._merged_from is not learned:
            self._merged = self._given.merged_with(learned if self.config.learn_graph else [])
            self._merged_from = learned
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
        return list(self._learner.learned)

    @property
    def step_s(self) -> float:
        """The aligned time step in seconds (0.0 until inferred)."""
        return self._step_s

    # -- learning ------------------------------------------------------------------------
    def observe(self, rows: IntArray, ts: FloatArray, x: FloatArray) -> None:
        """Record samples (history) and feed closed time bins to the Granger tests.

        ``rows`` are :class:`SeriesIndex` rows, ``ts`` unix seconds, ``x`` values; a row may
        repeat. Samples of a closed Granger bin still enter the history. ``O(batch)``.
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
            self._learner.observe(
                rows, ts, x, step_s=self._step_s, capacity=self._history.capacity, given=self._given
            )

    def _infer_step(self, rows: IntArray) -> None:
        for r in np.unique(rows)[:16].tolist():
            if self._history.count[r] >= 3:
                step = infer_step(self._history.row_ts(r))
                if step > 0:
                    self._step_s = step
                    log.info("explainer step inferred", extra={"step_s": step})
                    return

    def forget_rows(self, rows: IntArray) -> None:
        """Forget evicted series: their history, the open time bin and Granger pairs.

        Called before a row is handed to a new series, so nothing of the old one leaks in.
        """
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return
        self._history.clear(rows)
        self._learner.forget_rows(rows)

    # -- explaining ----------------------------------------------------------------------
    def _view(self) -> View:
        # learned edges are structure only where the suite shows they help (config)
        graph = self.graph if self.config.learned_edges_in_graph else self._given
        return View(self._history, self.index, graph, self._given, self._step_s)

    def explain(
        self,
        node: str,
        series_key: str | None,
        at_ts: float,
        *,
        window_start: float | None = None,
    ) -> ExplanationResult:
        """Explain ``series_key`` of ``node`` at ``at_ts`` (on demand; ``incident_id`` ad hoc).

        With ``series_key=None`` the node's most anomalous series at ``at_ts`` is the target.
        ``window_start`` (unix seconds) fixes the anomaly window to ``[window_start, at_ts]``
        (e.g. a known change point; the history must hold it plus ``reference_points``);
        by default the window is the run of anomalous target bins ending at ``at_ts``.
        Raises :class:`~causalwatch.errors.StateError` when the node has no series, or when
        ``at_ts`` or ``window_start`` is before the node's held data, or ``at_ts`` is more than
        the history's span after it (so a stray time never sizes an allocation).
        """
        view = self._view()
        at_ts, window_start = self._held(node, at_ts, window_start)
        target_row = pick_target(view, self.config, node, series_key, at_ts)
        key = self.index.key_of(target_row)
        inc = "adhoc-" + digest(f"{node}|{key}|{at_ts!r}", 6)
        # the same rule as the automatic explanations (on_anomalies): one answer per moment
        r = rank(
            view,
            self.config,
            self._learner.evidence,
            node,
            target_row,
            at_ts,
            window_start,
            analyse_sibling=True,
        )
        target = TargetRef(node, key)
        version = self._given.version
        return ExplanationResult.build(
            inc, 1, target, at_ts, r.window, r.severity, r.root_causes, version, opposing=r.opposing
        )

    def _held(
        self, node: str, at_ts: float, window_start: float | None
    ) -> tuple[float, float | None]:
        """``at_ts`` and ``window_start`` bounded by the node's held data: before it is a
        :class:`StateError`, and so is an ``at_ts`` more than the history's span after it
        (a stray time never sizes an allocation; the API answers 404), unless
        ``window_start`` is held: then it means the latest time (a window from a held time
        to now, as the Alertmanager enrichment asks). A ``window_start`` after ``at_ts``
        means ``at_ts`` (an alert's ``startsAt`` is often a scrape ahead of the last
        sample). ``O(node rows · history_points)``."""
        rows = [r for r in self.index.rows_of_node(node) if r < self._history.capacity]
        if not rows:
            return at_ts, window_start  # pick_target names the node that has no series
        ts = self._history.ts[rows]
        ok = ts[np.isfinite(ts)]
        if ok.size == 0:
            raise StateError(f"explain: no data held for node {node!r}")
        lo, hi = float(ok.min()), float(ok.max())
        if not math.isfinite(at_ts) or at_ts < lo:
            raise StateError(
                f"explain: at {at_ts!r} is outside the history held for {node!r} (from {lo!r})"
            )
        # far after the data (more than the history's span): refused, or its latest time
        # when the window starts in the data; nearer, kept as asked (the time bins are
        # anchored at ``at_ts``)
        step = self._step_s if self._step_s > 0 else infer_step(ok)
        if at_ts > hi + self.config.history_points * max(step, 1.0):
            if (
                window_start is not None
                and math.isfinite(window_start)
                and lo <= window_start <= hi
            ):
                at_ts = hi  # a window from a held time to "now" (an alert's startsAt)
            else:
                raise StateError(
                    f"explain: at {at_ts!r} is outside the history held for {node!r} "
                    f"(to {hi!r}, plus one history span)"
                )
        if window_start is not None:
            if not math.isfinite(window_start) or window_start < lo:
                raise StateError(
                    f"explain: since {window_start!r} is outside the history held for "
                    f"{node!r} [{lo!r}, {at_ts!r}]"
                )
            window_start = min(window_start, at_ts)
        return at_ts, window_start

    def on_anomalies(
        self, events: Sequence[AnomalyEvent], now_ts: float
    ) -> list[ExplanationResult]:
        """Group events into incidents and return new or changed explanations.

        Each target series with events in this call is (re-)explained at its strongest
        recent event; an explanation is returned only if its ranked content differs from
        the last one returned for that target (then ``version`` increments). With
        ``config.propagate_impact`` the series of graph descendants of an event's node that
        deviate in the event's direction (same metric and labels, no alert needed) join the
        incident as targets too (:mod:`explainer.impact`). The rules are in
        :mod:`explainer.incidents`. ``now_ts`` closes nothing here; call :meth:`close_stale`.
        """
        return self.explain_touched(self.group(events).touched)

    def group(self, events: Sequence[AnomalyEvent]) -> Grouped:
        """Group events into incidents and move their targets' anchors, without ranking
        (the hot path's half of :meth:`on_anomalies`)."""
        view = self._view()
        cfg = self.config
        impact: ImpactFinder | None = (
            functools.partial(find_impact, view, cfg) if cfg.propagate_impact else None
        )
        return self._incidents.group(events, graph=view.graph, step_s=self._step_s, impact=impact)

    def growing(self, now_ts: float) -> Grouped:
        """With ``explain_window="now"``: the targets to explain again on new data, not
        only on new alerts (evidence grows while a fault persists): targets of explained,
        paging open incidents whose anomaly window is still growing (their first alert less
        than ``anomaly_points`` steps before ``now_ts``) and whose newest sample still
        deviates (robust z beyond ``anomaly_z`` against their samples before the first
        alert: a recovered blip brings no new evidence). Empty otherwise.
        ``O(open targets · history_points)``."""
        out = Grouped()
        if self.config.explain_window != "now" or self._step_s <= 0:
            return out
        span = self.config.anomaly_points * self._step_s
        for iid, inc in self._incidents.open.items():
            if not (inc.is_paging and self._incidents.is_explained(iid)):
                continue
            keys = {
                k
                for k, t in inc.targets.items()
                if 0 <= now_ts - t.first_ts < span and self._still_deviates(t.row, t.first_ts)
            }
            if keys:
                out.touched[iid] = keys
        return out

    def _still_deviates(self, row: int, onset_ts: float) -> bool:
        """Whether ``row``'s newest sample is beyond ``anomaly_z`` robust units of its
        samples before ``onset_ts`` (the last ``reference_points`` of them)."""
        h = self._history
        if row >= h.capacity:
            return False
        ts, v = h.ts[row], h.value[row]
        ok = np.isfinite(ts) & np.isfinite(v)
        if not ok.any():
            return False
        ts, v = ts[ok], v[ok]
        newest = float(v[int(np.argmax(ts))])
        before = ts < onset_ts
        ref = v[before][np.argsort(ts[before])][-self.config.reference_points :]
        if ref.size < 3:
            return False
        med = float(np.median(ref))
        sc = float(robust_scale(ref))
        floor = max(1e-3 * abs(med), 1e-9)
        sc = sc if np.isfinite(sc) and sc > floor else floor
        return abs(newest - med) / sc > self.config.anomaly_z

    @property
    def incident_window_s(self) -> float:
        """The incident window in seconds at the current step."""
        return self._incidents.window_s(self._step_s)

    def explain_touched(self, touched: Mapping[str, Iterable[str]]) -> list[ExplanationResult]:
        """Rank the given targets (incident id -> series keys) at their anchors now; the
        new or changed explanations (the explainer worker's half of :meth:`on_anomalies`)."""
        view = self._view()
        cfg = self.config

        def ranker(node: str, row: int, at_ts: float, window_start: float | None = None) -> Ranking:
            return rank(
                view,
                cfg,
                self._learner.evidence,
                node,
                row,
                at_ts,
                window_start,
                analyse_sibling=True,
            )

        def latest(row: int) -> float:
            return float(self._history.latest(np.array([row]))[0][0])

        return self._incidents.explain(touched, ranker, self._given.version, latest)

    def is_paging(self, incident_id: str) -> bool:
        """Whether this open incident pages: its alerts agreed (:mod:`explainer.incidents`);
        False while it is watching."""
        return self._incidents.is_paging(incident_id)

    def is_explained(self, incident_id: str) -> bool:
        """Whether this open incident has been explained already."""
        return self._incidents.is_explained(incident_id)

    def close_stale(self, now_ts: float, keep: Iterable[str] = ()) -> list[str]:
        """Close incidents without an event for the incident window; returns their ids.
        Incidents in ``keep`` (explanations pending) stay open."""
        return self._incidents.close_stale(now_ts, keep, step_s=self._step_s)

    def open_incidents(self) -> list[IncidentSummary]:
        return self._incidents.summaries()

    def root_cause_rows(self) -> list[tuple[str, str, str, float, float]]:
        """``(incident_id, target node, cause node, score, share)`` of the open incidents'
        root causes, in :meth:`open_incidents` order (the metrics' rows)."""
        return self._incidents.root_cause_rows()

    def incident_counts(self) -> tuple[int, int, int]:
        """``(open incidents watching, incidents paged, incidents closed without paging)``;
        the two totals count since this explainer was built (:mod:`explainer.incidents`)."""
        return self._incidents.counts()

    # -- snapshot ------------------------------------------------------------------------
    def snapshot(self, *, history_views: bool = False) -> dict[str, np.ndarray]:
        """All learned state as plain arrays (an immutable copy), with ``schema_version``.

        ``history_views=True`` puts read-only views of the sample history in it instead of
        a copy (``rows · history_points · 16`` bytes: 0.8 GB at 100k series), for a caller
        that is done with the snapshot before the history is written again, on the thread
        that writes it (:meth:`observe`, :meth:`forget_rows`)."""
        ln = self._learner
        meta = {
            "incidents": self._incidents.to_json(),
            "learned": [e.to_dict() for e in ln.learned],
        }
        arrays: dict[str, np.ndarray] = {
            "schema_version": np.array([SCHEMA_VERSION], dtype=np.int64),
            "explainer.scalars": np.array(
                [self._step_s, float(ln.open_bin), float(ln.since_refresh)]
            ),
            **ln.bin_arrays(),
            "explainer.meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8).copy(),
        }
        arrays.update(self._history.to_arrays(copy=not history_views))
        arrays.update(ln.test_arrays())
        return arrays

    @classmethod
    def restore(
        cls,
        snap: dict[str, np.ndarray],
        config: ExplainerConfig,
        graph: DependencyGraph,
        index: SeriesIndex,
        *,
        adopt: bool = False,
    ) -> Explainer:
        """Rebuild from :meth:`snapshot`; :class:`StateError` on a schema/config mismatch.
        ``adopt=True`` takes over the history arrays of ``snap`` where it can
        (:meth:`History.from_arrays`); ``snap`` must not be used again then."""
        got = int(np.asarray(snap.get("schema_version", [-1]))[0])
        if got != SCHEMA_VERSION:
            raise StateError(
                f"explainer snapshot schema_version {got} != supported {SCHEMA_VERSION}"
            )
        ex = cls(config, graph, index)
        hist = History.from_arrays(snap, adopt=adopt)
        if hist.points != config.history_points:
            raise StateError(
                f"explainer snapshot history_points {hist.points} != config {config.history_points}"
            )
        ex._history = hist
        step, open_bin, since = (float(v) for v in snap["explainer.scalars"])
        ex._learner = GrangerLearner.from_arrays(
            snap, config, index, open_bin=int(open_bin), since_refresh=int(since)
        )
        ex._step_s = float(config.step_s or step)
        meta = json.loads(bytes(np.asarray(snap["explainer.meta"], dtype=np.uint8)).decode())
        ex._incidents.load_json(meta["incidents"])
        ex._learner.learned = [Edge.from_dict(e) for e in meta["learned"]]
        return ex
