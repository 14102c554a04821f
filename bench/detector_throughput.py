"""Throughput of the detector core (no Kafka, no pipeline): points per second.

Usage::

    python bench/detector_throughput.py [--series 1 1000 10000 100000] [--seconds 3]

Each round is one batch holding one new point for every series (how live traffic arrives:
many series per poll), fed to ``Detector.step`` (score, alert state machine, learn). With
one series every batch is a single point, the worst case for a vectorised core. Data are
seeded: daily sine + noise with a few spikes, 60 s sampling.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detector import Detector, DetectorConfig


def run(n_series: int, seconds: float, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    det = Detector(DetectorConfig(), capacity=n_series)
    rows = np.arange(n_series, dtype=np.int64)
    phase = rng.uniform(0, 2 * np.pi, n_series)
    level = rng.uniform(1.0, 1000.0, n_series)
    # warm up past the warm-up period so the timed part includes scoring and alerting
    k = 0
    warm = 40
    t_total = 0.0
    pts = 0
    while True:
        ts = np.full(n_series, 60.0 * k)
        x = level * (1.0 + 0.2 * np.sin(2 * np.pi * 60.0 * k / 86_400.0 + phase))
        x += rng.normal(0.0, 0.02, n_series) * level
        spikes = rng.random(n_series) < 0.001
        x[spikes] *= 3.0
        t0 = time.perf_counter()
        det.step(rows, ts, x)
        dt = time.perf_counter() - t0
        k += 1
        if k > warm:
            t_total += dt
            pts += n_series
            if t_total >= seconds and k > warm + 3:
                break
    return {
        "series": n_series,
        "points": pts,
        "points_per_s": pts / t_total,
        "us_per_point": 1e6 * t_total / pts,
        "bytes_per_series": det.bytes_per_series,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, nargs="+", default=[1, 1000, 10_000, 100_000])
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args(argv)
    print("| series | points timed | points/s | µs/point | state bytes/series |")
    print("|---:|---:|---:|---:|---:|")
    for n in args.series:
        r = run(n, args.seconds)
        print(
            f"| {n:,} | {r['points']:,} | {r['points_per_s']:,.0f} | {r['us_per_point']:.2f} |"
            f" {r['bytes_per_series']} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
