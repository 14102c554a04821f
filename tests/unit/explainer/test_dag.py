from __future__ import annotations

from pathlib import Path

import pytest

import explainer
from causalwatch.errors import GraphError
from explainer.dag import DependencyGraph, Edge, load_graph, parse_graph


def test_exports_are_declared() -> None:
    for name in explainer.__all__:
        assert hasattr(explainer, name), name


def test_load_csv_and_yaml(tmp_path: Path) -> None:
    c = tmp_path / "g.csv"
    c.write_text("cause,effect\ndb,api\napi,web\n\n")
    y = tmp_path / "g.yaml"
    y.write_text("edges:\n  - {cause: db, effect: api}\n  - {cause: api, effect: web}\n")
    gc, gy = load_graph(c), load_graph(y)
    assert [(e.cause, e.effect) for e in gc.edges] == [("db", "api"), ("api", "web")]
    assert gc.edges == gy.edges
    assert all(e.provenance == "given" for e in gc.edges)
    assert gc.ancestors("web") == {"db", "api"}
    assert gc.children("db") == ["api"]
    assert gc.path("db", "web") == ["db", "api", "web"]
    assert gc.path("web", "db") == []


def test_csv_header_in_other_order_and_extra_columns() -> None:
    g = parse_graph("effect,cause,strength\napi,db,0.5\n", "csv")
    assert g.edges[0] == Edge("db", "api", "given", 0.5, None, None)


@pytest.mark.parametrize(
    ("text", "fmt", "needle"),
    [
        ("", "csv", "empty graph"),
        ("from,to\na,b\n", "csv", "line 1"),
        ("cause,effect\na,b\nc\n", "csv", "line 3"),
        ("cause,effect\na,b\nx,x\n", "csv", "line 3: self-loop"),
        ("cause,effect\na,\n", "csv", "line 2: field 'effect'"),
        ("edges: [{cause: a}]\n", "yaml", "edge #0"),
        ("edges: {a: b}\n", "yaml", "'edges' must be a list"),
        ("nodes: []\n", "yaml", "'edges' list"),
        ("edges: [a, b\n", "yaml", "not valid YAML"),
        ("edges: [{cause: a, effect: b, provenance: guessed}]\n", "yaml", "provenance"),
    ],
)
def test_bad_graph_text_names_the_place(text: str, fmt: str, needle: str) -> None:
    with pytest.raises(GraphError, match=needle):
        parse_graph(text, fmt, source="g")  # type: ignore[arg-type]


def test_missing_file_is_graph_error(tmp_path: Path) -> None:
    with pytest.raises(GraphError, match="cannot be read"):
        load_graph(tmp_path / "nope.csv")


def test_merge_given_wins_and_learned_cycles_break_by_strength_then_lag() -> None:
    g = DependencyGraph([Edge("db", "api"), Edge("api", "web")])
    learned = [
        Edge("web", "db", "learned", 0.9, 1e-4, 1),  # closes a cycle with given edges: dropped
        Edge("api", "db", "learned", 0.99, 1e-6, 1),  # reverses a given edge: dropped
        Edge("cache", "api", "learned", 0.3, 1e-3, 2),
        Edge("api", "cache", "learned", 0.3, 1e-3, 1),  # same strength, shorter lag wins
        Edge("x", "y", "learned", 0.2, 1e-2, 1),
        Edge("y", "x", "learned", 0.5, 1e-3, 1),  # stronger direction wins
    ]
    m = g.merged_with(learned)
    pairs = {(e.cause, e.effect): e for e in m.edges}
    assert ("db", "api") in pairs and pairs["db", "api"].provenance == "given"
    assert ("web", "db") not in pairs and ("api", "db") not in pairs
    assert ("api", "cache") in pairs and ("cache", "api") not in pairs
    assert ("y", "x") in pairs and ("x", "y") not in pairs
    assert pairs["y", "x"].provenance == "learned" and pairs["y", "x"].strength == 0.5
    assert m.is_dag()
    assert {(e.cause, e.effect) for e in m.dropped} >= {("web", "db"), ("x", "y")}


def test_merge_breaks_cycles_in_given_edges() -> None:
    g = DependencyGraph([Edge("a", "b"), Edge("b", "c"), Edge("c", "a")])
    assert not g.is_dag()
    m = g.merged_with([])
    assert m.is_dag()
    assert [(e.cause, e.effect) for e in m.dropped] == [("c", "a")]


def test_round_trip_dict_keeps_provenance_and_version() -> None:
    g = DependencyGraph(
        [Edge("a", "b"), Edge("b", "c", "learned", 0.4, 0.01, 2)], nodes=["lonely"], version=7
    )
    back = DependencyGraph.from_dict(g.to_dict())
    assert back == g
    assert back.edges[1].lag == 2 and back.version == 7 and "lonely" in back.nodes


def test_with_edits_and_topological_order() -> None:
    g = DependencyGraph([Edge("a", "b"), Edge("b", "c")])
    h = g.with_edits(add=[Edge("a", "c")], remove=[("b", "c")])
    assert {(e.cause, e.effect) for e in h.edges} == {("a", "b"), ("a", "c")}
    order = DependencyGraph([Edge("b", "c"), Edge("a", "b")]).topological_order()
    assert order.index("a") < order.index("b") < order.index("c")
