"""The incident rules on their own: a fake ranker made from a plain function, no history."""

from __future__ import annotations

import json

from causalwatch.errors import StateError
from causalwatch.models import AnomalyEvent
from explainer.dag import DependencyGraph, Edge
from explainer.impact import Impact
from explainer.incidents import Incidents, related, signature
from explainer.results import (
    Evidence,
    MechanismEvidence,
    PointCounts,
    Ranking,
    RootCauseResult,
    Span,
)

STEP = 60.0
# db -> api -> web; queue is unrelated
GRAPH = DependencyGraph([Edge("db", "api"), Edge("api", "web"), Edge("broker", "queue")])
ROWS = {"db": 0, "api": 1, "web": 2, "queue": 3, "broker": 4}


def _key(node: str) -> str:
    return f'lat{{service="{node}"}}'


def _event(node: str, ts: float, severity: float = 80.0) -> AnomalyEvent:
    return AnomalyEvent(ROWS[node], _key(node), node, ts, 9.0, 1.0, 0.99, severity)


def _cause(node: str, score: float) -> RootCauseResult:
    ev = Evidence(
        share=score,
        contribution=score,
        target_deviation=1.0,
        mechanism_change=MechanismEvidence(0.9, 0.1, 2.0, 1.0),
        total_effect=1.0,
        path=(node,),
        granger=None,
        ci=(0.0, 1.0),
        series_choice="target series",
        points=PointCounts(120, 1),
    )
    return RootCauseResult(node, _key(node), score, score, ev)


class FakeRanker:
    """Ranks ``answer[node]`` (fixed root causes) and records every call."""

    def __init__(self, answer: dict[str, list[RootCauseResult]]) -> None:
        self.answer = answer
        self.calls: list[tuple[str, int, float]] = []
        self.starts: list[float | None] = []  # the window_start of each call

    def __call__(
        self, node: str, row: int, at_ts: float, window_start: float | None = None
    ) -> Ranking:
        self.calls.append((node, row, at_ts))
        self.starts.append(window_start)
        if node not in self.answer:
            raise StateError(f"no history for {node}")
        return Ranking(tuple(self.answer[node]), Span(at_ts - STEP, at_ts), 70.0)


def _new(page_agreement: int = 1, page_overwhelming_p: float | None = None) -> Incidents:
    # page_agreement=1 (every incident pages at once) for the tests of grouping, anchors,
    # versions and closing; the paging rule's own tests below ask for the default (2)
    return Incidents(
        incident_window_s=900.0,
        anomaly_points=10,
        page_agreement=page_agreement,
        page_overwhelming_p=page_overwhelming_p,
    )


def _alert(node: str, ts: float, metric: str = "lat", p: float = 1e-6) -> AnomalyEvent:
    """An alert of series ``metric`` of ``node`` with tail probability ``p``."""
    key = f'{metric}{{service="{node}"}}'
    return AnomalyEvent(ROWS[node], key, node, ts, 9.0, 1.0, 1 - p, 75.0)


def _run(inc: Incidents, events: list[AnomalyEvent], rank: FakeRanker, g=GRAPH) -> list:
    return inc.on_anomalies(events, graph=g, step_s=STEP, rank=rank)


# -- the paging rule (agreement or overwhelming evidence) ------------------------------
def test_a_single_ordinary_outlier_does_not_page() -> None:
    inc = _new(page_agreement=2)
    rank = FakeRanker({n: [_cause("db", 0.9)] for n in ROWS})
    # one outlier seen by three series of one node at one time: one point, no agreement
    out = _run(inc, [_alert("web", 0.0, m) for m in ("p95", "p99", "mean")], rank)
    # explained and visible (published), but its incident is watching: nothing pages
    assert len(out) == 3 and not inc.is_paging(out[0].incident_id)
    assert inc.counts() == (1, 0, 0)
    assert inc.close_stale(901.0) == [out[0].incident_id]
    assert inc.counts() == (0, 0, 1)  # closed without paging


