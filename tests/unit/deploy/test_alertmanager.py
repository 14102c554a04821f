"""Alertmanager's configuration: valid for amtool, routes alerts where the header says, and
its webhook reaches a route the causalwatch API really serves."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.unit.deploy.helpers import ALERTMANAGER_FILE, load_compose, load_yaml, run, tool


def api_paths() -> dict[str, set[str]]:
    """path -> HTTP methods of the real causalwatch API, from its OpenAPI schema."""
    from causalwatch.publish.api import create_app

    app = create_app(
        store=None,  # type: ignore[arg-type]
        graph_cache=None,
        feedback=None,  # type: ignore[arg-type]
        explain=None,
        dispatcher=None,
        token="t",
        ready=lambda: True,
    )
    return {path: set(ops) for path, ops in app.openapi()["paths"].items()}


def test_amtool_check_config() -> None:
    code, out = run([tool("amtool"), "check-config", str(ALERTMANAGER_FILE)])
    assert code == 0, out
    assert "SUCCESS" in out


def test_amtool_rejects_a_route_to_an_unknown_receiver(tmp_path: Path) -> None:
    cfg = load_yaml(ALERTMANAGER_FILE)
    cfg["route"]["routes"][0]["receiver"] = "nobody"
    bad = tmp_path / "alertmanager.yml"
    bad.write_text(yaml.safe_dump(cfg))
    code, out = run([tool("amtool"), "check-config", str(bad)])
    assert code != 0
    assert "nobody" in out


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        # causalwatch's own alerts already carry the explanation: to the operators.
        (["source=causalwatch", "alertname=CausalwatchNodeAnomaly", "node=cart"], "default"),
        (["source=causalwatch", "alertname=CausalwatchIncident", "incident_id=inc-1"], "default"),
        (["source=causalwatch", "alertname=CausalwatchTargetDown", "severity=critical"], "default"),
        # Everybody else's alerts go to causalwatch to be explained and forwarded.
        (["alertname=HighLatency", "service=checkout", "severity=page"], "causalwatch-enrich"),
    ],
)
def test_routes(labels: list[str], receiver: str) -> None:
    code, out = run(
        [tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_FILE}", *labels]
    )
    assert code == 0, out
    assert out.split("\n")[0].strip() == receiver, out


def test_webhook_reaches_the_api_service() -> None:
    cfg = load_yaml(ALERTMANAGER_FILE)
    (receiver,) = [r for r in cfg["receivers"] if r["name"] == "causalwatch-enrich"]
    (hook,) = receiver["webhook_configs"]
    url = urlsplit(hook["url"])
    services = load_compose()["services"]
    # The API runs in the explainer service, on the port its settings say.
    assert url.hostname == "explainer"
    env = services["explainer"]["environment"]
    assert url.port == int(env["CAUSALWATCH_API__PORT"])
    assert hook["send_resolved"] is True
    # The path is a POST route of the real API.
    assert "post" in api_paths()[url.path]


def test_webhook_token_file_is_written_by_the_compose_service() -> None:
    cfg = load_yaml(ALERTMANAGER_FILE)
    (receiver,) = [r for r in cfg["receivers"] if r["name"] == "causalwatch-enrich"]
    auth = receiver["webhook_configs"][0]["http_config"]["authorization"]
    assert auth["type"] == "Bearer"
    token_file = auth["credentials_file"]
    am = load_compose()["services"]["alertmanager"]
    script = am["command"][0]
    # The entrypoint writes the same variable the causalwatch services read their token from.
    assert f"> {token_file}" in script and "$$CAUSALWATCH_API_TOKEN" in script
    assert am["environment"]["CAUSALWATCH_API_TOKEN"] == "${CAUSALWATCH_API_TOKEN:-change-me}"
    explainer_env = load_compose()["services"]["explainer"]["environment"]
    assert explainer_env["CAUSALWATCH_API__TOKEN"] == "${CAUSALWATCH_API_TOKEN:-change-me}"
    # ... into the data volume, which the unprivileged alertmanager user may write.
    assert any(
        v.split(":")[1] == str(Path(token_file).parent) and not v.startswith(".")
        for v in am["volumes"]
    )
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in script
    assert (
        "./deploy/alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro"
        in am["volumes"]
    )


def test_api_health_routes_exist_for_the_compose_probe() -> None:
    paths = api_paths()
    assert "get" in paths["/healthz"] and "get" in paths["/readyz"]
