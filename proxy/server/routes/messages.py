"""A Text Completions call answered through ``/v1/messages`` (spec section 6): the prompt is
translated into a Messages request, and the Messages answer is converted back into the format
the client speaks. SHELL."""

from __future__ import annotations

import aiohttp
from aiohttp import web

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
from proxy.translate.messages import message_to_completion, messages_request_body


async def handle(
    deps: Deps, request: web.Request, ex: Exchange, call: CompleteCall, target: str
) -> web.StreamResponse:
    ex.route = "complete_via_messages"
    asked = call.fields.get("model")
    legacy_model = asked if isinstance(asked, str) else None
    t = deps.settings.timeouts
    async with upstream_response(
        deps,
        ex,
        "POST",
        "/v1/messages",
        converted_headers(request),
        messages_request_body(call.fields, target),
        headers_timeout=t.stream_headers if call.stream else t.headers,
        read_timeout=t.idle if call.stream else t.headers,
    ) as up:
        if up.status >= 300:
            ex.outcome = "upstream_error"
            return await relay_buffered(deps, up, ex)
        if not call.stream:
            return await _body(deps, up, ex, legacy_model)
        check_event_stream(up)
        settings = deps.settings
        conv = StreamConverter(
            "messages",
            legacy_model=legacy_model,
            pings=settings.legacy.pings == "forward",
            event_id=event_id(deps, request, ex),
            max_event_bytes=settings.limits.max_event_bytes,
        )
        return await stream_converted(deps, request, up, ex, conv)


async def _body(
    deps: Deps, up: aiohttp.ClientResponse, ex: Exchange, legacy_model: str | None
) -> web.Response:
    raw = await read_upstream_inflated(up, deps.settings.limits.max_body_bytes)
    converted = None
    result = message_to_completion(raw, legacy_model) if is_json(up) else None
    if result is not None:
        converted, dropped, known = result
        deps.recorder.translator({"dropped_blocks": dropped, "other_stop_reason": not known})
    return converted_body_response(deps, up, ex, raw, converted)
