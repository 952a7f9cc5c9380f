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
import fcntl
import struct
import termios
import time
from typing import Any

import aiohttp
from aiohttp import web

from proxy.convert import StreamConverter
from proxy.errors import UpstreamError
from proxy.server.bodies import Inflater
from proxy.server.exchange import Exchange
from proxy.server.relay import SSE_HEADERS, Deps, end_abnormally, finish_for_reuse
from proxy.server.state import ServerState

# How often a writer stuck behind a slow client looks at whether it still accepts bytes.
_POLL_S = 1.0


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a write's or drain's outcome as seen (the stream's own handling reports it)."""
    if not fut.cancelled():
        fut.exception()


class SilentClient(Exception):
    """The client accepted no byte for ``timeouts.client_write``."""


class ClientWriter:
    """The writer half of a converted stream (see the module docstring)."""

    __slots__ = (
        "_client_write",
        "_conv",
        "_done",
        "_first_t",
        "_high",
        "_hist",
        "_parts",
        "_protocol",
        "_queued",
        "_resp",
        "_state",
        "_transport",
        "_wake",
        "accounted",
        "bytes_written",
        "delivered_end",
        "failed",
        "silent",
    )

    def __init__(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        conv: StreamConverter,
        deps: Deps,
    ) -> None:
        self._resp = resp
        self._conv = conv
        self._hist: Any = deps.metrics.added_latency
        self._state: ServerState = deps.state
        self._high = deps.settings.limits.write_high_water_bytes
        self._client_write = deps.settings.timeouts.client_write
        self._transport = request.transport
        self._protocol: Any = request.protocol
        self._parts: list[bytes] = []
        self._queued = 0
        self._first_t: float | None = None
        self._wake = asyncio.Event()
        self._done = False
        self.failed = False
        self.silent = False
        self.bytes_written = 0
        self.accounted = 0  # this stream's share of ServerState.pending_bytes
        # the final event (and [DONE]) reached the client transport: the stream is "ok" (rule 8)
        self.delivered_end = False

    def buffered(self) -> int:
        """Bytes handed to the client transport and not yet sent (0 once it is gone)."""
        t = self._transport
        return 0 if t is None or t.is_closing() else t.get_write_buffer_size()

    def room(self) -> int:
        """What the converter may still hand over before it holds (issue 14). Also keeps this
        stream's share of the process-wide pending bytes up to date."""
        buffered = self.buffered() + self._queued
        self._state.pending_bytes += buffered - self.accounted
        self.accounted = buffered
        return self._high - buffered

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
                        conv.room = self.room() - len(data)
                        if conv.room > 0:
                            data += conv.take_pending()
                    if not data:
                        if not conv.has_pending or conv.finished:
                            break
                        # the client is behind: wait until it drains to the low-water mark, then
                        # take the held event whatever the room (no busy loop at the boundary)
                        await self._writable()
                        conv.room = self.room()
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
                    await self._write(data)
                    self.bytes_written += len(data)
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
            if self._transport is not None:
                self._transport.abort()  # close() would wait for the client to read the buffer
        finally:
            self.release()

    def release(self) -> None:
        """Give back this stream's share of the pending bytes (once, whatever ended it)."""
        self._state.pending_bytes -= self.accounted
        self.accounted = 0

    async def _write(self, data: bytes) -> None:
        """``resp.write``, which waits while the client is behind, cut short when the client
        accepts nothing for ``timeouts.client_write``."""
        # what the transport would hold if the client took no byte (chunk framing aside)
        await self._progress(asyncio.ensure_future(self._resp.write(data)), len(data))
        # a drain also ends when the connection is lost (at the drain deadline, say): the bytes
        # did not reach a client then, and the stream must not count as delivered (rule 8)
        self._protocol_gone_check()

    async def _writable(self) -> None:
        """Wait until the client transport is below its low-water mark, as aiohttp's own writer
        does (StreamWriter.drain awaits the protocol's drain helper), as long as the client keeps
        taking bytes; raise SilentClient once it takes none for ``timeouts.client_write``."""
        if self._protocol is not None and self._protocol.writing_paused:
            await self._progress(asyncio.ensure_future(self._protocol._drain_helper()), 0)
        self._protocol_gone_check()

    async def _progress(self, fut: asyncio.Future[Any], adding: int) -> None:
        """Await ``fut`` (a write or a drain) while the client takes bytes; SilentClient once it
        takes none for ``timeouts.client_write``.

        ``fut`` is never cancelled (issue 14, found by tests/faults/test_memory.py): cancelling
        aiohttp's drain, as a timeout around it did, cancels the protocol's shared drain waiter,
        which stays in place until the client drains, so every later wait on it raised
        CancelledError at once and killed the writer task: a silent client was never cut. It
        ends by itself when the client drains or the connection is lost (abort() included)."""
        fut.add_done_callback(_retrieve)
        loop = asyncio.get_running_loop()
        last, since = self.buffered() + self._unsent_in_kernel() + adding, loop.time()
        while True:
            done, _ = await asyncio.wait((fut,), timeout=_POLL_S)
            if done:
                fut.result()
                return
            size = self.buffered() + self._unsent_in_kernel()
            if size < last:
                last, since = size, loop.time()
            elif loop.time() - since >= self._client_write:
                raise SilentClient

    def _unsent_in_kernel(self) -> int:
        """Bytes in the socket's kernel send queue that the client has not acknowledged
        (SIOCOUTQ; 0 where that cannot be read). The kernel buffers megabytes (tcp_wmem) and
        wakes the writer only once a third of them is free, so a client reading a few KB/s
        moves this queue long before it moves the transport's: without it such a reader was
        cut as silent (tests/faults/test_memory.py)."""
        t = self._transport
        sock = None if t is None else t.get_extra_info("socket")
        if sock is None:
            return 0
        try:
            raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        except (OSError, ValueError):
            return 0
        return int(struct.unpack("i", raw)[0])

    def _protocol_gone_check(self) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionError("the client went away")


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
    await resp.prepare(request)
    ex.status = resp.status
    if request.transport is not None:
        request.transport.set_write_buffer_limits(high=deps.settings.limits.write_high_water_bytes)
    writer = ClientWriter(request, resp, conv, deps)
    writer_task = asyncio.create_task(writer.run())
    state = deps.state
    deadline = False
    try:
        try:
            await _pump(up, conv, writer, inflater)
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
        else:
            await resp.write_eof()
            await finish_for_reuse(up)
        return resp
    finally:
        if not writer_task.done():
            writer_task.cancel()
        stats = conv.stats()
        ex.events_in = sum(stats.events_in.values())
        ex.events_out = sum(stats.events_out.values())
        ex.bytes_in, ex.bytes_out = stats.bytes_in, writer.bytes_written
        ex.settled = True
        if stats.outcome == "ok" and writer.delivered_end:
            ex.outcome = "ok"  # even if the client then left before [DONE] (rule 8)
        elif stats.outcome not in (None, "ok"):
            ex.outcome, ex.error = "stream_error", stats.outcome
        elif deadline:
            ex.outcome, ex.error = "stream_error", "drain_deadline"
        else:
            ex.outcome = "client_gone"  # it left before the final event reached it
        if writer.silent:
            ex.error = "client_write_timeout"
            deps.metrics.client_write_timeouts.inc()
        writer.release()
        deps.recorder.stream(stats, writer.bytes_written)


async def _pump(
    up: aiohttp.ClientResponse,
    conv: StreamConverter,
    writer: ClientWriter,
    inflater: Inflater | None,
) -> None:
    clock = time.perf_counter
    push = writer.push
    feed = conv.feed
    room = writer.room
    try:
        async for chunk in up.content.iter_any():
            t = clock()
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
