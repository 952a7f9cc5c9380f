"""A legacy ``POST /v1/complete`` answered by the upstream's Text Completions endpoint, converted
natively (spec sections 2 and 3). SHELL."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from proxy import legacy
from proxy.convert import StreamConverter
from proxy.server.bodies import read_upstream_inflated
from proxy.server.exchange import Exchange
from proxy.server.relay import (
    CompleteCall,
    Deps,
    check_event_stream,
    converted_body_response,
    converted_headers,
    event_id,
    is_json,
    relay_buffered,
    upstream_response,
)
from proxy.server.streaming import stream_converted


async def handle(
    deps: Deps, request: web.Request, ex: Exchange, call: CompleteCall
) -> web.StreamResponse:
    t = deps.settings.timeouts
    async with upstream_response(
        deps,
        ex,
        "POST",
        request.rel_url.raw_path_qs,
        converted_headers(request),
        call.body,
        headers_timeout=t.stream_headers if call.stream else t.headers,
        read_timeout=t.idle if call.stream else t.headers,
    ) as up:
        if up.status >= 300:
            ex.outcome = "upstream_error"
            return await relay_buffered(deps, up, ex)
        if not call.stream:
            return await _body(deps, up, ex)
        check_event_stream(up)
        settings = deps.settings
        conv = StreamConverter(
            "complete",
            pings=settings.legacy.pings == "forward",
            event_id=event_id(deps, request, ex),
            max_event_bytes=settings.limits.max_event_bytes,
        )
        return await stream_converted(deps, request, up, ex, conv)


async def _body(deps: Deps, up: aiohttp.ClientResponse, ex: Exchange) -> web.Response:
    raw = await read_upstream_inflated(up, deps.settings.limits.max_body_bytes)
    converted = legacy.legacy_completion_body(raw) if is_json(up) else None
    return converted_body_response(deps, up, ex, raw, converted)
