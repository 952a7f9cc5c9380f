"""The floor: the cheapest aiohttp server-plus-client relay, for bench/churn.py's ``relay`` column.

    python bench/relay.py PORT UPSTREAM_URL PATH

It does what the proxy's hot path cannot avoid doing with aiohttp, and nothing else: read the
request, send it upstream in 2023-06-01 over a pooled connection, answer with the upstream's
bytes chunk by chunk as they arrive, end the response once the last event has been relayed, and
read the upstream's tail off the request path (as the proxy does, issue 18) so the connection is
reused. No conversion, no validation, no logging, no metrics, no timeouts. Its events are the
upstream's own 2023-06-01 events, which the churn load recognises as well as legacy ones.

PATH ``messages``: a legacy ``/v1/complete`` is answered through ``/v1/messages`` with a fixed
body (the model and token count the churn load asks for; ``stream`` as the client asked).
PATH ``complete``: a legacy ``/v1/complete`` is sent on as it is. ``/v1/messages`` (the
pass-through case) is sent on as it is.

This is the figure the per-request targets are measured against: what the proxy costs beyond it
is the proxy's own (conversion, limits, logs, metrics), what it costs up to it is aiohttp's.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import aiohttp
import uvloop
from aiohttp import web

FORWARD = ("x-api-key", "x-sim-tokens", "x-sim-pace", "x-sim-fault")
# the end of a 2023-06-01 stream: message_stop, or a completion event with a stop reason
ENDS = (b"event: message_stop", b"event: error")
_tails: set[asyncio.Task[None]] = set()


def ended(chunk: bytes) -> bool:
    if any(e in chunk for e in ENDS):
        return True
    return b"event: completion" in chunk and b'"stop_reason": "' in chunk


async def _drain(up: aiohttp.ClientResponse) -> None:
    try:
        async for _ in up.content.iter_any():
            pass
    finally:
        up.release()


def make_app(upstream: str, path: str) -> web.Application:
    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        url = request.path
        if url == "/v1/complete" and path == "messages":
            fields = json.loads(body)
            tokens = int(request.headers.get("x-sim-tokens", "5"))
            body = json.dumps(
                {
                    "model": "claude-haiku-4-5",
                    "max_tokens": tokens + 10,
                    "messages": [{"role": "user", "content": "benchmark"}],
                    "stream": bool(fields.get("stream")),
                }
            ).encode()
            url = "/v1/messages"
        headers = {k: request.headers[k] for k in FORWARD if k in request.headers}
        headers["anthropic-version"] = "2023-06-01"
        headers["content-type"] = "application/json"
        up = await request.app["session"].post(upstream + url, data=body, headers=headers)
        resp = web.StreamResponse(
            status=up.status, headers={"content-type": up.headers.get("content-type", "")}
        )
        await resp.prepare(request)
        finished = False
        try:
            async for chunk in up.content.iter_any():
                if ended(chunk):
                    await resp.write_eof(chunk)
                    finished = True
                    break
                await resp.write(chunk)
        finally:
            if finished:
                task = asyncio.create_task(_drain(up))
                _tails.add(task)
                task.add_done_callback(_tails.discard)
            else:
                up.release()
        if not finished:
            await resp.write_eof()
        return resp

    async def session(app: web.Application) -> Any:
        app["session"] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        yield
        await app["session"].close()

    app = web.Application()
    app.cleanup_ctx.append(session)
    app.router.add_post("/v1/complete", relay)
    app.router.add_post("/v1/messages", relay)
    return app


def main() -> None:
    port, upstream, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    uvloop.install()
    web.run_app(make_app(upstream, path), host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
