"""The ranking on its own: a hand-built history and view, a fake Granger lookup."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from causalwatch.errors import StateError
from causalwatch.series import SeriesIndex
from explainer.candidates import SeriesChoice
from explainer.config import ExplainerConfig
from explainer.dag import DependencyGraph, Edge
from explainer.history import History
from explainer.ranking import rank
from explainer.results import ExplanationResult, GrangerEvidence, Ranking, TargetRef
from explainer.scoring import combine, onset
from explainer.view import View
from explainer.windows import anomaly_bins, zscores

STEP = 60.0
GRAPH = DependencyGraph([Edge("db", "api"), Edge("cache", "api"), Edge("api", "web")])
NODES = ["db", "cache", "api", "web"]
CFG = ExplainerConfig(step_s=STEP, learn_graph=False)


def _view(
    fault: str | dict[str, float],
    graph: DependencyGraph = GRAPH,
    n: int = 300,
    seed: int = 4,
) -> tuple[View, SeriesIndex]:
    """``fault``: a node shifted by +6 over the last 8 steps, or shifts by node."""
    shifts = {fault: 6.0} if isinstance(fault, str) else fault
    rng = np.random.default_rng(seed)
    idx = SeriesIndex()
    rows = idx.rows_for([f'lat{{service="{v}"}}' for v in NODES])
    hist = History(CFG.history_points)
    for t in range(n):
        f = {v: (shifts.get(v, 0.0) if t >= n - 8 else 0.0) for v in NODES}
        db = 5 + rng.normal() + f["db"]
        cache = 2 + 0.5 * rng.normal() + f["cache"]
        api = 1 + 0.8 * db + 0.5 * cache + 0.5 * rng.normal() + f["api"]
        web = 3 + 1.1 * api + 0.5 * rng.normal() + f["web"]
        hist.ensure(len(NODES))
        hist.append(rows, np.full(4, t * STEP), np.array([db, cache, api, web]))
    return View(hist, idx, graph, graph.given(), STEP), idx


def _no_granger(*_: object) -> None:
    return None


@pytest.mark.parametrize("fault", ["db", "cache", "api"])
def test_rank_names_the_faulty_ancestor_without_an_explainer(fault: str) -> None:
    view, idx = _view(fault)
    row = idx.get('lat{service="web"}')
    assert row is not None
    r = rank(view, CFG, _no_granger, "web", row, 299 * STEP)
    assert r.root_causes[0].node == fault
    assert r.window.end == 299 * STEP and r.window.start < r.window.end
    assert 0 < r.severity <= 100
    top = r.root_causes[0].evidence
    assert top.path[0] == fault and top.path[-1] == "web" and top.granger is None


def test_a_granger_test_adds_its_bonus_to_the_score() -> None:
    view, idx = _view("db")
    row = idx.get('lat{service="web"}')
    assert row is not None
    plain = {
        rc.node: rc.score for rc in rank(view, CFG, _no_granger, "web", row, 299 * STEP).root_causes
    }
    ev = GrangerEvidence(10.0, 0.0, 0.0, 1, pair=("a", "b"))

    def lookup(n: str, *_: object) -> GrangerEvidence | None:
        return ev if n in ("cache", "web") else None

    got = rank(view, CFG, lookup, "web", row, 299 * STEP).root_causes
    by = {rc.node: rc for rc in got}
    assert by["cache"].evidence.granger is ev
    # 0.9 x attribution + 0.1 x (1 - q), only for nodes the attribution scored above 0
    assert plain["cache"] > 0 and plain["web"] == 0  # web: own residual against its deviation
    assert by["cache"].score == pytest.approx(plain["cache"] + 0.1)
    assert by["web"].score == 0
    assert by["db"].score == pytest.approx(plain["db"])


def test_with_three_bins_the_robust_z_fallback_answers_and_says_so() -> None:
    view, _ = _view("db", n=3)
    r = rank(view, CFG, _no_granger, "web", 3, 2 * STEP)
    assert r.method == "robust_z" and r.root_causes
    assert all(rc.evidence.method == "robust_z" and rc.share == 0.0 for rc in r.root_causes)
    e = _build(r)
    assert e.method == "robust_z" and e.unexplained == 1.0


def test_with_two_bins_every_method_fails() -> None:
    view, _ = _view("db", n=2)
    with pytest.raises(StateError, match="only 2 time bins"):
        rank(view, CFG, _no_granger, "web", 3, 1 * STEP)


def test_a_short_reference_falls_back_instead_of_an_arbitrary_order() -> None:
    """Four bins: the SCM has too few reference points to judge anyone (all scores 0)."""
    view, _ = _view("db", n=4)
    r = rank(view, CFG, _no_granger, "web", 3, 3 * STEP)
    assert r.method == "robust_z"
    assert r.root_causes[0].node == "db"


def _build(r: Ranking) -> ExplanationResult:
    target = TargetRef("web", 'lat{service="web"}')
    return ExplanationResult.build(
        "i", 1, target, r.window.end, r.window, r.severity, r.root_causes, 1, opposing=r.opposing
    )


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_one_clear_fault_is_a_root_cause_with_shares_that_add_up(seed: int) -> None:
    view, _ = _view("db", seed=seed)
    r = rank(view, CFG, _no_granger, "web", 3, 299 * STEP)
    e = _build(r)
    assert e.verdict == "root_cause" and e.method == "scm"
    assert e.root_causes[0].node == "db" and e.root_causes[0].share > 0.8
    shares = [rc.share for rc in e.root_causes]
    assert min(shares) >= 0 and sum(shares) + e.unexplained == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_no_fault_is_inconclusive(seed: int) -> None:
    view, _ = _view({}, seed=seed)
    e = _build(rank(view, CFG, _no_granger, "web", 3, 299 * STEP))
    assert e.verdict == "inconclusive"
    assert not any(rc.evidence.mechanism_change.changed for rc in e.root_causes)


@pytest.mark.parametrize("seed", [5, 6])
def test_two_faults_of_equal_effect_are_inconclusive(seed: int) -> None:
    """db moves the target by 0.8 x 6, cache by 0.5 x 9.6: the same."""
    view, _ = _view({"db": 6.0, "cache": 9.6}, seed=seed)
    e = _build(rank(view, CFG, _no_granger, "web", 3, 299 * STEP))
    assert e.verdict == "inconclusive"
    assert {rc.node for rc in e.root_causes[:2]} == {"db", "cache"}


def test_a_node_that_pulled_the_other_way_is_listed_apart() -> None:
    view, _ = _view({"db": 6.0, "cache": -6.0})
    e = _build(rank(view, CFG, _no_granger, "web", 3, 299 * STEP))
    assert e.root_causes[0].node == "db" and e.verdict == "root_cause"
    by = {rc.node: rc for rc in e.root_causes}
    assert by["cache"].share == 0.0
    opp = {o.node: o.share for o in e.opposing}
    assert opp["cache"] > 0.3


def test_no_given_edge_to_the_target_ranks_the_anomalous_nodes_as_a_star() -> None:
    view, idx = _view("db", graph=DependencyGraph([], NODES))
    row = idx.get('lat{service="web"}')
    assert row is not None
    cfg = dataclasses.replace(CFG, no_graph_ranking="star")
    r = rank(view, cfg, _no_granger, "web", row, 299 * STEP)
    assert "db" in [rc.node for rc in r.root_causes[:3]]
    assert all(rc.evidence.path in ((rc.node, "web"), ("web",)) for rc in r.root_causes)
    assert r.method == "star" and _build(r).method == "star"


@pytest.mark.parametrize("fault", ["cache", "api"])
def test_no_graph_ranks_by_robust_z_by_default(fault: str) -> None:
    """What changed most, in robust units: the fault's own node (its callers move by the
    same amount over more noise). A db fault moves web by about as many of web's SDs as
    db's own: without a graph that is a tie, which is why a graph is worth giving."""
    view, idx = _view(fault, graph=DependencyGraph([], NODES))
    row = idx.get('lat{service="web"}')
    assert row is not None
    r = rank(view, CFG, _no_granger, "web", row, 299 * STEP)
    assert r.method == "robust_z" and r.root_causes[0].node == fault
    e = _build(r)
    assert e.unexplained == 1.0 and e.verdict in ("root_cause", "inconclusive")


