"""docker-compose.yml without a Docker engine: validated against the Compose schema by
``docker-compose config`` when installed, and its structure checked against the repository
and the settings model: healthchecks, pinned images, depends_on conditions, named volumes,
mounted files, CAUSALWATCH_* variables, ports and commands."""

from __future__ import annotations

import re
from typing import Any

import pytest

import causalwatch
from causalwatch.settings import ENV_PREFIX, load_settings
from tests.unit.deploy.helpers import (
    COMPOSE_FILE,
    REPO,
    STAGE_SERVICES,
    load_compose,
    run,
    settings_field,
    tool,
)

STATEFUL = {"kafka", "redis", "prometheus", "alertmanager", "grafana"}
CONDITIONS = {"service_healthy", "service_completed_successfully", "service_started"}
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def services() -> dict[str, dict[str, Any]]:
    out = load_compose()["services"]
    assert isinstance(out, dict)
    return out


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with nothing set in the shell: the default."""
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def bind_mounts(svc: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for vol in svc.get("volumes", []):
        src, dst = vol.split(":")[:2]
        if src.startswith((".", "/")):
            out.append((src, dst))
    return out


def named_volumes(svc: dict[str, Any]) -> list[str]:
    return [v.split(":")[0] for v in svc.get("volumes", []) if not v.startswith((".", "/"))]


def probe_url(svc: dict[str, Any]) -> str:
    test = svc["healthcheck"]["test"]
    assert test[0] == "CMD", test
    return str(test[-1])


def test_compose_schema_with_docker_compose() -> None:
    dc = tool("docker-compose")
    for args in ([], ["--profile", "demo"]):
        code, out = run([dc, "-f", str(COMPOSE_FILE), *args, "config", "-q"], cwd=REPO)
        assert code == 0, out
    code, out = run([dc, "-f", str(COMPOSE_FILE), "--profile", "demo", "config", "--services"])
    assert code == 0, out
    assert set(out.split()) == set(services())


def test_the_stack_is_complete() -> None:
    assert set(services()) == {
        "kafka",
        "kafka-init",
        "redis",
        *STAGE_SERVICES,
        "demo-producer",
        "prometheus",
        "alertmanager",
        "grafana",
    }
    assert services()["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in services()["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert services()["demo-producer"]["profiles"] == ["demo"]


def test_every_service_has_a_healthcheck() -> None:
    for name, svc in services().items():
        hc = svc.get("healthcheck")
        assert hc and hc.get("test") and not hc.get("disable"), name
        assert hc["test"][0] in {"CMD", "CMD-SHELL"}, name
        # The python images have no curl; probes there use python's urllib or socket.
        if svc.get("image", "").startswith("causalwatch:"):
            assert hc["test"][1] == "python", name


def test_images_are_pinned() -> None:
    for name, svc in services().items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.match(r"v?\d+\.\d+", tag), f"{name}: {image}"
        if "build" in svc:
            assert image == f"causalwatch:{causalwatch.__version__}", name
            assert svc["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}


def test_depends_on_use_conditions() -> None:
    svcs = services()
    for name, svc in svcs.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on must name conditions"
        for dep, spec in deps.items():
            assert spec["condition"] in CONDITIONS, (name, dep)
            if spec["condition"] == "service_healthy":
                assert svcs[dep].get("healthcheck"), (name, dep)
            if spec["condition"] == "service_completed_successfully":
                assert svcs[dep]["restart"] == "no", (name, dep)
    for stage in STAGE_SERVICES:
        deps = svcs[stage]["depends_on"]
        assert deps["redis"]["condition"] == "service_healthy", stage
        assert deps["kafka-init"]["condition"] == "service_completed_successfully", stage
    assert svcs["kafka-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_named_volumes_for_state() -> None:
    compose = load_compose()
    declared = set(compose["volumes"])
    used: set[str] = set()
    for name, svc in compose["services"].items():
        vols = named_volumes(svc)
        assert set(vols) <= declared, (name, vols)
        used.update(vols)
        if name in STATEFUL:
            assert vols, f"{name} keeps state but has no named volume"
    assert used == declared, f"declared but unused: {declared - used}"
    redis_cmd = compose["services"]["redis"]["command"]
    assert "--appendonly" in redis_cmd and redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"


def test_mounted_files_exist() -> None:
    mounts = [(name, src) for name, svc in services().items() for src, _ in bind_mounts(svc)]
    assert len(mounts) >= 5
    for name, src in mounts:
        assert not src.startswith("/"), f"{name}: absolute host path {src}"
        assert (REPO / src).exists(), f"{name}: {src} does not exist"
        assert (REPO / src).resolve().is_relative_to(REPO), src
    assert (REPO / "deploy" / "Dockerfile").is_file()


def test_scalable_services_have_no_fixed_names_or_host_ports() -> None:
    for name in (*STAGE_SERVICES, "demo-producer"):
        svc = services()[name]
        assert "container_name" not in svc, name
        for port in svc.get("ports", []):
            # "127.0.0.1::8080" or "8080": the engine picks the host port per replica.
            parts = str(port).split(":")
            assert len(parts) == 1 or parts[-2] == "", f"{name}: fixed host port in {port}"


def test_host_ports_bind_loopback_only() -> None:
    for name, svc in services().items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is open to the network"


def test_causalwatch_env_vars_are_settings_fields() -> None:
    found = 0
    for name, svc in services().items():
        for var in svc.get("environment", {}):
            if not var.startswith(ENV_PREFIX):
                continue
            if name == "alertmanager":
                continue  # a plain shell variable for its entrypoint, not a setting
            assert settings_field(var) is not None, f"{name}: {var} is not a settings field"
            found += 1
    assert found >= 20
    # The walk rejects what is not a field.
    assert settings_field("CAUSALWATCH_KAFKA__BOOTSTRAP_SERVER") is None
    assert settings_field("CAUSALWATCH_KAFKA") is not None
    assert settings_field("CAUSALWATCH_LOG_LEVEL__X") is None


@pytest.mark.parametrize("name", [*STAGE_SERVICES, "demo-producer"])
def test_service_environment_loads_as_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The values are valid too: load_settings accepts each service's environment."""
    env = services()[name]["environment"]
    for var, value in env.items():
        monkeypatch.setenv(var, interpolate(str(value)))
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    if name != "demo-producer":
        assert settings.redis.url == "redis://redis:6379/0"
        assert settings.publish.metrics_host == "0.0.0.0"
        assert settings.api.host == "0.0.0.0"
        assert {t.name for t in settings.kafka.topics} >= {"metrics", "telegraf"}


