"""Riding through backend outages: retry with capped backoff and full jitter, and a record of
which backend is down since when (the ``causalwatch_backend_*`` gauges and ``/readyz``).

Why retry in place: the stage loop publishes a batch's outputs *after* the batch changed the
detector state, so a failed publish cannot be redone by handling the batch again (every
sample would be counted twice). Instead the failing call is repeated until the backend
answers; meanwhile the loop does not poll, so consumption pauses and nothing is committed
that is not durable. Every adapter call this wraps is idempotent on retry (results and the
webhook outbox are guarded by ids, a checkpoint becomes visible only when one MULTI/EXEC
switches its pointer (a retried save writes a new version; the interrupted one's chunks
are collected), dead letters are de-duplicated on their source position).

Delays are ``uniform(0, min(cap_s, base_s * 2**attempt))`` (full jitter, as AWS's
"Exponential Backoff and Jitter" recommends), so many processes hitting the same Redis do
not retry in step, and a returning backend is noticed within ``cap_s``. Only
``BackendError(retryable=True)`` is retried; misuse (authentication, a script error)
raises at once. When ``stop`` is set during a wait, :class:`Stopping` is raised: the caller
must leave without checkpointing, since the batch in hand is half done.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from causalwatch.errors import BackendError
from causalwatch.publish.metrics import PipelineStats

__all__ = ["BackendHealth", "Retry", "Retrying", "Stopping"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Stopping(Exception):
    """``stop`` was set while a call was being retried; the work in hand is abandoned."""


class BackendHealth:
    """Which backend is unreachable since when, in the stats the metrics read.

    ``down`` logs once per outage, ``up`` logs the outage's length. Thread-safe enough for
    its use: each call replaces one dict entry.
    """

    def __init__(
        self,
        stats: PipelineStats,
        clock: Callable[[], float] = time.time,
        *,
        stall_after_s: float = 60.0,
    ) -> None:
        self.stats = stats
        self.clock = clock
        self.stall_after_s = stall_after_s
        self.errors: dict[str, str] = {}
        #: why the state is being rebuilt (a lost checkpoint), None otherwise
        self.rebuilding: str | None = None
        self._beat = time.monotonic()
        self._started = False

    def beat(self) -> None:
        """The stage loop went round once (a loop that stops beating is stalled)."""
        self._beat = time.monotonic()
        self._started = True

    def down(self, backend: str, error: str) -> None:
        self.errors[backend] = error
        if backend not in self.stats.backend_down_since:
            self.stats.backend_down_since[backend] = self.clock()
            log.warning("backend unreachable; retrying", extra={"backend": backend, "error": error})

    def up(self, backend: str) -> None:
        since = self.stats.backend_down_since.pop(backend, None)
        if since is not None:
            self.errors.pop(backend, None)
            log.warning(
                "backend reachable again",
                extra={"backend": backend, "down_s": round(self.clock() - since, 3)},
            )

    def is_up(self, backend: str) -> bool:
        return backend not in self.stats.backend_down_since

    def reasons(self) -> list[str]:
        """Why the process is not ready, one line each (``/readyz``); empty: ready.

        An unreachable backend, a state rebuild after a lost checkpoint, a stage loop that
        has not gone round for ``stall_after_s`` (while no backend explains it), or a loop
        that has not started yet.
        """
        now = self.clock()
        out = [
            f"{name} unreachable for {now - since:.0f} s: {self.errors.get(name, '')}"[:300]
            for name, since in sorted(self.stats.backend_down_since.items())
        ]
        if self.rebuilding:
            out.append(self.rebuilding)
        if not self._started:
            out.append("pipeline starting")
        elif not out and time.monotonic() - self._beat > self.stall_after_s:
            out.append(f"pipeline stalled: no loop iteration for {self.stall_after_s:.0f} s")
        return out


class Retry:
    """Repeat a call on retryable :class:`BackendError` until it succeeds or ``stop`` is set."""

    def __init__(
        self,
        health: BackendHealth,
        stop: threading.Event,
        *,
        base_s: float = 0.05,
        cap_s: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        self.health = health
        self.stop = stop
        self.base_s = base_s
        self.cap_s = cap_s
        self.rng = rng or random.Random()

    def delay_s(self, attempt: int) -> float:
        return self.rng.uniform(0.0, min(self.cap_s, self.base_s * 2 ** min(attempt, 30)))

    def wait(self, attempt: int) -> None:
        """Sleep before attempt ``attempt + 1``; :class:`Stopping` when ``stop`` is set."""
        if self.stop.wait(self.delay_s(attempt)):
            raise Stopping("stop requested while a backend was unreachable")

    def call(self, backend: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        attempt = 0
        while True:
            try:
                out = fn(*args, **kwargs)
            except BackendError as exc:
                if not exc.retryable:
                    raise
                self.health.down(exc.backend or backend, str(exc))
                attempt += 1
                self.wait(attempt)
                continue
            if attempt or not self.health.is_up(backend):
                self.health.up(backend)
            return out


class Retrying:
    """An adapter whose every method call goes through :meth:`Retry.call`.

    For stage sinks and stores whose methods are idempotent (see the module docstring);
    attributes that are not callables pass through unchanged.
    """

    def __init__(self, target: Any, retry: Retry, backend: str) -> None:
        self._target = target
        self._retry = retry
        self._backend = backend

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._retry.call(self._backend, attr, *args, **kwargs)

        return call
