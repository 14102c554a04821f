"""Ranking the root causes of one target series at one time.

How one ranking is made (:func:`rank`):

1. **Candidates** (:mod:`explainer.candidates`) are the target's node and its ancestors in
   the given graph (plus learned Granger edges only with ``learned_edges_in_graph``: off by
   default, the suite showed them hurting) when the given graph reaches the target. With
   no graph to the target the default is :func:`_rank_robust_z` (``no_graph_ranking``);
   with ``no_graph_ranking="star"`` the other nodes whose series are anomalous in the
   same window become the candidates, as direct parents of the target, ranked by their
   own change and how long they have been anomalous (a fault shows first at its root).
2. **One series per candidate node** (a node may have latency, errors, requests ...): the
   series with the target's metric name and the same other labels; else, among the
   node's series with the target's metric name, the most anomalous; else the node's most
   anomalous series. "Most anomalous" is the largest robust z of the anomaly-window median
   against the reference window.
3. **Windows** (:mod:`explainer.windows`): the rows are aligned on the union of their time
   bins (``step_s``). The anomaly window is the run of bins up to ``at_ts`` where the
   target is anomalous (|robust z| > ``anomaly_z``), at least the ``at_ts`` bin and at
   most ``anomaly_points`` bins; the reference window is the ``reference_points`` bins
   before it.
4. :func:`explainer.attribution.attribute` fits the linear SCM (parents at lags
   ``0..model_lags``), scores mechanism changes and computes Shapley shares. The ranking
   score in [0, 1] (:mod:`explainer.scoring`) is 0.9 x the attribution score (with a
   given graph 0.5 identified, own share of the deviation + 0.5 confidence of an own
   mechanism change; with the star :data:`~explainer.scoring.STAR_WEIGHTS` and the onset)
   + 0.1 x (1 - Granger q-value) of the candidate's series -> target series pair when it
   is tested.
5. Incident alerts (``analyse_sibling=True``) are analysed on the target node's least
   noisy series of the alert's metric that is anomalous in the same direction (an alert on
   a p95 is explained on the node's mean: percentiles do not add up along calls); the
   explanation's target stays the alerting series.

Works poorly when: the graph misses the true cause's edge to the target (it cannot be a
candidate unless no graph is given at all), two sibling nodes show the same fault (a
service and the client-side view of calls to it, with no edge between them: the larger
identified share wins, and a slope fitted on a very quiet reference under-states the true
one), the reference window already
holds the fault (use ``window_start``), or a series has too few points before the anomaly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy import special

from causalwatch.errors import StateError
from explainer.attribution import Attribution, _nanmedian, attribute, robust_scale
from explainer.candidates import (
    CandidateSet,
    SeriesChoice,
    Structure,
    analysis_row,
    candidate_nodes,
    choose_series,
    structure,
)
from explainer.config import ExplainerConfig
from explainer.dag import DependencyGraph
from explainer.results import (
    Evidence,
    GrangerEvidence,
    MechanismEvidence,
    Opposing,
    PointCounts,
    Ranking,
    RootCauseResult,
    Span,
)
from explainer.scoring import (
    STAR_WEIGHTS,
    combine,
    onset,
)
from explainer.view import View
from explainer.windows import AlignedWindow, aligned_window, anomaly_bins, zscores

__all__ = ["METHODS", "ROBUST_Z", "SCM", "STAR", "GrangerLookup", "rank"]

log = logging.getLogger(__name__)

#: the linear SCM's attribution over the given graph's ancestors (preferred)
SCM = "scm"
#: the same with no given edge to the target: the moved nodes as direct parents (a star)
STAR = "star"
#: the fallback: candidates ranked by the robust z of their most deviated series
ROBUST_Z = "robust_z"
#: the ranking methods: ``scm`` or ``star`` when the model can answer, else ``robust_z``
METHODS = (SCM, STAR, ROBUST_Z)

FloatArray = npt.NDArray[np.float64]

#: ``(candidate node, its series row, target node, target row, graph)`` -> the Granger
#: evidence for that link, or None (see :meth:`explainer.learning.GrangerLearner.evidence`)
GrangerLookup = Callable[[str, int, str, int, DependencyGraph], GrangerEvidence | None]

ANALYSED_SIBLING = "target node's least noisy anomalous series of the alert's metric"


def rank(
    view: View,
    cfg: ExplainerConfig,
    granger: GrangerLookup,
    node: str,
    target_row: int,
    at_ts: float,
    window_start: float | None = None,
    *,
    analyse_sibling: bool = False,
) -> Ranking:
    """Root causes of ``target_row`` (a series of ``node``) at ``at_ts``, best first.

    ``window_start`` fixes the anomaly window to ``[window_start, at_ts]``. The linear
    SCM answers when it can; when it cannot (fewer than 4 aligned bins, a singular fit,
    no candidate it could judge) the robust-z ranking does, and ``Ranking.method`` says
    which. Raises :class:`~causalwatch.errors.StateError` when the step is unknown or
    fewer than 3 time bins are aligned (every method failed). Cost ``O(nodes · T)`` for
    the fits, ``O(perm · nodes² · samples)`` for Shapley: a few milliseconds for 50 nodes.
    """
    step = view.step_for(target_row)
    node_rows = view.node_rows()
    alert_row = target_row
    if analyse_sibling:
        target_row = analysis_row(view, cfg, target_row, at_ts, step, node_rows.get(node, []))
    cands = candidate_nodes(view, node, node_rows)
    rows_all, owner = _candidate_rows(node, target_row, cands, node_rows)
    if cands.star and cfg.no_graph_ranking == ROBUST_Z:
        return _rank_robust_z(
            view, cfg, node, target_row, at_ts, window_start, step, rows_all, owner
        )
    try:
        out = _rank_scm(
            view,
            cfg,
            granger,
            node,
            (target_row, alert_row),
            at_ts,
            window_start,
            step,
            cands,
            (rows_all, owner),
        )
    except (StateError, np.linalg.LinAlgError) as exc:
        why = str(exc)
    else:
        if out.root_causes and out.root_causes[0].score > 0:
            return out
        why = "the model found no candidate that changed"
    log.debug("explainer falls back to robust z", extra={"why": why})
    return _rank_robust_z(view, cfg, node, target_row, at_ts, window_start, step, rows_all, owner)


def _rank_scm(
    view: View,
    cfg: ExplainerConfig,
    granger: GrangerLookup,
    node: str,
    target_rows: tuple[int, int],
    at_ts: float,
    window_start: float | None,
    step: float,
    cands: CandidateSet,
    rows_owner: tuple[list[int], list[str]],
) -> Ranking:
    """The preferred method: the linear SCM's attribution over the structure
    (``target_rows``: the analysed row and the alert's row; ``rows_owner``: every aligned
    row and its node, the target's first)."""
    target_row, alert_row = target_rows
    rows_all, owner = rows_owner
    win = aligned_window(
        view.history,
        rows_all,
        at_ts,
        step,
        reference_points=cfg.reference_points,
        anomaly_points=cfg.anomaly_points,
        anomaly_z=cfg.anomaly_z,
        window_start=window_start,
        what=view.index.key_of(target_row),
    )
    z_all = zscores(win.values, win.n_anom)
    chosen = choose_series(view, rows_all, owner, z_all)
    st = structure(view.graph, node, cands, chosen, z_all, cfg.anomaly_z)
    Vn = win.values[[0 if n == node else chosen[n].col for n in st.nodes]]
    res = _attribute(cfg, st, node, cands, chosen, z_all, win, Vn)
    tgt = st.nodes.index(node)
    rows = [target_row if i == tgt else chosen[n].row for i, n in enumerate(st.nodes)]
    gev = [granger(n, rows[i], node, target_row, view.graph) for i, n in enumerate(st.nodes)]
    score = _score(res, gev)
    reasons = [
        (ANALYSED_SIBLING if target_row != alert_row else "target series")
        if i == tgt
        else chosen[n].reason
        for i, n in enumerate(st.nodes)
    ]
    method = STAR if cands.star else SCM
    rcs = _root_causes(view, cfg, node, st.nodes, rows, reasons, res, score, gev, method)
    start = float(win.bin_ts[win.values.shape[1] - win.n_anom] - step)
    opposing = _opposing(view, cfg, st.nodes, rows, res)
    return Ranking(rcs, Span(start, float(at_ts)), _severity(z_all[0]), opposing, method)


def _robust_z(V: FloatArray, n_anom: int) -> FloatArray:
    """Per row: the anomaly window's median against the bins before it in robust units,
    the scale floored at 1 % of the reference level and at the series' smallest step, so
    a near-flat series (availability at 100 %) does not outrank a real change by a tiny
    move (leaving one system out, both parts chosen on every fold over the step alone, the
    level alone and none: BENCHMARKS.md, 2026-12-01 evening). A series that never moved
    before the window has no scale at all: its z is undefined, and 0 like every undefined z
    (its node's other series can still rank it)."""
    T = V.shape[1]
    ref, an = V[:, : T - n_anom], V[:, T - n_anom :]
    with np.errstate(all="ignore"):
        med = np.nan_to_num(_nanmedian(ref, axis=1))
        a_med = _nanmedian(an, axis=1)
        sc = robust_scale(ref, axis=1)
        steps = np.abs(np.diff(ref, axis=1))
        steps = np.where(np.isfinite(steps) & (steps > 0), steps, np.inf)
        quantum = steps.min(axis=1) if steps.shape[1] else np.full(V.shape[0], np.inf)
        quantum = np.where(np.isfinite(quantum), quantum, 0.0)
        floor = np.maximum(np.maximum(1e-2 * np.abs(med), quantum), 1e-9)
        sc = np.where(np.isfinite(sc) & (sc > floor), sc, floor)
        z = np.where(quantum > 0, (a_med - med) / sc, 0.0)
    return np.where(np.isfinite(z), z, 0.0)


def _severity(z: float) -> float:
    """Severity in [0, 100] from the target's robust z."""
    return float(min(100.0, 100.0 * (1.0 - math.exp(-abs(z) / 6.0))))


def _rank_robust_z(
    view: View,
    cfg: ExplainerConfig,
    node: str,
    target_row: int,
    at_ts: float,
    window_start: float | None,
    step: float,
    rows_all: list[int],
    owner: list[str],
) -> Ranking:
    """The fallback when the SCM cannot answer (too little history to fit, a singular
    fit, nothing the model could judge): the target and its candidates ranked by the
    largest robust z of any of their series (the anomaly window's median against the bins
    before it, as BARO ranks), needing only 3 aligned bins. No model, so no shares: all of
    the deviation stays unexplained. Raises :class:`StateError` with fewer than 3 bins
    (every method failed)."""
    n_win = cfg.anomaly_points
    if window_start is not None:
        n_win = max(math.floor((at_ts - window_start) / step + 1e-9) + 1, 1)
    t_bins, V = view.history.aligned(np.array(rows_all), at_ts, step, cfg.reference_points + n_win)
    T = V.shape[1]
    if T < 3:
        what = view.index.key_of(target_row)
        raise StateError(f"explain: only {T} time bins of history for {what!r}")
    if window_start is None:
        n_anom = anomaly_bins(V[0], min(cfg.anomaly_points, T - 2), cfg.anomaly_z)
    else:
        n_anom = int(min(max((t_bins > window_start - 1e-9).sum(), 1), T - 2))
    z = _robust_z(V, n_anom)
    best: dict[str, int] = {node: 0}  # node -> column of its most deviated series
    absz_col = np.abs(z).tolist()  # Python floats: the loop runs over every candidate row
    for col in range(1, len(rows_all)):
        n = owner[col]
        if n != node and (n not in best or absz_col[col] > absz_col[best[n]]):
            best[n] = col
    nodes = sorted(best, key=lambda n: (-abs(float(z[best[n]])), n))
    absz = np.array([abs(float(z[best[n]])) for n in nodes])
    p = np.minimum(2.0 * special.ndtr(-absz), 1.0)
    ref_pts = np.isfinite(V[:, : T - n_anom]).sum(axis=1)
    an_pts = np.isfinite(V[:, T - n_anom :]).sum(axis=1)
    rcs: list[RootCauseResult] = []
    for i, n in enumerate(nodes[: cfg.max_root_causes]):
        col = best[n]
        row = target_row if n == node else rows_all[col]
        mech = MechanismEvidence(
            score=float(1.0 - p[i]),
            p_value=float(p[i]),
            z=float(z[col]),
            shift=math.nan,
            changed=bool(p[i] * len(nodes) < 0.05 and ref_pts[col] >= 2),
        )
        ev = Evidence(
            share=math.nan,
            contribution=math.nan,
            target_deviation=math.nan,
            mechanism_change=mech,
            total_effect=math.nan,
            path=(n,) if n == node else tuple(view.graph.path(n, node) or [n, node]),
            granger=None,
            ci=(math.nan, math.nan),
            series_choice="target series" if n == node else "most anomalous",
            points=PointCounts(reference=int(ref_pts[col]), anomaly=int(an_pts[col])),
            method=ROBUST_Z,
        )
        score = float(absz[i] / (absz[i] + cfg.anomaly_z))
        rcs.append(RootCauseResult(n, view.index.key_of(row), score, 0.0, ev))
    start = float(t_bins[T - n_anom] - step)
    return Ranking(tuple(rcs), Span(start, float(at_ts)), _severity(z[0]), (), ROBUST_Z)


def _candidate_rows(
    node: str, target_row: int, cands: CandidateSet, node_rows: dict[str, list[int]]
) -> tuple[list[int], list[str]]:
    """The target row, then every row of the candidate nodes (aligned once, together),
    with each row's node."""
    rows_all: list[int] = [target_row]
    owner: list[str] = [node]
    for n in cands.nodes:
        for r in node_rows.get(n, []):
            rows_all.append(r)
            owner.append(n)
    return rows_all, owner


def _score(res: Attribution, gev: list[GrangerEvidence | None]) -> FloatArray:
    """The ranking score per node (see :mod:`explainer.scoring`)."""
    bonus = np.array([_bonus(ev) for ev in gev], dtype=np.float64)
    return combine(res.score, bonus)


def _root_causes(
    view: View,
    cfg: ExplainerConfig,
    node: str,
    nodes: list[str],
    rows: list[int],
    reasons: list[str],
    res: Attribution,
    score: FloatArray,
    gev: list[GrangerEvidence | None],
    method: str,
) -> tuple[RootCauseResult, ...]:
    """The ``max_root_causes`` best nodes, best first (stable on ties), with evidence."""
    out: list[RootCauseResult] = []
    for i in np.argsort(-score, kind="stable")[: cfg.max_root_causes].tolist():
        n = nodes[i]
        path = [n] if n == node else (view.graph.path(n, node) or [n, node])
        out.append(
            RootCauseResult(
                node=n,
                series=view.index.key_of(rows[i]),
                score=float(score[i]),
                share=_finite_or_zero(float(res.dev_share[i])),
                evidence=_evidence(res, i, tuple(path), gev[i], reasons[i], method),
            )
        )
    return tuple(out)


def _opposing(
    view: View, cfg: ExplainerConfig, nodes: list[str], rows: list[int], res: Attribution
) -> tuple[Opposing, ...]:
    """Nodes whose contribution pulled against the deviation (at least 1 % on the shares'
    scale), largest first, at most ``max_root_causes``."""
    order = np.argsort(-res.against_share, kind="stable")[: cfg.max_root_causes].tolist()
    return tuple(
        Opposing(nodes[i], view.index.key_of(rows[i]), float(res.against_share[i]))
        for i in order
        if res.against_share[i] >= 0.01
    )


def _attribute(
    cfg: ExplainerConfig,
    st: Structure,
    node: str,
    cands: CandidateSet,
    chosen: dict[str, SeriesChoice],
    z_all: FloatArray,
    win: AlignedWindow,
    Vn: FloatArray,
) -> Attribution:
    """The attribution over the structure's nodes (reference: the last ``reference_points``
    bins before the anomaly window)."""
    T = win.values.shape[1]
    ref, anom = Vn[:, : T - win.n_anom], Vn[:, T - win.n_anom :]
    ref = ref[:, -cfg.reference_points :]
    star = cands.star
    return attribute(
        st.parents,
        st.order,
        ref,
        anom,
        st.nodes.index(node),
        seed=cfg.seed,
        n_samples=cfg.n_samples,
        n_permutations=cfg.n_permutations,
        exact_max=cfg.exact_max,
        lags=cfg.model_lags,
        support=(
            onset(st.nodes, node, chosen, win.values, cfg.anomaly_points, cfg.anomaly_z)
            if star
            else None
        ),
        weights=STAR_WEIGHTS,  # used with the support term only (the star)
        saturate=not star,
    )


def _bonus(ev: GrangerEvidence | None) -> float:
    """1 - q of a Granger test that supports the link, else 0."""
    if ev is not None and ev.q_value is not None:
        return 1.0 - float(ev.q_value)
    return 0.0


def _finite_or_zero(x: float) -> float:
    """``x``, or 0.0 when it is not finite (or zero: -0.0 becomes 0.0)."""
    return (x if math.isfinite(x) else None) or 0.0


def _evidence(
    res: Attribution,
    i: int,
    path: tuple[str, ...],
    granger: GrangerEvidence | None,
    reason: str,
    method: str,
) -> Evidence:
    return Evidence(
        share=float(res.share[i]),
        contribution=float(res.contribution[i]),
        target_deviation=float(res.deviation),
        mechanism_change=MechanismEvidence(
            score=float(1.0 - res.p_value[i]),
            p_value=float(res.p_value[i]),
            z=float(res.shift_z[i]),
            shift=float(res.shift[i]),
            changed=bool(res.changed[i]),
        ),
        total_effect=float(res.effect[i]),
        path=path,
        granger=granger,
        ci=(float(res.ci_low[i]), float(res.ci_high[i])),
        series_choice=reason,
        points=PointCounts(reference=int(res.n_reference[i]), anomaly=int(res.n_anomaly[i])),
        method=method,
    )
