"""No unauthenticated byte beyond the headers, on a raw socket against the live server
(uvicorn): the 401 (and the 413 for a declared oversized body) comes before any body byte
is sent, and the server then closes the connection instead of reading the body."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_api_live import LiveServer
from tests.unit.publish.test_api import TOKEN, make_stack

pytestmark = pytest.mark.integration

BODY_BYTES = 50 * 1_048_576


@pytest.fixture
def server(redis_server: Any, uid: str) -> Iterator[LiveServer]:
    stack = make_stack(redis_server.url, uid)
    try:
        with LiveServer(stack.app(token=TOKEN, max_body_bytes=1_048_576)) as srv:
            yield srv
    finally:
        stack.client.close()


def _headers(port: int, extra: str = "") -> bytes:
    return (
        f"POST /api/v1/explain HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {BODY_BYTES}\r\n{extra}\r\n"
    ).encode()


def _read_response_head(sock: socket.socket, timeout_s: float = 5.0) -> bytes:
    sock.settimeout(timeout_s)
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def _send_body(sock: socket.socket) -> int:
    """Try to send the whole 50 MiB; returns the bytes the kernel took before the server's
    close stopped us."""
    sock.settimeout(10)
    sent = 0
    block = b"x" * 65_536
    try:
        while sent < BODY_BYTES:
            sent += sock.send(block)
    except OSError:  # EPIPE / ECONNRESET: the server closed without reading
        pass
    return sent


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ("", b"401"),
        ("Authorization: Bearer wrong\r\n", b"403"),
        (f"Authorization: Bearer {TOKEN}\r\n", b"413"),
    ],
    ids=["no-token", "wrong-token", "over-cap"],
)
def test_answered_on_the_headers_alone(server: LiveServer, extra: str, status: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        t0 = time.monotonic()
        sock.sendall(_headers(server.port, extra))  # headers only, no body byte
        head = _read_response_head(sock)
        assert head.startswith(b"HTTP/1.1 " + status), head[:200]
        assert b"connection: close" in head.lower(), head
        assert time.monotonic() - t0 < 5
        sent = _send_body(sock)
    # the server hung up: far less than the body got through (kernel buffers only)
    assert sent < BODY_BYTES // 2, sent
