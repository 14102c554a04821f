"""``--scale explainer=2``: one replica holds the lease and explains, the other stands by
and takes over, from the checkpoint, when the first one stops."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from causalwatch.app.demo import produce_scenario
from causalwatch.app.service import Service, serve
from ingest.kafka_sink import KafkaSink, ensure_topics
from tests.integration.helpers import input_topics, shop, stage_settings, stop_all, wait_for

pytestmark = pytest.mark.integration

N_POINTS = 500


def test_standby_explainer_takes_over(
    broker: Any, redis_server: Any, uid: str, tmp_path: Path
) -> None:
    sc = shop(6, N_POINTS, N_POINTS - 60, 45, tmp_path)

    def settings() -> Any:
        return stage_settings(
            broker,
            redis_server,
            uid,
            tmp_path / "graph.csv",
            kafka={"internal_partitions": 2},
            explainer={"lease_ttl_s": 2.0},
        )

    topics = input_topics(settings())
    ensure_topics(broker.bootstrap, {t: 1 for t in topics})
    stops: dict[str, threading.Event] = {}
    svcs: dict[str, Service] = {}

    def start(name: str, stage: str) -> Service:
        stops[name] = threading.Event()
        svcs[name] = serve(settings(), stage, stop=stops[name], block=False)
        return svcs[name]

    try:
        start("ingest", "ingest")
        start("detector", "detector")
        a = start("exp_a", "explainer")
        wait_for(lambda: not a.standby and a.stage.cores.explainer is not None, 10, "A active")
        b = start("exp_b", "explainer")
        time.sleep(1.0)
        assert b.standby, "the second explainer should stand by"
        sink = KafkaSink(svcs["ingest"].settings.kafka)
        first = produce_scenario(sink, sc, 0, 300, topics=topics, bad_records=False)
        wait_for(lambda: a.stats.samples == first, 90, "A explaining the first part")
        assert b.stats.samples == 0

        stop_all([stops["exp_a"]], [svcs.pop("exp_a")])  # checkpoint, lease released
        wait_for(lambda: not b.standby, 15, "B to take the lease")
        second = produce_scenario(sink, sc, 300, N_POINTS, topics=topics, bad_records=False)
        sink.close()
        wait_for(lambda: b.stats.samples == second, 90, "B explaining the rest")
        time.sleep(1.0)
        assert b.stats.samples == second  # resumed at A's checkpoint, nothing re-read
        # B's explainer holds the history A had built, so the fault at the end is explained.
        root = sc.roots[0]
        wait_for(
            lambda: any(
                e.root_causes and e.root_causes[0].node == root and e.target.node != root
                for e in b.results.recent(300)
                if e.detected_at >= sc.fault_start_ts
            ),
            60,
            "B's explanation of the fault",
            svcs.values(),
        )
    finally:
        stop_all(stops.values(), svcs.values())