def test_probes_and_ports_match_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    svcs = services()
    for name in STAGE_SERVICES:
        env = svcs[name]["environment"]
        with monkeypatch.context() as mp:
            for var, value in env.items():
                mp.setenv(var, interpolate(str(value)))
            s = load_settings()
        assert str(s.publish.metrics_port) in [str(p) for p in svcs[name]["expose"]], name
        url = probe_url(svcs[name])
        if name == "explainer":
            assert url == f"http://127.0.0.1:{s.api.port}/readyz"
            (published,) = svcs[name]["ports"]
            assert str(published).rsplit(":", 1)[-1] == str(s.api.port)
        else:
            assert url == f"http://127.0.0.1:{s.publish.metrics_port}/metrics", name
    # The defaults the image's HEALTHCHECK assumes are the settings' defaults.
    d = load_settings()
    assert (d.publish.metrics_port, d.api.port) == (9464, 8080)


def test_kafka_topics_exist_before_the_stages_start() -> None:
    svcs = services()
    script = svcs["kafka-init"]["command"][0]
    loop = re.search(r"for t in ([^;]*);", script, re.S)
    assert loop is not None, script
    created = set(loop.group(1).replace("\\", " ").split())
    env = svcs["ingest"]["environment"]
    inputs = {part.split(":")[0] for part in env["CAUSALWATCH_KAFKA__TOPICS"].split(",")}
    assert inputs <= created
    assert {env["CAUSALWATCH_KAFKA__SAMPLES_TOPIC"], env["CAUSALWATCH_KAFKA__SCORES_TOPIC"]} <= (
        created
    )
    assert {f"{t}.dlq" for t in inputs} <= created
    assert f"--partitions {env['CAUSALWATCH_KAFKA__INTERNAL_PARTITIONS']}" in script


def test_stage_commands_parse_with_the_real_cli() -> None:
    from causalwatch.app.cli import _parser

    for name in STAGE_SERVICES:
        args = _parser().parse_args(services()[name]["command"])
        assert (args.command, args.stage) == ("run", name)


def test_demo_producer_command_parses_with_the_real_cli() -> None:
    from causalwatch.app.cli import _parser

    args = _parser().parse_args(services()["demo-producer"]["command"])
    assert args.command == "demo"
    assert args.produce_only
