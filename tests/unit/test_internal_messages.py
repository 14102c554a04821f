"""What a stage writes to the internal topics: bounded messages, each series group in its
own partition, nothing lost or reordered."""

from __future__ import annotations

import json
from typing import Any

from causalwatch.app.pipeline import Adapters, build_pipeline
from causalwatch.app.pipeline.stages import _partitioned
from causalwatch.models import RawRecord
from causalwatch.settings import load_settings
from causalwatch.wire import MAX_MESSAGE_BYTES, decode_columns

T0 = 1_800_000_000.0


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, int | None]] = []

    def write_batch(self, topic: str, items: list[Any], partitions: Any = None) -> None:
        parts = list(partitions) if partitions is not None else [None] * len(items)
        assert len(parts) == len(items)
        for (key, value, _headers), part in zip(items, parts, strict=True):
            self.sent.append((topic, key, value, part))


def test_a_backlog_poll_is_split_into_bounded_messages_in_the_groups_partitions() -> None:
    settings = load_settings(kafka={"topics": [{"name": "m", "format": "json"}]})
    producer = RecordingProducer()
    stage = build_pipeline(settings, "ingest", Adapters(producer=producer)).stage
    # one poll under a backlog: 400 messages of 100 samples, 2,000 series with long names
    keys = [f"latency_seconds_bucket_{'x' * 60}_{i}" for i in range(2_000)]
    records = []
    for m in range(400):
        body = [
            {"name": keys[(m * 100 + j) % 2_000], "timestamp": T0 + 60 * m, "value": float(j)}
            for j in range(100)
        ]
        records.append(RawRecord("m", 0, m, json.dumps(body).encode()))
    stage.handle(records, T0 + 60 * 400)

    sent = [s for s in producer.sent if s[0] == settings.kafka.samples_topic]
    assert len(sent) > settings.kafka.internal_partitions  # one per group would be ~2 MB each
    assert max(len(value) for _, _, value, _ in sent) <= MAX_MESSAGE_BYTES
    got: dict[int, list[tuple[str, float]]] = {}
    for _, _key, value, part in sent:
        batch, _ = decode_columns(value)
        assert part is not None
        got.setdefault(part, []).extend(zip(batch.series_keys, batch.ts.tolist(), strict=True))
    assert sum(map(len, got.values())) == 40_000  # nothing lost
    groups = _partitioned(keys, settings.kafka.internal_partitions)
    for part, idx in groups.items():  # every series in its group's partition, in order
        mine = {keys[i] for i in idx.tolist()}
        assert {k for k, _ in got[part]} == mine
        for key in list(mine)[:50]:
            ts = [t for k, t in got[part] if k == key]
            assert ts == sorted(ts) and len(ts) == 20
