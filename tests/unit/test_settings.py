from __future__ import annotations

from pathlib import Path

import pytest

from causalwatch.errors import ConfigError
from causalwatch.settings import Settings, load_settings


def test_defaults_load() -> None:
    s = load_settings()
    assert isinstance(s, Settings)
    assert s.kafka.topics[0].name == "metrics"
    assert s.ingest.node_label == "service"


def test_env_overrides_nested(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAUSALWATCH_KAFKA__BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("CAUSALWATCH_KAFKA__TOPICS", "metrics, telegraf:influx ,prom:prometheus")
    monkeypatch.setenv("CAUSALWATCH_DETECTOR__ALERT_THRESHOLD", "0.995")
    s = load_settings()
    assert s.kafka.bootstrap_servers == "kafka:9092"
    assert [(t.name, t.format) for t in s.kafka.topics] == [
        ("metrics", "auto"),
        ("telegraf", "influx"),
        ("prom", "prometheus"),
    ]
    assert s.detector.alert_threshold == 0.995


def test_topics_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAUSALWATCH_KAFKA__TOPICS", '[{"name": "a", "format": "json"}]')
    assert load_settings().kafka.topics[0].format == "json"


def test_yaml_file_and_env_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "cw.yaml"
    cfg.write_text(
        "kafka:\n  group_id: from-yaml\n  bootstrap_servers: yaml:9092\nredis:\n  prefix: 'x:'\n"
    )
    monkeypatch.setenv("CAUSALWATCH_KAFKA__GROUP_ID", "from-env")
    s = load_settings(cfg)
    assert s.kafka.group_id == "from-env"  # env beats the file
    assert s.kafka.bootstrap_servers == "yaml:9092"
    assert s.redis.prefix == "x:"


def test_config_file_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "cw.yaml"
    cfg.write_text("log_level: DEBUG\n")
    monkeypatch.setenv("CAUSALWATCH_CONFIG", str(cfg))
    assert load_settings().log_level == "DEBUG"


def test_bad_value_names_setting_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAUSALWATCH_DETECTOR__ALERT_THRESHOLD", "2")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    msg = str(exc.value)
    assert "detector.alert_threshold" in msg
    assert "CAUSALWATCH_DETECTOR__ALERT_THRESHOLD" in msg
    assert exc.value.setting == "detector.alert_threshold"


def test_cross_field_rule_names_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAUSALWATCH_DETECTOR__ALERT_THRESHOLD", "0.5")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert "clear_threshold" in str(exc.value) and "alert_threshold" in str(exc.value)


def test_unknown_setting_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "cw.yaml"
    cfg.write_text("kafka:\n  bootstrap: oops\n")
    with pytest.raises(ConfigError, match=r"kafka\.bootstrap"):
        load_settings(cfg)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")


def test_bad_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAUSALWATCH_REDIS__URL", "http://localhost")
    with pytest.raises(ConfigError, match="CAUSALWATCH_REDIS__URL"):
        load_settings()


def test_missing_graph_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CAUSALWATCH_EXPLAINER__GRAPH_FILE", str(tmp_path / "g.csv"))
    with pytest.raises(ConfigError, match="CAUSALWATCH_EXPLAINER__GRAPH_FILE"):
        load_settings()


def test_malformed_env_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAUSALWATCH_PUBLISH__WEBHOOKS", "not json")
    with pytest.raises(ConfigError):
        load_settings()


def test_sensitivity_rules_from_env_and_bad_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "CAUSALWATCH_DETECTOR__SENSITIVITY",
        '[{"matchers": {"service": "batch"}, "factor": 0.01},'
        ' {"matchers": {"__name__": "errors"}, "factor": 4}]',
    )
    rules = load_settings().detector.sensitivity
    assert [(r.matchers, r.factor) for r in rules] == [
        ({"service": "batch"}, 0.01),
        ({"__name__": "errors"}, 4.0),
    ]
    monkeypatch.setenv(
        "CAUSALWATCH_DETECTOR__SENSITIVITY", '[{"matchers": {"service": "a"}, "factor": 0}]'
    )
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert "detector.sensitivity" in str(exc.value) and "factor" in str(exc.value)
    monkeypatch.setenv("CAUSALWATCH_DETECTOR__SENSITIVITY", '[{"matchers": {}, "factor": 1}]')
    with pytest.raises(ConfigError, match="matchers"):
        load_settings()


def test_readme_settings_yaml_loads(tmp_path: Path) -> None:
    """The README's "same in YAML" example is a valid settings file."""
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("The same in YAML:", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    graph = tmp_path / "graph.csv"
    graph.write_text("cause,effect\ndb,api\n")
    cfg = tmp_path / "cw.yaml"
    # the example's graph file lives on the user's machine; point it at one that exists
    cfg.write_text(block.group(1).replace("/etc/causalwatch/graph.csv", str(graph)))
    s = load_settings(cfg)
    assert s.kafka.bootstrap_servers == "kafka:9092"
    assert [(r.matchers, r.factor) for r in s.detector.sensitivity] == [
        ({"service": "batch-jobs"}, 0.01),
        ({"__name__": "payment_errors_total"}, 4.0),
    ]


def test_detector_backend_reaches_the_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    from causalwatch.app.pipeline import detector_config
    from detector import Detector

    assert load_settings().detector.backend == "auto"
    monkeypatch.setenv("CAUSALWATCH_DETECTOR__BACKEND", "numpy")
    cfg = detector_config(load_settings())
    assert cfg.backend == "numpy" and Detector(cfg).backend == "numpy"
    with pytest.raises(ConfigError, match=r"detector\.backend"):
        load_settings(detector={"backend": "numba-please"})
