"""Every Redis adapter translates Redis errors in one place (store.client.map_redis_errors):
a BackendError with backend="redis", raised from the redis-py error, retryable only when
trying again can help."""

from __future__ import annotations

import pytest
import redis
import redis.exceptions

from causalwatch.errors import BackendError
from causalwatch.store.checkpoint import Checkpoint, RedisCheckpointStore
from causalwatch.store.client import connect, map_redis_errors, ping
from causalwatch.store.feedback import FeedbackStore
from causalwatch.store.graph import RedisDagCache
from causalwatch.store.lease import RedisLease
from causalwatch.store.outbox import WebhookOutbox
from causalwatch.store.results import ResultStore
from causalwatch.tooling.embedded import free_port

pytestmark = pytest.mark.integration


def test_a_command_error_is_not_retryable(redis_server) -> None:
    client = connect(redis_server.url)
    with pytest.raises(BackendError) as info, map_redis_errors("bogus command"):
        client.execute_command("NO_SUCH_COMMAND")
    err = info.value
    assert err.backend == "redis" and not err.retryable
    assert str(err).startswith("redis bogus command failed: ")
    assert isinstance(err.__cause__, redis.exceptions.ResponseError)


def test_every_adapter_maps_an_unreachable_redis(uid: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.2)
    calls = {
        "ping": lambda: ping(client, url),
        "checkpoint": lambda: RedisCheckpointStore(client, f"cwtest:{uid}:cp").save(Checkpoint()),
        "lease": lambda: RedisLease(client, f"cwtest:{uid}:lease").acquire(),
        "results": lambda: ResultStore(client, prefix=f"cwtest:{uid}:").recent(),
        "feedback": lambda: FeedbackStore(client, prefix=f"cwtest:{uid}:").list_mutes(),
        "graph": lambda: RedisDagCache(client, prefix=f"cwtest:{uid}:").version(),
        "outbox": lambda: WebhookOutbox(client, f"cwtest:{uid}:").size(),
    }
    for name, call in calls.items():
        with pytest.raises(BackendError) as info:
            call()
        err = info.value
        assert err.backend == "redis" and err.retryable, name
        assert str(err).startswith("redis "), (name, str(err))
        assert isinstance(err.__cause__, redis.exceptions.ConnectionError), name
        if name == "ping":  # start-up names the setting to fix
            assert "CAUSALWATCH_REDIS__URL" in str(err)