def test_two_related_series_page_and_the_page_covers_the_evidence_so_far() -> None:
    inc = _new(page_agreement=2)
    rank = FakeRanker({n: [_cause("db", 0.9)] for n in ROWS})
    (first,) = _run(inc, [_alert("web", 0.0)], rank)
    assert not inc.is_paging(first.incident_id)
    # api is an ancestor of web (same incident): two points agree, it pages; the
    # explanation of the alert that agreed is the page
    (page,) = _run(inc, [_alert("api", 60.0)], rank)
    assert (page.target.node, page.version, page.incident_id) == ("api", 1, first.incident_id)
    assert inc.is_paging(first.incident_id) and inc.counts() == (0, 1, 0)
    # later alerts of a paging incident are explained as before (published on change)
    assert _run(inc, [_alert("web", 600.0)], rank) == []
    rank.answer["web"] = [_cause("api", 0.7)]
    (upd,) = _run(inc, [_alert("web", 660.0)], rank)
    assert upd.version == 2 and inc.counts() == (0, 1, 0)


def test_the_alert_that_agrees_is_published_even_with_an_unchanged_ranking() -> None:
    inc = _new(page_agreement=2)
    rank = FakeRanker({n: [_cause("db", 0.9)] for n in ROWS})
    (first,) = _run(inc, [_alert("web", 0.0)], rank)
    # the same series alerts again two steps later (same ranking): one node at two times
    (page,) = _run(inc, [_alert("web", 120.0)], rank)
    assert page.version == 2 and inc.is_paging(first.incident_id)


def test_one_node_at_two_times_agrees_an_unrelated_node_does_not() -> None:
    inc = _new(page_agreement=2)
    rank = FakeRanker({n: [_cause("db", 0.9)] for n in ROWS})
    (web,) = _run(inc, [_alert("web", 0.0)], rank)
    (queue,) = _run(inc, [_alert("queue", 60.0)], rank)  # unrelated: its own incident
    assert queue.incident_id != web.incident_id
    assert inc.counts() == (2, 0, 0)
    # a second series of web, two steps later: the same node at a second time pages
    out = _run(inc, [_alert("web", 120.0, "err")], rank)
    assert {r.target.series for r in out} == {'err{service="web"}'}
    assert inc.is_paging(web.incident_id) and not inc.is_paging(queue.incident_id)
    assert inc.counts() == (1, 1, 0)


def test_an_overwhelming_single_alert_pages_alone() -> None:
    inc = _new(page_agreement=2, page_overwhelming_p=1e-12)
    rank = FakeRanker({n: [_cause("db", 0.9)] for n in ROWS})
    (weak,) = _run(inc, [_alert("web", 0.0, p=1e-6)], rank)
    (strong,) = _run(inc, [_alert("queue", 0.0, p=1e-14)], rank)
    assert not inc.is_paging(weak.incident_id) and inc.is_paging(strong.incident_id)
    assert inc.counts() == (1, 1, 0)
    off = _new(page_agreement=2)  # off (None): the same alert waits for agreement
    (r,) = _run(off, [_alert("queue", 0.0, p=1e-14)], rank)
    assert not off.is_paging(r.incident_id)


def test_page_agreement_one_pages_every_incident_at_its_first_alert() -> None:
    inc = _new(page_agreement=1)
    rank = FakeRanker({n: [_cause("db", 0.9)] for n in ROWS})
    (r,) = _run(inc, [_alert("web", 0.0)], rank)
    assert r.version == 1 and inc.is_paging(r.incident_id) and inc.counts() == (0, 1, 0)


def test_merging_unions_the_points_and_watching_state_survives_a_snapshot() -> None:
    inc = _new(page_agreement=3)
    rank = FakeRanker({n: [_cause("db", 0.9)] for n in ROWS})
    g = DependencyGraph([Edge("db", "api"), Edge("db", "web")])  # api and web: siblings
    _run(inc, [_alert("api", 0.0)], rank, g)
    back = _new(page_agreement=3)
    back.load_json(json.loads(json.dumps(inc.to_json())))
    assert back.counts() == (1, 0, 0)  # still watching, its point kept
    # web is not related to api: its own incident; db connects both: merged, three points
    _run(back, [_alert("web", 0.0)], rank, g)
    assert back.counts() == (2, 0, 0)
    (out,) = _run(back, [_alert("db", 0.0)], rank, g)
    assert out.target.node == "db" and back.is_paging(out.incident_id)
    assert back.counts() == (0, 1, 0)
    assert {s.target_node for s in back.summaries()} == {"api", "web", "db"}


