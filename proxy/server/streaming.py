"""A converted stream: the upstream body through a StreamConverter to the client. SHELL.

It runs as two coroutines (spec rule 7): the pump reads the upstream and feeds the converter; the
writer task writes to the client. Reading never waits for the client. Before every feed the pump
tells the converter how much room the client has (``limits.write_high_water_bytes`` less what
its transport and the writer's queue already hold); past that room the converter holds only the
latest snapshot (a 2023-06-01 client: one merged increment), so one upstream read of N events
never becomes N snapshots in memory. The writer sends the held event once the client drains.

Memory per stream, whatever the reader's speed or the upstream's bursts: the running text (held
once), plus at most the high-water mark, one event and the ending in the transport and queue.
A client that accepts no byte for ``timeouts.client_write`` is cut (issue 14).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from aiohttp import web

from proxy.convert import StreamConverter
from proxy.errors import UpstreamError
from proxy.server.bodies import Inflater
from proxy.server.client import ClientSink, SilentClient
from proxy.server.exchange import Exchange
from proxy.server.relay import SSE_HEADERS, Deps, end_abnormally, write_eof


class Wakeup:
    """asyncio.Event's set, clear and wait for the one task that waits, on a loop known in
    advance. Event.wait looks the running loop up on every call, which on Python 3.11 is a getpid
    system call: four per short Messages stream, more than half of the proxy's (perf, issue
    18)."""

    __slots__ = ("_flag", "_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._flag = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        if not self._flag:
            self._flag = True
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._flag = False

    async def wait(self) -> None:
        if self._flag:
            return
        self._waiter = waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None  # no future (and its callback to the task) outlives the wait


class ClientWriter:
    """The writer half of a converted stream (see the module docstring)."""

    __slots__ = (
        "_conv",
        "_done",
        "_first_t",
        "_hist",
        "_parts",
        "_queued",
        "_wake",
        "bytes_written",
        "delivered_end",
        "failed",
        "handed_end",
        "silent",
        "sink",
    )

    def __init__(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        conv: StreamConverter,
        deps: Deps,
    ) -> None:
        self.sink = ClientSink(
            request,
            resp,
            deps.state,
            high_water=deps.settings.limits.write_high_water_bytes,
            client_write=deps.settings.timeouts.client_write,
        )
        self._conv = conv
        self._hist: Any = deps.metrics.added_latency
        self._parts: list[bytes] = []
        self._queued = 0
        self._first_t: float | None = None
        self._wake = Wakeup(deps.upstream.loop)
        self._done = False
        self.failed = False
        self.silent = False
        self.bytes_written = 0
        # the final event (and [DONE]) reached the client transport and its write returned
        self.delivered_end = False
        # ... or left the transport for the kernel, and the client hung up before the write
        # returned: one that closes the moment it has the stream (TypeScript 0.4.x does)
        self.handed_end = False

    def room(self) -> int:
        """What the converter may still hand over before it holds (issue 14)."""
        return self.sink.room(self._queued)

    def push(self, data: bytes, arrived: float) -> None:
        if data:
            self._parts.append(data)
            self._queued += len(data)
            if self._first_t is None:
                self._first_t = arrived
            self._wake.set()
        elif self._conv.has_pending:
            # the converter began holding and handed over nothing: the writer must wait for the
            # client (and time it) to deliver the held event, not sleep until the next bytes
            self._wake.set()

    def finish(self) -> None:
        self._done = True
        self._wake.set()

    async def run(self) -> None:
        conv = self._conv
        clock = time.perf_counter
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while True:
                    data = b"".join(self._parts) if self._parts else b""
                    self._parts.clear()
                    self._queued = 0
                    # a held event is never older than what is queued: the converter holds only
                    # while the client has no room, and an ending supersedes what it holds
                    if conv.has_pending:
                        conv.room = self.sink.room(len(data))
                        if conv.room > 0:
                            data += conv.take_pending()
                    if not data:
                        if not conv.has_pending or conv.finished:
                            break
                        # the client is behind: wait until it drains to the low-water mark, then
                        # take the held event whatever the room (no busy loop at the boundary)
                        await self.sink.writable()
                        if self._parts:
                            # queued while we waited, so older than the held event (rendered
                            # when taken): they go first, the held event after them
                            continue
                        conv.room = self.sink.room(0)
                        data = conv.take_pending()
                        if not data:
                            continue
                    # push() and the converter's finishing happen in one step of the reader, so
                    # once it is finished its last bytes are in ``data`` or were written before
                    ends_ok = conv.outcome == "ok"
                    if self._first_t is not None:
                        # handed to the transport synchronously inside write(); any wait after
                        # that is the client's backpressure, not the proxy's latency
                        self._hist.observe(clock() - self._first_t)
                        self._first_t = None
                    # the final event ends the body in the same send as the chunked terminator:
                    # sends are the largest share of the proxy's CPU per short stream
                    try:
                        await self.sink.write(data, last=ends_ok)
                    finally:
                        if self.sink.handed:  # the transport has them, whatever came after
                            self.bytes_written += len(data)
                        self.handed_end = ends_ok and self.sink.left_transport()
                    self.delivered_end = ends_ok
                    if self._parts:
                        # bytes that arrived while the client held the write up: the proxy's
                        # own time for them starts now
                        self._first_t = clock()
                if self._done:
                    return
        except (ConnectionError, aiohttp.ClientConnectionResetError, RuntimeError):
            # the client went away; the route notices through `failed` or its cancellation
            self.failed = True
        except SilentClient:
            self.failed = self.silent = True
            self.sink.abort()
        finally:
            self.sink.release()


async def stream_converted(
    deps: Deps,
    request: web.Request,
    up: aiohttp.ClientResponse,
    ex: Exchange,
    conv: StreamConverter,
) -> web.StreamResponse:
    """Answer ``request`` with ``up``'s event stream converted by ``conv``, and settle the
    exchange's outcome by rule 8: ok once the final event reached the client transport."""
    inflater = Inflater.for_response(up)
    resp = web.StreamResponse(status=200, headers={**SSE_HEADERS, **deps.deprecation})
    if "request-id" in up.headers:
        resp.headers["request-id"] = up.headers["request-id"]
    try:
        await resp.prepare(request)
    except ConnectionError:  # aiohttp's ClientConnectionResetError is one
        # the client left before its response headers could be written: nothing to convert,
        # and nothing for aiohttp to log as an error (the route closes the upstream)
        ex.outcome, ex.settled = "client_gone", True
        return resp
    ex.status = resp.status
    if request.transport is not None:
        request.transport.set_write_buffer_limits(high=deps.settings.limits.write_high_water_bytes)
    writer = ClientWriter(request, resp, conv, deps)
    writer_task = asyncio.create_task(writer.run())
    state = deps.state
    deadline = False
    try:
        try:
            await _pump(up, conv, writer, inflater, deps.settings.timeouts.idle, deps.upstream.loop)
        except asyncio.CancelledError:
            if not state.deadline_cancel():
                raise
            deadline = True  # shutdown's drain deadline passed (spec rule 6)
            writer.push(conv.abort("drain_deadline"), time.perf_counter())
        writer.finish()
        try:
            # past the deadline the error event gets a moment, not the client's pace
            await (asyncio.wait_for(writer_task, 1.0) if deadline else writer_task)
        except TimeoutError:
            writer.failed = True
        except asyncio.CancelledError:
            if not state.deadline_cancel():
                raise
            deadline = True  # the client was behind when the drain deadline passed
            writer_task.cancel()
            writer.failed = True
        if conv.failed or writer.failed or not writer.delivered_end:
            end_abnormally(request)
        elif await write_eof(resp):
            # the upstream's last bytes (Messages' message_stop, the chunked terminator) come
            # after the handler returned: the client's next request must not wait for them
            ex.upstream_tail = True
        return resp
    finally:
        if not writer_task.done():
            writer_task.cancel()
        stats = conv.stats()
        ex.events_in = sum(stats.events_in.values())
        ex.events_out = sum(stats.events_out.values())
        ex.bytes_in, ex.bytes_out = stats.bytes_in, writer.bytes_written
        ex.settled = True
        if stats.outcome == "ok" and (
            writer.delivered_end or (writer.handed_end and not deadline and not writer.silent)
        ):
            # the final event was written: ok even if the client then left (rule 8); not when
            # the proxy itself cut the connection (drain deadline, a silent client)
            ex.outcome = "ok"
        elif stats.outcome not in (None, "ok"):
            ex.outcome, ex.error = "stream_error", stats.outcome
        elif deadline:
            ex.outcome, ex.error = "stream_error", "drain_deadline"
        else:
            ex.outcome = "client_gone"  # it left before the final event reached it
        if writer.silent:
            ex.error = "client_write_timeout"
            deps.metrics.client_write_timeouts.inc()
        writer.sink.release()
        deps.recorder.stream(stats, writer.bytes_written)


