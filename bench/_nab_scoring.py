"""NAB scoring, written from ../shared/data/nab-dev/SCORING.md, vectorised.

Per file we precompute, once, each row's sweep score ``s(i)`` and window id (-1 outside
windows; probation rows are dropped). A corpus threshold sweep is then one sort: every
row contributes ``s`` (false positive) or the increase of its window's running best
(only the earliest detection in a window counts) once the threshold falls to its score.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROFILES: dict[str, tuple[float, float, float]] = {
    # name: (tp, fp, fn)
    "standard": (1.0, 0.11, 1.0),
    "reward_low_FP_rate": (1.0, 0.22, 1.0),
    "reward_low_FN_rate": (1.0, 0.11, 2.0),
}


def _sig(x: np.ndarray) -> np.ndarray:
    out = 2.0 / (1.0 + np.exp(np.minimum(5.0 * x, 700.0))) - 1.0
    return np.where(x > 3.0, -1.0, out)


@dataclass
class FileLabels:
    name: str
    n: int
    probation: int
    windows: list[tuple[int, int]]  # row index ranges, inclusive
    # per scored row (after probation):
    win_id: np.ndarray  # -1 outside windows
    tp_unit: np.ndarray  # sig(pos)/sig(-1) inside windows (times tp)
    fp_unit: np.ndarray  # sig(pos) or -1 outside windows (times fp)


def load_timestamps(path: Path) -> tuple[list[str], np.ndarray]:
    """Raw timestamp strings and float values of a NAB csv."""
    ts: list[str] = []
    vals: list[float] = []
    with path.open() as fh:
        next(fh)
        for line in fh:
            a, b = line.rstrip("\n").split(",")
            ts.append(a)
            vals.append(float(b))
    return ts, np.asarray(vals, dtype=np.float64)


def to_unix(ts: list[str]) -> np.ndarray:
    return np.array(ts, dtype="datetime64[s]").astype(np.int64).astype(np.float64)


def build_labels(name: str, ts: list[str], windows: list[list[str]]) -> FileLabels:
    n = len(ts)
    probation = min(int(np.floor(0.15 * n)), 750)
    t64 = np.array(ts, dtype="datetime64[s]")
    win_rows: list[tuple[int, int]] = []
    for a, b in windows:
        ta = np.datetime64(a.split(".")[0].replace(" ", "T"), "s")
        tb = np.datetime64(b.split(".")[0].replace(" ", "T"), "s")
        ia = int(np.searchsorted(t64, ta, side="left"))
        ib = int(np.searchsorted(t64, tb, side="right")) - 1
        win_rows.append((ia, ib))
    idx = np.arange(n, dtype=np.float64)
    win_id = np.full(n, -1, dtype=np.int64)
    tp_unit = np.zeros(n)
    fp_unit = np.full(n, -1.0)
    for k, (a, b) in enumerate(win_rows):
        w = b - a + 1
        pos = -(b - idx[a : b + 1] + 1) / w
        tp_unit[a : b + 1] = _sig(pos) / _sig(np.array(-1.0))
        win_id[a : b + 1] = k
        # rows after this window and before the next window
        end = win_rows[k + 1][0] if k + 1 < len(win_rows) else n
        after = idx[b + 1 : end]
        if w > 1:
            fp_unit[b + 1 : end] = _sig(np.abs(b - after) / (w - 1))
        else:
            fp_unit[b + 1 : end] = -1.0
    keep = slice(probation, n)
    return FileLabels(
        name=name,
        n=n,
        probation=probation,
        windows=win_rows,
        win_id=win_id[keep],
        tp_unit=tp_unit[keep],
        fp_unit=fp_unit[keep],
    )


def load_corpus(root: Path) -> tuple[list[str], dict[str, list[list[str]]]]:
    labels = json.loads((root / "labels" / "combined_windows.json").read_text())
    names = sorted(labels)
    return names, labels


@dataclass
class Prepared:
    """Concatenated scored rows of several files, ready for threshold sweeps."""

    win_key: np.ndarray  # global window id, -1 outside
    tp_unit: np.ndarray
    fp_unit: np.ndarray
    n_windows: int


def prepare(files: list[FileLabels]) -> Prepared:
    keys, tps, fps = [], [], []
    off = 0
    n_win = 0
    for f in files:
        k = f.win_id.copy()
        counted = np.unique(k[k >= 0])
        remap = np.full(len(f.windows) + 1, -1, dtype=np.int64)
        remap[counted] = off + np.arange(len(counted))
        k = np.where(k >= 0, remap[np.maximum(k, 0)], -1)
        off += len(counted)
        n_win += len(counted)
        keys.append(k)
        tps.append(f.tp_unit)
        fps.append(f.fp_unit)
    return Prepared(np.concatenate(keys), np.concatenate(tps), np.concatenate(fps), n_win)


def sweep(prep: Prepared, scores: np.ndarray, profile: str) -> tuple[float, float]:
    """Best normalised score over all thresholds and that threshold (detections: s >= t)."""
    tp, fp, fn = PROFILES[profile]
    order = np.argsort(-scores, kind="stable")
    s_sorted = scores[order]
    key = prep.win_key[order]
    contrib = np.where(key < 0, fp * prep.fp_unit[order], 0.0)
    inwin = np.flatnonzero(key >= 0)
    if inwin.size:
        k = key[inwin]
        val = tp * prep.tp_unit[order][inwin]
        # running max within each window, in sorted (descending score) order
        o2 = np.argsort(k, kind="stable")
        k2, v2 = k[o2], val[o2]
        start = np.ones(len(k2), dtype=bool)
        start[1:] = k2[1:] != k2[:-1]
        # grouped cumulative max: offset groups so a plain maximum.accumulate works
        grp = np.cumsum(start) - 1
        shift = grp * 10.0  # values are in [-1, 1]
        cm = np.maximum.accumulate(v2 + shift) - shift
        prev = np.where(start, -fn, np.concatenate(([0.0], cm[:-1])))
        delta = np.where(start, cm + fn, cm - prev)
        d = np.empty(len(k2))
        d[o2] = delta
        contrib[inwin] = d
    total = np.cumsum(contrib) - fn * prep.n_windows
    # a threshold takes all rows with equal score: evaluate at the last row of each tie group
    last_of_tie = np.ones(len(s_sorted), dtype=bool)
    last_of_tie[:-1] = s_sorted[:-1] != s_sorted[1:]
    cand = total[last_of_tie]
    thr = s_sorted[last_of_tie]
    null = -fn * prep.n_windows
    cand = np.concatenate(([null], cand))
    thr = np.concatenate(([np.inf], thr))
    best = int(np.argmax(cand))
    return normalise(float(cand[best]), prep.n_windows, profile), float(thr[best])


def score_at(
    prep: Prepared, scores: np.ndarray, threshold: float, profile: str
) -> dict[str, float]:
    """Normalised score, windows hit and false alarms with a fixed threshold."""
    tp, fp, fn = PROFILES[profile]
    det = scores >= threshold
    out = det & (prep.win_key < 0)
    raw = float(np.sum(fp * prep.fp_unit[out]))
    hit = 0
    inw = det & (prep.win_key >= 0)
    best = np.full(prep.n_windows, -np.inf)
    np.maximum.at(best, prep.win_key[inw], tp * prep.tp_unit[inw])
    got = np.isfinite(best)
    hit = int(got.sum())
    raw += float(best[got].sum()) - fn * (prep.n_windows - hit)
    return {
        "score": normalise(raw, prep.n_windows, profile),
        "hit": hit,
        "fa": int(out.sum()),
        "raw": raw,
    }


def normalise(raw: float, n_windows: int, profile: str) -> float:
    tp, _, fn = PROFILES[profile]
    perfect, null = tp * n_windows, -fn * n_windows
    if n_windows == 0:
        return float("nan")
    return 100.0 * (raw - null) / (perfect - null)
