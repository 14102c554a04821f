"""README.md's "Deploy with docker-compose" section and deploy/env.example say
what the files do: the paths, services, settings and alerts they name exist, the checks
they tell you to run pass, and the override example is valid Compose."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.unit.deploy.helpers import (
    COMPOSE_FILE,
    DEPLOY,
    REPO,
    iter_rules,
    load_compose,
    run,
    settings_field,
    tool,
)

README = REPO / "README.md"
SECTION = "## Deploy with docker-compose"
ENV_EXAMPLE = DEPLOY / "env.example"
_INTERPOLATION = re.compile(r"\$\{(\w+):-([^}]*)\}")


def readme() -> str:
    """The deploy section of the README (up to the next second-level heading)."""
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end >= 0 else len(text)]


def code_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", readme(), re.S)


def test_named_paths_exist() -> None:
    paths = set(re.findall(r"(?<![\w/.])((?:deploy|causalwatch)/[\w./-]*\w)", readme()))
    paths.add("docker-compose.yml")
    assert len(paths) >= 10
    for p in paths:
        assert (REPO / p).exists(), p


def test_named_services_exist() -> None:
    services = set(load_compose()["services"])
    rows = re.findall(r"^\| (`[^|]+`) \|", readme(), re.M)
    named = {n for row in rows for n in re.findall(r"`([\w-]+)`", row)}
    assert named == services - {"demo-producer"}
    for m in re.finditer(r"docker compose (?:port|--profile demo up -d) ([a-z][\w-]*)", readme()):
        assert m.group(1) in services, m.group(0)


def test_named_settings_are_fields() -> None:
    names = set(re.findall(r"CAUSALWATCH_[A-Z_]+__[A-Z_]+", readme()))
    names.discard("CAUSALWATCH_SECTION__FIELD")
    assert names
    for name in names:
        assert settings_field(name) is not None, name


def test_listed_alerts_are_the_rules() -> None:
    listed = set(re.findall(r"`(Causalwatch\w+)`", readme()))
    assert listed == {r["alert"] for r in iter_rules() if "alert" in r}


def test_host_ports_match_compose() -> None:
    svcs = load_compose()["services"]
    found = re.findall(r"`(\w+)` \| [^|]+\| http://127\.0\.0\.1:(\d+)", readme())
    assert len(found) == 3
    for service, port in found:
        # "127.0.0.1:${PROMETHEUS_PORT:-9090}:9090" with nothing set -> host port 9090
        host_ports = [
            _INTERPOLATION.sub(r"\2", str(p)).split(":")[1] for p in svcs[service]["ports"]
        ]
        assert port in host_ports, (service, port, host_ports)
    assert "localhost:29092" in readme()
    assert (
        "HOST://localhost:${KAFKA_HOST_PORT:-29092}"
        in svcs["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    )


def test_env_example_documents_every_compose_variable() -> None:
    compose_text = COMPOSE_FILE.read_text()
    defaults = dict(_INTERPOLATION.findall(compose_text))
    example = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert example == defaults
    # ... and the compose file's header names each of them too.
    header = compose_text.split("\nx-causalwatch:")[0]
    for var in defaults:
        assert var in header, var


def test_the_checks_it_lists_pass() -> None:
    """Run the README's 'Checks without Docker' commands (all but pytest itself)."""
    (block,) = [b for b in code_blocks("sh") if "promtool" in b]
    commands = [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("pytest")]
    assert len(commands) == 4
    for tool_name in ("promtool", "amtool", "docker-compose"):
        tool(tool_name)
    for cmd in commands:
        proc = subprocess.run(
            cmd, shell=True, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == 0, (cmd, proc.stdout + proc.stderr)


def test_override_example_is_valid_compose(tmp_path: Path) -> None:
    (block,) = code_blocks("yaml")
    override = yaml.safe_load(block)
    env = override["services"]["explainer"]["environment"]
    for var in env:
        assert settings_field(var) is not None, var
    mount_src, mount_dst = override["services"]["explainer"]["volumes"][0].split(":")[:2]
    assert env["CAUSALWATCH_EXPLAINER__GRAPH_FILE"] == mount_dst
    path = tmp_path / "docker-compose.override.yml"
    path.write_text(block)
    code, out = run(
        [tool("docker-compose"), "-f", str(COMPOSE_FILE), "-f", str(path), "config"], cwd=REPO
    )
    assert code == 0, out
    merged = yaml.safe_load(out)["services"]["explainer"]
    assert merged["environment"]["CAUSALWATCH_EXPLAINER__GRAPH_FILE"] == mount_dst
    # The stack's own settings survive the merge.
    assert merged["environment"]["CAUSALWATCH_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert mount_src.startswith("./")
