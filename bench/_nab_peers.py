"""Peer detectors for the NAB benchmark, all strictly causal (score, then learn).

Each peer maps one file's values to one score per row. Unbounded peer scores are squashed
monotonically into [0, 1]; a corpus-wide threshold sweep is unaffected by that.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np

PeerFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def windowed_gaussian(ts: np.ndarray, x: np.ndarray) -> np.ndarray:
    """NAB's windowed Gaussian: window 6400, slides by 100, tail probability of the point."""
    window, step = 6400, 100
    n = len(x)
    out = np.zeros(n)
    data: list[float] = []
    buf: list[float] = []
    mean, std = 0.0, 1.0
    s1 = s2 = 0.0
    for i in range(n):
        v = float(x[i])
        if data:
            z = (v - mean) / std
            # NAB: 1 - normalProbability, with the one-sided tail towards the mean
            out[i] = 1.0 - 0.5 * math.erfc(abs(z) / math.sqrt(2.0))
        if len(data) < window:
            data.append(v)
            s1 += v
            s2 += v * v
            k = len(data)
            mean = s1 / k
            std = math.sqrt(max(s2 / k - mean * mean, 0.0)) or 0.000001
        else:
            buf.append(v)
            if len(buf) == step:
                data = data[step:] + buf
                buf = []
                mean = float(np.mean(data))
                std = float(np.std(data)) or 0.000001
    return out


def _river_loop(model: object, x: np.ndarray, squash: bool, target: bool = False) -> np.ndarray:
    """Score then learn each point. ``target``: the model reads the value as ``y`` (river's
    supervised anomaly detectors such as StandardAbsoluteDeviation)."""
    out = np.empty(len(x))
    score_one = model.score_one  # type: ignore[attr-defined]
    learn_one = model.learn_one  # type: ignore[attr-defined]
    for i, v in enumerate(x.tolist()):
        if target:
            s = score_one({}, v)
            learn_one({}, v)
        else:
            feat = {"x": v}
            s = score_one(feat)
            learn_one(feat)
        out[i] = s
    out = np.nan_to_num(out, nan=0.0, posinf=1e12)
    return out / (1.0 + out) if squash else out


def river_sad(ts: np.ndarray, x: np.ndarray) -> np.ndarray:
    from river import anomaly

    return _river_loop(anomaly.StandardAbsoluteDeviation(), x, squash=True, target=True)


def river_hst(ts: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Half-Space Trees on the value min-max scaled with a range learned online."""
    from river import anomaly, compose, preprocessing

    model = compose.Pipeline(
        preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(n_trees=10, height=8, seed=42)
    )
    return _river_loop(model, x, squash=False)


def state_bytes_river(kind: str) -> int:
    """Pickled size of a river model after it has seen 2,000 points (a state-size estimate)."""
    from river import anomaly, compose, preprocessing

    rng = np.random.default_rng(0)
    xs = rng.normal(size=2000)
    if kind == "sad":
        model: object = anomaly.StandardAbsoluteDeviation()
    else:
        model = compose.Pipeline(
            preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(n_trees=10, height=8, seed=42)
        )
    _river_loop(model, xs, squash=False, target=kind == "sad")
    return len(pickle.dumps(model))


def published_scores(root: Path, detector: str, names: list[str]) -> list[np.ndarray]:
    """NAB's own per-row result file of a published detector, one array per corpus file
    (row order as in the data; ``published/<detector>.csv.gz``)."""
    per: dict[str, list[float]] = {n: [] for n in names}
    with gzip.open(root / "published" / f"{detector}.csv.gz", "rt") as fh:
        rd = csv.reader(fh)
        next(rd)
        for name, _ts, score in rd:
            if name in per:
                per[name].append(float(score))
    return [np.asarray(per[n], dtype=np.float64) for n in names]


def published_thresholds(root: Path) -> dict[str, float]:
    """NAB's published standard-profile threshold per detector (chosen on all 58 files)."""
    data = json.loads((root / "published" / "thresholds.json").read_text())
    return {k: float(v["standard"]["threshold"]) for k, v in data.items()}
