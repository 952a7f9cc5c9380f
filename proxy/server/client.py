"""The client's side of a converted stream: how much it holds unsent, and writing to it without
ever waiting on a client that takes nothing (issue 14). SHELL."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from proxy.server.state import ServerState

# How often a write stuck behind a slow client looks at whether the client still takes bytes.
POLL_S = 1.0


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

    async def write(self, data: bytes) -> None:
        """``resp.write``, which waits while the client is behind, cut short when the client
        accepts nothing for ``timeouts.client_write``."""
        before = self.buffered()
        try:
            async with asyncio.timeout(self._client_write):
                await self._resp.write(data)
            return
        except TimeoutError:
            pass
        # the write waited the whole client_write: was any byte taken meanwhile? (the bytes were
        # handed to the transport at once; only the wait for the client was cut short)
        if self.buffered() >= before + len(data):
            raise SilentClient
        await self.writable()

    async def writable(self) -> None:
        """Wait until the client transport is below the high-water mark again, as long as the
        client keeps taking bytes; raise SilentClient once it takes none for
        ``timeouts.client_write``. While the transport is paused this waits on the protocol's
        drain helper, as aiohttp's own writer does (StreamWriter.drain); every wait ends within
        ``POLL_S`` to look at the client's progress, so no path here spins."""
        loop = asyncio.get_running_loop()
        last, since = self.buffered(), loop.time()
        while True:
            if self._transport is None or self._transport.is_closing():
                raise ConnectionError("the client went away")
            size = self.buffered()
            if size < self._high:
                return
            if size < last:
                last, since = size, loop.time()
            elif loop.time() - since >= self._client_write:
                raise SilentClient
            try:
                async with asyncio.timeout(POLL_S):
                    if self._protocol is not None and self._protocol.writing_paused:
                        await self._protocol._drain_helper()
                    else:  # over the mark but not paused (yet): look again shortly
                        await asyncio.sleep(POLL_S / 20)
            except TimeoutError:
                pass
