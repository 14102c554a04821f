"""Wire formats of the internal topics used when stages run as separate processes.

Both are columnar JSON (one message per batch and partition, never one per sample, and
split so that no message is over :data:`MAX_MESSAGE_BYTES`):

- samples (ingest -> detector): ``{"series": [...], "ts": [...], "value": [...]}``
- scores (detector -> explainer): the same plus ``score``, ``severity``, ``expected``,
  ``lower``, ``upper``, ``fired`` (0/1) per sample.

They are trusted (written by causalwatch) but still checked: a malformed message raises
:class:`~causalwatch.errors.DecodeError` and goes to the dead-letter topic like any record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from causalwatch.errors import DecodeError
from causalwatch.models import SampleBatch

__all__ = [
    "MAX_MESSAGE_BYTES",
    "SCORE_FIELDS",
    "decode_columns",
    "encode_column_messages",
    "encode_columns",
]

SCORE_FIELDS = ("score", "severity", "expected", "lower", "upper", "fired")

#: Largest internal message written. Apache Kafka's brokers refuse records over their
#: ``message.max.bytes`` (1 MB by default) and the producer refuses requests over its
#: ``max_request_size``; a poll under a backlog holds millions of samples (20,000 records
#: of arrays), which as one message per partition came to 9 MB and stopped the detector
#: stage. Half the broker's default leaves room for headers and batching.
MAX_MESSAGE_BYTES = 512 * 1024
_CHUNK = 2048  # samples per message to try first (about 0.4 MB of scores with 40-byte keys)


def encode_columns(
    keys: list[str], ts: npt.NDArray[Any], value: npt.NDArray[Any], **extra: npt.NDArray[Any]
) -> bytes:
    body: dict[str, Any] = {"series": keys, "ts": ts.tolist(), "value": value.tolist()}
    for name, arr in extra.items():
        body[name] = np.nan_to_num(np.asarray(arr, dtype=np.float64), nan=0.0).tolist()
    return json.dumps(body, separators=(",", ":")).encode()


def encode_column_messages(
    keys: list[str],
    ts: npt.NDArray[Any],
    value: npt.NDArray[Any],
    extra: Mapping[str, npt.NDArray[Any]] | None = None,
    *,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> list[bytes]:
    """:func:`encode_columns` of the samples in order, as as many messages as it takes to
    keep each within ``max_bytes`` (a chunk over it is halved until it fits; one sample
    alone is sent whatever its size, and the broker's answer to it is the producer's).

    >>> msgs = encode_column_messages(["a"] * 5000, np.zeros(5000), np.ones(5000), max_bytes=20_000)
    >>> len(msgs) > 1, all(len(m) <= 20_000 for m in msgs)
    (True, True)
    >>> sum(len(decode_columns(m)[0]) for m in msgs)
    5000
    """
    out: list[bytes] = []
    cols = dict(extra or {})

    def emit(lo: int, hi: int) -> None:
        body = encode_columns(
            keys[lo:hi], ts[lo:hi], value[lo:hi], **{k: v[lo:hi] for k, v in cols.items()}
        )
        if len(body) <= max_bytes or hi - lo == 1:
            out.append(body)
            return
        mid = (lo + hi) // 2
        emit(lo, mid)
        emit(mid, hi)

    for lo in range(0, len(keys), _CHUNK):
        emit(lo, min(len(keys), lo + _CHUNK))
    return out


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
