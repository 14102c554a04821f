"""deploy/*.sh: lint-clean, and what the smoke test names exists (compose services, the
Redis stream the service writes, PromQL over real metrics)."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import pytest

from causalwatch.settings import load_settings
from tests.unit.deploy.helpers import (
    DEPLOY,
    PROMETHEUS_SERIES,
    exported_sample_names,
    load_compose,
    metric_names,
    promtool_parse_errors,
    run,
    tool,
)

SCRIPTS = sorted(DEPLOY.glob("*.sh"))
SMOKE = DEPLOY / "smoke-test.sh"


def test_scripts_are_there_and_executable() -> None:
    assert {p.name for p in SCRIPTS} >= {"smoke-test.sh", "ci-install.sh"}
    for path in SCRIPTS:
        assert path.stat().st_mode & 0o111, f"{path.name} is not executable"
        assert path.read_text().startswith("#!/usr/bin/env bash\n"), path.name


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_bash_parses(path: Path) -> None:
    code, out = run(["bash", "-n", str(path)])
    assert code == 0, out


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(path: Path) -> None:
    code, out = run([tool("shellcheck"), str(path)])
    assert code == 0, out


def test_smoke_test_names_real_services() -> None:
    text = SMOKE.read_text()
    services = set(load_compose()["services"])
    (loop,) = re.findall(r"for svc in ([\w\s-]+); do", text)
    named = set(loop.split())
    for m in re.finditer(r"dc (?:exec -T(?: -e \S+)?|up -d) ([a-z][\w-]*)", text):
        named.add(m.group(1))
    started = re.search(r"--scale detector=\S+ \\\n\s+([\w\s-]+)\n", text)
    assert started is not None
    named |= set(started.group(1).split())
    assert named and named <= services, sorted(named - services)
    # Every long-running service is waited for (the one-shot init and the producer aside).
    assert set(loop.split()) == services - {"kafka-init", "demo-producer"}


def test_smoke_test_reads_the_stream_the_service_writes() -> None:
    prefix = load_settings().redis.prefix
    assert f"XLEN {prefix}explanations" in SMOKE.read_text()


def test_smoke_test_promql_is_valid_and_names_real_metrics(tmp_path: Path) -> None:
    queries = {
        f"smoke query {i}": urllib.parse.unquote(q)
        for i, q in enumerate(re.findall(r"promql '([^']+)'", SMOKE.read_text()))
    }
    assert len(queries) == 2
    assert promtool_parse_errors(queries, tmp_path) is None
    allowed = exported_sample_names() | PROMETHEUS_SERIES
    for expr in queries.values():
        assert metric_names(expr) <= allowed, expr
