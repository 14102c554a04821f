"""Throughput of the detector core (no Kafka, no pipeline): points per second.

Usage::

    python bench/detector_throughput.py [--series 1 1000 10000 100000] [--seconds 3]
    python bench/detector_throughput.py --shapes 50x400 1000x1 10000x1 --backend both

Each round is one batch holding one new point for every series (how live traffic arrives:
many series per poll), fed to ``Detector.step`` (score, alert state machine, learn). With
one series every batch is a single point, the worst case for a vectorised core. A shape
``SxR`` holds R consecutive points of each of S series per batch, in time order (a Kafka
poll of one partition: 50 series x 400 one-sample messages), the worst case for the numpy
path (one vectorised pass per repeat). ``--backend`` picks the detector path (``auto``:
the numba loop when installed; ``both``: numba and numpy in the same run). Data are
seeded: daily sine + noise with a few spikes, 60 s sampling.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detector import Detector, DetectorConfig


def run(
    n_series: int, seconds: float, seed: int = 0, repeats: int = 1, backend: str = "auto"
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    det = Detector(DetectorConfig(backend=backend), capacity=n_series)
    det.prepare()  # compile (or load) the numba loop outside the timed part
    rows = np.tile(np.arange(n_series, dtype=np.int64), repeats)
    phase = np.tile(rng.uniform(0, 2 * np.pi, n_series), repeats)
    level = np.tile(rng.uniform(1.0, 1000.0, n_series), repeats)
    n = n_series * repeats
    # warm up past the warm-up period so the timed part includes scoring and alerting
    k = 0
    warm = max(1, 40 // repeats)
    t_total = 0.0
    pts = 0
    while True:
        ts = 60.0 * (k * repeats + np.repeat(np.arange(repeats), n_series)).astype(np.float64)
        x = level * (1.0 + 0.2 * np.sin(2 * np.pi * ts / 86_400.0 + phase))
        x += rng.normal(0.0, 0.02, n) * level
        spikes = rng.random(n) < 0.001
        x[spikes] *= 3.0
        t0 = time.process_time()
        det.step(rows, ts, x)
        dt = time.process_time() - t0
        k += 1
        if k > warm:
            t_total += dt
            pts += n
            if t_total >= seconds and k > warm + 3:
                break
    return {
        "series": n_series,
        "repeats": repeats,
        "backend": det.backend,
        "points": pts,
        "points_per_s": pts / t_total,
        "us_per_point": 1e6 * t_total / pts,
        "bytes_per_series": det.bytes_per_series,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, nargs="+", default=[1, 1000, 10_000, 100_000])
    ap.add_argument(
        "--shapes", nargs="+", default=None, help="SxR: S series, R points each per batch"
    )
    ap.add_argument("--seconds", type=float, default=3.0, help="CPU seconds timed per case")
    ap.add_argument("--backend", choices=["auto", "numpy", "both"], default="auto")
    args = ap.parse_args(argv)
    if args.shapes:
        shapes = [tuple(int(v) for v in sh.lower().split("x")) for sh in args.shapes]
    else:
        shapes = [(n, 1) for n in args.series]
    backends = ["auto", "numpy"] if args.backend == "both" else [args.backend]
    print("CPU time of Detector.step (time.process_time)")
    print("| series x points per batch | backend | points timed | points/CPU-s | µs/point |"
          " state bytes/series |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|")
    for n, rep in shapes:
        for b in backends:
            r = run(n, args.seconds, repeats=rep, backend=b)
            print(
                f"| {n:,} x {rep} | {r['backend']} | {r['points']:,} | {r['points_per_s']:,.0f}"
                f" | {r['us_per_point']:.2f} | {r['bytes_per_series']} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
