"""Wire formats of the internal topics used when stages run as separate processes.

Both are columnar JSON (one message per batch and partition, never one per sample):

- samples (ingest -> detector): ``{"series": [...], "ts": [...], "value": [...]}``
- scores (detector -> explainer): the same plus ``score``, ``severity``, ``expected``,
  ``lower``, ``upper``, ``fired`` (0/1) per sample.

They are trusted (written by causalwatch) but still checked: a malformed message raises
:class:`~causalwatch.errors.DecodeError` and goes to the dead-letter topic like any record.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt

from causalwatch.errors import DecodeError
from causalwatch.models import SampleBatch

__all__ = ["SCORE_FIELDS", "decode_columns", "encode_columns"]

SCORE_FIELDS = ("score", "severity", "expected", "lower", "upper", "fired")


def encode_columns(
    keys: list[str], ts: npt.NDArray[Any], value: npt.NDArray[Any], **extra: npt.NDArray[Any]
) -> bytes:
    body: dict[str, Any] = {"series": keys, "ts": ts.tolist(), "value": value.tolist()}
    for name, arr in extra.items():
        body[name] = np.nan_to_num(np.asarray(arr, dtype=np.float64), nan=0.0).tolist()
    return json.dumps(body, separators=(",", ":")).encode()


def decode_columns(
    raw: bytes, extra: tuple[str, ...] = ()
) -> tuple[SampleBatch, dict[str, npt.NDArray[np.float64]]]:
    try:
        body = json.loads(raw)
        keys = body["series"]
        ts = np.asarray(body["ts"], dtype=np.float64)
        value = np.asarray(body["value"], dtype=np.float64)
        cols = {name: np.asarray(body[name], dtype=np.float64) for name in extra}
    except (ValueError, KeyError, TypeError) as exc:
        raise DecodeError(
            f"internal columnar message is malformed: {exc}", reason="bad_internal", raw=raw
        ) from exc
    n = len(keys)
    if ts.shape != (n,) or value.shape != (n,) or any(c.shape != (n,) for c in cols.values()):
        raise DecodeError(
            "internal columnar message has columns of different lengths",
            reason="bad_internal",
            raw=raw,
        )
    return SampleBatch(list(map(str, keys)), ts, value, np.full(n, -1, dtype=np.int64)), cols
