"""Every PromQL expression we ship, in the Prometheus rules and in the Grafana dashboards,
parses with Prometheus's own parser and reads only series that exist: metrics the service
exports, series Prometheus makes (``up``, ``ALERTS``) and our recorded series."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from causalwatch.publish.metrics import METRIC_NAMES
from tests.unit.deploy.helpers import (
    DASHBOARD_FILES,
    PROMETHEUS_SERIES,
    SAMPLE_VALUE,
    dashboard_exprs,
    exported_sample_names,
    grafana_variables,
    iter_rules,
    load_dashboard,
    metric_names,
    promtool_parse_errors,
    recorded_names,
    substitute_grafana,
)

pytest.importorskip("promql_parser", reason="promql-parser is in the dev extra")

GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__range_s", "__interval_ms"}


def rule_exprs() -> dict[str, str]:
    return {f"rule {r.get('alert') or r.get('record')}": str(r["expr"]) for r in iter_rules()}


def all_dashboard_exprs() -> dict[str, str]:
    out: dict[str, str] = {}
    for path in DASHBOARD_FILES:
        out.update(dashboard_exprs(path))
    return out


@pytest.fixture(scope="module")
def allowed_names() -> frozenset[str]:
    return exported_sample_names() | PROMETHEUS_SERIES | recorded_names()


def test_exported_names_cover_the_metric_contract() -> None:
    exported = exported_sample_names()
    # Every contract name appears as a sample (histograms as _bucket/_sum/_count).
    for name in METRIC_NAMES:
        assert name in exported or f"{name}_bucket" in exported, name
    assert "causalwatch_pipeline_batch_seconds_bucket" in exported
    assert "causalwatch_explainer_explain_seconds_count" in exported


def test_there_are_expressions_to_check() -> None:
    assert len(rule_exprs()) >= 15
    assert len(all_dashboard_exprs()) >= 30
    assert len(DASHBOARD_FILES) == 3


def test_rule_and_dashboard_exprs_parse_with_promtool(tmp_path: Path) -> None:
    exprs = rule_exprs()
    exprs.update({k: substitute_grafana(v) for k, v in all_dashboard_exprs().items()})
    errors = promtool_parse_errors(exprs, tmp_path)
    assert errors is None, errors


def test_promtool_parse_check_catches_a_bad_expression(tmp_path: Path) -> None:
    errors = promtool_parse_errors({"bad": "sum by (node (causalwatch_detector_series)"}, tmp_path)
    assert errors is not None and "bad" in errors


@pytest.mark.parametrize("where", sorted(rule_exprs()))
def test_rule_reads_only_real_series(where: str, allowed_names: frozenset[str]) -> None:
    names = metric_names(rule_exprs()[where])
    assert names, f"{where} reads no series"
    assert names <= allowed_names, f"{where} reads unknown series {sorted(names - allowed_names)}"


@pytest.mark.parametrize("where", sorted(all_dashboard_exprs()))
def test_dashboard_expr_reads_only_real_series(where: str, allowed_names: frozenset[str]) -> None:
    names = metric_names(substitute_grafana(all_dashboard_exprs()[where]))
    assert names, f"{where} reads no series"
    assert names <= allowed_names, f"{where} reads unknown series {sorted(names - allowed_names)}"


def test_name_check_rejects_unknown_and_base_histogram_names(
    allowed_names: frozenset[str],
) -> None:
    # A typo and a histogram's base name (which has no samples of its own) are both caught.
    assert metric_names("rate(causalwatch_detector_alert_total[5m])") - allowed_names
    assert metric_names("causalwatch_pipeline_batch_seconds") - allowed_names
    assert not metric_names('sum by (node) (causalwatch_detector_node_alert{node="a"})') - (
        allowed_names
    )


def test_annotation_template_queries_read_only_real_series(
    allowed_names: frozenset[str],
) -> None:
    # The anomaly alert's annotations run PromQL at notification time; check those too.
    found = 0
    for rule in iter_rules():
        for text in rule.get("annotations", {}).values():
            for query in re.findall(r'printf "([^"]*%q[^"]*)"', text):
                expr = query.replace("%q", '"checkout"')
                names = metric_names(expr)
                assert names and names <= allowed_names, (rule.get("alert"), expr)
                found += 1
    assert found >= 3


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_variables_are_defined(path: Path) -> None:
    dash = load_dashboard(path)
    defined = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    for where, expr in dashboard_exprs(path).items():
        unknown = grafana_variables(expr) - defined - GRAFANA_BUILTINS
        assert not unknown, f"{where} uses undefined variables {sorted(unknown)}"


def _matchers(expr: str) -> list[tuple[str, str]]:
    import promql_parser

    out: list[tuple[str, str]] = []

    def walk(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            out.extend((m.name, m.value) for m in node.matchers.matchers)
        for attr in ("expr", "lhs", "rhs", "vector_selector", "param"):
            child = getattr(node, attr, None)
            if child is not None and not isinstance(child, str | float | int):
                walk(child)
        for arg in getattr(node, "args", None) or []:
            walk(arg)

    walk(promql_parser.parse(expr))
    return out


def test_variables_interpolate_to_the_exact_label_value() -> None:
    """Series keys contain double quotes and Grafana escapes only \\ and ' : with the
    variables in single quotes, the matcher sees exactly the selected value."""
    checked = 0
    for where, expr in all_dashboard_exprs().items():
        uses = [m for m in re.findall(r"\$\{?(\w+)", expr) if m not in GRAFANA_BUILTINS]
        if not uses:
            continue
        values = [v for _name, v in _matchers(substitute_grafana(expr))]
        assert values.count(SAMPLE_VALUE) == len(uses), (where, values)
        checked += 1
    assert checked >= 10


def test_double_quoted_variables_would_break() -> None:
    bad = 'causalwatch_detector_value{series="$series"}'
    import promql_parser

    with pytest.raises(ValueError):
        promql_parser.parse(substitute_grafana(bad))
