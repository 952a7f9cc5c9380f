"""Bodies in and out, each within its limit: the client's request body (read whole, or streamed
upstream), and the upstream's response body (read whole, decompressed in bounded pieces when the
upstream compressed it although the proxy asked for identity). SHELL."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Final

import aiohttp
from aiohttp import web

from proxy.errors import BadRequest, PayloadTooLarge, RequestTimeout, UpstreamError

READ_CHUNK: Final = 1 << 16


def body_timeout(seconds: float) -> RequestTimeout:
    return RequestTimeout(f"request body not received within {seconds:g} s")


async def read_body(request: web.Request, limit: int, within: float) -> bytes:
    """A converted route's request body, inflated if the client compressed it (the traffic app
    reads bodies as they came, ``auto_decompress=False``, so pass-through relays them exactly).
    ``limit`` applies to the inflated size; the whole body must arrive ``within`` seconds (a
    client that stalls mid-body would hold its slot and its bytes for ever)."""
    if request.content.is_eof():
        # the whole body came with the head (the common case): nothing left to wait for, so no
        # timer (each asyncio.timeout is three getpid calls on Python 3.11: proxy.server.deadline)
        return await _read_body(request, limit)
    try:
        async with asyncio.timeout(within):
            return await _read_body(request, limit)
    except TimeoutError:
        raise body_timeout(within) from None


async def _read_body(request: web.Request, limit: int) -> bytes:
    codings = request_codings(request.headers.get("content-encoding"))
    # a compressed body may be a little larger than what it inflates to (stored deflate blocks
    # of incompressible data): the wire allows for that, the inflated size is held to ``limit``
    wire_limit = limit + limit // 64 + 1024 if codings else limit
    if request.content_length is not None and request.content_length > wire_limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    content = request.content
    if content.is_eof():
        # all of it is here (it came with the head): one call, no async iteration
        body = content.read_nowait()
        if len(body) > wire_limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    else:
        parts: list[bytes] = []
        size = 0
        async for chunk in content.iter_chunked(READ_CHUNK):
            size += len(chunk)
            if size > wire_limit:
                raise PayloadTooLarge(f"request body is larger than {limit} bytes")
            parts.append(chunk)
        body = b"".join(parts)
    for coding in reversed(codings):  # listed in the order they were applied
        body = inflate_request(body, coding, limit)
    return body


def request_codings(header: str | None) -> list[str]:
    """The content codings of a request body, ``identity`` left out; one the proxy cannot undo
    is a 400 (the converted body must be read)."""
    codings = [c.strip().lower() for c in (header or "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    for c in codings:
        if c not in ("gzip", "x-gzip", "deflate"):
            raise BadRequest(f"unsupported Content-Encoding {c[:32]!r}: use gzip, deflate or none")
    return codings


def inflate_request(data: bytes, coding: str, limit: int) -> bytes:
    """One content coding undone, in bounded pieces: a small gzip body can inflate a thousand
    times over, and must be refused at ``limit`` rather than after it was all inflated."""
    if coding == "deflate" and data[:1] and (data[0] & 0x0F) != 8:
        d = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some clients send it
    elif coding == "deflate":
        d = zlib.decompressobj()
    else:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    parts: list[bytes] = []
    size = 0
    try:
        while data:
            out = d.decompress(data, READ_CHUNK)
            data = d.unconsumed_tail
            size += len(out)
            if size > limit:
                raise PayloadTooLarge(f"request body is larger than {limit} bytes once inflated")
            parts.append(out)
    except zlib.error:
        raise BadRequest(f"request body is not valid {coding}") from None
    if not d.eof:
        raise BadRequest(f"request body is not valid {coding}: it ends too soon")
    return b"".join(parts)


class LimitedBody:
    """A request body streamed upstream, cut at ``limit`` bytes and at ``timeout`` seconds for
    all of it. ``failure`` tells the route why the upstream request failed: aiohttp reports an
    error raised here as a broken connection."""

    __slots__ = ("_limit", "_request", "_timeout", "failure")

    def __init__(self, request: web.Request, limit: int, timeout: float) -> None:
        self._request = request
        self._limit = limit
        self._timeout = timeout
        self.failure: BadRequest | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        chunks = self._request.content.iter_chunked(READ_CHUNK).__aiter__()
        size = 0
        while True:
            try:
                chunk = await asyncio.wait_for(anext(chunks), deadline - loop.time())
            except StopAsyncIteration:
                return
            except TimeoutError:
                self.failure = body_timeout(self._timeout)
                raise self.failure from None
            size += len(chunk)
            if size > self._limit:
                self.failure = PayloadTooLarge(f"request body is larger than {self._limit} bytes")
                raise self.failure
            yield chunk



# -- response bodies -------------------------------------------------------------------------


class Inflater:
    """Converted requests ask for identity; if the upstream compresses anyway, undo it before
    conversion (spec section 4), in bounded pieces: one small gzip read can inflate a thousand
    times over, and nothing downstream should ever hold more than ``READ_CHUNK`` of it at once."""

    __slots__ = ("_d",)

    def __init__(self, encoding: str) -> None:
        enc = encoding.strip().lower()
        if enc in ("gzip", "x-gzip"):
            self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._d = zlib.decompressobj()
        else:
            raise UpstreamError(f"upstream used an unsupported content encoding: {enc[:32]}")

    @staticmethod
    def for_response(up: aiohttp.ClientResponse) -> Inflater | None:
        enc = up.headers.get("content-encoding", "identity").strip().lower()
        return None if enc == "identity" else Inflater(enc)

    def pieces(self, chunk: bytes) -> Iterator[bytes]:
        data = chunk
        while data:
            try:
                out = self._d.decompress(data, READ_CHUNK)
            except zlib.error:
                raise UpstreamError("upstream sent a corrupt compressed body") from None
            data = self._d.unconsumed_tail
            if out:
                yield out

    def check_complete(self) -> None:
        """At the end of the body: a compressed stream cut short is as corrupt as a bad one."""
        if not self._d.eof:
            raise UpstreamError("upstream sent a corrupt compressed body: it ends too soon")


async def read_upstream(up: aiohttp.ClientResponse, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in up.content.iter_chunked(READ_CHUNK):
            size += len(chunk)
            if size > limit:
                raise UpstreamError("upstream response body is too large")
            parts.append(chunk)
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError):
        raise UpstreamError("upstream closed the response early") from None
    return b"".join(parts)


async def read_upstream_inflated(up: aiohttp.ClientResponse, limit: int) -> bytes:
    """A whole upstream body, decompressed if the upstream compressed it anyway; the limit
    applies to what it inflates to, not to the wire bytes."""
    raw = await read_upstream(up, limit)
    inflater = Inflater.for_response(up)
    if inflater is None:
        return raw
    size, parts = 0, []
    for piece in inflater.pieces(raw):
        size += len(piece)
        if size > limit:
            raise UpstreamError("upstream response body is too large")
        parts.append(piece)
    inflater.check_complete()
    return b"".join(parts)
