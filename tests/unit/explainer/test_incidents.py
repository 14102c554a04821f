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

    def __call__(self, node: str, row: int, at_ts: float) -> Ranking:
        self.calls.append((node, row, at_ts))
        if node not in self.answer:
            raise StateError(f"no history for {node}")
        return Ranking(tuple(self.answer[node]), Span(at_ts - STEP, at_ts), 70.0)


def _new() -> Incidents:
    return Incidents(incident_window_s=900.0, anomaly_points=10)


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
