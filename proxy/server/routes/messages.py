"""A Text Completions call answered through ``/v1/messages`` (spec section 6). SHELL.

The story of one call: the targets for the model name asked for (a tier of the built-in table, an
override, or the name itself), tried in the order ``plan`` gives (a prompt with a prefill goes
first to a target that accepts one); each is sent the request translated for its profile; a 404
``not_found_error`` before any byte means that target is retired, and the next is tried; the
answer is converted into the client's own format (legacy 2023-01-01 or 2023-06-01), with the
model name the client asked for.
"""

from __future__ import annotations

from typing import Literal

import aiohttp
from aiohttp import web

from proxy import jsonfast, legacy
from proxy.convert import StreamConverter
from proxy.server.bodies import read_upstream, read_upstream_inflated
from proxy.server.exchange import Exchange
from proxy.server.relay import (
    CompleteCall,
    Deps,
    check_event_stream,
    converted_body_response,
    converted_headers,
    event_id,
    is_json,
    relay_raw,
    upstream_response,
)
from proxy.server.streaming import stream_converted
from proxy.translate.messages import Attempt, message_to_completion, plan, translate

ClientFormat = Literal["legacy", "modern"]


async def handle(
    deps: Deps,
    request: web.Request,
    ex: Exchange,
    call: CompleteCall,
    targets: tuple[str, ...],
    client_format: ClientFormat,
) -> web.StreamResponse:
    ex.route = "complete_via_messages"
    settings = deps.settings.messages
    asked = call.fields.get("model")
    legacy_model = asked if isinstance(asked, str) else None
    order = plan(call.fields, targets, settings.profiles)
    t = deps.settings.timeouts
    headers = converted_headers(request)
    tried: list[str] = []
    for model, profile in order:
        attempt = translate(
            call.fields, model, profile, thinking_allowance=settings.thinking_allowance
        )
        tried.append(model)
        async with upstream_response(
            deps,
            ex,
            "POST",
            "/v1/messages",
            headers,
            attempt.body,
            headers_timeout=t.stream_headers if call.stream else t.headers,
            read_timeout=t.idle if call.stream else t.headers,
        ) as up:
            if up.status == 404:
                raw = await read_upstream(up, deps.settings.limits.max_body_bytes)
                if _retired(raw):
                    if len(tried) < len(order):
                        deps.recorder.fallback(ex, model)
                        continue  # nothing was generated, nothing billed (spec section 6)
                    raw = _all_retired(raw, asked, tried, settings.setting_for(asked))
                # still a call for this old name: /migration must show it is being made
                deps.recorder.attempt(ex, asked, attempt, client_format)
                ex.outcome = "upstream_error"
                return relay_raw(deps, up, ex, raw)
            deps.recorder.attempt(ex, asked, attempt, client_format)
            if up.status >= 300:
                ex.outcome = "upstream_error"
                return relay_raw(
                    deps, up, ex, await read_upstream(up, deps.settings.limits.max_body_bytes)
                )
            if not call.stream:
                return await _body(deps, up, ex, legacy_model, attempt, client_format)
            check_event_stream(up)
            conv = StreamConverter(
                "messages",
                client_format=client_format,
                strip_prefix=attempt.strip_prefix,
                legacy_model=legacy_model,
                pings=deps.settings.legacy.pings == "forward",
                event_id=event_id(deps, request, ex) if client_format == "legacy" else None,
                max_event_bytes=deps.settings.limits.max_event_bytes,
            )
            return await stream_converted(deps, request, up, ex, conv)
    raise AssertionError("plan() returns at least one target")  # pragma: no cover


async def _body(
    deps: Deps,
    up: aiohttp.ClientResponse,
    ex: Exchange,
    legacy_model: str | None,
    attempt: Attempt,
    client_format: ClientFormat,
) -> web.Response:
    raw = await read_upstream_inflated(up, deps.settings.limits.max_body_bytes)
    converted = None
    result = (
        message_to_completion(
            raw, legacy_model, client_format=client_format, strip_prefix=attempt.strip_prefix
        )
        if is_json(up)
        else None
    )
    if result is not None:
        converted, counts = result
        deps.recorder.translator(counts)
    return converted_body_response(deps, up, ex, raw, converted)


def _retired(body: bytes) -> bool:
    """A 404 whose error is ``not_found_error``: the model is gone (spec section 6)."""
    try:
        obj = jsonfast.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    error = obj.get("error") if isinstance(obj, dict) else None
    return isinstance(error, dict) and error.get("type") == "not_found_error"


def _all_retired(raw: bytes, asked: object, tried: list[str], setting: str) -> bytes:
    """The last target's 404, with a message that says what to change."""
    name = asked if isinstance(asked, str) else "this model"
    return legacy.error_body(
        "not_found_error",
        f"no model serving {name} is available upstream (tried {', '.join(tried)}); "
        f"set {setting} to a model your upstream serves",
    )