# -- score terms on plain arrays ---------------------------------------------------------
def test_combine_gives_the_granger_bonus_only_to_nodes_the_attribution_scored() -> None:
    out = combine(np.array([0.5, 0.0, 1.0]), np.array([1.0, 1.0, 1.0]))
    np.testing.assert_allclose(out, [0.55, 0.0, 1.0])


def test_onset_prefers_the_node_that_moved_first() -> None:
    v = np.zeros((3, 60)) + np.random.default_rng(1).normal(0, 0.1, (3, 60))
    v[1, -12:] += 5  # db: 12 bins
    v[0, -3:] += 5  # the target: 3 bins
    chosen = {"db": SeriesChoice(1, 0, 0, ""), "x": SeriesChoice(2, 1, 0, "")}
    out = onset(["db", "x", "web"], "web", chosen, v, anomaly_points=10, anomaly_z=3.0)
    assert out[0] == 1.0 and out[1] < out[2] < out[0]


def test_window_statistics() -> None:
    v = np.array([1.0, 2.0, 1.0, 2.0, 1.0, 9.0, 9.0])
    assert anomaly_bins(v, 5, 3.0) == 2
    assert zscores(v[None, :], 2)[0] > 3.0


def test_robust_z_floors_near_flat_series() -> None:
    """Availability at 100 % dipping to 99.9 and a noisy count moving by one must not
    outrank a latency series that doubled."""
    from explainer.ranking import _robust_z

    rng = np.random.default_rng(0)
    lat = np.concatenate([50 + rng.normal(size=60), 100 + rng.normal(size=5)])
    avail = np.concatenate([np.full(60, 100.0), np.full(5, 99.9)])
    count = np.concatenate([rng.integers(40, 44, size=60), np.full(5, 43.0)]).astype(float)
    flat = np.concatenate([np.zeros(60), np.full(5, 3.0)])
    z = _robust_z(np.vstack([lat, avail, count, flat]), 5)
    assert abs(z[0]) > 10 * max(abs(z[1]), abs(z[2]))
    assert z[3] == 0.0  # never moved before: no scale, no z
