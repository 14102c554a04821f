"""Shared by the deploy tests: repository paths, the external tools they run, the metric
names the service really exports, and PromQL parsing.

PromQL is checked twice, by two independent parsers: ``promtool`` (Prometheus's own parser,
authoritative for syntax) and ``promql_parser`` (a Python binding of a Rust PromQL parser,
used to walk the syntax tree and collect the metric names an expression reads).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import BaseModel

from causalwatch.settings import ENV_DELIMITER, ENV_PREFIX, Settings

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = REPO / "docker-compose.yml"
PROMETHEUS_DIR = DEPLOY / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
ALERTMANAGER_FILE = DEPLOY / "alertmanager" / "alertmanager.yml"
GRAFANA_DIR = DEPLOY / "grafana"
DASHBOARD_FILES = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))

STAGE_SERVICES = ("ingest", "detector", "explainer")

# Series Prometheus itself makes: scrape health and alert state.
PROMETHEUS_SERIES = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})


def tool(name: str) -> str:
    """Path of an external tool, or skip the test with how to install it."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(
            f"{name} is not installed: run deploy/ci-install.sh (apt-get install prometheus "
            "prometheus-alertmanager docker-compose); .ci/run does this on CI"
        )
    return path


def run(args: list[str], *, cwd: Path | None = None, timeout: float = 60.0) -> tuple[int, str]:
    """Run a tool; return its exit code and stdout+stderr together."""
    proc = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    return proc.returncode, proc.stdout + proc.stderr


def load_yaml(path: Path) -> Any:
    with path.open() as fh:
        return yaml.safe_load(fh)


def load_compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


# ---------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------
def settings_field(var: str) -> tuple[type[BaseModel], str] | None:
    """Walk the Settings model along ``CAUSALWATCH_A__B__C``; the model and field it names."""
    parts = var[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER.lower())
    model: type[BaseModel] = Settings
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        if i == len(parts) - 1:
            return model, part
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return None


# ---------------------------------------------------------------------------------------
# What the service exports
# ---------------------------------------------------------------------------------------
def exported_sample_names() -> frozenset[str]:
    """Every sample name a causalwatch metrics endpoint can show, read from the real
    registry's exposition after filling every family with one sample (histograms give
    ``_bucket``/``_sum``/``_count``, counters ``_total``)."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from causalwatch.publish.metrics import (
        IncidentScore,
        PipelineStats,
        SeriesView,
        build_registry,
    )

    stats = PipelineStats()
    stats.records_by_topic["metrics"] += 1
    stats.samples = 1
    stats.deadletter_by_reason["decode"] += 1
    stats.lag[("metrics", 0)] = 1
    stats.webhook_deliveries[("generic", "delivered")] += 1
    stats.api_requests[("GET", "200")] += 1
    one = np.ones(1)
    view = SeriesView(
        keys=["latency_ms{service=cart}"],
        nodes=["cart"],
        score=one,
        severity=one,
        value=one,
        expected=one,
        lower=one,
        upper=one,
        alert=np.ones(1, dtype=bool),
    )
    reg = build_registry(
        stats,
        series=lambda: view,
        incidents=lambda: [IncidentScore("inc-1", "cart", "db", 0.9, 0.6)],
    )
    reg.batch_seconds.labels(stage="detect").observe(0.01)
    reg.explain_seconds.observe(0.1)
    text = generate_latest(reg.registry).decode()
    return frozenset(s.name for fam in text_string_to_metric_families(text) for s in fam.samples)


def recorded_names() -> frozenset[str]:
    """Series produced by the recording rules in deploy/prometheus/rules."""
    out = set()
    for rule in iter_rules():
        if "record" in rule:
            out.add(rule["record"])
    return frozenset(out)


def iter_rules() -> Iterator[dict[str, Any]]:
    for path in RULE_FILES:
        for group in load_yaml(path)["groups"]:
            yield from group["rules"]


# ---------------------------------------------------------------------------------------
# PromQL
# ---------------------------------------------------------------------------------------
# Grafana's built-in interval variables, replaced by a duration before parsing.
_GRAFANA_DURATIONS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__interval_ms": "60000",
}
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def grafana_variables(expr: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in _VAR.finditer(expr)}


# A realistic variable value: series keys carry double quotes; a quote tests the escaping.
SAMPLE_VALUE = 'latency_ms{service="o\'brien"}'


def grafana_escape(value: str) -> str:
    """What Grafana's Prometheus datasource does to a single-value variable before
    interpolation (``prometheusRegularEscape``): escape backslashes and single quotes
    only, which is right for single-quoted PromQL strings and wrong for double-quoted."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def substitute_grafana(expr: str, value: str = SAMPLE_VALUE) -> str:
    """Interpolate Grafana template variables the way Grafana would, so the result is
    plain PromQL: interval variables become durations, others an escaped sample value."""

    def repl(m: re.Match[str]) -> str:
        name = next(g for g in m.groups() if g)
        return _GRAFANA_DURATIONS.get(name) or grafana_escape(value)

    return _VAR.sub(repl, expr)


