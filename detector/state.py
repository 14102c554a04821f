"""The detector's state: one dict of parallel arrays, one row per series (struct-of-arrays).

Why arrays: a row's state is a few hundred bytes of numbers, so a million series is one
set of dense arrays rather than a million objects, and every update is vectorised across
series (:mod:`detector.numpy_step`) or runs over the same arrays in a compiled loop
(:mod:`detector.kernel`). This module owns the layout (names, dtypes, trailing shapes,
initial values), growth, reset, snapshots and their ``schema_version``; it holds no model.

A snapshot is the arrays under their names plus ``schema_version``: checkpoints store it
as plain arrays, so a name, dtype or shape changed here without a bumped
:data:`SCHEMA_VERSION` (and an upgrade in :func:`upgrade`) breaks every stored checkpoint.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from causalwatch.errors import StateError
from detector.calibrate import prior_table
from detector.config import N_STATS, DetectorConfig
from detector.result import IntArray, StateArrays

__all__ = [
    "ADDED_IN_3",
    "SCALAR_FIELDS",
    "SCHEMA_VERSION",
    "SEASON_DTYPE",
    "digest",
    "fresh",
    "fresh_fields",
    "grow",
    "reset",
    "restore",
    "snapshot",
    "upgrade",
]

#: Bumped whenever the state layout changes; :func:`upgrade` refuses other versions
#: (schema 1 and 2 snapshots are upgraded).
SCHEMA_VERSION = 3
#: arrays schema 3 added, all starting at zero (a fading record, a run counter)
ADDED_IN_3 = ("zmax_up", "zmax_dn", "hot_run")
#: dtype of the per-series time-of-season tables (half the bytes of float64)
SEASON_DTYPE: type[np.generic] = np.float32

#: the per-row scalars: name -> (dtype, initial value); the four tables (time-of-season
#: profiles and tail calibration) follow in :func:`fresh_fields`
_F8 = np.float64
SCALAR_FIELDS: dict[str, tuple[type[np.generic], float]] = {
    "n": (np.int64, 0),
    "n_model": (np.int64, 0),
    "n_pos": (np.int64, 0),
    "n_neg": (np.int64, 0),
    "is_counter": (np.bool_, 0),
    "first_ts": (_F8, math.nan),
    "last_ts": (_F8, math.nan),
    "last_value": (_F8, math.nan),
    "dt_typ": (_F8, 0.0),
    "absdiff": (_F8, 0.0),
    "lvl_slow": (_F8, 0.0),
    "lvl_base": (_F8, 0.0),
    "lvl_fast": (_F8, 0.0),
    "err_slow": (_F8, 0.0),
    "err_fast": (_F8, 0.0),
    "err_seas": (_F8, 0.0),
    "lvl_fseas": (_F8, 0.0),
    "err_fseas": (_F8, 0.0),
    "resid_mean": (_F8, 0.0),
    "resid_sq": (_F8, 0.0),
    "shift_run": (np.int64, 0),
    "surprise_mem": (_F8, 0.0),  # novelty memory for upward surprises (nats)
    "surprise_mem_dn": (_F8, 0.0),  # ... and for downward ones
    "zmax_up": (_F8, 0.0),  # fading record of the largest upward point surprise |z1|
    "zmax_dn": (_F8, 0.0),  # ... and downward
    "in_alert": (np.bool_, 0),
    "hot_run": (np.int64, 0),  # consecutive points surprising enough to page
    "calm_run": (np.int64, 0),
    "last_fire_ts": (_F8, -math.inf),
    "mute_until": (_F8, -math.inf),
    "sensitivity": (_F8, 1.0),
    "last_score": (_F8, math.nan),
    "last_expected": (_F8, math.nan),
    "last_lower": (_F8, math.nan),
    "last_upper": (_F8, math.nan),
}


def fresh_fields(c: DetectorConfig, n: int) -> Iterator[tuple[str, np.ndarray[Any, Any]]]:
    """The state arrays of ``n`` new rows, one at a time (so :func:`grow` can let each old
    array go as soon as it is copied)."""
    for name, (dt, init) in SCALAR_FIELDS.items():
        yield name, np.full(n, init, dtype=dt)
    yield "season", np.full((n, c.season_bins), np.nan, dtype=SEASON_DTYPE)
    # time-of-season profile of the absolute error (busy hours are noisier)
    yield "season_err", np.full((n, c.scale_bins), np.nan, dtype=SEASON_DTYPE)
    # float32 before tiling: no float64 temporary of the whole table
    prior = prior_table(c.tail_prior).astype(np.float32)
    yield "tails", np.tile(prior, (n, N_STATS, 1))
    # the point view is calibrated per direction: tails[:, 0] holds upward deviations,
    # tail_dn downward ones (a series with frequent surges can still be surprised by a
    # drop)
    yield "tail_dn", np.tile(prior, (n, 1))


def fresh(c: DetectorConfig, n: int) -> StateArrays:
    """The whole state of ``n`` new rows."""
    return dict(fresh_fields(c, n))


def grow(c: DetectorConfig, s: StateArrays, capacity: int, n: int) -> StateArrays:
    """The state ``s`` of ``capacity`` rows grown to ``n`` rows; ``s`` is emptied.

    Each old array is taken out of ``s`` as soon as it is copied, so the peak is the new
    state plus one old array, not old plus new (at 1M series the doubling from 512k rows
    held both: about 1.5 GB for a moment).
    """
    out: StateArrays = {}
    for name, arr in fresh_fields(c, n):
        prev = s.pop(name, None)
        if prev is not None:
            arr[:capacity] = prev
        del prev
        out[name] = arr
    return out


def reset(c: DetectorConfig, s: StateArrays, rows: IntArray) -> None:
    """Give ``rows`` (unique or not, all below the capacity) the state of new rows."""
    new = fresh(c, len(rows))
    for name, arr in s.items():
        arr[rows] = new[name]


def snapshot(s: StateArrays, *, copy: bool) -> StateArrays:
    """``s`` as read-only copies (or views) plus ``schema_version``; see
    :meth:`detector.core.Detector.snapshot`."""
    snap: StateArrays = {}
    for name, arr in s.items():
        cp = arr.copy() if copy else arr.view()
        cp.flags.writeable = False
        snap[name] = cp
    version = np.array(SCHEMA_VERSION, dtype=np.int64)
    version.flags.writeable = False
    snap["schema_version"] = version
    return snap


def upgrade(snap: StateArrays) -> StateArrays:
    """A schema 1 or 2 snapshot as schema :data:`SCHEMA_VERSION` (others unchanged).

    Schema 1 (one novelty memory, one point table for both directions): both directions
    start from what it learned, so an upgrade keeps the detector's history; schema 2 gains
    the extreme-value records and the persistence run, both starting at zero.
    """
    got = snap.get("schema_version")
    got_v = int(np.asarray(got)) if got is not None else None
    if got_v == 1 and "surprise_mem_dn" not in snap and "tail_dn" not in snap:
        snap = {
            **snap,
            "surprise_mem_dn": np.asarray(snap["surprise_mem"]).copy(),
            "tail_dn": np.asarray(snap["tails"])[:, 0, :].copy(),
        }
        got_v = 2
    if got_v == 2 and "n" in snap:
        n_rows = len(np.asarray(snap["n"]))
        snap = {**{k: np.zeros(n_rows) for k in ADDED_IN_3}, **snap}
        got_v = SCHEMA_VERSION
    if got_v != SCHEMA_VERSION:
        raise StateError(
            f"detector snapshot schema_version {got_v} does not match this build's"
            f" schema_version {SCHEMA_VERSION}"
        )
    return snap


def restore(c: DetectorConfig, snap: StateArrays, *, adopt: bool) -> StateArrays:
    """The state held by ``snap`` (already :func:`upgrade`\\ d), checked against the layout
    of ``c``; see :meth:`detector.core.Detector.restore` for ``adopt``."""
    cap = len(snap["n"])
    # shapes and dtypes from a one-row template: a full one would be a third copy
    layout = fresh(c, 1)
    state: StateArrays = {}
    for name, one in layout.items():
        if name not in snap:
            raise StateError(f"detector snapshot is missing array {name!r}")
        src = np.asarray(snap[name])
        shape = (cap, *one.shape[1:])
        if src.shape != shape:
            raise StateError(
                f"detector snapshot array {name!r} has shape {src.shape}, expected"
                f" {shape} (season_bins in config vs snapshot?)"
            )
        can_adopt = (
            adopt and src.dtype == one.dtype and src.flags.writeable and src.flags.c_contiguous
        )
        state[name] = src if can_adopt else src.astype(one.dtype, copy=True)
    return state


def digest(s: StateArrays) -> str:
    """A hash of the whole state (conformance tests use it to prove read-only scoring)."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(s):
        h.update(name.encode())
        h.update(np.ascontiguousarray(s[name]).tobytes())
    return h.hexdigest()
