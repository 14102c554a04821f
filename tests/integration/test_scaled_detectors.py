"""Two detector replicas in one consumer group: when one stops, the other takes over its
partitions together with their series state, so every series keeps counting exactly."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from causalwatch.app.demo import produce_scenario
from causalwatch.app.service import Service, serve
from ingest.kafka_sink import KafkaSink, ensure_topics
from tests.integration.helpers import input_topics, shop, stage_settings, stop_all, wait_for

pytestmark = pytest.mark.integration

N_POINTS = 400
HALF = 200


def test_a_stopped_replica_hands_its_series_over(
    broker: Any, redis_server: Any, uid: str, tmp_path: Path
) -> None:
    sc = shop(4, N_POINTS, N_POINTS - 20, 10, tmp_path)

    def settings() -> Any:
        return stage_settings(
            broker,
            redis_server,
            uid,
            tmp_path / "graph.csv",
            kafka={"internal_partitions": 4, "max_poll_records": 50},
        )

    topics = input_topics(settings())
    ensure_topics(broker.bootstrap, {t: 1 for t in topics})
    ensure_topics(broker.bootstrap, {f"samples{uid}": 4, f"scores{uid}": 4})
    stops = {name: threading.Event() for name in ("ingest", "det_a", "det_b")}
    svcs: dict[str, Service] = {}
    try:
        svcs["ingest"] = serve(settings(), "ingest", stop=stops["ingest"], block=False)
        for name in ("det_a", "det_b"):
            svcs[name] = serve(settings(), "detector", stop=stops[name], block=False)
        a, b = svcs["det_a"], svcs["det_b"]
        sink = KafkaSink(svcs["ingest"].settings.kafka)
        first = produce_scenario(sink, sc, 0, HALF, topics=topics, bad_records=False)
        wait_for(
            lambda: a.stats.samples + b.stats.samples == first,
            90,
            "the first half",
            svcs.values(),
        )
        assert a.stats.samples > 0 and b.stats.samples > 0, "both replicas should own series"
        b_series = len(b.cores.index)
        assert 0 < b_series < len(sc.series_keys)

        # Stop replica B: it checkpoints its partitions and leaves the group.
        stop_all([stops["det_b"]], [svcs.pop("det_b")])
        before = a.stats.samples
        second = produce_scenario(sink, sc, HALF, N_POINTS, topics=topics, bad_records=False)
        sink.close()
        wait_for(
            lambda: a.stats.samples - before == second,
            120,
            "the second half on replica A",
            svcs.values(),
        )
        time.sleep(1.0)
        assert a.stats.samples - before == second  # nothing re-read twice

        det = a.cores.detector
        assert det is not None
        assert len(a.cores.index) == len(sc.series_keys)
        rows = np.asarray([r for _, r in a.cores.index.items()])
        counts = det.snapshot()["n"][rows]
        # Every series, including the ones B had, holds each of its samples exactly once.
        assert np.all(counts == N_POINTS), counts
        assert np.all(det.last_ts[rows] == float(sc.ts[N_POINTS - 1]))
        assert sum(a.stats.deadletter_by_reason.values()) == 0
    finally:
        stop_all(stops.values(), svcs.values())
