"""Checkpoints: stage state and the Kafka offsets it covers, written together to Redis.

A checkpoint is ``{schema_version, arrays, meta, offsets}``. ``offsets`` holds the **next**
offset to read per ``(topic, partition)``. On restart the consumer seeks there, so records
after the checkpoint are processed again (at-least-once) and no sample is counted twice in
the state. Offsets are committed to Kafka only after the checkpoint is durable, for lag
dashboards.

Layout in Redis (Redis refuses one value over ``proto-max-bulk-len``, 512 MB by default,
and a detector with 1M series holds about 1 GB): the checkpoint is streamed
(:func:`iter_stream`: a JSON header, then the arrays' bytes) into chunks of
:data:`CHUNK_BYTES`, each lz4-compressed when that saves a tenth, under
``{key}:chunk:{version}:{i}``; then one Lua script (atomic in Redis) switches the small
pointer value at ``{key}`` to the new version. State and offsets therefore never
disagree: a reader sees the whole new version or the whole previous one, and a write
interrupted before the switch leaves the previous version restorable. Chunks carry a TTL
(:data:`PENDING_TTL_S`) until the switch makes them persistent, so those of an
interrupted write expire by themselves and no writer deletes another's; the switch lists
the replaced version under ``{key}:garbage``, and its chunks are deleted after the switch
and before the next write. The presence of ``{key}`` is what the lost-checkpoint
detection reads. No array is serialised into one bytes object, so a checkpoint costs one
chunk of memory beyond the state itself.

The older single-value ``.npz`` layout (:func:`encode` / :func:`decode`) is still read.
Arrays are plain NumPy (no pickle); a ``schema_version`` mismatch raises
:class:`~causalwatch.errors.StateError` naming both versions.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import lz4.block
import numpy as np
import numpy.typing as npt
import redis

from causalwatch.errors import BackendError, StateError
from causalwatch.store.client import map_redis_errors

__all__ = [
    "CHUNK_BYTES",
    "SCHEMA_VERSION",
    "Checkpoint",
    "CheckpointStore",
    "RedisCheckpointStore",
    "decode",
    "encode",
    "iter_stream",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

Offsets = dict[tuple[str, int], int]


@dataclass
class Checkpoint:
    """State of one stage: named array groups (``detector``, ``explainer`` ...), JSON meta
    (series index, graph version ...) and the next offsets they cover."""

    arrays: dict[str, dict[str, npt.NDArray[Any]]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    offsets: Offsets = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION


def encode(cp: Checkpoint) -> bytes:
    flat: dict[str, npt.NDArray[Any]] = {}
    for group, arrays in cp.arrays.items():
        for name, arr in arrays.items():
            flat[f"{group}/{name}"] = np.asarray(arr)
    header = {
        "schema_version": cp.schema_version,
        "meta": cp.meta,
        "offsets": [[t, p, o] for (t, p), o in sorted(cp.offsets.items())],
    }
    flat["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **flat)
    return buf.getvalue()


def decode(blob: bytes, expected_version: int = SCHEMA_VERSION) -> Checkpoint:
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            header = json.loads(npz["__header__"].tobytes().decode())
            arrays: dict[str, dict[str, npt.NDArray[Any]]] = {}
            for key in npz.files:
                if key == "__header__":
                    continue
                group, _, name = key.partition("/")
                arrays.setdefault(group, {})[name] = npz[key]
    except (OSError, ValueError, KeyError) as exc:
        raise StateError(f"checkpoint is unreadable: {exc}") from exc
    version = int(header["schema_version"])
    _check_version(version, expected_version)
    offsets = {(str(t), int(p)): int(o) for t, p, o in header["offsets"]}
    return Checkpoint(arrays=arrays, meta=header["meta"], offsets=offsets, schema_version=version)


def _check_version(version: int, expected_version: int) -> None:
    if version != expected_version:
        raise StateError(
            f"checkpoint schema_version {version} does not match this build's "
            f"{expected_version}; delete the checkpoint key or run the matching version"
        )


# ---------------------------------------------------------------------- chunked format
#: raw bytes per chunk before compression (Redis refuses one value over 512 MB)
CHUNK_BYTES = 32 * 2**20
_STREAM_MAGIC = b"CWCK2\n"
_POINTER_MAGIC = b"CWCK-PTR1 "
_RAW, _LZ4 = b"\x00", b"\x01"
#: seconds a chunk of a version not yet switched to lives (an interrupted write expires)
PENDING_TTL_S = 3600
# KEYS: pointer, garbage list, the new version's chunks; ARGV: new pointer, pointer magic.
# All chunks there -> persist them, switch the pointer, list the replaced pointer as garbage.
_SWITCH = """
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then return 0 end
end
for i = 3, #KEYS do redis.call('PERSIST', KEYS[i]) end
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
if old and string.sub(old, 1, string.len(ARGV[2])) == ARGV[2] then
  redis.call('RPUSH', KEYS[2], old)
