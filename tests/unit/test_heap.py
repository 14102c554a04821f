"""release_free_heap hands freed, scattered heap memory back to the OS (glibc)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from pathlib import Path

import pytest

from causalwatch.app.heap import release_free_heap

GLIBC = bool(ctypes.util.find_library("c")) and hasattr(
    ctypes.CDLL(ctypes.util.find_library("c")), "malloc_trim"
)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_freed_blocks_between_live_ones_go_back_to_the_os() -> None:
    # 200 MB of 4 KiB blocks (malloc'd, not pymalloc), then free all but every 64th: the
    # survivors pin the heap's top, so only trimming inside the heap can return the rest
    blocks = [bytearray(4096) for _ in range(50_000)]
    for b in blocks:
        b[0] = 1  # touch: resident
    keep = blocks[::64]
    del blocks
    gc.collect()
    before = _rss_mb()
    assert release_free_heap() is True
    after = _rss_mb()
    assert before - after > 100, (before, after)
    assert len(keep) == 782


def test_it_is_safe_to_call_repeatedly() -> None:
    for _ in range(3):
        assert release_free_heap() in (True, False)