class _IdleLimit:
    """The idle limit between upstream bytes, kept by one timer that re-arms itself from the time
    of the last read, instead of aiohttp's sock_read, which cancels and re-creates a timer on
    every read (2 % of the proxy's CPU under churn, py-spy). On expiry it fails the body the way
    aiohttp's own read timeout does. An object, not a closure: a closure that holds its own timer
    handle is a reference cycle, left to the garbage collector for every stream."""

    __slots__ = ("_content", "_handle", "_limit", "_loop", "last")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, content: aiohttp.StreamReader, limit: float
    ) -> None:
        self._content = content
        self._limit = limit
        self._loop = loop
        self.last = time.perf_counter()  # the pump sets it at every read
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(limit, self._check)

    def _check(self) -> None:
        quiet = time.perf_counter() - self.last
        if quiet >= self._limit:
            self._content.set_exception(
                aiohttp.ServerTimeoutError("Timeout on reading data from socket")
            )
            self._handle = None
        else:
            self._handle = self._loop.call_later(self._limit - quiet, self._check)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None  # uvloop keeps a cancelled handle's callback: no cycle left


async def _pump(
    up: aiohttp.ClientResponse,
    conv: StreamConverter,
    writer: ClientWriter,
    inflater: Inflater | None,
    idle: float,
    loop: asyncio.AbstractEventLoop,
) -> None:
    limit = _IdleLimit(loop, up.content, idle)
    connection = up.connection
    if connection is not None and connection.protocol is not None:
        connection.protocol.read_timeout = None  # the request sets it again on reuse
    clock = time.perf_counter
    push = writer.push
    feed = conv.feed
    room = writer.room
    try:
        async for chunk in up.content.iter_any():
            limit.last = t = clock()
            if inflater is None:
                conv.room = room()
                push(feed(chunk), t)
            else:
                for piece in inflater.pieces(chunk):
                    conv.room = room()
                    push(feed(piece), t)
            if conv.finished or writer.failed:
                return
        push(conv.close(), clock())
    except aiohttp.ServerTimeoutError:
        push(conv.abort("upstream_timeout"), clock())  # silent past the idle limit
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
        push(conv.abort("upstream_closed"), clock())
    except UpstreamError:  # a corrupt compressed body
        push(conv.abort("invalid_event"), clock())
    finally:
        limit.cancel()
