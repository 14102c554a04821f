"""Prometheus configuration and rules, checked and unit-tested by promtool, and kept in step
with docker-compose.yml (scrape targets, ports) and the settings model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from causalwatch.settings import load_settings
from tests.unit.deploy.helpers import (
    PROMETHEUS_DIR,
    RULE_FILES,
    RULE_TEST_FILES,
    STAGE_SERVICES,
    iter_rules,
    load_compose,
    load_yaml,
    metric_names,
    run,
    tool,
)


def test_promtool_check_config() -> None:
    code, out = run([tool("promtool"), "check", "config", "prometheus.yml"], cwd=PROMETHEUS_DIR)
    assert code == 0, out
    # The rules are found through the config's relative rule_files glob.
    assert f"{len(RULE_FILES)} rule files found" in out, out


def test_promtool_check_rules() -> None:
    assert RULE_FILES
    code, out = run([tool("promtool"), "check", "rules", *map(str, RULE_FILES)])
    assert code == 0, out


@pytest.mark.parametrize("path", RULE_TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(path: Path) -> None:
    code, out = run([tool("promtool"), "test", "rules", path.name], cwd=path.parent)
    assert code == 0, out
    assert "SUCCESS" in out, out


def test_promtool_test_rules_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    """The rule tests can fail: a changed expected annotation is reported."""
    src = PROMETHEUS_DIR / "tests" / "anomaly_alert_test.yml"
    text = src.read_text()
    assert 'root_cause: "db"' in text
    (tmp_path / "tests").mkdir()
    shutil.copytree(PROMETHEUS_DIR / "rules", tmp_path / "rules")
    bad = tmp_path / "tests" / src.name
    bad.write_text(text.replace('root_cause: "db"', 'root_cause: "payments"'))
    code, out = run([tool("promtool"), "test", "rules", bad.name], cwd=bad.parent)
    assert code != 0
    assert 'root_cause="db"' in out  # what the rule really produced


def test_every_alert_is_unit_tested_firing() -> None:
    alerts = {r["alert"] for r in iter_rules() if "alert" in r}
    fired: set[str] = set()
    for path in RULE_TEST_FILES:
        for case in load_yaml(path)["tests"]:
            for t in case.get("alert_rule_test", []):
                if t.get("exp_alerts"):
                    fired.add(t["alertname"])
    assert alerts - fired == set(), f"alerts never tested firing: {sorted(alerts - fired)}"


def test_alerts_have_routing_labels_and_text() -> None:
    for rule in iter_rules():
        if "alert" not in rule:
            continue
        assert rule["labels"]["source"] == "causalwatch", rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
        assert rule["alert"].startswith("Causalwatch"), rule["alert"]


def test_node_anomaly_alert_carries_root_cause_queries() -> None:
    (rule,) = [r for r in iter_rules() if r.get("alert") == "CausalwatchNodeAnomaly"]
    ann = rule["annotations"]
    for key in ("root_cause", "root_causes", "incident_id"):
        assert "| query" in ann[key], key
    assert "causalwatch_explainer_root_cause_score" in ann["root_cause"]
    assert "causalwatch_explainer_root_cause_share" in ann["root_causes"]


def test_recording_rule_names_follow_the_convention() -> None:
    """level:metric:operations, where metric names the series the rule reads."""
    pytest.importorskip("promql_parser", reason="promql-parser is in the dev extra")
    for rule in iter_rules():
        if "record" in rule:
            level, metric, ops = rule["record"].split(":")
            assert level and ops, rule["record"]
            assert any(metric in name for name in metric_names(rule["expr"])), rule["record"]


def test_scrape_config_matches_compose() -> None:
    cfg = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    compose = load_compose()["services"]
    defaults = load_settings()
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    (sd,) = jobs["causalwatch"]["dns_sd_configs"]
    # Every stage service is discovered by its compose name, on its metrics port.
    assert sorted(sd["names"]) == sorted(STAGE_SERVICES)
    assert sd["type"] == "A"
    for name in STAGE_SERVICES:
        env = compose[name]["environment"]
        port = int(env.get("CAUSALWATCH_PUBLISH__METRICS_PORT", defaults.publish.metrics_port))
        assert sd["port"] == port, name
        assert str(port) in [str(p) for p in compose[name]["expose"]], name
    relabel = jobs["causalwatch"]["relabel_configs"]
    assert {"source_labels": ["__meta_dns_name"], "target_label": "service"} in relabel
    (am,) = cfg["alerting"]["alertmanagers"][0]["static_configs"]
    host, port_s = am["targets"][0].split(":")
    assert host in compose
    assert any(p.endswith(f":{port_s}") for p in compose[host]["ports"])
    assert cfg["rule_files"] == ["rules/*.yml"]
    mounts = compose["prometheus"]["volumes"]
    assert "./deploy/prometheus/rules:/etc/prometheus/rules:ro" in mounts
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