_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),\s*)?(\w+)\s*\)\s*$", re.S)


def variable_selector(query: str) -> str | None:
    """The PromQL selector inside a ``label_values(selector, label)`` variable query."""
    m = _LABEL_VALUES.match(query)
    if m is None:
        raise AssertionError(f"unsupported template variable query {query!r}")
    return m.group(1)


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads, from its syntax tree."""
    import promql_parser

    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for m in node.matchers.matchers:
                if m.name == "__name__":
                    names.add(m.value)
            return
        if isinstance(node, promql_parser.MatrixSelector):
            walk(node.vector_selector)
            return
        if isinstance(node, promql_parser.BinaryExpr):
            walk(node.lhs)
            walk(node.rhs)
            return
        if isinstance(node, promql_parser.Call):
            for arg in node.args:
                walk(arg)
            return
        if isinstance(node, promql_parser.AggregateExpr):
            walk(node.expr)
            if node.param is not None:
                walk(node.param)
            return
        if isinstance(
            node, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr
        ):
            walk(node.expr)
            return
        assert isinstance(node, promql_parser.NumberLiteral | promql_parser.StringLiteral), (
            f"unknown PromQL node {type(node).__name__} in {expr!r}"
        )

    walk(promql_parser.parse(expr))
    return names


def promtool_parse_errors(exprs: dict[str, str], tmp_path: Path) -> str | None:
    """Parse every expression with Prometheus's own parser (``promtool check rules`` on a
    generated rule file, one recording rule per expression). None when all parse."""
    promtool = tool("promtool")
    rules = [{"record": f"check:expr_{i}", "expr": expr} for i, expr in enumerate(exprs.values())]
    path = tmp_path / "exprs.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "parse-check", "rules": rules}]}))
    code, out = run([promtool, "check", "rules", str(path)])
    if code == 0:
        return None
    labels = "\n".join(f"  expr_{i}: {where}" for i, where in enumerate(exprs))
    return f"{out}\nexpression index:\n{labels}"


# ---------------------------------------------------------------------------------------
# Grafana dashboards
# ---------------------------------------------------------------------------------------
def load_dashboard(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def iter_panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from iter_panels(p.get("panels", []))


def dashboard_exprs(path: Path) -> dict[str, str]:
    """Every PromQL expression of a dashboard, keyed by where it is (for messages):
    panel targets, template variable selectors and annotation queries."""
    dash = load_dashboard(path)
    out: dict[str, str] = {}
    for panel in iter_panels(dash["panels"]):
        for t in panel.get("targets", []):
            out[f"{path.name} panel {panel['title']!r} target {t['refId']}"] = t["expr"]
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            sel = variable_selector(q)
            if sel:
                out[f"{path.name} variable {var['name']}"] = sel
    for ann in dash.get("annotations", {}).get("list", []):
        if ann.get("expr"):
            out[f"{path.name} annotation {ann['name']!r}"] = ann["expr"]
    return out
