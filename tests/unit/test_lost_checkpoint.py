"""A lost checkpoint (Kafka has committed offsets, Redis has no checkpoint) is said loudly
and rebuilt: the partition is rewound by ``rebuild_records`` and re-learned with every sink
muted, then publishing resumes at the committed offset."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence

from causalwatch.app.pipeline import AllStage, Sinks, build_cores, run_stage
from causalwatch.errors import RecordError
from causalwatch.models import RawRecord
from causalwatch.publish.metrics import PipelineStats
from causalwatch.settings import load_settings

T0 = 1_800_000_000.0
TP = ("m", 0)


class ListSource:
    """One partition held in a list; ``committed`` as Kafka would report it."""

    def __init__(self, values: list[bytes], committed: int, stop: threading.Event) -> None:
        self.values = values
        self.pos = committed  # a consumer without a checkpoint starts at the committed offset
        self.committed_offset = committed
        self.stop = stop
        self.seeks: list[int] = []

    def next_batch(self, max_records: int) -> list[RawRecord]:
        if self.pos >= len(self.values):
            self.stop.set()
            return []
        out = [
            RawRecord("m", 0, i, self.values[i])
            for i in range(self.pos, min(len(self.values), self.pos + max_records))
        ]
        self.pos += len(out)
        return out

    def committed(self, tps: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        return {tp: self.committed_offset for tp in tps}

    def seek(self, offsets: Mapping[tuple[str, int], int]) -> None:
        self.pos = offsets[TP]
        self.seeks.append(self.pos)

    def assignment(self) -> list[tuple[str, int]]:
        return [TP]

    def commit(self, next_offsets: Mapping[tuple[str, int], int]) -> None:
        pass

    def lag(self, *, fresh: bool = True) -> dict[tuple[str, int], int]:
        return {}

    def close(self) -> None:
        pass


class Recorder:
    def __init__(self) -> None:
        self.dead: list[int] = []

    def write_batch(self, errors: list[RecordError]) -> None:
        self.dead.extend(int(e.offset or -1) for e in errors)


class NoCheckpoint:
    def __init__(self) -> None:
        self.saved = 0

    def load(self) -> None:
        return None

    def save(self, cp: object) -> int:
        self.saved += 1
        return 0


def _values(n: int, bad_at: set[int]) -> list[bytes]:
    out = []
    for i in range(n):
        if i in bad_at:
            out.append(b"not json")
        else:
            sample = {
                "name": "x",
                "labels": {"service": "a"},
                "timestamp": T0 + 60 * i,
                "value": float(i % 7),
            }
            out.append(json.dumps(sample).encode())
    return out


def test_a_lost_checkpoint_is_rebuilt_without_publishing() -> None:
    settings = load_settings(kafka={"topics": [{"name": "m", "format": "json"}]})
    stats = PipelineStats()
    dlq = Recorder()
    stage = AllStage(settings, build_cores(settings, None), Sinks(deadletter=dlq), stats)
    stop = threading.Event()
    values = _values(300, bad_at={100, 250})
    source = ListSource(values, committed=200, stop=stop)
    store = NoCheckpoint()
    run_stage(
        stage,
        lambda resume, revoke: source,
        store,
        stop,  # type: ignore[arg-type]
        checkpoint_interval_s=0.0,
        max_records=50,
        clock=lambda: T0 + 60 * 300,
        rebuild_records=150,
    )
    assert stats.checkpoint_lost_total == 1
    assert source.seeks == [50]  # rewound by rebuild_records before the committed offset
    assert stage.cores.detector is not None
    n = stage.cores.detector.snapshot()["n"]
    assert int(n.sum()) == 300 - 50 - 2  # offsets 50..299 re-learned or read, two bad
    assert dlq.dead == [250]  # the bad record before the committed offset was not sent again
    assert store.saved >= 1
