"""The connection guard's decisions without a process (proxy.server.connections): which
connection the cap closes, when it refuses, the descriptor arithmetic, the accept() handler.
The behaviour against the real process is in tests/faults/test_hygiene.py."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from proxy.metrics import ConnectionMetrics
from proxy.server.connections import (
    RESERVED_FDS,
    GuardedConnection,
    Listener,
    accept_error_handler,
    connection_cap,
)


class FakeHandler:
    """The few RequestHandler attributes the guard reads, and the calls it forwards."""

    def __init__(self) -> None:
        self._request_count = 0
        self._messages: deque[Any] = deque()
        self._request_in_progress = False
        self._force_close = self._close = False
        self.made = self.lost = False
        self._buffer = b""

    def connection_made(self, transport: Any) -> None:
        self.made = True

    def connection_lost(self, exc: Any) -> None:
        self.lost = True

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while b"\r\n\r\n" in self._buffer:
            _, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
            self._request_count += 1
            self._messages.append((object(), EOF))


class Eof:
    def is_eof(self) -> bool:
        return True


EOF = Eof()


class FakeTransport:
    def __init__(self) -> None:
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


def open_one(listener: Listener) -> tuple[GuardedConnection, FakeTransport]:
    conn = GuardedConnection(listener, FakeHandler)  # type: ignore[arg-type]
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


def test_descriptor_arithmetic() -> None:
    assert connection_cap(0, 1024) == ((1024 - RESERVED_FDS) // 2,) * 2
    assert connection_cap(0, 1 << 20)[0] >= 4096  # a container's usual hard limit
    assert connection_cap(100, 1024)[0] == 100
    assert connection_cap(10_000, 1024)[0] == (1024 - RESERVED_FDS) // 2  # lowered to what fits


async def test_the_cap_closes_the_oldest_connection_without_a_request_first() -> None:
    metrics = ConnectionMetrics(CollectorRegistry())
    listener = Listener("traffic", head_timeout=30, max_connections=3, metrics=metrics)
    busy, busy_t = open_one(listener)
    busy.data_received(b"GET / HTTP/1.1\r\n\r\n")  # a head: queued for the handler
    idle, idle_t = open_one(listener)
    newer, newer_t = open_one(listener)
    fourth, fourth_t = open_one(listener)  # full: the oldest headless one goes
    assert idle_t.aborted and not busy_t.aborted and not newer_t.aborted and not fourth_t.aborted
    idle.connection_lost(None)
    assert len(listener) == 3
    assert metrics.closed_by_cap.labels("traffic")._value.get() == 1
    assert metrics.open.labels("traffic")._value.get() == 3
    for c in (busy, newer, fourth):
        c.connection_lost(None)
    assert metrics.open.labels("traffic")._value.get() == 0


async def test_when_every_connection_is_busy_the_new_one_is_refused() -> None:
    metrics = ConnectionMetrics(CollectorRegistry())
    listener = Listener("traffic", head_timeout=30, max_connections=2, metrics=metrics)
    for _ in range(2):
        conn, _ = open_one(listener)
        conn.data_received(b"GET / HTTP/1.1\r\n\r\n")
    refused, transport = open_one(listener)
    assert transport.aborted and len(listener) == 2
    refused.connection_lost(None)  # aiohttp never saw it
    assert len(listener) == 2 and metrics.refused.labels("traffic")._value.get() == 1


async def test_a_head_deadline_starts_at_the_first_byte_and_stays_put() -> None:
    listener = Listener("traffic", head_timeout=30, max_connections=10)
    conn, _ = open_one(listener)
    assert conn._timer is None  # an idle connection is the keep-alive timer's business
    conn.data_received(b"GET / HT")
    timer = conn._timer
    assert timer is not None
    conn.data_received(b"TP/1.1\r\n")
    assert conn._timer is timer  # not pushed back
    conn.data_received(b"\r\n")
    assert conn._timer is None  # complete
    conn.connection_lost(None)


def test_accept_failures_for_lack_of_descriptors_become_one_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    metrics = ConnectionMetrics(CollectorRegistry())
    listener = Listener("traffic", head_timeout=30, max_connections=10, metrics=metrics)
    loop = asyncio.new_event_loop()
    try:
        handle = accept_error_handler(listener)
        for _ in range(5):
            handle(loop, {"message": "socket.accept() out of system resource", "exception": None})
    finally:
        loop.close()
    assert metrics.refused.labels("traffic")._value.get() == 5
    assert capsys.readouterr().out.count("connections.refused") == 1


class Body:
    def __init__(self) -> None:
        self.eof = False

    def is_eof(self) -> bool:
        return self.eof


async def test_the_bytes_that_end_a_body_start_no_head_deadline() -> None:
    listener = Listener("traffic", head_timeout=30, max_connections=10)
    conn, _ = open_one(listener)
    body = Body()
    inner = conn._inner
    inner._messages.append((object(), body))
    inner._request_count += 1
    conn._payload = body  # a head arrived; its body is still coming
    inner._messages.clear()
    inner._request_in_progress = True

    def last_body_bytes(data: bytes) -> None:
        body.eof = True

    inner.data_received = last_body_bytes
    conn.data_received(b"the rest of the body")
    assert conn._timer is None
    conn.connection_lost(None)
