"""Session fixtures: one real Kafka-protocol broker (tansu) and one real redis-server,
started once per test run on free ports; a unique prefix per test keeps tests apart.
For the Kafka edge: a broker behind a ``tansu proxy`` that a test can cut and restore
(``proxied_broker``), and a broker behind a TLS proxy that demands client certificates
(``tls_broker``, with ``kafka_certs``); see tests/integration/kafka_servers.py."""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from causalwatch.tooling.embedded import EmbeddedBroker, EmbeddedRedis
from tests.integration.kafka_servers import (
    Certs,
    ProxiedBroker,
    TlsBroker,
    make_certs,
    tls_tools_available,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"


HAS_CONFLUENT = importlib.util.find_spec("confluent_kafka") is not None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests parametrized with the confluent backend skip without ``causalwatch[fast]``."""
    if HAS_CONFLUENT:
        return
    skip = pytest.mark.skip(reason="confluent-kafka not installed: pip install -e '.[fast]'")
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "confluent" in params.values() or item.get_closest_marker("needs_confluent"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CAUSALWATCH_* variable from the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("CAUSALWATCH_"):
            monkeypatch.delenv(key, raising=False)


@pytest.fixture(scope="session", autouse=True)
def _detector_kernel_compiled() -> None:
    """Compile the detector's numba loop once, in this process, before any test: the
    service subprocesses the tests start then load numba's on-disk cache (well under a
    second) instead of each compiling it at start-up (seconds of CPU on a cold cache)."""
    from detector import Detector

    Detector().prepare()


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as r:
        yield r


@pytest.fixture
def proxied_broker() -> Iterator[ProxiedBroker]:
    """A broker of its own, reached only through a tansu proxy: ``.cut()``, ``.restore()``."""
    b = ProxiedBroker().start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="session")
def kafka_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if not tls_tools_available():
        pytest.skip("socat/openssl missing (deploy/ci-install.sh installs them)")
    return make_certs(tmp_path_factory.mktemp("kafka-certs"))


@pytest.fixture(scope="session")
def tls_broker(kafka_certs: Certs) -> Iterator[TlsBroker]:
    broker = TlsBroker(kafka_certs).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def uid() -> str:
    """A unique name part for topics, consumer groups and Redis key prefixes."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (only in the dev workspace)")
    return SHARED_DATA
