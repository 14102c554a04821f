"""Session fixtures: one real Kafka-protocol broker (tansu) and one real redis-server,
started once per test run on free ports; a unique prefix per test keeps tests apart."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from causalwatch.tooling.embedded import EmbeddedBroker, EmbeddedRedis

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CAUSALWATCH_* variable from the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("CAUSALWATCH_"):
            monkeypatch.delenv(key, raising=False)


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as r:
        yield r


@pytest.fixture
def uid() -> str:
    """A unique name part for topics, consumer groups and Redis key prefixes."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (only in the dev workspace)")
    return SHARED_DATA
