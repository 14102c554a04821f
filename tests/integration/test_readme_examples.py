"""The README's "Connect Prometheus or Telegraf" and "Write and load the dependency graph"
examples, run as written: configs parse, sample records decode to the series the text
names, the graph files load, and ``causalwatch graph load/show`` work against Redis."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from causalwatch.app.cli import main
from causalwatch.models import RawRecord
from causalwatch.settings import load_settings
from explainer.dag import load_graph
from ingest import IngestLimits, decode_batch

README = Path(__file__).resolve().parents[2] / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 3)
    return text[start:end]


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


CONNECT = _section("Connect Prometheus or Telegraf")
GRAPH = _section("Write and load the dependency graph")


def test_prometheus_remote_write_config_is_valid(tmp_path: Path) -> None:
    (cfg,) = _blocks(CONNECT, "yaml")
    doc = yaml.safe_load(cfg)
    assert doc["remote_write"][0]["url"].endswith("/receive")
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (bash deploy/ci-install.sh installs it)")
    path = tmp_path / "prometheus.yml"
    path.write_text(cfg)
    out = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_adapter_record_decodes_to_the_named_series() -> None:
    (record,) = _blocks(CONNECT, "json")
    rec = RawRecord("prometheus", 0, 0, record.strip().encode())
    limits = IngestLimits(max_age_s=float("inf"), max_future_s=float("inf"))
    batch, errors = decode_batch([rec], {"prometheus": "prometheus"}, limits, 0.0)
    assert errors == []
    assert batch.series_keys == [
        'http_request_duration_seconds{job="shop",quantile="0.99",service="checkout"}'
    ]
    assert batch.value.tolist() == [0.231]


def test_telegraf_config_and_line_protocol_example() -> None:
    (toml_text,) = _blocks(CONNECT, "toml")
    conf: dict[str, Any] = tomllib.loads(toml_text)
    out = conf["outputs"]["kafka"][0]
    assert (out["topic"], out["data_format"]) == ("telegraf", "influx")
    (line,) = _blocks(CONNECT, "text")
    rec = RawRecord("telegraf", 0, 0, line.strip().encode())
    limits = IngestLimits(max_age_s=float("inf"), max_future_s=float("inf"))
    batch, errors = decode_batch([rec], {"telegraf": "influx"}, limits, 0.0)
    assert errors == []
    assert sorted(batch.series_keys) == [
        'http_response_response_time{method="GET",service="checkout"}',
        'http_response_status_code{method="GET",service="checkout"}',
    ]


def test_topics_setting_from_the_text(monkeypatch: pytest.MonkeyPatch) -> None:
    m = re.search(r"`CAUSALWATCH_KAFKA__TOPICS=([^`]+)`", CONNECT)
    assert m is not None
    monkeypatch.setenv("CAUSALWATCH_KAFKA__TOPICS", m.group(1))
    topics = {(t.name, t.format) for t in load_settings().kafka.topics}
    assert topics == {("metrics", "json"), ("telegraf", "influx"), ("prometheus", "prometheus")}


def test_graph_files_load(tmp_path: Path) -> None:
    (csv_text,) = _blocks(GRAPH, "csv")
    (yaml_text,) = _blocks(GRAPH, "yaml")
    (tmp_path / "graph.csv").write_text(csv_text)
    (tmp_path / "graph.yaml").write_text(yaml_text)
    g_csv = load_graph(tmp_path / "graph.csv")
    g_yaml = load_graph(tmp_path / "graph.yaml")
    assert g_csv.ancestors("frontend") >= {"catalog-db", "catalog", "cart", "api-gateway"}
    assert g_yaml.path("catalog-db", "frontend") == [
        "catalog-db",
        "catalog",
        "api-gateway",
        "frontend",
    ]


def test_graph_load_and_show_commands(
    redis_server: Any,
    uid: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (csv_text,) = _blocks(GRAPH, "csv")
    graph = tmp_path / "graph.csv"
    graph.write_text(csv_text)
    monkeypatch.setenv("CAUSALWATCH_REDIS__URL", redis_server.url)
    monkeypatch.setenv("CAUSALWATCH_REDIS__PREFIX", f"cw{uid}:")
    commands = [
        c.split() for c in re.findall(r"^(causalwatch graph [^#\n]*?)\s*(?:#.*)?$", GRAPH, re.M)
    ]
    assert [c[:3] for c in commands] == [
        ["causalwatch", "graph", "load"],
        ["causalwatch", "graph", "show"],
    ]
    monkeypatch.chdir(tmp_path)
    assert main(commands[0][1:]) == 0
    version = json.loads(capsys.readouterr().out)["graph_version"]
    assert version >= 1
    assert main(commands[1][1:]) == 0
    shown = json.loads(capsys.readouterr().out)
    edges = {(e["cause"], e["effect"]) for e in shown["edges"]}
    assert ("catalog-db", "catalog") in edges and len(edges) == 5
