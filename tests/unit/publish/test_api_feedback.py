"""The feedback store (mutes, false positives) on a real Redis."""

from __future__ import annotations

import redis

from causalwatch.schemas import Mute
from causalwatch.store.feedback import FeedbackStore, mute_id


def store(redis_server, uid) -> FeedbackStore:
    return FeedbackStore(redis.Redis.from_url(redis_server.url), prefix=f"cwtest:{uid}:")


def test_mute_replace_expire_delete(redis_server, uid):
    fs = store(redis_server, uid)
    m1 = fs.mute({"service": "db"}, until=200.0, now=100.0, reason="maintenance")
    m2 = fs.mute({"__name__": "latency", "service": "api"}, until=150.0, now=100.0)
    assert m1.id == mute_id({"service": "db"})
    # muting the same label set again replaces, not duplicates
    fs.mute({"service": "db"}, until=300.0, now=120.0)
    assert [m.until for m in fs.active_mutes(130.0) if m.id == m1.id] == [300.0]
    assert {m.id for m in fs.active_mutes(130.0)} == {m1.id, m2.id}
    # past its until a mute is inactive and dropped from Redis
    assert [m.id for m in fs.active_mutes(160.0)] == [m1.id]
    assert fs.get_mute(m2.id) is None
    assert fs.delete_mute(m1.id) is True
    assert fs.delete_mute(m1.id) is False
    assert fs.list_mutes() == []


def test_mute_matching():
    m = Mute(matchers={"__name__": "latency", "service": "db"}, until=1.0)
    assert m.matches('latency{az="a",service="db"}')
    assert not m.matches('errors{service="db"}')
    assert not m.matches('latency{service="api"}')
    assert Mute(matchers={"service": "db"}, until=1.0).matches('errors{service="db"}')


def test_false_positives_since(redis_server, uid):
    fs = store(redis_server, uid)
    fs.mark_false_positive("inc-1", marked_at=10.0, nodes=["api"], series=['lat{service="api"}'])
    fs.mark_false_positive("inc-2", marked_at=20.0, reason="deploy")
    assert [f.incident_id for f in fs.false_positives_since(0.0)] == ["inc-1", "inc-2"]
    assert [f.incident_id for f in fs.false_positives_since(10.0)] == ["inc-2"]
    first = fs.false_positives_since(0.0)[0]
    assert first.series == ['lat{service="api"}'] and first.nodes == ["api"]
    fs.mark_false_positive("inc-1", marked_at=30.0)  # marked again: seen again
    assert [f.incident_id for f in fs.false_positives_since(20.0)] == ["inc-1"]
