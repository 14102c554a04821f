from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis

from causalwatch.errors import BackendError, StateError
from causalwatch.store.checkpoint import (
    CHUNK_BYTES,
    PENDING_TTL_S,
    SCHEMA_VERSION,
    Checkpoint,
    RedisCheckpointStore,
    _StreamReader,
    decode,
    encode,
    iter_stream,
)


def test_round_trip_arrays_meta_offsets() -> None:
    cp = Checkpoint(
        arrays={"detector": {"mean": np.arange(5.0), "n": np.arange(5)}},
        meta={"stage": "all", "index": {"node_label": "service", "keys": ["a", None]}},
        offsets={("metrics", 0): 17, ("metrics", 3): 2},
    )
    back = decode(encode(cp))
    np.testing.assert_array_equal(back.arrays["detector"]["mean"], np.arange(5.0))
    assert back.arrays["detector"]["n"].dtype == np.int64
    assert back.meta == cp.meta
    assert back.offsets == cp.offsets
    assert back.schema_version == SCHEMA_VERSION


def test_version_mismatch_names_both_versions() -> None:
    blob = encode(Checkpoint(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(StateError) as exc:
        decode(blob)
    assert str(SCHEMA_VERSION + 1) in str(exc.value) and str(SCHEMA_VERSION) in str(exc.value)


def test_garbage_is_a_state_error() -> None:
    with pytest.raises(StateError, match="unreadable"):
        decode(b"not a checkpoint")


# ------------------------------------------------------------ chunked store on real Redis
def _big_checkpoint(n: int, seed: int = 0) -> Checkpoint:
    rng = np.random.default_rng(seed)
    noisy = rng.standard_normal(n)  # does not compress: stored raw
    return Checkpoint(
        arrays={
            "detector": {
                "noisy": noisy,
                "flat": np.full(n, np.nan),  # compresses: stored as lz4
                "ints": np.arange(n, dtype=np.int32).reshape(-1, 4),
                "strided": noisy[::3],
                "empty": np.zeros((0, 5)),
                "scalar": np.array(7, dtype=np.int64),
            },
            "explainer": {"names": np.array(["a", "bé", "c"])},
        },
        meta={"stage": "all", "index": {"keys": [f"k{i}" for i in range(100)]}, "x": "é"},
        offsets={("metrics", 0): 17, ("metrics", 3): seed},
    )


def _assert_same(a: Checkpoint, b: Checkpoint) -> None:
    assert a.meta == b.meta and a.offsets == b.offsets
    assert a.arrays.keys() == b.arrays.keys()
    for g in a.arrays:
        assert a.arrays[g].keys() == b.arrays[g].keys()
        for name, arr in a.arrays[g].items():
            got = b.arrays[g][name]
            assert got.dtype == arr.dtype and got.shape == arr.shape, name
            np.testing.assert_array_equal(got, arr)


def _keys(client: redis.Redis, key: str) -> set[str]:
    return {k.decode() for k in client.scan_iter(match=f"{key}*", count=1000)}


@pytest.fixture
def client(redis_server: Any) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_server.url)
    yield c
    c.close()


def test_store_round_trip_over_many_chunks(client: redis.Redis) -> None:
    key = f"t{uuid.uuid4().hex[:6]}:checkpoint:g:all"
    store = RedisCheckpointStore(client, key, chunk_bytes=64 * 1024)
    cp = _big_checkpoint(200_000)
    stored = store.save(cp)
    ptr = json.loads(client.get(key)[len(b"CWCK-PTR1 ") :])  # type: ignore[index]
    assert ptr["chunks"] > 50  # 200k x (8 + 8 + 4) bytes in 64 KiB chunks
    assert stored == ptr["stored"] < ptr["bytes"]  # the NaN column compressed
    assert store.exists()
    _assert_same(cp, store.load())  # type: ignore[arg-type]
    # a second save replaces the first and deletes its chunks
    cp2 = _big_checkpoint(1_000, seed=1)
    store.save(cp2)
    _assert_same(cp2, store.load())  # type: ignore[arg-type]
    ptr2 = json.loads(client.get(key)[len(b"CWCK-PTR1 ") :])  # type: ignore[index]
    chunks = {f"{key}:chunk:{ptr2['version']}:{i}" for i in range(ptr2["chunks"])}
    assert _keys(client, key) == {key} | chunks
    store.delete()
    assert not store.exists() and store.load() is None and _keys(client, key) == set()


def test_store_checkpoint_larger_than_one_default_chunk(client: redis.Redis) -> None:
    key = f"t{uuid.uuid4().hex[:6]}:checkpoint:g:detector"
    store = RedisCheckpointStore(client, key)
    n = CHUNK_BYTES // 8 + 1_000_000  # 40 MB of noise: two chunks of 32 MiB and more
    cp = Checkpoint(arrays={"detector": {"x": np.random.default_rng(2).standard_normal(n)}})
    assert store.save(cp) > CHUNK_BYTES
    ptr = json.loads(client.get(key)[len(b"CWCK-PTR1 ") :])  # type: ignore[index]
    assert ptr["chunks"] == 2
    assert all(
        len(client.get(f"{key}:chunk:{ptr['version']}:{i}")) <= CHUNK_BYTES + 1 for i in range(2)
    )  # type: ignore[arg-type]
    _assert_same(cp, store.load())  # type: ignore[arg-type]
    store.delete()


class _DropsAfter(redis.Redis):
    """A real client whose connection 'drops' after ``left`` chunk writes."""

    left = 3

    def set(self, name: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        if ":chunk:" in str(name):
            if self.left == 0:
                raise redis.ConnectionError("connection lost mid-checkpoint")
            self.left -= 1
        return super().set(name, value, *args, **kwargs)


def test_interrupted_write_leaves_the_previous_version(redis_server: Any) -> None:
    key = f"t{uuid.uuid4().hex[:6]}:checkpoint:g:all"
    good = redis.Redis.from_url(redis_server.url)
    RedisCheckpointStore(good, key, chunk_bytes=4096).save(_big_checkpoint(5_000, seed=1))
    before = _keys(good, key)
    assert all(good.ttl(k) == -1 for k in before)  # switched to: persistent
    flaky = _DropsAfter.from_url(redis_server.url)
    store = RedisCheckpointStore(flaky, key, chunk_bytes=4096)
    with pytest.raises(BackendError, match="connection lost mid-checkpoint"):
        store.save(_big_checkpoint(5_000, seed=2))
    half = _keys(good, key) - before
    assert len(half) == 3  # the half-written version's chunks, pending: they expire
    assert all(0 < good.ttl(k) <= PENDING_TTL_S for k in half)
    assert store.exists()
    back = RedisCheckpointStore(good, key, chunk_bytes=4096).load()
    _assert_same(_big_checkpoint(5_000, seed=1), back)  # type: ignore[arg-type]
    # the next write succeeds; the version it replaced is deleted, the interrupted one
    # is left to its TTL
    flaky.left = 10**6
    store.save(_big_checkpoint(5_000, seed=3))
    _assert_same(_big_checkpoint(5_000, seed=3), store.load())  # type: ignore[arg-type]
    ptr = json.loads(good.get(key)[len(b"CWCK-PTR1 ") :])  # type: ignore[index]
    chunks = {f"{key}:chunk:{ptr['version']}:{i}" for i in range(ptr["chunks"])}
    assert _keys(good, key) == {key} | chunks | half
    assert all(good.ttl(k) == -1 for k in chunks)
    store.delete()
    assert _keys(good, key) == half
    good.delete(*half)
    good.close()
    flaky.close()


class _ExpiresBeforeSwitch(redis.Redis):
    """A real client; a pending chunk expires just before the switch runs."""

    def eval(self, script: Any, numkeys: int, *keys_and_args: Any) -> Any:
        self.delete(keys_and_args[2])  # the new version's first chunk
        return super().eval(script, numkeys, *keys_and_args)


def test_a_chunk_expired_before_the_switch_keeps_the_previous_version(
    redis_server: Any, client: redis.Redis
) -> None:
    key = f"t{uuid.uuid4().hex[:6]}:checkpoint:g:all"
    RedisCheckpointStore(client, key, chunk_bytes=4096).save(_big_checkpoint(2_000, seed=1))
    pointer = client.get(key)
    store = RedisCheckpointStore(_ExpiresBeforeSwitch.from_url(redis_server.url), key, 4096)
    with pytest.raises(BackendError, match="expired before the switch") as exc:
        store.save(_big_checkpoint(2_000, seed=2))
    assert exc.value.retryable
    assert client.get(key) == pointer
    _assert_same(_big_checkpoint(2_000, seed=1), store.load())  # type: ignore[arg-type]


def test_a_missing_chunk_is_a_state_error_and_a_lost_pointer_is_no_checkpoint(
    client: redis.Redis,
) -> None:
    key = f"t{uuid.uuid4().hex[:6]}:checkpoint:g:all"
    store = RedisCheckpointStore(client, key, chunk_bytes=4096)
    store.save(_big_checkpoint(2_000))
    ptr = json.loads(client.get(key)[len(b"CWCK-PTR1 ") :])  # type: ignore[index]
    client.delete(f"{key}:chunk:{ptr['version']}:1")
    with pytest.raises(StateError, match="missing chunk 1"):
        store.load()
    client.delete(key)  # Redis restarted without persistence, say
    assert not store.exists() and store.load() is None


def test_store_reads_the_older_single_value_layout(client: redis.Redis) -> None:
    key = f"t{uuid.uuid4().hex[:6]}:checkpoint:g:all"
    cp = _big_checkpoint(100)
    client.set(key, encode(cp))
    store = RedisCheckpointStore(client, key)
    _assert_same(cp, store.load())  # type: ignore[arg-type]
    store.save(_big_checkpoint(100, seed=4))  # and replaces it with the chunked one
    _assert_same(_big_checkpoint(100, seed=4), store.load())  # type: ignore[arg-type]
    store.delete()


def test_stream_reader_accepts_any_split() -> None:
    cp = _big_checkpoint(3_000)
    data = b"".join(bytes(p) for p in iter_stream(cp, 1000))
    for size in (1, 7, 4096, len(data)):
        reader = _StreamReader()
        for lo in range(0, len(data), size):
            reader.feed(data[lo : lo + size])
        _assert_same(cp, reader.result(SCHEMA_VERSION))
    reader = _StreamReader()
    reader.feed(data[:-1])
    with pytest.raises(StateError, match="ends early"):
        reader.result(SCHEMA_VERSION)
