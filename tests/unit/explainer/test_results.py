"""Typed results and the one edge converter to the published JSON."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from causalwatch.models import Explanation
from causalwatch.schemas import explanation_json
from explainer.results import (
    Evidence,
    ExplanationResult,
    GrangerEvidence,
    MechanismEvidence,
    PointCounts,
    RootCauseResult,
    Span,
    TargetRef,
)

NAN = float("nan")
EXPLAINER = Path(__file__).resolve().parents[3] / "explainer"


def _evidence(granger: GrangerEvidence | None, share: float = 0.7) -> Evidence:
    return Evidence(
        share=share,
        contribution=2.1,
        target_deviation=3.0,
        mechanism_change=MechanismEvidence(score=0.99, p_value=0.01, z=NAN, shift=1.5),
        total_effect=1.0,
        path=("db", "api"),
        granger=granger,
        ci=(0.5, float("inf")),
        series_choice="same metric and labels",
        points=PointCounts(reference=120, anomaly=3),
    )


def _result() -> ExplanationResult:
    pair = GrangerEvidence(21.3, 0.0001, 0.001, 1, pair=('lat{service="db"}', 'lat{service="api"}'))
    edge = GrangerEvidence(None, 0.002, 0.002, None, edge=("cache", "api"))
    causes = (
        RootCauseResult("db", 'lat{service="db"}', 0.84, 0.7, _evidence(pair)),
        RootCauseResult("cache", 'lat{service="cache"}', 0.2, 0.0, _evidence(edge, NAN)),
        RootCauseResult("api", 'lat{service="api"}', 0.1, 0.1, _evidence(None)),
    )
    target = TargetRef("api", 'lat{service="api"}')
    return ExplanationResult.build("inc-1", 2, target, 120.0, Span(60.0, 120.0), 74.2, causes, 3)


def test_the_converter_writes_the_documented_json_with_null_for_non_finite() -> None:
    doc = json.loads(explanation_json(Explanation.from_result(_result())))
    assert list(doc) == [
        "id",
        "incident_id",
        "version",
        "target",
        "detected_at",
        "window",
        "severity",
        "root_causes",
        "graph_version",
        "verdict",
        "verdict_reason",
        "unexplained",
        "opposing",
        "method",
    ]
    assert doc["verdict"] == "inconclusive" and doc["method"] == "scm"
    assert doc["unexplained"] == pytest.approx(0.2)
    assert doc["target"] == {"node": "api", "series": 'lat{service="api"}'}
    assert doc["window"] == {"start": 60.0, "end": 120.0}
    db, cache, api = doc["root_causes"]
    assert list(db) == ["node", "series", "score", "share", "evidence"]
    assert list(db["evidence"]) == [
        "share",
        "contribution",
        "target_deviation",
        "mechanism_change",
        "total_effect",
        "path",
        "granger",
        "ci",
        "series_choice",
        "points",
        "method",
    ]
    assert db["evidence"]["mechanism_change"] == {
        "score": 0.99,
        "p_value": 0.01,
        "z": None,
        "shift": 1.5,
        "changed": False,
    }
    assert db["evidence"]["ci"] == [0.5, None] and db["evidence"]["path"] == ["db", "api"]
    assert db["evidence"]["points"] == {"reference": 120, "anomaly": 3}
    assert db["evidence"]["granger"] == {
        "statistic": 21.3,
        "p_value": 0.0001,
        "q_value": 0.001,
        "lag": 1,
        "pair": ['lat{service="db"}', 'lat{service="api"}'],
    }
    assert cache["evidence"]["share"] is None
    assert cache["evidence"]["granger"] == {
        "statistic": None,
        "p_value": 0.002,
        "q_value": 0.002,
        "lag": None,
        "edge": ["cache", "api"],
    }
    assert api["evidence"]["granger"] is None


def test_results_are_frozen_and_build_clips_severity_and_makes_the_id() -> None:
    r = _result()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.version = 3  # type: ignore[misc]
    again = ExplanationResult.build("inc-1", 2, r.target, 120.0, r.window, 500.0, r.root_causes, 3)
    assert again.id == r.id and again.severity == 100.0


def test_explainer_cores_build_no_pydantic_model() -> None:
    """The explainer returns dataclasses; only the edge imports the pydantic models."""
    for path in sorted(EXPLAINER.glob("*.py")):
        if path.name == "redis_dag_cache.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("pydantic"), path.name
                if node.module == "causalwatch.models":
                    names = {a.name for a in node.names}
                    assert names <= {"AnomalyEvent"}, (path.name, names)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("pydantic") for a in node.names), path.name


def _cause(
    node: str, changed: bool, ci: tuple[float, float], share: float, method: str = "scm"
) -> RootCauseResult:
    mech = MechanismEvidence(score=0.99, p_value=0.01, z=8.0, shift=1.0, changed=changed)
    ev = dataclasses.replace(_evidence(None), mechanism_change=mech, ci=ci, method=method)
    return RootCauseResult(node, f'lat{{service="{node}"}}', 0.5, share, ev)


@pytest.mark.parametrize(
    ("causes", "verdict"),
    [
        ((), "inconclusive"),
        # nothing changed on its own
        (
            (_cause("db", False, (0.5, 0.9), 0.7), _cause("api", False, (0.0, 0.2), 0.1)),
            "inconclusive",
        ),
        # only the top changed
        (
            (_cause("db", True, (0.1, 0.9), 0.5), _cause("api", False, (0.0, 0.8), 0.4)),
            "root_cause",
        ),
        # both changed, separable
        ((_cause("db", True, (0.6, 0.9), 0.7), _cause("api", True, (0.0, 0.3), 0.1)), "root_cause"),
        # both changed, intervals overlap
        (
            (_cause("db", True, (0.3, 0.7), 0.5), _cause("api", True, (0.2, 0.6), 0.4)),
            "inconclusive",
        ),
        # no graph: the star's shares predict, they do not order causes
        (
            (
                _cause("db", True, (0.6, 0.9), 0.7, "star"),
                _cause("api", True, (0.0, 0.3), 0.1, "star"),
            ),
            "inconclusive",
        ),
        ((_cause("db", True, (0.6, 0.9), 0.7, "star"),), "root_cause"),
        # both changed, no interval (robust-z fallback)
        (
            (_cause("db", True, (NAN, NAN), 0.0), _cause("api", True, (NAN, NAN), 0.0)),
            "inconclusive",
        ),
        # the top did not change, the second did: the ranking is not to be trusted
        (
            (_cause("db", False, (0.6, 0.9), 0.7), _cause("api", True, (0.0, 0.3), 0.1)),
            "inconclusive",
        ),
    ],
)
def test_verdict_reads_own_change_and_separability(
    causes: tuple[RootCauseResult, ...], verdict: str
) -> None:
    r = ExplanationResult.build("i", 1, TargetRef("api", "x"), 1.0, Span(0, 1), 50.0, causes, 1)
    assert r.verdict == verdict and r.verdict_reason
    doc = json.loads(explanation_json(Explanation.from_result(r)))
    assert doc["verdict"] == verdict
    assert sum(rc["share"] for rc in doc["root_causes"]) + doc["unexplained"] == pytest.approx(1.0)
