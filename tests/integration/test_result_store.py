from __future__ import annotations

import json

import pytest
import redis

from causalwatch.models import Explanation, RootCause, Target, TimeWindow
from causalwatch.store.results import ResultStore


def _exp(incident: str, node: str, version: int = 1, at: float = 1000.0) -> Explanation:
    return Explanation(
        id=f"{incident}:{node}:v{version}",
        incident_id=incident,
        version=version,
        target=Target(node=node, series=f'latency_ms{{service="{node}"}}'),
        detected_at=at,
        window=TimeWindow(start=at - 600, end=at),
        severity=80,
        root_causes=[
            RootCause(
                node="db",
                series='latency_ms{service="db"}',
                score=0.9,
                share=0.8,
                evidence={"path": ["db", node]},
            )
        ],
        graph_version=3,
    )


@pytest.fixture
def store(redis_server, uid) -> ResultStore:
    client = redis.Redis.from_url(redis_server.url)
    return ResultStore(client, prefix=f"t{uid}:", stream_maxlen=100, latest_ttl_s=60)


def test_publish_is_idempotent_and_complete(store: ResultStore) -> None:
    client = store.client
    pubsub = client.pubsub()
    pubsub.subscribe(store.stream_key)
    pubsub.get_message(timeout=1)  # subscription confirmation
    batch = [_exp("inc1", "frontend"), _exp("inc1", "checkout")]
    assert store.publish(batch) == 2
    assert store.publish(batch) == 0  # a replay after a restart adds nothing
    assert client.xlen(store.stream_key) == 2
    latest = store.latest("frontend")
    assert latest is not None and latest.root_causes[0].node == "db"
    assert 0 < client.ttl(store.latest_key("frontend")) <= 60
    msg = pubsub.get_message(timeout=2)
    assert msg is not None and json.loads(msg["data"])["incident_id"] == "inc1"
    inc = store.get_incident("inc1")
    assert inc is not None
    assert inc["nodes"] == ["checkout", "frontend"]
    assert inc["status"] == "open"
    assert set(inc["targets"]) == {e.target.series for e in batch}
    assert [e.id for e in store.recent(10)] == ["inc1:checkout:v1", "inc1:frontend:v1"]
    pubsub.close()


def test_new_version_is_published_and_incident_updated(store: ResultStore) -> None:
    store.publish([_exp("inc2", "frontend", 1, at=1000.0)])
    store.publish([_exp("inc2", "frontend", 2, at=1060.0)])
    inc = store.get_incident("inc2")
    assert inc is not None and inc["updated_at"] == 1060.0
    assert inc["targets"]['latency_ms{service="frontend"}']["version"] == 2
    assert store.client.xlen(store.stream_key) == 2


def test_list_incidents_filters(store: ResultStore) -> None:
    store.publish([_exp("a", "frontend", at=100.0)])
    store.publish([_exp("b", "cart", at=200.0)])
    store.publish([_exp("c", "cart", at=300.0)])
    assert [i["incident_id"] for i in store.list_incidents()] == ["c", "b", "a"]
    assert [i["incident_id"] for i in store.list_incidents(node="cart")] == ["c", "b"]
    assert [i["incident_id"] for i in store.list_incidents(since=150, until=250)] == ["b"]
    assert store.set_incident_status("b", "false_positive")
    assert [i["incident_id"] for i in store.list_incidents(status="false_positive")] == ["b"]
    assert store.list_incidents(limit=1)[0]["incident_id"] == "c"


def test_stream_is_capped(store: ResultStore) -> None:
    store.stream_maxlen = 10
    for i in range(300):
        store.publish([_exp(f"cap{i}", "n", at=float(i))])
    # MAXLEN ~ trims whole macro-nodes: the stream stays near the cap, never unbounded.
    assert store.client.xlen(store.stream_key) < 200


def test_backend_down_is_a_backend_error() -> None:
    from causalwatch.errors import BackendError
    from causalwatch.tooling.embedded import free_port

    dead = ResultStore(redis.Redis(port=free_port(), socket_connect_timeout=0.2))
    with pytest.raises(BackendError) as exc:
        dead.publish([_exp("x", "n")])
    assert exc.value.retryable
