"""Incidents: grouping anomaly events, and which targets are (re-)explained and when.

The rules, in one place:

- **Grouping.** An event joins every open incident whose nodes include its node or an
  ancestor or descendant of it in the graph (:func:`related`), when the event is within
  the incident window after the incident's last event (and not more than that before its
  start). The window is ``incident_window_points`` steps of the data (15: 15 min at 60 s,
  15 s at 1 s, 75 min at 5 min) unless ``incident_window_s`` fixes it in seconds. No
  match opens a new incident; several matches are merged into the oldest (the event is
  evidence that connects them). Ids are deterministic (node, series, time).
- **Paging (agreement).** An incident is *watching* until its alerts agree: they come from
  ``page_agreement`` (2) distinct (node, time) points, i.e. two related nodes (grouping
  already requires the relation and the incident window), or one node at two different
  times; or one alert's tail probability is at or below ``page_overwhelming_p`` (off by
  default). Only then it *pages*. Why points and not series: a single outlier is one
  sample time on one node, and it often shows in several series of that node at once (p95
  and p99 of one latency, MiB and % of one memory); those are one measurement, not
  agreement. A watching incident is grouped, explained and closed like any other (its
  explanations are published and visible; :meth:`Incidents.is_paging` tells the publisher
  not to page for them); the explanation of the alert that makes it agree is its page
  (published even when its ranking did not change; :attr:`Grouped.paged`), and the
  explanations published while it was watching stay where they are. Counters:
  :meth:`Incidents.counts`. ``page_agreement=1`` pages every incident at its first alert
  (the rule before).
- **Targets.** Each alerting series is a target of its incident. With impact finding on
  (:mod:`explainer.impact`), deviating series downstream of an event's node join too.
- **Anchor.** With ``explain_window="run"`` (the default) a target is explained at its
  strongest recent evidence: the most severe event within the last anomaly window
  (``anomaly_points`` bins); an older peak is another episode, so a newer event then
  takes over (:func:`_anchor`); the window is the run of anomalous target bins ending
  there: the on-demand answer ``explain(node, series, at=anchor)``. With ``"now"`` it is
  explained at its newest data (``latest(row)``) with the anomaly window from its first
  event, at most ``anomaly_points`` bins: the on-demand answer ``explain(node, series,
  at=newest, window_start=first event)`` (:meth:`Incidents.moment`); the explainer then
  also re-explains such targets on new data while their window grows and they still
  deviate (:meth:`explainer.core.Explainer.growing`).
- **When.** Every target touched by a call is ranked again at its anchor; a result is
  returned only when the ranked content (:func:`signature`: nodes, series, score and share
  to 2 decimals) differs from the last one returned (then ``version`` + 1).
- **Closing.** :meth:`Incidents.close_stale` drops incidents without an event for the
  incident window; the live pipeline calls it after every batch (data time), keeping the
  incidents whose explanation is still pending.
- **Off the hot path.** :meth:`Incidents.group` (grouping and anchors, no ranking) runs on
  the hot path and :meth:`Incidents.explain` (ranking) in the explainer worker
  (:mod:`causalwatch.app.pipeline.worker`, whose docstring states the rule of *when*: onset
  first, then at most one update per interval, newest evidence).

:class:`Incidents` ranks through a callable (:class:`Ranker`), so these rules can be run
and tested with a fake ranker made from a plain function.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from causalwatch.errors import StateError
from causalwatch.models import AnomalyEvent
from explainer.dag import DependencyGraph
from explainer.impact import Impact
from explainer.results import (
    CauseSummary,
    ExplanationResult,
    IncidentSummary,
    Ranking,
    RootCauseResult,
    Span,
    TargetRef,
    digest,
)

__all__ = [
    "Grouped",
    "ImpactFinder",
    "Incident",
    "Incidents",
    "Ranker",
    "TargetState",
    "related",
    "signature",
]

log = logging.getLogger(__name__)


class Ranker(Protocol):
    """Ranks the root causes of series ``row`` of ``node`` at ``at_ts`` (the anomaly window
    from ``window_start`` when given); raises :class:`~causalwatch.errors.StateError` when
    it cannot yet (the target is skipped)."""

    def __call__(
        self, node: str, row: int, at_ts: float, window_start: float | None = None
    ) -> Ranking: ...


#: ``(events, series key -> open incident id)`` -> impact targets, by incident then row
ImpactFinder = Callable[[Sequence[AnomalyEvent], Mapping[str, str]], list[Impact]]


@dataclass
class TargetState:
    """One incident target (fields and order are the snapshot's JSON: keep them)."""

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
    root_causes: list[CauseSummary] = field(default_factory=list)


@dataclass
class Incident:
    incident_id: str
    start_ts: float
    last_ts: float
    nodes: list[str]
    targets: dict[str, TargetState]
    #: data time at which the incident started paging; None while it is watching
    paged_ts: float | None = None
    #: distinct (node, time) points of its alerts, kept up to ``page_agreement`` of them
    points: list[tuple[str, float]] = field(default_factory=list)

    @property
    def is_paging(self) -> bool:
        return self.paged_ts is not None


@dataclass
class Grouped:
    """What grouping one call's events did: the targets to (re-)explain, by incident id,
    the incidents merged away (absorbed id -> the id it joined), and the incidents that
    started paging in this call (their page is due now, like an onset)."""

    touched: dict[str, set[str]] = field(default_factory=dict)
    merged: dict[str, str] = field(default_factory=dict)
    paged: list[str] = field(default_factory=list)


def related(a: str, nodes: Iterable[str], graph: DependencyGraph) -> bool:
    """Whether node ``a`` equals, or is an ancestor or descendant of, one of ``nodes``."""
    anc_a = graph.ancestors(a) if a in graph else set()
    for b in nodes:
        if a == b or b in anc_a:
            return True
        if b in graph and a in graph.ancestors(b):
            return True
    return False


def signature(root_causes: Sequence[RootCauseResult]) -> str:
    """The ranked content that decides whether an explanation is published again."""
    return json.dumps(
        [[rc.node, rc.series, round(rc.score, 2), round(rc.share, 2)] for rc in root_causes]
    )


def _anchor(t: TargetState, ts: float, severity: float, horizon_s: float, new: bool) -> None:
    """Move the target's anchor to this event when it is at least as severe, or when the
    anchor is older than ``horizon_s`` (the last anomaly window)."""
    if new or severity >= t.peak_severity or ts - t.peak_ts > horizon_s:
        t.peak_ts, t.peak_severity = ts, severity


class Incidents:
    """Open incidents and their targets (state: plain dataclasses, JSON in snapshots).

    >>> from explainer.results import Ranking, Span
    >>> inc = Incidents(incident_window_s=900.0, anomaly_points=10)
    >>> ev = AnomalyEvent(0, 'lat{service="api"}', "api", 60.0, 9.0, 1.0, 0.99, 80.0)
    >>> fake = lambda node, row, at_ts: Ranking((), Span(0.0, at_ts), 50.0)
    >>> out = inc.on_anomalies([ev], graph=DependencyGraph(), step_s=60.0, rank=fake)
    >>> [(r.target.node, r.version, inc.is_paging(r.incident_id)) for r in out]  # watching
    [('api', 1, False)]
    >>> inc.on_anomalies([ev], graph=DependencyGraph(), step_s=60.0, rank=fake)  # no change
    []
    >>> ev2 = AnomalyEvent(1, 'err{service="api"}', "api", 120.0, 3.0, 0.0, 0.99, 80.0)
    >>> out = inc.on_anomalies([ev2], graph=DependencyGraph(), step_s=60.0, rank=fake)
    >>> [(r.target.series, r.version, inc.is_paging(r.incident_id)) for r in out]  # agreed
    [('err{service="api"}', 1, True)]
    """

    def __init__(
        self,
        incident_window_s: float | None,
        anomaly_points: int,
        incident_window_points: int = 15,
        page_agreement: int = 2,
        page_overwhelming_p: float | None = None,
        explain_window: str = "run",
    ) -> None:
        self.explain_window = explain_window
        self.incident_window_s = incident_window_s
        self.anomaly_points = anomaly_points
        self.incident_window_points = incident_window_points
        self.page_agreement = page_agreement
        self.page_overwhelming_p = page_overwhelming_p
        self.open: dict[str, Incident] = {}
        self._step_s = 0.0  # the step of the last grouping (0.0: unknown)
        #: incidents that started paging, and incidents closed without ever paging, since
        #: this object was built (process counters, not in snapshots)
        self.paged_total = 0
        self.watched_total = 0

    def window_s(self, step_s: float | None = None) -> float:
        """The incident window in seconds: ``incident_window_s`` when set, else
        ``incident_window_points`` steps (a step of 60 s until one is known)."""
        if self.incident_window_s is not None:
            return self.incident_window_s
        step = self._step_s if step_s is None else step_s
        return self.incident_window_points * (step if step > 0 else 60.0)

    def on_anomalies(
        self,
        events: Sequence[AnomalyEvent],
        *,
        graph: DependencyGraph,
        step_s: float,
        rank: Ranker,
        graph_version: int = 0,
        impact: ImpactFinder | None = None,
    ) -> list[ExplanationResult]:
        """Group ``events`` into incidents and return the new or changed explanations, by
        incident id then target series. ``step_s`` (0.0 when unknown) sets the anchor's
        horizon; ``impact`` adds downstream targets; ``graph_version`` is stamped on the
        results. The same as :meth:`group` then :meth:`explain` (the live pipeline calls
        them apart: grouping on the hot path, ranking in the explainer worker)."""
        grouped = self.group(events, graph=graph, step_s=step_s, impact=impact)
        return self.explain(grouped.touched, rank, graph_version)

    def group(
        self,
        events: Sequence[AnomalyEvent],
        *,
        graph: DependencyGraph,
        step_s: float,
        impact: ImpactFinder | None = None,
    ) -> Grouped:
        """Group ``events`` into incidents and move their targets' anchors; no ranking
        (``O(events · open incidents)``)."""
        horizon = self.anomaly_points * max(step_s, 0.0)
        self._step_s = max(step_s, 0.0)
        grouped = Grouped()
        touched = grouped.touched
        newly: set[str] = set()
        for ev in sorted(events, key=lambda e: (e.ts, e.row)):
            inc = self._incident_for(ev, graph, touched, grouped.merged)
            if ev.node not in inc.nodes:
                inc.nodes.append(ev.node)
            inc.last_ts = max(inc.last_ts, ev.ts)
            found = inc.targets.get(ev.series_key)
            if found is None:
                t = TargetState(ev.node, ev.series_key, ev.row, ev.ts, ev.ts, ev.severity)
                inc.targets[ev.series_key] = t
            else:
                t = found
            t.last_ts = max(t.last_ts, ev.ts)
            _anchor(t, ev.ts, float(ev.severity), horizon, new=found is None)
            t.severity = max(t.severity, float(ev.severity))
            touched.setdefault(inc.incident_id, set()).add(ev.series_key)
            if not inc.is_paging and self._agrees(inc, ev):
                inc.paged_ts = ev.ts
                newly.add(inc.incident_id)
                self.paged_total += 1
        self._touch_paged(grouped, newly)
        if impact is not None and touched:
            self._add_impact(impact(events, self._incident_of(touched)), touched, horizon)
        return grouped

    def _agrees(self, inc: Incident, ev: AnomalyEvent) -> bool:
        """Add the event's (node, time) point; whether the incident now pages: its alerts
        agree (``page_agreement`` distinct points) or this one is overwhelming."""
        point = (ev.node, float(ev.ts))
        if point not in inc.points and len(inc.points) < self.page_agreement:
            inc.points.append(point)
        if len(inc.points) >= self.page_agreement:
            return True
        over = self.page_overwhelming_p
        return over is not None and 1.0 - float(ev.score) <= over

    def _touch_paged(self, grouped: Grouped, newly: set[str]) -> None:
        """List the incidents that started paging now; their targets touched now are
        published even when their ranking did not change (the page needs an explanation)."""
        for iid in sorted({grouped.merged.get(i, i) for i in newly}):  # merged: the survivor
            inc = self.open.get(iid)
            if inc is None:
                continue
            for key in grouped.touched.get(iid, ()):
                if key in inc.targets:
                    inc.targets[key].signature = ""
            grouped.paged.append(iid)

    def is_paging(self, incident_id: str) -> bool:
        """Whether this open incident pages (its alerts agreed); False while watching and
        for incidents not open."""
        inc = self.open.get(incident_id)
        return inc is not None and inc.is_paging

    def is_explained(self, incident_id: str) -> bool:
        """Whether an explanation of this open incident was returned already (a later one
        is an update, the first is its onset)."""
        inc = self.open.get(incident_id)
        return inc is not None and any(t.version > 0 for t in inc.targets.values())

    def _incident_for(
        self,
        ev: AnomalyEvent,
        graph: DependencyGraph,
        touched: dict[str, set[str]],
        merged: dict[str, str],
    ) -> Incident:
        """The incident ``ev`` joins: a new one, or the oldest match with the other matches
        merged into it (their touched targets move along)."""
        window = self.window_s()
        # filtered, then sorted (the key is a total order: ids are unique): the same list as
        # sorting every open incident for every event, which grew with the alert rate
        match = sorted(
            (
                inc
                for inc in self.open.values()
                if ev.ts - inc.last_ts <= window
                and inc.start_ts - ev.ts <= window
                and related(ev.node, inc.nodes, graph)
            ),
            key=lambda i: (i.start_ts, i.incident_id),
        )
        if not match:
            iid = "inc-" + digest(f"{ev.node}|{ev.series_key}|{ev.ts!r}", 6)
            new = Incident(iid, ev.ts, ev.ts, [], {})
            self.open[iid] = new
            return new
        inc = match[0]
        for other in match[1:]:
            for n in other.nodes:
                if n not in inc.nodes:
                    inc.nodes.append(n)
            for k, t in other.targets.items():
                inc.targets.setdefault(k, t)
            inc.start_ts = min(inc.start_ts, other.start_ts)
            inc.last_ts = max(inc.last_ts, other.last_ts)
            for pt in other.points:
                if pt not in inc.points and len(inc.points) < self.page_agreement:
                    inc.points.append(pt)
            if other.paged_ts is not None:
                mine = inc.paged_ts
                inc.paged_ts = other.paged_ts if mine is None else min(mine, other.paged_ts)
            touched.setdefault(inc.incident_id, set()).update(touched.pop(other.incident_id, set()))
            merged[other.incident_id] = inc.incident_id
            for k, v in list(merged.items()):
                if v == other.incident_id:
                    merged[k] = inc.incident_id
            del self.open[other.incident_id]
        return inc

    def _incident_of(self, touched: dict[str, set[str]]) -> dict[str, str]:
        """Series key -> open incident id, for the touched targets."""
        out: dict[str, str] = {}
        for iid, keys in touched.items():
            for k in keys:
                out[k] = iid
        return {k: iid for k, iid in out.items() if iid in self.open}

    def _add_impact(
        self, found: list[Impact], touched: dict[str, set[str]], horizon: float
    ) -> None:
        """Make each impact series a target of its incident (anchored like an alert)."""
        for imp in found:
            inc = self.open[imp.incident_id]
            ev = imp.event
            t = inc.targets.get(imp.series_key)
            if t is None:
                t = TargetState(imp.node, imp.series_key, imp.row, ev.ts, ev.ts, float(ev.severity))
                t.peak_ts, t.peak_severity = ev.ts, float(ev.severity)
                inc.targets[imp.series_key] = t
            else:
                _anchor(t, ev.ts, float(ev.severity), horizon, new=False)
            t.last_ts = max(t.last_ts, ev.ts)
            if imp.node not in inc.nodes:
                inc.nodes.append(imp.node)
            touched[imp.incident_id].add(imp.series_key)

    def explain(
        self,
        touched: Mapping[str, Iterable[str]],
        rank: Ranker,
        graph_version: int = 0,
        latest: Callable[[int], float] | None = None,
    ) -> list[ExplanationResult]:
        """Rank every touched target at its anchor (as it is now: the newest evidence);
        keep those whose content changed. Incidents closed since and unknown targets are
        skipped. ``latest(row)``: the newest sample time of a row (``explain_window="now"``)."""
        out: list[ExplanationResult] = []
        for iid in sorted(touched):
            inc = self.open.get(iid)
            if inc is None:
                continue
            for key in sorted(set(touched[iid])):
                t = inc.targets.get(key)
                if t is None:
                    continue
                at_ts, since = self.moment(t, latest)
                try:
                    ranking = (
                        rank(t.node, t.row, at_ts)
                        if since is None
                        else rank(t.node, t.row, at_ts, since)
                    )
                except StateError as exc:
                    log.info("explainer cannot explain yet", extra={"series": key, "why": str(exc)})
                    continue
                sig = signature(ranking.root_causes)
                if sig == t.signature:
                    continue
                t.signature = sig
                t.version += 1
                t.root_causes = [
                    CauseSummary(rc.node, rc.score, rc.share) for rc in ranking.root_causes
                ]
                window = Span(min(ranking.window.start, t.first_ts), ranking.window.end)
                out.append(
                    ExplanationResult.build(
                        iid,
                        t.version,
                        TargetRef(t.node, key),
                        t.last_ts,
                        window,
                        t.severity,
                        ranking.root_causes,
                        graph_version,
                        opposing=ranking.opposing,
                    )
                )
        return out

    def moment(
        self, t: TargetState, latest: Callable[[int], float] | None = None
    ) -> tuple[float, float | None]:
        """When a target is explained and where its anomaly window starts (None: the run
        of anomalous target bins), by ``explain_window`` (the module docstring)."""
        if self.explain_window == "run":
            return t.peak_ts, None
        at = t.last_ts
        if latest is not None:
            newest = latest(t.row)
            at = max(at, newest) if math.isfinite(newest) else at
        onset = t.first_ts
        if self._step_s > 0:
            onset = max(onset, at - (self.anomaly_points - 1) * self._step_s)
        return at, min(onset, at)

    def close_stale(
        self, now_ts: float, keep: Iterable[str] = (), *, step_s: float | None = None
    ) -> list[str]:
        """Close incidents without an event for the incident window (:meth:`window_s`);
        returns their ids. Incidents in ``keep`` (explanations still pending) stay open."""
        kept = set(keep)
        window = self.window_s(step_s)
        gone = [
            iid
            for iid, inc in self.open.items()
            if now_ts - inc.last_ts > window and iid not in kept
        ]
        for iid in gone:
            if not self.open.pop(iid).is_paging:
                self.watched_total += 1
        return sorted(gone)

    def counts(self) -> tuple[int, int, int]:
        """``(open watching, paged since start, closed without paging since start)``."""
        watching = sum(1 for inc in self.open.values() if not inc.is_paging)
        return watching, self.paged_total, self.watched_total

    def summaries(self) -> list[IncidentSummary]:
        """Every open target, by incident id then series."""
        out = []
        for iid in sorted(self.open):
            inc = self.open[iid]
            for key in sorted(inc.targets):
                t = inc.targets[key]
                out.append(IncidentSummary(iid, t.node, key, t.version, tuple(t.root_causes)))
        return out

    def root_cause_rows(self) -> list[tuple[str, str, str, float, float]]:
        """``(incident_id, target node, cause node, score, share)`` of every root cause of
        every open target, in :meth:`summaries` order: the metrics scrape's rows, without
        building a summary per target (a scrape holds the cores' lock while it runs)."""
        out: list[tuple[str, str, str, float, float]] = []
        for iid in sorted(self.open):
            targets = self.open[iid].targets
            if not any(t.root_causes for t in targets.values()):
                continue
            for key in sorted(targets):
                t = targets[key]
                for rc in t.root_causes:
                    share = float(rc[2]) if len(rc) > 2 else float("nan")
                    out.append((iid, t.node, rc[0], float(rc[1]), share))
        return out

    # -- snapshot ------------------------------------------------------------------------
    def to_json(self) -> list[dict[str, Any]]:
        """The open incidents as JSON-able dicts (the snapshot's ``incidents`` meta).

        ``paged_ts`` is written only when it is not ``start_ts`` and ``points`` only while
        watching (a paging incident needs no points), so an incident of a snapshot from
        before the paging rule (read as paged at its start) is written back byte for byte."""
        out = []
        for inc in self.open.values():
            d: dict[str, Any] = {
                "incident_id": inc.incident_id,
                "start_ts": inc.start_ts,
                "last_ts": inc.last_ts,
                "nodes": inc.nodes,
                "targets": [asdict(t) for t in inc.targets.values()],
            }
            if inc.paged_ts != inc.start_ts:
                d["paged_ts"] = inc.paged_ts
            if not inc.is_paging:
                d["points"] = [list(p) for p in inc.points]
            out.append(d)
        return out

    def load_json(self, incidents: list[dict[str, Any]]) -> None:
        """Add the incidents of :meth:`to_json` (the snapshot's ``incidents`` meta)."""
        for d in incidents:
            targets = {}
            for t in d["targets"]:
                # (node, score) in snapshots from before shares were kept
                t["root_causes"] = [
                    CauseSummary(x[0], x[1], x[2] if len(x) > 2 else float("nan"))
                    for x in t["root_causes"]
                ]
                targets[t["series"]] = TargetState(**t)
            # snapshots from before the paging rule: every incident paged at its start
            paged = d.get("paged_ts", d["start_ts"])
            points = [(str(p[0]), float(p[1])) for p in d.get("points", [])]
            self.open[d["incident_id"]] = Incident(
                d["incident_id"],
                d["start_ts"],
                d["last_ts"],
                list(d["nodes"]),
                targets,
                None if paged is None else float(paged),
                points,
            )
