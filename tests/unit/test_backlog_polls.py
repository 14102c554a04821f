"""Under a backlog (a full poll) the loop handles several polls as one batch, so a batch of
small messages spans partitions; never with per-partition handover, never losing a record
when a further poll fails."""

from __future__ import annotations

from collections.abc import Mapping

from causalwatch.app.pipeline.loop import _more_backlog
from causalwatch.errors import BackendError
from causalwatch.models import RawRecord


class Polls:
    """Each poll returns the next list given (an exception instance is raised)."""

    def __init__(self, polls: list[list[RawRecord] | Exception]) -> None:
        self.polls = polls
        self.asked: list[int] = []

    def next_batch(self, max_records: int) -> list[RawRecord]:
        self.asked.append(max_records)
        nxt = self.polls.pop(0) if self.polls else []
        if isinstance(nxt, Exception):
            raise nxt
        return nxt[:max_records]

    def commit(self, next_offsets: Mapping[tuple[str, int], int]) -> None: ...
    def lag(self, *, fresh: bool = True) -> dict[tuple[str, int], int]:
        return {}

    def close(self) -> None: ...


def _recs(partition: int, n: int, start: int = 0, size: int = 10) -> list[RawRecord]:
    return [RawRecord("m", partition, start + i, b"x" * size) for i in range(n)]


def test_full_polls_are_merged_up_to_the_limit_and_an_empty_poll_ends_the_batch() -> None:
    src = Polls([_recs(1, 4), _recs(2, 2), [], _recs(3, 4)])
    got = _more_backlog(src, _recs(0, 4), max_records=4, polls=4)
    assert [(r.partition, r.offset) for r in got] == [(0, i) for i in range(4)] + [
        (1, i) for i in range(4)
    ] + [(2, 0), (2, 1)]
    assert src.asked == [4, 4, 4]  # the empty poll ended it; partition 3 waits
    src = Polls([_recs(1, 4), _recs(2, 4), _recs(3, 4)])
    got = _more_backlog(src, _recs(0, 4), max_records=4, polls=2)
    assert len(got) == 8 and src.asked == [4]


def test_a_failing_further_poll_keeps_what_was_read() -> None:
    src = Polls([_recs(1, 4), BackendError("broker away", backend="kafka")])
    got = _more_backlog(src, _recs(0, 4), max_records=4, polls=4)
    assert len(got) == 8


def test_the_byte_bound_stops_merging(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import causalwatch.app.pipeline.loop as loop

    monkeypatch.setattr(loop, "BACKLOG_BATCH_BYTES", 200)
    src = Polls([_recs(1, 4, size=30), _recs(2, 4, size=30)])
    got = _more_backlog(src, _recs(0, 4, size=30), max_records=4, polls=4)
    assert len(got) == 8  # 120 bytes after the first, 240 after the second: stop