def test_an_incident_from_a_snapshot_before_the_rule_is_paging() -> None:
    inc = _new(page_agreement=1)
    _run(inc, [_event("web", 0.0)], FakeRanker({"web": [_cause("db", 0.9)]}))
    doc = json.loads(json.dumps(inc.to_json()))
    assert "paged_ts" not in doc[0] and "points" not in doc[0]  # the old layout
    back = _new(page_agreement=2)
    back.load_json(doc)
    assert back.is_paging(doc[0]["incident_id"]) and back.to_json() == doc


def test_related_nodes_share_an_incident_unrelated_ones_do_not() -> None:
    inc = _new()
    rank = FakeRanker({n: [_cause("db", 0.9)] for n in ROWS})
    out = inc.on_anomalies(
        [_event("api", 0.0), _event("web", 0.0), _event("queue", 60.0)],
        graph=GRAPH,
        step_s=STEP,
        rank=rank,
        graph_version=7,
    )
    by_node = {r.target.node: r for r in out}
    assert set(by_node) == {"api", "web", "queue"}
    assert by_node["api"].incident_id == by_node["web"].incident_id
    assert by_node["queue"].incident_id != by_node["api"].incident_id
    assert all(r.version == 1 and r.graph_version == 7 for r in out)
    assert related("db", ["web"], GRAPH) and not related("queue", ["web"], GRAPH)


def test_a_target_is_published_again_only_when_its_ranking_changed() -> None:
    inc = _new()
    answer = {"web": [_cause("db", 0.9), _cause("api", 0.2)]}
    rank = FakeRanker(answer)
    (first,) = inc.on_anomalies([_event("web", 0.0)], graph=GRAPH, step_s=STEP, rank=rank)
    # the same ranking (scores equal to 2 decimals): nothing published
    answer["web"] = [_cause("db", 0.901), _cause("api", 0.2)]
    assert inc.on_anomalies([_event("web", 60.0)], graph=GRAPH, step_s=STEP, rank=rank) == []
    answer["web"] = [_cause("api", 0.8), _cause("db", 0.3)]
    (second,) = inc.on_anomalies([_event("web", 120.0)], graph=GRAPH, step_s=STEP, rank=rank)
    assert (second.version, second.incident_id) == (2, first.incident_id)
    assert second.id != first.id
    assert second.detected_at == 120.0 and second.window.start == 0.0  # from the first event
    (summary,) = inc.summaries()
    assert summary.version == 2 and [c[0] for c in summary.root_causes] == ["api", "db"]
    assert signature(second.root_causes) == json.dumps(
        [["api", _key("api"), 0.8, 0.8], ["db", _key("db"), 0.3, 0.3]]
    )


def test_the_anchor_is_the_most_severe_event_of_the_last_anomaly_window() -> None:
    inc = _new()
    rank = FakeRanker({"web": [_cause("db", 0.9)]})
    inc.on_anomalies([_event("web", 0.0, severity=90.0)], graph=GRAPH, step_s=STEP, rank=rank)
    inc.on_anomalies([_event("web", 60.0, severity=10.0)], graph=GRAPH, step_s=STEP, rank=rank)
    assert rank.calls[-1][2] == 0.0  # a weaker later event: still explained at the peak
    # the peak is older than anomaly_points x step: a newer event takes over
    later = 0.0 + 10 * STEP + 1.0
    inc.on_anomalies([_event("web", later, severity=10.0)], graph=GRAPH, step_s=STEP, rank=rank)
    assert rank.calls[-1][2] == later


