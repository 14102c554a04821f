"""Server-side drawing: graph layout, plots, shares and the tolerant reading of fields."""

from __future__ import annotations

import itertools
import re

from causalwatch.publish.render import (
    incident_page,
    incident_row,
    layout_graph,
    render_graph,
    render_plot,
    shares_of,
)
from causalwatch.publish.render.graph_svg import NODE_H, NODE_W


def test_layout_puts_causes_left_of_effects_without_overlap() -> None:
    nodes = ["web", "api", "db", "cache", "auth", "queue", "worker"]
    edges = [
        ("db", "api"),
        ("cache", "api"),
        ("auth", "web"),
        ("api", "web"),
        ("queue", "worker"),
        ("worker", "api"),
    ]
    lay = layout_graph(nodes, edges)
    for a, b in edges:
        assert lay.pos[a][0] < lay.pos[b][0], (a, b)
    for a, b in itertools.combinations(nodes, 2):
        (xa, ya), (xb, yb) = lay.pos[a], lay.pos[b]
        assert abs(xa - xb) >= NODE_W or abs(ya - yb) >= NODE_H, (a, b)
    for x, y in lay.pos.values():
        assert NODE_W / 2 <= x <= lay.width - NODE_W / 2
        assert NODE_H / 2 <= y <= lay.height - NODE_H / 2


def test_layout_orders_layers_to_avoid_crossings() -> None:
    # two chains given in an interleaved order: the sweeps untangle them
    nodes = ["a1", "b1", "b2", "a2", "a3", "b3"]
    edges = [("a1", "a2"), ("a2", "a3"), ("b1", "b2"), ("b2", "b3")]
    lay = layout_graph(nodes, edges)
    above = lay.pos["a1"][1] < lay.pos["b1"][1]
    assert all((lay.pos[f"a{i}"][1] < lay.pos[f"b{i}"][1]) == above for i in (1, 2, 3))


def test_render_graph_marks_path_provenance_and_severity() -> None:
    graph = {
        "nodes": [
            {"node": "db", "severity": 95},
            {"node": "api", "severity": 70},
            {"node": "web", "severity": 40},
            {"node": "cache", "severity": 0},
        ],
        "edges": [
            {"cause": "db", "effect": "api", "provenance": "given"},
            {"cause": "cache", "effect": "api", "provenance": "learned"},
            {"cause": "api", "effect": "web", "provenance": "given"},
        ],
    }
    svg = render_graph(graph, target="web", path=["db", "api", "web"], candidates=["db"])
    hot = re.findall(r'<path class="edge on-path" data-cause="(\w+)" data-effect="(\w+)"', svg)
    assert hot == [("db", "api"), ("api", "web")]
    cold = re.search(r'<path class="edge" data-cause="cache"[^>]*>', svg).group(0)
    assert 'stroke-dasharray="6 4"' in cold and 'data-provenance="learned"' in cold
    assert re.search(r'<g class="node target on-path" data-node="web" data-severity="40">', svg)
    assert 'class="node on-path candidate" data-node="db" data-severity="95"' in svg
    assert "root-cause path db → api → web" in svg  # the accessible title names it


def test_plot_breaks_lines_at_gaps_and_handles_no_data() -> None:
    ts = [float(60 * i) for i in range(10)]
    s = {
        "series": "x",
        "ts": ts,
        "value": [1, 2, None, 2, 1, 5, 6, None, None, 6],
        "expected": [1.5] * 10,
        "lower": [1.0] * 10,
        "upper": [2.0] * 10,
    }
    svg = render_plot(s, reference=[0.0, 240.0], anomaly=[240.0, 540.0], title="t")
    assert svg.count('<polyline class="value"') == 2 and svg.count('<circle class="value"') == 1
    assert 'data-points="10"' in svg and "<title>t</title>" in svg
    empty = render_plot({"series": "x", "ts": []}, reference=None, anomaly=None, title="e")
    assert "no samples kept" in empty


def test_shares_read_old_and_new_explanations() -> None:
    old = shares_of({"root_causes": [{"node": "db", "share": 1.5}, {"node": "api", "share": 0.5}]})
    assert old.parts == [("db", 75.0), ("api", 25.0)] and old.unexplained == 0.0
    assert "scaled" in old.note
    new = shares_of(
        {"root_causes": [{"node": "db", "share": 60.0}], "unexplained": 40.0, "verdict": "x"}
    )
    assert new.parts == [("db", 60.0)] and new.unexplained == 40.0 and not new.note
    assert shares_of({}).parts == [] and shares_of({}).unexplained == 100.0


def _exp(**extra: object) -> dict[str, object]:
    return {
        "id": "e",
        "incident_id": "i",
        "target": {"node": "api", "series": 'lat{service="api"}'},
        "window": {"start": 0.0, "end": 60.0},
        "severity": 80.0,
        "root_causes": [{"node": "db", "series": 'lat{service="db"}', "score": 0.9, "share": 0.8}],
        **extra,
    }


def test_incident_page_shows_a_verdict_when_present() -> None:
    inc = {"incident_id": "i", "status": "open", "nodes": ["api"], "targets": {}}
    common = dict(
        inc=inc,
        snapshot=None,
        selected=None,
        node_label="service",
        mutes=[],
        nonce="n",
        logout=False,
    )
    html = incident_page(exp=_exp(verdict="root cause found"), **common)  # type: ignore[arg-type]
    assert "<strong>root cause found</strong>" in html
    html = incident_page(exp=_exp(verdict={"label": "propagated", "confidence": 0.8}), **common)  # type: ignore[arg-type]
    assert "<strong>propagated</strong>" in html and "confidence: 0.8" in html
    assert 'id="mark-fp"' in html and "node db (all its series)" in html


def test_incident_row_escapes_and_summarises() -> None:
    inc = {
        "incident_id": "i<1>",
        "status": "open",
        "nodes": ["a<b"],
        "updated_at": 100.0,
        "targets": {"s": {"node": "a", "severity": 70.0, "top_root_cause": "db<x>"}},
        "_top_share": 55.0,
        "_verdict": "propagated",
    }
    row = incident_row(inc, now=400.0)
    assert "<1>" not in row and "db&lt;x&gt;" in row and "(55 %)" in row
    assert "propagated" in row and "5 min ago" in row and 'href="/incidents/i%3C1%3E"' in row


def test_incident_page_with_the_answer_fields() -> None:
    """Verdict, its reason, the method, fractional shares summing with ``unexplained`` to 1
    and the nodes that pulled the other way (the explanation contract's newer fields)."""
    inc = {"incident_id": "i", "status": "open", "nodes": ["api"], "targets": {}}
    exp = _exp(
        verdict="root_cause",
        verdict_reason="db changed on its own (p < 0.001)",
        method="scm",
        unexplained=0.2,
        opposing=[{"node": "cache", "series": None, "share": 0.05}],
    )
    exp["root_causes"] = [{"node": "db", "share": 0.8, "score": 0.9}]
    html = incident_page(
        inc=inc,
        exp=exp,
        snapshot=None,
        selected=None,
        node_label="service",
        mutes=[],
        nonce="n",
        logout=False,
    )
    assert 'data-verdict="root_cause"><strong>Root cause found</strong>' in html
    assert "db changed on its own (p &lt; 0.001)" in html and "<code>scm</code>" in html
    assert 'data-node="db" data-pct="80.0"' in html
    assert 'data-node="unexplained" data-pct="20.0"' in html
    assert "Pulled the other way: cache (5 %)" in html
