"""Worst case for the chunked checkpoint store: ``--mib`` MiB of incompressible arrays
(Gaussian noise, so lz4 stores every chunk raw) saved to and loaded from a real
redis-server through ``RedisCheckpointStore``. Prints wall and CPU seconds and RSS / peak
RSS (VmHWM, reset before each step) around each step.

Run: ``python bench/checkpoint_noise.py`` (965 MiB, the detector's state at 1M series).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import redis

from causalwatch.store.checkpoint import Checkpoint, RedisCheckpointStore
from causalwatch.tooling.embedded import EmbeddedRedis


def rss() -> str:
    got = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            got[line.split(":")[0]] = int(line.split()[1]) // 1024
    return f"RSS {got['VmRSS']:,} MiB, peak {got['VmHWM']:,} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=965)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    per = args.mib * 2**20 // 8 // 10
    arrays = {f"a{i}": rng.standard_normal(per) for i in range(10)}
    with EmbeddedRedis() as srv:
        client = redis.Redis.from_url(srv.url)
        store = RedisCheckpointStore(client, "noise:checkpoint:g:detector")
        cp = Checkpoint(arrays={"detector": arrays})
        print(f"state built: {rss()}")
        Path("/proc/self/clear_refs").write_text("5")
        t, p = time.perf_counter(), time.process_time()
        size = store.save(cp)
        print(
            f"save: {time.perf_counter() - t:.2f} s wall, {time.process_time() - p:.2f} CPU-s, "
            f"stored {size / 2**20:,.1f} MiB; {rss()}"
        )
        Path("/proc/self/clear_refs").write_text("5")
        t, p = time.perf_counter(), time.process_time()
        back = store.load()
        print(
            f"load: {time.perf_counter() - t:.2f} s wall, {time.process_time() - p:.2f} CPU-s; "
            f"{rss()} (the saved and the loaded state both held)"
        )
        assert back is not None
        assert all(np.array_equal(back.arrays["detector"][k], v) for k, v in arrays.items())
        print(f"pointer: {json.loads(client.get(store.key)[len(b'CWCK-PTR1 ') :])}")
        store.delete()


if __name__ == "__main__":
    main()