end
return 1
"""


def _flat_arrays(cp: Checkpoint) -> list[tuple[str, str, npt.NDArray[Any]]]:
    out = []
    for group, arrays in cp.arrays.items():
        for name, arr in arrays.items():
            a = np.asarray(arr)
            if a.dtype.hasobject:
                raise StateError(f"checkpoint array {group}/{name} has object dtype")
            out.append((group, name, a))
    return out


def iter_stream(cp: Checkpoint, piece_bytes: int = CHUNK_BYTES) -> Iterator[memoryview]:
    """The checkpoint as a byte stream, in pieces of at most ``piece_bytes``, without ever
    holding more than one piece beyond the arrays themselves: a magic, an 8-byte header
    length, a JSON header (schema, meta, offsets, each array's group/name/dtype/shape) and
    the arrays' bytes in C order."""
    flat = _flat_arrays(cp)
    header = {
        "schema_version": cp.schema_version,
        "meta": cp.meta,
        "offsets": [[t, p, o] for (t, p), o in sorted(cp.offsets.items())],
        "arrays": [[g, n, a.dtype.str, list(a.shape)] for g, n, a in flat],
    }
    head = json.dumps(header).encode()
    yield memoryview(_STREAM_MAGIC + len(head).to_bytes(8, "little") + head)
    for _, _, a in flat:
        if a.size == 0:
            continue
        c = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
        for lo in range(0, c.size, piece_bytes):
            yield memoryview(c[lo : lo + piece_bytes])  # type: ignore[arg-type]


class _StreamReader:
    """Rebuilds a checkpoint from the stream of :func:`iter_stream`, fed in pieces of any
    size, filling each array in place (no second copy of the whole checkpoint)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._header: dict[str, Any] | None = None
        self._arrays: list[tuple[str, str, npt.NDArray[Any]]] = []
        self._at = 0  # index of the array being filled
        self._filled = 0  # bytes of it filled

    def feed(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        if self._header is None:
            self._buf += view
            if len(self._buf) < len(_STREAM_MAGIC) + 8:
                return
            if not self._buf.startswith(_STREAM_MAGIC):
                raise StateError("checkpoint is unreadable: not a checkpoint stream")
            n = int.from_bytes(self._buf[len(_STREAM_MAGIC) : len(_STREAM_MAGIC) + 8], "little")
            start = len(_STREAM_MAGIC) + 8
            if len(self._buf) < start + n:
                return
            try:
                self._header = json.loads(bytes(self._buf[start : start + n]).decode())
                for g, name, dt, shape in self._header["arrays"]:
                    self._arrays.append((g, name, np.empty(tuple(shape), dtype=np.dtype(dt))))
            except (ValueError, KeyError, TypeError) as exc:
                raise StateError(f"checkpoint is unreadable: {exc}") from exc
            view = memoryview(bytes(self._buf[start + n :]))
            self._buf = bytearray()
        while len(view):
            self._skip_empty()
            if self._at >= len(self._arrays):
                raise StateError("checkpoint is unreadable: bytes after the last array")
            dst = self._arrays[self._at][2].reshape(-1).view(np.uint8)
            take = min(len(view), dst.size - self._filled)
            dst[self._filled : self._filled + take] = np.frombuffer(view[:take], np.uint8)
            self._filled += take
            view = view[take:]

    def _skip_empty(self) -> None:
        while self._at < len(self._arrays):
            if self._filled < self._arrays[self._at][2].nbytes:
                return
            self._at, self._filled = self._at + 1, 0

    def result(self, expected_version: int) -> Checkpoint:
        self._skip_empty()
        if self._header is None or self._at < len(self._arrays):
            raise StateError("checkpoint is unreadable: the stream ends early")
        header = self._header
        version = int(header["schema_version"])
        _check_version(version, expected_version)
        arrays: dict[str, dict[str, npt.NDArray[Any]]] = {}
        for g, name, a in self._arrays:
            arrays.setdefault(g, {})[name] = a
        offsets = {(str(t), int(p)): int(o) for t, p, o in header["offsets"]}
        return Checkpoint(
            arrays=arrays, meta=header["meta"], offsets=offsets, schema_version=version
        )


def _pack_chunk(raw: memoryview) -> bytes:
    """One chunk as stored: a codec byte, then lz4 (when it saves a tenth) or raw bytes."""
    packed: bytes = lz4.block.compress(raw, mode="fast", store_size=True)
    if len(packed) < 0.9 * len(raw):
        return _LZ4 + packed
    return _RAW + bytes(raw)


def _unpack_chunk(value: bytes) -> bytes | memoryview:
    codec, body = value[:1], memoryview(value)[1:]
    if codec == _LZ4:
        out: bytes = lz4.block.decompress(body)
        return out
    if codec == _RAW:
        return body
    raise StateError(f"checkpoint chunk has an unknown codec {codec!r}")


def _chunks_of(pieces: Iterator[memoryview], size: int) -> Iterator[memoryview]:
    """Regroup a stream of pieces into chunks of exactly ``size`` bytes (the last shorter);
    a piece that is a whole chunk passes through without a copy."""
    buf = bytearray()
    for piece in pieces:
        if not buf and len(piece) == size:
            yield piece
            continue
        while len(piece):
            take = min(size - len(buf), len(piece))
            buf += piece[:take]
            piece = piece[take:]
            if len(buf) == size:
                yield memoryview(bytes(buf))
                buf = bytearray()
    if buf:
        yield memoryview(bytes(buf))


class CheckpointStore(Protocol):
    """Where a stage's checkpoints go (Redis in the service; a fake in tests).

    ``save`` must have read every array by the time it returns and keep no reference to
    them: the loop passes read-only views of the live detector state, which change with
    the next batch."""

    def save(self, cp: Checkpoint) -> int: ...
    def load(self) -> Checkpoint | None: ...
    def for_partition(self, tp: tuple[str, int]) -> CheckpointStore: ...


class RedisCheckpointStore:
    """One checkpoint per stage and consumer group under ``{prefix}checkpoint:{name}`` (the
    pointer; chunks and the garbage list beside it, see the module docstring)."""

    def __init__(self, client: redis.Redis, key: str, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.client: Any = client
        self.key = key
        self.chunk_bytes = chunk_bytes
        self._garbage = f"{key}:garbage"

    def for_partition(self, tp: tuple[str, int]) -> RedisCheckpointStore:
        """The store of one input partition's checkpoint (scaled detectors)."""
        return RedisCheckpointStore(
            self.client, f"{self.key}:partition:{tp[0]}:{tp[1]}", self.chunk_bytes
        )

    def _chunk_key(self, version: str, i: int) -> str:
        return f"{self.key}:chunk:{version}:{i}"

    def _pointer(self) -> dict[str, Any] | None:
        """The current version's pointer; None when there is none (or an old .npz value)."""
        raw = self.client.get(self.key)
        if raw is None or not raw.startswith(_POINTER_MAGIC):
            return None
        return dict(json.loads(raw[len(_POINTER_MAGIC) :]))

    def _collect(self) -> None:
        """Delete the chunks of every replaced version (listed by the switch) that the
        pointer does not name now."""
        ptr = self._pointer()
        current = None if ptr is None else ptr["version"]
        for raw in self.client.lrange(self._garbage, 0, -1):
            old = json.loads(raw[len(_POINTER_MAGIC) :])
            if old["version"] != current:
                keys = [self._chunk_key(old["version"], i) for i in range(int(old["chunks"]))]
                for lo in range(0, len(keys), 256):
                    self.client.unlink(*keys[lo : lo + 256])
            self.client.lrem(self._garbage, 0, raw)

    def save(self, cp: Checkpoint) -> int:
        """Write the checkpoint in chunks under a new version (each with a TTL while it is
        pending, so an interrupted write expires by itself and no writer deletes another's
        chunks), then one Lua script checks they are all there, makes them persistent and
        switches the pointer; returns the bytes stored (chunks after compression)."""
        with map_redis_errors(f"checkpoint save ({self.key})"):
            self._collect()
            version = uuid.uuid4().hex[:16]
            n = stored = raw_total = 0
            for chunk in _chunks_of(iter_stream(cp, self.chunk_bytes), self.chunk_bytes):
                value = _pack_chunk(chunk)
                raw_total += len(chunk)
                del chunk
                self.client.set(self._chunk_key(version, n), value, ex=PENDING_TTL_S)
                stored += len(value)
                n += 1
                del value
            pointer = {"version": version, "chunks": n, "bytes": raw_total, "stored": stored}
            keys = [self.key, self._garbage] + [self._chunk_key(version, i) for i in range(n)]
            new = _POINTER_MAGIC + json.dumps(pointer).encode()
            done = self.client.eval(_SWITCH, len(keys), *keys, new, _POINTER_MAGIC)
            if int(done) != 1:
                raise BackendError(
                    f"redis checkpoint save ({self.key}) failed: a pending chunk of version "
                    f"{version} expired before the switch",
                    backend="redis",
                )
            self._collect()
        return stored

    def load(self) -> Checkpoint | None:
        with map_redis_errors(f"checkpoint load ({self.key})"):
            for _ in range(3):  # the pointer moved on while reading: read the new version
                raw = self.client.get(self.key)
                if raw is None:
                    return None
                if not raw.startswith(_POINTER_MAGIC):
                    return decode(raw)  # the older single-value layout
                ptr = json.loads(raw[len(_POINTER_MAGIC) :])
                reader = _StreamReader()
                for i in range(int(ptr["chunks"])):
                    value = self.client.get(self._chunk_key(ptr["version"], i))
                    if value is None:
                        break
                    reader.feed(_unpack_chunk(value))
                    del value
                else:
                    return reader.result(SCHEMA_VERSION)
                if self.client.get(self.key) == raw:
                    raise StateError(
                        f"checkpoint {self.key} version {ptr['version']} is missing "
                        f"chunk {i} of {ptr['chunks']}"
                    )
        raise StateError(f"checkpoint {self.key} kept changing while it was read")

    def exists(self) -> bool:
        with map_redis_errors(f"checkpoint exists ({self.key})"):
            return bool(self.client.exists(self.key))

    def delete(self) -> None:
        with map_redis_errors(f"checkpoint delete ({self.key})"):
            raw = self.client.get(self.key)
            if raw is not None and raw.startswith(_POINTER_MAGIC):
                self.client.rpush(self._garbage, raw)
            self.client.delete(self.key)
            self._collect()
            self.client.delete(self._garbage)
