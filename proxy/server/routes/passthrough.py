"""Everything that is not converted: relayed as received, streaming without buffering (spec
section 5). A legacy version header is rewritten to 2023-06-01: these routes did not exist in
2023-01-01, so there is no legacy shape to restore. SHELL."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from proxy import legacy
from proxy.errors import PayloadTooLarge, UpstreamError
from proxy.server.bodies import LimitedBody
from proxy.server.client import ClientSink, SilentClient
from proxy.server.exchange import Exchange
from proxy.server.relay import Deps, end_abnormally, upstream_response, write_eof
from proxy.server.upstream import end_to_end


async def handle(
    deps: Deps, request: web.Request, ex: Exchange, is_legacy: bool
) -> web.StreamResponse:
    limit = deps.settings.limits.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    headers = end_to_end(request.headers, lower=True)
    if is_legacy:
        headers["anthropic-version"] = legacy.UPSTREAM_VERSION
    body = (
        LimitedBody(request, limit, deps.settings.timeouts.request_body)
        if request.body_exists
        else None
    )
    t = deps.settings.timeouts
    try:
        async with upstream_response(
            deps,
            ex,
            request.method,
            request.rel_url.raw_path_qs,
            headers,
            body,
            headers_timeout=t.headers,
            read_timeout=t.headers,
        ) as up:
            if up.status >= 300:
                ex.outcome = "upstream_error"
            resp = web.StreamResponse(status=up.status, reason=up.reason)
            for k, v in end_to_end(up.headers).items():
                resp.headers.add(k, v)
            await resp.prepare(request)
            ex.status = resp.status
            sink = ClientSink(
                request,
                resp,
                deps.state,
                high_water=deps.settings.limits.write_high_water_bytes,
                client_write=t.client_write,
            )
            try:
                await _relay(up, sink, ex, t.idle)
            except SilentClient:
                # a client that takes nothing would hold the upstream's generation, its slot and
                # its connection for as long as the upstream streams (issue 14)
                ex.outcome, ex.error = "client_gone", "client_write_timeout"
                deps.metrics.client_write_timeouts.inc()
                sink.abort()
                return resp
            except ConnectionError:  # the client left (its write failed, or the sink saw it)
                ex.outcome = "client_gone"
                end_abnormally(request)
                return resp
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError):
                ex.outcome, ex.error = "stream_error", "upstream_closed"
                end_abnormally(request)  # a cut body must not look complete downstream
                return resp
            except asyncio.CancelledError:
                if not deps.state.deadline_cancel():
                    raise
                ex.outcome, ex.error = "stream_error", "drain_deadline"
                end_abnormally(request)
                return resp
            await write_eof(resp)
            return resp
    except UpstreamError:
        if body is not None and body.failure is not None:  # aiohttp reports a broken connection
            raise body.failure from None
        raise


async def _relay(up: aiohttp.ClientResponse, sink: ClientSink, ex: Exchange, idle: float) -> None:
    """Relay the body as received. Silence from the upstream past ``idle`` is a failure; time
    spent waiting for a slow client is not counted as the upstream's silence, and a client that
    takes no byte for ``timeouts.client_write`` is cut (SilentClient)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(loop.time() + idle) as silence:
        async for chunk in up.content.iter_any():
            silence.reschedule(None)
            ex.bytes_in += len(chunk)
            await sink.write(chunk)
            ex.bytes_out += len(chunk)
            silence.reschedule(loop.time() + idle)
