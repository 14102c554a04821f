"""Give the heap's free memory back to the operating system (glibc ``malloc_trim``).

Why: a live role allocates and frees tens of megabytes per second in mid-sized blocks
(fetched record values, decoded batches, the arrays of one detector step). glibc keeps
freed blocks for reuse, and with many threads and arenas the free space ends up scattered
between live blocks, so resident memory creeps up with the number of records consumed
although nothing leaks: with 80,000 hostile records (``bench/hostile.py --records
80000``) the traced Python heap stayed at about 85 MB from the second minute on while RSS
after the warm-up grew by 72 MB; trimming after every checkpoint cut that to 50 MB
(BENCHMARKS.md, "Hostile input"). ``malloc_trim(0)`` returns whole free pages inside every
arena to the kernel (``madvise``); it costs microseconds to a few milliseconds and runs
once per checkpoint, never per record.

Elsewhere (musl, macOS, or no libc found) it is a no-op that says so once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

_trim: Callable[[int], int] | None = None
_loaded = False


def _load() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        fn = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        fn = None
    if fn is None:
        log.info("malloc_trim not available: freed heap memory is not handed back")
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    out: Callable[[int], int] = fn
    return out


def release_free_heap() -> bool:
    """Hand free heap pages back to the OS; whether any were (False where unsupported)."""
    global _trim, _loaded
    if not _loaded:
        _trim, _loaded = _load(), True
    return _trim is not None and bool(_trim(0))