def test_with_the_now_window_a_target_is_explained_at_its_newest_data_from_its_first_alert() -> (
    None
):
    inc = Incidents(900.0, anomaly_points=10, page_agreement=1, explain_window="now")
    rank = FakeRanker({"web": [_cause("db", 0.9)]})
    g, newest = GRAPH, {ROWS["web"]: 0.0}

    def run(ev: AnomalyEvent) -> None:
        grouped = inc.group([ev], graph=g, step_s=STEP)
        inc.explain(grouped.touched, rank, latest=lambda row: newest[row])

    run(_event("web", 0.0, severity=90.0))
    assert rank.calls[-1][2] == 0.0 and rank.starts[-1] == 0.0  # the onset: one bin
    newest[ROWS["web"]] = 240.0  # data arrived after the alert: explained at the newest
    run(_event("web", 180.0, severity=10.0))
    assert rank.calls[-1][2] == 240.0 and rank.starts[-1] == 0.0  # window from the onset
    newest[ROWS["web"]] = 14 * STEP  # the window holds at most anomaly_points bins
    run(_event("web", 14 * STEP, severity=10.0))
    assert rank.calls[-1][2] == 14 * STEP and rank.starts[-1] == 5 * STEP


def test_a_target_the_ranker_cannot_explain_yet_is_skipped() -> None:
    inc = _new()
    rank = FakeRanker({"web": [_cause("db", 0.9)]})  # nothing for api
    out = inc.on_anomalies(
        [_event("api", 0.0), _event("web", 0.0)], graph=GRAPH, step_s=STEP, rank=rank
    )
    assert [r.target.node for r in out] == ["web"]
    assert {s.target_node for s in inc.summaries()} == {"api", "web"}  # still a target


def test_an_event_that_connects_two_incidents_merges_them_into_the_oldest() -> None:
    inc = _new()
    rank = FakeRanker({n: [_cause("db", 0.9)] for n in ROWS})
    g = DependencyGraph([Edge("db", "api"), Edge("db", "web")])  # api and web: siblings
    a = inc.on_anomalies([_event("api", 0.0)], graph=g, step_s=STEP, rank=rank)
    b = inc.on_anomalies([_event("web", 60.0)], graph=g, step_s=STEP, rank=rank)
    assert a[0].incident_id != b[0].incident_id
    (c,) = inc.on_anomalies([_event("db", 120.0)], graph=g, step_s=STEP, rank=rank)
    assert c.incident_id == a[0].incident_id
    assert {s.target_node for s in inc.summaries()} == {"api", "web", "db"}
    assert len({s.incident_id for s in inc.summaries()}) == 1


def test_impact_targets_join_their_incident_and_are_explained() -> None:
    inc = _new()
    rank = FakeRanker({n: [_cause("db", 0.9)] for n in ROWS})
    seen: list[dict[str, str]] = []

    def impact(events, incident_of):  # a fake impact finder: web deviates below db
        seen.append(dict(incident_of))
        iid = incident_of[_key("db")]
        return [Impact(iid, ROWS["web"], _key("web"), "web", events[0])]

    out = inc.on_anomalies([_event("db", 0.0)], graph=GRAPH, step_s=STEP, rank=rank, impact=impact)
    assert {r.target.node for r in out} == {"db", "web"}
    assert len({r.incident_id for r in out}) == 1
    assert list(seen[0]) == [_key("db")]


def test_stale_incidents_close_after_the_incident_window() -> None:
    inc = _new()
    rank = FakeRanker({"web": [_cause("db", 0.9)]})
    (r,) = inc.on_anomalies([_event("web", 0.0)], graph=GRAPH, step_s=STEP, rank=rank)
    assert inc.close_stale(900.0) == []
    assert inc.close_stale(901.0) == [r.incident_id]
    assert inc.summaries() == []


def test_incidents_round_trip_through_json_and_read_old_two_field_causes() -> None:
    inc = _new()
    rank = FakeRanker({"web": [_cause("db", 0.9)], "api": [_cause("db", 0.5)]})
    inc.on_anomalies([_event("api", 0.0), _event("web", 0.0)], graph=GRAPH, step_s=STEP, rank=rank)
    doc = json.loads(json.dumps(inc.to_json()))
    back = _new()
    back.load_json(doc)
    assert back.summaries() == inc.summaries()
    # snapshots from before shares were kept hold (node, score) pairs
    for t in doc[0]["targets"]:
        t["root_causes"] = [rc[:2] for rc in t["root_causes"]]
    old = _new()
    old.load_json(doc)
    (cause,) = old.summaries()[0].root_causes
    assert cause[0] == "db" and cause[2] != cause[2]  # share unknown: NaN
