"""Cost of the incident page's trail per scored sample (``Trail.append``), next to the
detector's own step, at 10,000 series with one sample each per batch (the live case).

    python bench/trail_append.py [--series 10000] [--batches 40]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from causalwatch.app.pipeline.trail import Trail
from detector.core import Detector


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--points", type=int, default=150)
    args = ap.parse_args()
    n = args.series
    rng = np.random.default_rng(0)
    rows = np.arange(n)
    best_trail = best_det = float("inf")
    for _ in range(5):
        trail, det = Trail(args.points), Detector(capacity=n)
        t_trail = t_det = 0.0
        for k in range(args.batches):
            ts = np.full(n, 60.0 * k)
            x = rng.normal(size=n)
            t0 = time.perf_counter()
            res = det.step(rows, ts, x)
            t1 = time.perf_counter()
            trail.append(rows, ts, x, res.expected, res.lower, res.upper, res.score)
            t2 = time.perf_counter()
            t_det += t1 - t0
            t_trail += t2 - t1
        per = args.batches * n
        best_trail = min(best_trail, t_trail / per * 1e6)
        best_det = min(best_det, t_det / per * 1e6)
    print(
        f"{n} series, best of 5: trail.append {best_trail:.2f} us/sample, "
        f"detector.step {best_det:.2f} us/sample, trail {Trail(args.points).bytes_per_series} "
        "bytes/series"
    )


if __name__ == "__main__":
    main()
