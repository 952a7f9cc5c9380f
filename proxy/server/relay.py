"""What every route needs once: the dependencies, the upstream response opened and always
released, the responses that are not streams, and the endings (bodies: proxy.server.bodies).
SHELL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from proxy import legacy
from proxy.errors import ProxyError, UpstreamError
from proxy.metrics import Metrics
from proxy.server.bodies import read_upstream
from proxy.server.exchange import Exchange, Recorder
from proxy.server.state import ServerState
from proxy.server.upstream import Upstream, end_to_end
from proxy.settings import Settings

SSE_HEADERS: Final = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx and friends: do not hold events back
}
# Upstream response headers an error response relayed whole keeps (spec section 4); Location:
# a 3xx without it is no redirect at all (issue 15).
KEPT_HEADERS: Final = (
    "request-id", "retry-after", "content-type", "content-encoding", "location",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Deps:
    """The long-lived things every route uses, built once by the app."""

    settings: Settings
    upstream: Upstream
    metrics: Metrics
    recorder: Recorder
    state: ServerState
    deprecation: dict[str, str]  # headers for converted responses; empty unless switched on


def deprecation_headers(settings: Settings) -> dict[str, str]:
    """Deprecation (RFC 9745, a structured-field date), Sunset (RFC 8594, an HTTP date) and a
    Link to the migration guide, for converted responses; empty unless switched on."""
    d = settings.deprecation
    if not d.enabled:
        return {}

    def midnight(day: str) -> dt.datetime:
        return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), dt.UTC)

    headers = {"Deprecation": f"@{int(midnight(d.date).timestamp())}"}
    if d.sunset:
        headers["Sunset"] = email.utils.format_datetime(midnight(d.sunset), usegmt=True)
    if d.link:
        headers["Link"] = f'<{d.link}>; rel="deprecation"; type="text/html"'
    return headers


def error_response(exc: ProxyError, **headers: str) -> web.Response:
    return web.Response(
        status=exc.status,
        body=legacy.error_body(exc.error_type, exc.message),
        content_type="application/json",
        headers=headers,
    )


# -- the upstream response -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def upstream_response(
    deps: Deps,
    ex: Exchange,
    method: str,
    raw_path_qs: str,
    headers: CIMultiDict[str],
    body: bytes | AsyncIterable[bytes] | None,
    *,
    headers_timeout: float,
    read_timeout: float,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """The upstream's response once its headers arrived (502/504 otherwise), noted on the
    exchange, and always released exactly once: closed (an unread body must not go back to the
    pool; a no-op when the body was read to its end), or, when a converted stream's client
    response is complete with only the upstream's tail to come (``ex.upstream_tail``), handed to
    ``Upstream.tails``, which releases it when the body ends (its connection pooled) or at the
    time limit."""
    opened = await deps.upstream.open(
        method,
        raw_path_qs,
        headers,
        body,
        headers_timeout=headers_timeout,
        read_timeout=read_timeout,
    )
    ex.note_upstream(opened)
    try:
        yield opened.response
    finally:
        if ex.upstream_tail:
            # the client's response is complete: Tails now owns the response and releases it
            # when its tail has come; the request does not wait for that (issue 18)
            deps.upstream.tails.release(opened.response)
        else:
            opened.response.close()


async def relay_buffered(deps: Deps, up: aiohttp.ClientResponse, ex: Exchange) -> web.Response:
    """A non-2xx answer on a converted route: status, body and the headers that matter,
    unchanged (spec section 4)."""
    return relay_raw(deps, up, ex, await read_upstream(up, deps.settings.limits.max_body_bytes))


def relay_raw(deps: Deps, up: aiohttp.ClientResponse, ex: Exchange, raw: bytes) -> web.Response:
    """``relay_buffered`` for a body already read."""
    headers = {k: up.headers[k] for k in KEPT_HEADERS if k in up.headers}
    headers.update(deps.deprecation)
    ex.bytes_in = ex.bytes_out = len(raw)
    return web.Response(status=up.status, body=raw, headers=headers)


# -- endings -------------------------------------------------------------------------------------


def end_abnormally(request: web.Request) -> None:
    """End the response without its chunked terminator, so no client can take a failed stream for
    a complete one (spec rule 5). Buffered bytes (the legacy error event) are flushed first."""
    transport = request.transport
    if transport is not None and not transport.is_closing():
        transport.close()


async def write_eof(resp: web.StreamResponse) -> bool:
    """End the response; False if the client had already gone. A client that closes as soon as
    it has the last event (TypeScript 0.4.x does) often leaves while the chunked terminator is
    written: aiohttp then raises ClientConnectionResetError, which escaping the handler would be
    logged as an error with a traceback (issue 15). The response is complete for the client;
    aiohttp's own write_eof after the handler meets the same closed transport and ignores it."""
    try:
        await resp.write_eof()
    except ConnectionError:  # aiohttp's ClientConnectionResetError is one
        return False
    return True


# -- Text Completions requests -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompleteCall:
    """A ``POST /v1/complete`` body, read and parsed once by the entry (it picks the route)."""

    body: bytes
    fields: dict[str, Any]
    stream: bool


def converted_headers(request: web.Request) -> CIMultiDict[str]:
    """The upstream request headers of a converted call: the client's end-to-end headers (its
    API key among them), API version 2023-06-01, and no compression (spec sections 1 and 4)."""
    headers = end_to_end(request.headers, lower=True)
    headers.popall("content-length", None)  # recomputed for the bytes we send
    headers.popall("content-encoding", None)  # the body sent is the inflated one (bodies.read_body)
    headers["anthropic-version"] = legacy.UPSTREAM_VERSION
    headers["accept-encoding"] = "identity"
    return headers


def check_event_stream(up: aiohttp.ClientResponse) -> None:
    if not up.headers.get("content-type", "").lower().startswith("text/event-stream"):
        raise UpstreamError("upstream did not answer with an event stream")


def converted_body_response(
    deps: Deps, up: aiohttp.ClientResponse, ex: Exchange, raw: bytes, converted: bytes | None
) -> web.Response:
    """A non-streaming completion: the converted body, or the upstream's own when it was not one
    the core could convert (only a successful JSON response is rewritten, spec section 3)."""
    ctype = up.headers.get("content-type", "")
    headers = {k: up.headers[k] for k in ("request-id", "retry-after") if k in up.headers}
    ex.bytes_in, ex.bytes_out = len(raw), len(converted or raw)
    return web.Response(
        status=up.status,
        body=converted if converted is not None else raw,
        headers={**headers, **deps.deprecation, "Content-Type": ctype or "application/json"},
    )


def is_json(up: aiohttp.ClientResponse) -> bool:
    return "json" in up.headers.get("content-type", "").lower()


def event_id(deps: Deps, request: web.Request, ex: Exchange) -> str | None:
    """Rule 5's ``id:`` line for clients whose EventSource would retry a failed stream."""
    h = request.headers
    client = legacy.client_id(h.get("anthropic-sdk"), h.get("client"), h.get("user-agent"))
    wanted = legacy.wants_event_ids(deps.settings.legacy.event_ids, client, h.get("accept"))
    return ex.request_id if wanted else None
