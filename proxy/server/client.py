"""The client's side of a converted stream: how much it holds unsent, and writing to it without
ever waiting on a client that takes nothing (issue 14). SHELL."""

from __future__ import annotations

import asyncio
import fcntl
import struct
import termios
from collections.abc import Coroutine, Generator
from typing import Any

from aiohttp import web

from proxy.server.state import ServerState

# How often a write stuck behind a slow client looks at whether the client still takes bytes.
POLL_S = 1.0
# what chunked framing adds to a write (hex length, two CR LFs), with room to spare
_CHUNK_FRAMING = 32


class SilentClient(Exception):
    """The client accepted no byte for ``timeouts.client_write``."""


class ClientSink:
    """The client transport of one converted stream: bytes handed to it and not yet sent
    (``buffered``), this stream's share of the process-wide ``ServerState.pending_bytes``, and
    ``write``, which waits while the client is behind but cuts a client that takes nothing."""

    __slots__ = (
        "_client_write",
        "_high",
        "_protocol",
        "_resp",
        "_state",
        "_transport",
        "accounted",
        "handed",
    )

    def __init__(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        state: ServerState,
        *,
        high_water: int,
        client_write: float,
    ) -> None:
        self._resp = resp
        self._state = state
        self._high = high_water
        self._client_write = client_write
        self._transport = request.transport
        self._protocol: Any = request.protocol
        self.accounted = 0
        # the last write's bytes reached the client transport, whatever happened after: the
        # client leaving while aiohttp waited for the drain does not take them back (rule 8)
        self.handed = False

    def buffered(self) -> int:
        """Bytes handed to the client transport and not yet sent (0 once it is gone)."""
        t = self._transport
        return 0 if t is None or t.is_closing() else t.get_write_buffer_size()

    def room(self, queued: int) -> int:
        """What may still be handed over before the high-water mark, counting ``queued`` bytes
        not yet written; keeps this stream's share of the pending bytes up to date."""
        held = self.buffered() + queued
        self._state.pending_bytes += held - self.accounted
        self.accounted = held
        return self._high - held

    def release(self) -> None:
        """Give back this stream's share of the pending bytes (safe to call again)."""
        self._state.pending_bytes -= self.accounted
        self.accounted = 0

    def abort(self) -> None:
        """Cut the client: close() would wait for it to read what the buffer holds."""
        if self._transport is not None:
            self._transport.abort()

    async def write(self, data: bytes, *, last: bool = False) -> None:
        """``resp.write`` (``resp.write_eof`` when ``last``: nothing follows ``data``), which
        waits while the client is behind, cut short when the client accepts nothing for
        ``timeouts.client_write``."""
        resp = self._resp
        send = resp.write_eof(data) if last else resp.write(data)
        protocol = self._protocol
        self.handed = False
        if (
            protocol is not None
            and not protocol.writing_paused
            and self.buffered() + len(data) + _CHUNK_FRAMING <= self._high
        ):
            # cannot wait: the transport stays under its high-water mark, so it does not pause,
            # and aiohttp's drain returns at once (the hot path: no task, no timer)
            await send
            self.handed = self._kept()
        else:
            if last and self._transport is not None and not self._transport.is_closing():
                # the protocol resumes only once the transport is empty: "not paused" after
                # this write then means its bytes left for the kernel (left_transport)
                self._transport.set_write_buffer_limits(high=self._high, low=0)
            await self._progress(asyncio.ensure_future(_Handing(send, self)), len(data))
        # a drain also ends when the connection is lost (at the drain deadline, say): the bytes
        # did not reach a client then, and the stream must not count as delivered (rule 8)
        self._gone_check()

    def _kept(self) -> bool:
        """After a write's synchronous part: whether the transport kept its bytes. A send that
        fails (the client's reset already in the kernel, the loop not yet told) makes uvloop
        close the transport without raising: those bytes went nowhere."""
        t = self._transport
        return t is not None and not t.is_closing()

    def left_transport(self) -> bool:
        """The last write's bytes left the transport for the kernel, whatever happened after:
        handed to it, and the transport not paused since (after a ``last`` write, not paused
        means empty). A client that read them and hung up before the write returned got them;
        one that left with them still queued here did not (rule 8)."""
        protocol = self._protocol
        return self.handed and (protocol is None or not protocol.writing_paused)

    async def writable(self) -> None:
        """Wait until the client transport is below its low-water mark, as aiohttp's own writer
        does (StreamWriter.drain awaits the protocol's drain helper), as long as the client keeps
        taking bytes; raise SilentClient once it takes none for ``timeouts.client_write``."""
        if self._protocol is not None and self._protocol.writing_paused:
            await self._progress(asyncio.ensure_future(self._protocol._drain_helper()), 0)
        self._gone_check()

    async def _progress(self, fut: asyncio.Future[Any], adding: int) -> None:
        """Await ``fut`` (a write or a drain) while the client takes bytes; SilentClient once it
        takes none for ``timeouts.client_write``.

        ``fut`` is never cancelled (tests/faults/test_memory.py): cancelling aiohttp's drain, as
        a timeout around it would, cancels the protocol's shared drain waiter, which stays in
        place until the client drains, so every later wait on it raised CancelledError at once
        and killed the writer: a silent client was never cut. It ends by itself when the client
        drains or the connection is lost (abort() included)."""
        fut.add_done_callback(_retrieve)
        loop = asyncio.get_running_loop()
        last, since = self.buffered() + self._unsent_in_kernel() + adding, loop.time()
        while True:
            done, _ = await asyncio.wait((fut,), timeout=POLL_S)
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

    def _gone_check(self) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionError("the client went away")


class _Handing:
    """Awaits ``send``, an aiohttp write, and sets ``sink.handed`` once it has first suspended
    or ended without an error. aiohttp's write hands the bytes to the transport before its one
    wait, the drain (no compression, no chunk callback on these responses): once it suspends,
    the bytes are the transport's. ``send``'s own steps, values and errors pass through as they
    are, as ``yield from`` would pass them."""

    __slots__ = ("_send", "_sink")

    def __init__(self, send: Coroutine[Any, Any, None], sink: ClientSink) -> None:
        self._send = send
        self._sink = sink

    def __await__(self) -> Generator[Any, Any, None]:
        it = self._send.__await__()
        try:
            step = it.send(None)
        except StopIteration:
            self._sink.handed = self._sink._kept()
            return
        self._sink.handed = self._sink._kept()
        while True:
            try:
                value = yield step
            except GeneratorExit:
                it.close()
                raise
            except BaseException as exc:  # passed on to send, as yield from does
                try:
                    step = it.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    step = it.send(value)
                except StopIteration:
                    return


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a write's or drain's outcome as seen (the stream's own handling reports it)."""
    if not fut.cancelled():
        fut.exception()
