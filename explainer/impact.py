"""Downstream impact: series below an event's node that deviate the way the event did.

Why: a fault deep in the call graph often reaches the user-facing services below their
alert threshold (or while their detector is still muted after an earlier alarm), so an
incident would be explained only at the inner nodes. For each event on node ``a``, every
series of a graph descendant of ``a`` with the same metric name and non-node labels that
deviates in the event's direction (robust z beyond ``anomaly_z`` over its current
anomalous run, against the bins before it) is *impact*: :mod:`explainer.incidents` makes it
an incident target, explained like an alerted one.

Cost: one aligned history read per incident over its candidate series. Works poorly when
the graph misses edges (no impact found) or when a shared load swing moves all services at
once (impact on unrelated descendants is added, though its explanation then ranks that
swing's source).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from causalwatch.errors import StateError
from causalwatch.models import AnomalyEvent
from explainer.config import ExplainerConfig
from explainer.view import Identity, View, identity
from explainer.windows import anomaly_bins, zscores

__all__ = ["Impact", "find_impact"]


@dataclass(frozen=True, slots=True)
class Impact:
    """Series ``row`` (``series_key`` of ``node``) deviates below ``event``'s node, in the
    event's incident ``incident_id``; ``event`` is the most severe such upstream event."""

    incident_id: str
    row: int
    series_key: str
    node: str
    event: AnomalyEvent


def find_impact(
    view: View,
    cfg: ExplainerConfig,
    events: Sequence[AnomalyEvent],
    incident_of: Mapping[str, str],
) -> list[Impact]:
    """The impact of ``events`` (those whose series is in ``incident_of``: series key ->
    open incident id), by incident id then row."""
    cand = _descendant_rows(view, events, incident_of)
    n_pts = cfg.reference_points + cfg.anomaly_points
    out: list[Impact] = []
    for iid in sorted(cand):
        rows = sorted(cand[iid])
        now = max(cand[iid][r].ts for r in rows)
        try:
            step = view.step_for(rows[0])
        except StateError:
            continue
        _, V = view.history.aligned(np.array(rows, dtype=np.int64), now, step, n_pts)
        if V.shape[1] < 4:
            continue
        for i, r in enumerate(rows):
            ev = cand[iid][r]
            if _deviates_with(V[i], ev, cfg):
                out.append(Impact(iid, r, view.index.key_of(r), view.index.node_of(r), ev))
    return out


def _descendant_rows(
    view: View, events: Sequence[AnomalyEvent], incident_of: Mapping[str, str]
) -> dict[str, dict[int, AnomalyEvent]]:
    """Per incident: the rows of graph descendants of each event's node with the event's
    metric identity, each with the most severe such event (events in time order)."""
    graph = view.graph
    label = view.index.node_label
    by_ident: dict[Identity, dict[str, list[int]]] = {}
    for _, row in view.index.items():
        ident = view.identity(row)
        by_ident.setdefault(ident, {}).setdefault(view.index.node_of(row), []).append(row)
    cand: dict[str, dict[int, AnomalyEvent]] = {}
    for ev in sorted(events, key=lambda e: (e.ts, e.row)):
        iid = incident_of.get(ev.series_key)
        if iid is None or ev.node not in graph:
            continue
        if not (np.isfinite(ev.value) and np.isfinite(ev.expected)) or ev.value == ev.expected:
            continue
        nodes_rows = by_ident.get(identity(ev.series_key, label), {})
        for d in graph.descendants(ev.node):
            for r in nodes_rows.get(d, []):
                prev = cand.setdefault(iid, {}).get(r)
                if prev is None or ev.severity > prev.severity:
                    cand[iid][r] = ev
    return cand


def _deviates_with(v: np.ndarray, ev: AnomalyEvent, cfg: ExplainerConfig) -> bool:
    """Whether the aligned series ``v`` is anomalous now in ``ev``'s direction, with enough
    reference points to tell."""
    n_anom = anomaly_bins(v, cfg.anomaly_points, cfg.anomaly_z)
    if np.isfinite(v[: v.size - n_anom]).sum() < max(cfg.reference_points // 2, 3):
        return False
    z = float(zscores(v[None, :], n_anom)[0])
    return not (abs(z) <= cfg.anomaly_z or np.sign(z) != np.sign(ev.value - ev.expected))
