"""Grafana provisioning and dashboards: the structure Grafana needs to load them, and the
links between them (datasource uids, the folder the provider reads, dashboard links)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.unit.deploy.helpers import (
    DASHBOARD_FILES,
    GRAFANA_DIR,
    iter_panels,
    load_compose,
    load_dashboard,
    load_yaml,
)

PROVISIONING = GRAFANA_DIR / "provisioning"
PANEL_TYPES = {"row", "stat", "timeseries", "state-timeline", "table", "bargauge"}


def datasources() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted((PROVISIONING / "datasources").glob("*.yml")):
        data = load_yaml(path)
        assert data["apiVersion"] == 1, path
        out.extend(data["datasources"])
    return out


def grafana_mounts() -> dict[str, str]:
    """container path -> host path of the grafana service's bind mounts."""
    out = {}
    for vol in load_compose()["services"]["grafana"]["volumes"]:
        src, dst = vol.split(":")[:2]
        if src.startswith("./"):
            out[dst] = src
    return out


def test_datasources_point_at_compose_services() -> None:
    ds = {d["uid"]: d for d in datasources()}
    prom = ds["causalwatch-prometheus"]
    assert prom["type"] == "prometheus" and prom["isDefault"] is True
    assert prom["url"] == "http://prometheus:9090"
    am = ds["causalwatch-alertmanager"]
    assert am["type"] == "alertmanager" and am["url"] == "http://alertmanager:9093"
    services = load_compose()["services"]
    for d in ds.values():
        host = re.match(r"https?://([^:/]+)", d["url"])
        assert host and host.group(1) in services, d["url"]
    assert sum(1 for d in ds.values() if d.get("isDefault")) == 1


def test_dashboard_provider_reads_the_mounted_dashboards() -> None:
    providers = load_yaml(PROVISIONING / "dashboards" / "causalwatch.yml")["providers"]
    assert len(providers) == 1
    path = providers[0]["options"]["path"]
    mounts = grafana_mounts()
    assert mounts[path] == "./deploy/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    home = load_compose()["services"]["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert Path(home).parent.as_posix() == path
    assert (GRAFANA_DIR / "dashboards" / Path(home).name).is_file()


def test_dashboards_have_unique_uids_and_titles() -> None:
    dashes = [load_dashboard(p) for p in DASHBOARD_FILES]
    uids = [d["uid"] for d in dashes]
    assert sorted(uids) == ["causalwatch-incident", "causalwatch-overview", "causalwatch-series"]
    assert len({d["title"] for d in dashes}) == len(dashes)
    for d in dashes:
        assert len(d["uid"]) <= 40  # Grafana's limit


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    dash = load_dashboard(path)
    ds_uids = {d["uid"] for d in datasources()}
    for key in ("uid", "title", "panels", "schemaVersion", "time", "templating"):
        assert key in dash, f"{path.name}: no {key}"
    assert "id" not in dash or dash["id"] is None, "provisioned dashboards carry no id"
    panels = list(iter_panels(dash["panels"]))
    assert sum(1 for p in panels if p["type"] != "row") >= 3
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
    for p in panels:
        assert p["type"] in PANEL_TYPES, (path.name, p["type"])
        assert p.get("title"), (path.name, p["id"])
        gp = p["gridPos"]
        assert gp["x"] >= 0 and gp["x"] + gp["w"] <= 24 and gp["h"] > 0, (path.name, p["title"])
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] in ds_uids, (path.name, p["title"])
        assert p["targets"], f"{path.name}: panel {p['title']!r} has no query"
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), (path.name, p["title"])
        for t in p["targets"]:
            assert t["datasource"]["uid"] in ds_uids, (path.name, p["title"])
            assert t["expr"].strip(), (path.name, p["title"])
    for var in dash["templating"]["list"]:
        assert var["datasource"]["uid"] in ds_uids, (path.name, var["name"])
    for ann in dash["annotations"]["list"]:
        assert ann["datasource"]["uid"] in ds_uids, (path.name, ann["name"])


def test_panels_do_not_overlap() -> None:
    for path in DASHBOARD_FILES:
        cells: dict[tuple[int, int], str] = {}
        for p in iter_panels(load_dashboard(path)["panels"]):
            gp = p["gridPos"]
            for x in range(gp["x"], gp["x"] + gp["w"]):
                for y in range(gp["y"], gp["y"] + gp["h"]):
                    assert (x, y) not in cells, (path.name, p["title"], cells.get((x, y)))
                    cells[(x, y)] = p["title"]


def test_series_view_has_value_band_and_score() -> None:
    dash = load_dashboard(GRAFANA_DIR / "dashboards" / "series.json")
    assert [v["name"] for v in dash["templating"]["list"]] == ["node", "series"]
    exprs = " ".join(t["expr"] for p in iter_panels(dash["panels"]) for t in p.get("targets", []))
    for metric in (
        "causalwatch_detector_value",
        "causalwatch_detector_expected",
        "causalwatch_detector_band_lower",
        "causalwatch_detector_band_upper",
        "causalwatch_detector_anomaly_score",
    ):
        assert re.search(metric + r"\{[^}]*series='\$series'", exprs), metric


def test_incident_view_shows_root_cause_shares() -> None:
    dash = load_dashboard(GRAFANA_DIR / "dashboards" / "incident.json")
    assert {v["name"] for v in dash["templating"]["list"]} == {"target_node", "incident_id"}
    shares = [
        p
        for p in iter_panels(dash["panels"])
        for t in p.get("targets", [])
        if "causalwatch_explainer_root_cause_share" in t["expr"]
        and "incident_id='$incident_id'" in t["expr"]
    ]
    assert shares and any(p["fieldConfig"]["defaults"].get("unit") == "percentunit" for p in shares)


def test_overview_covers_nodes_incidents_and_pipeline() -> None:
    dash = load_dashboard(GRAFANA_DIR / "dashboards" / "overview.json")
    exprs = " ".join(t["expr"] for p in iter_panels(dash["panels"]) for t in p.get("targets", []))
    for metric in (
        "causalwatch_detector_node_score",
        "causalwatch_detector_node_alert",
        "causalwatch_explainer_root_cause_score",
        "causalwatch_ingest_consumer_lag_records",
        "causalwatch_ingest_deadletter_total",
        "causalwatch_explainer_errors_total",
        "causalwatch_checkpoint_last_success_timestamp_seconds",
        "causalwatch_backend_down_seconds",
        "causalwatch_checkpoint_lost_total",
        "up",
    ):
        assert metric in exprs, metric


def test_dashboard_links_name_existing_dashboards() -> None:
    uids = {load_dashboard(p)["uid"] for p in DASHBOARD_FILES}
    for path in DASHBOARD_FILES:
        text = path.read_text()
        for uid in re.findall(r"/d/([\w-]+)/", text):
            assert uid in uids, (path.name, uid)
