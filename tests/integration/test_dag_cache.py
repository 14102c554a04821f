"""The Redis graph cache against the real redis-server started by tests/conftest.py."""

from __future__ import annotations

import threading

import pytest
import redis

from causalwatch.errors import BackendError
from causalwatch.store.graph import RedisDagCache
from explainer.dag import DependencyGraph, Edge

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_server) -> redis.Redis:
    c = redis.Redis.from_url(redis_server.url)
    yield c
    c.close()


def test_put_get_version_round_trip(client: redis.Redis, uid: str) -> None:
    cache = RedisDagCache(client, prefix=f"t{uid}:")
    assert cache.version() == 0 and cache.get() is None
    g = DependencyGraph(
        [Edge("db", "api"), Edge("api", "web", "learned", 0.5, 0.001, 2)], nodes=["lonely"]
    )
    v1 = cache.put(g)
    assert v1 == 1 == cache.version()
    got = cache.get()
    assert got is not None and got.version == 1
    assert got.edges == g.edges and "lonely" in got.nodes
    v2 = cache.put(DependencyGraph([Edge("x", "y")]))
    assert v2 == 2 and cache.get() == DependencyGraph([Edge("x", "y")], version=2)


def test_two_processes_share_the_graph_and_prefixes_isolate(
    client: redis.Redis, uid: str, redis_server
) -> None:
    writer = RedisDagCache(client, prefix=f"a{uid}:")
    other_client = redis.Redis.from_url(redis_server.url)
    try:
        reader = RedisDagCache(other_client, prefix=f"a{uid}:")
        stranger = RedisDagCache(other_client, prefix=f"b{uid}:")
        writer.put(DependencyGraph([Edge("db", "api")]))
        seen = reader.get()
        assert seen is not None and seen.parents("api") == ["db"]
        assert stranger.get() is None and stranger.version() == 0
    finally:
        other_client.close()


def test_patch_is_atomic_and_versioned_under_concurrency(
    client: redis.Redis, uid: str, redis_server
) -> None:
    prefix = f"p{uid}:"
    RedisDagCache(client, prefix=prefix).put(DependencyGraph([Edge("a", "b")]))
    errors: list[BaseException] = []

    def editor(i: int) -> None:
        c = redis.Redis.from_url(redis_server.url)
        try:
            cache = RedisDagCache(c, prefix=prefix)
            for k in range(5):
                cache.patch(add=[Edge(f"s{i}_{k}", "b")])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=editor, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    cache = RedisDagCache(client, prefix=prefix)
    g = cache.get()
    assert g is not None
    assert cache.version() == 1 + 4 * 5 == g.version
    assert len(g.parents("b")) == 1 + 20  # no edit lost
    v = cache.patch(remove=[("a", "b"), ("not", "there")])
    g2 = cache.get()
    assert v == 22 and g2 is not None and "a" not in g2.parents("b")


def test_patch_on_empty_store_starts_from_empty_graph(client: redis.Redis, uid: str) -> None:
    cache = RedisDagCache(client, prefix=f"e{uid}:")
    assert cache.patch(add=[Edge("q", "r")]) == 1
    g = cache.get()
    assert g is not None and [(e.cause, e.effect) for e in g.edges] == [("q", "r")]


def test_unreachable_redis_is_a_retryable_backend_error(uid: str) -> None:
    from causalwatch.tooling.embedded import free_port

    c = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    cache = RedisDagCache(c, prefix=f"x{uid}:")
    with pytest.raises(BackendError) as info:
        cache.version()
    assert info.value.retryable and info.value.backend == "redis"
    with pytest.raises(BackendError):
        cache.put(DependencyGraph([Edge("a", "b")]))


def test_learned_edges_are_shared_without_a_version_bump(redis_server, uid) -> None:  # type: ignore[no-untyped-def]
    import redis as redis_lib

    from causalwatch.store.graph import RedisDagCache
    from explainer.dag import DependencyGraph, Edge

    cache = RedisDagCache(redis_lib.Redis.from_url(redis_server.url), prefix=f"l{uid}:")
    v = cache.put(DependencyGraph([Edge("db", "api")]))
    learned = [
        Edge("cache", "api", "learned", 0.4, 0.001, 2),
        Edge("queue", "api", "learned", float("nan"), float("inf"), 1),
    ]
    cache.put_learned(learned, updated_at=123.0)
    got = cache.get_learned()
    assert [(e.cause, e.effect, e.provenance, e.lag) for e in got] == [
        ("cache", "api", "learned", 2),
        ("queue", "api", "learned", 1),
    ]
    assert got[0].strength == 0.4 and got[1].strength is None  # non-finite -> null
    assert cache.version() == v
