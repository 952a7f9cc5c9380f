"""A scripted 2023-06-01 upstream for end-to-end tests: each test says, action by action, what
the upstream does (write these bytes, wait, reset, go silent), and reads back what it received.

Independent of proxy.simulator on purpose: fault tests need exact control of bytes and timing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def completion(text: str, stop_reason: str | None = None, **extra: Any) -> bytes:
    obj = {
        "type": "completion",
        "completion": text,
        "stop_reason": stop_reason,
        "model": "claude-2.0",
    }
    obj.update(extra)
    return b"event: completion\ndata: " + json.dumps(obj).encode() + b"\n\n"


PING = b'event: ping\ndata: {"type": "ping"}\n\n'
FINAL = completion("", "stop_sequence", stop="\n\nHuman:", log_id="compl_01")
OVERLOADED = (
    b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", '
    b'"message": "Overloaded"}}\n\n'
)


@dataclass(frozen=True)
class Respond:
    """A whole response at once."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Stream:
    """Headers, then each item in turn: bytes are written (and flushed), a float sleeps, "reset"
    aborts the connection, "stall" waits until the client leaves."""

    items: Sequence[bytes | float | str]
    status: int = 200
    headers: dict[str, str] = field(
        default_factory=lambda: {"Content-Type": "text/event-stream", "request-id": "req_up_1"}
    )
    delay_headers: float = 0.0
    # the headers wait for the first bytes written and leave in the same send, as a real API's
    # often do (aiohttp's web.Response does it; a StreamResponse sends them at prepare)
    headers_with_first: bool = False


@dataclass
class Seen:
    method: str
    path_qs: str
    headers: dict[str, str]
    body: bytes
    raw_headers: tuple[tuple[bytes, bytes], ...] = ()  # as sent: every repeat, every spelling
    peer: Any = None  # the proxy's address and port: one per upstream connection


class ScriptedUpstream:
    def __init__(self) -> None:
        self.script: Respond | Stream = Stream([completion(" Hello"), FINAL])
        self.by_path: dict[str, Respond | Stream] = {}  # a script for one path, else ``script``
        self.seen: list[Seen] = []
        self.disconnects = 0
        self.disconnected = asyncio.Event()
        self.open_streams = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.seen.append(
            Seen(
                request.method,
                request.rel_url.raw_path_qs,
                dict(request.headers),
                body,
                request.raw_headers,
                peer,
            )
        )
        script = self.by_path.get(request.path, self.script)
        if isinstance(script, Respond):
            return web.Response(status=script.status, body=script.body, headers=script.headers)
        self.open_streams += 1
        try:
            if script.delay_headers:
                await asyncio.sleep(script.delay_headers)
            kind = _HeadersWithFirst if script.headers_with_first else web.StreamResponse
            resp = kind(status=script.status, headers=script.headers)
            await resp.prepare(request)
            for item in script.items:
                if isinstance(item, bytes):
                    await resp.write(item)
                elif isinstance(item, float):
                    await asyncio.sleep(item)
                elif item == "reset":
                    assert request.transport is not None
                    request.transport.abort()
                    return resp
                elif item == "stall":
                    await asyncio.sleep(3600)
            await resp.write_eof()
            return resp
        except (asyncio.CancelledError, ConnectionError):
            self.disconnects += 1
            self.disconnected.set()
            raise
        finally:
            self.open_streams -= 1


class _HeadersWithFirst(web.StreamResponse):
    _send_headers_immediately = False
