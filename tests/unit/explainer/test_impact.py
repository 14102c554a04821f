"""Downstream impact of an incident's events becomes an explained incident target."""

from __future__ import annotations

from causalwatch.models import AnomalyEvent
from causalwatch.series import SeriesIndex

from .test_core import STEP, _fed


def _event(idx: SeriesIndex, node: str, ts: float, value: float, expected: float) -> AnomalyEvent:
    key = f'latency{{service="{node}"}}'
    row = idx.get(key)
    assert row is not None
    return AnomalyEvent(row, key, node, ts, value, expected, 0.99, 90.0)


def test_a_deviating_descendant_without_alert_is_explained_with_the_incident() -> None:
    ex, idx, _ = _fed("db")
    t = 295 * STEP
    out = ex.on_anomalies([_event(idx, "db", t, 11.0, 5.0)], now_ts=t)
    by_node = {e.target.node: e for e in out}
    # web (db -> api -> web) deviates upward like db's alert: explained in the same incident
    assert {"db", "api", "web"} <= set(by_node)
    assert len({e.incident_id for e in out}) == 1
    assert by_node["web"].root_causes[0].node == "db"
    assert "queue" not in by_node  # not downstream of db
    # the impact is an incident target, versioned like alerted ones
    assert any(s.target_node == "web" and s.version == 1 for s in ex.open_incidents())


def test_impact_needs_the_alert_direction_and_can_be_switched_off() -> None:
    ex, idx, _ = _fed("db")
    t = 295 * STEP
    # db alerted as a drop while web rose: no impact in the alert's direction
    out = ex.on_anomalies([_event(idx, "db", t, 1.0, 5.0)], now_ts=t)
    assert {e.target.node for e in out} == {"db"}
    ex2, idx2, _ = _fed("db", propagate_impact=False)
    out2 = ex2.on_anomalies([_event(idx2, "db", t, 11.0, 5.0)], now_ts=t)
    assert {e.target.node for e in out2} == {"db"}
