"""An upstream simulator that speaks only API 2023-06-01, for the demo, tests and benchmarks.

    python -m proxy.simulator [--host 127.0.0.1] [--port 8700] [--tokens 20] [--pace 0]
                              [--ping-every 0]

It answers in the 2023-06-01 format whatever ``anthropic-version`` the client sent, like today's
API, so a legacy client pointed at it directly breaks exactly as it breaks against the real API.
It shares no code with the converter (an independent implementation of the other side).

Routes: POST /v1/complete (streaming and not), POST /v1/messages (streaming and not),
GET /v1/models, GET /_sim/stats, POST /_sim/reset. Requests without ``x-api-key`` get 401.

Per-request headers: ``x-sim-tokens`` (token count), ``x-sim-pace`` (seconds between events), and
``x-sim-fault`` (comma-separated):

    status:<code>        the API's error body for that status (429 adds retry-after: 7)
    error-after:<n>      an overloaded_error event after n completion events, then a clean end
    reset-after:<n>      abort the connection after n events
    eof-after:<n>        end the body cleanly after n events, without a stop_reason
    stall-after:<n>      n events, then silence until the client leaves
    linger:<s>           wait s seconds after the last event before ending the body
    not-sse              200 application/json to a streaming request
    invalid-json-after:<n>  an event whose data is not JSON after n events
    gzip                 compress the body even though the client asked for identity
    slow-headers:<s>     wait s seconds before the response headers
    comments             interleave ": keepalive", "retry:" and "id:" lines
    crlf | cr            CR LF or CR line ends
    split                write every event in 3-byte pieces (cuts CR LF pairs and characters)
    unknown-event        interleave an unknown "event: content_filter" event
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import gzip
import json
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

WORDS: Final = (
    " Hello", " world", ",", " caf\u00e9", " \u65e5\u672c\u8a9e", " \U0001f600",
    ' "quoted"', " back\\slash", "\n", " and", " more", " text", ".",
)  # fmt: skip


def token(i: int) -> str:
    return WORDS[i % len(WORDS)]


def expected_text(n_tokens: int) -> str:
    """The full text of a completion of ``n_tokens`` tokens."""
    return "".join(token(i) for i in range(n_tokens))


@dataclass
class SimConfig:
    tokens: int = 20
    pace: float = 0.0
    ping_every: int = 0
    model: str = "claude-2.0"
    fault: str = ""  # x-sim-fault for requests that send none (SDKs cannot add headers)


@dataclass
class SimStats:
    requests: int = 0
    by_path: Counter[str] = field(default_factory=Counter)
    open_streams: int = 0
    completed_streams: int = 0
    client_disconnects: int = 0
    last_requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=50))
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def view(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_path": dict(self.by_path),
            "open_streams": self.open_streams,
            "completed_streams": self.completed_streams,
            "client_disconnects": self.client_disconnects,
            "last_requests": list(self.last_requests),
        }

    async def wait_disconnects(self, n: int, within_s: float) -> None:
        async with asyncio.timeout(within_s):
            while self.client_disconnects < n:
                self.changed.clear()
                await self.changed.wait()


SIM_CONFIG_KEY: Final = web.AppKey("sim_config", SimConfig)
SIM_STATS_KEY: Final = web.AppKey("sim_stats", SimStats)
ERROR_TYPES: Final = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    500: "api_error", 529: "overloaded_error",
}  # fmt: skip


def _error(status: int, message: str, **headers: str) -> web.Response:
    body = {
        "type": "error",
        "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
    }
    return web.json_response(body, status=status, headers=headers)


def _faults(request: web.Request) -> dict[str, str]:
    out = {}
    default = request.app[SIM_CONFIG_KEY].fault
    for item in request.headers.get("x-sim-fault", default).split(","):
        name, _, arg = item.strip().partition(":")
        if name:
            out[name] = arg
    return out


def _sse(name: str, obj: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


@functools.lru_cache(maxsize=1024)
def _completion_event(word: int, model: str) -> bytes:
    """A token's completion event, encoded once: the words repeat, and encoding the same JSON
    again for every event of every stream was most of the simulator's own cost in benchmarks."""
    return _sse(
        "completion",
        {"type": "completion", "completion": WORDS[word], "stop_reason": None, "model": model},
    )


# an event as the handlers build it: a name and the object to encode, or the encoded bytes
Event = tuple[str, "dict[str, Any] | bytes"]


class Simulator:
    def __init__(self, config: SimConfig, stats: SimStats) -> None:
        self.config = config
        self.stats = stats

    async def _begin(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        raw = await request.read()
        headers = {
            k: ("<redacted>" if k.lower() in ("x-api-key", "authorization") else v)
            for k, v in request.headers.items()
        }
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        s = self.stats
        s.requests += 1
        s.by_path[request.path] += 1
        s.last_requests.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": headers,
                "json": body,
                "anthropic_version": request.headers.get("anthropic-version"),
            }
        )
        s.changed.set()
        faults = _faults(request)
        if "slow-headers" in faults:
            await asyncio.sleep(float(faults["slow-headers"]))
        if "x-api-key" not in request.headers and "authorization" not in request.headers:
            return {}, _error(401, "x-api-key header is required")
        if not isinstance(body, dict):
            return {}, _error(400, "request body is not valid JSON")
        if "status" in faults:
            status = int(faults["status"])
            extra = {"retry-after": "7"} if status == 429 else {}
            return {}, _error(status, f"simulated {status}", **extra)
        return body, None

    def _params(
        self, request: web.Request, body: dict[str, Any], limit_key: str
    ) -> tuple[int, float]:
        n = int(request.headers.get("x-sim-tokens", self.config.tokens))
        limit = body.get(limit_key)
        if isinstance(limit, int) and limit > 0:
            n = min(n, limit)
        return n, float(request.headers.get("x-sim-pace", self.config.pace))

    async def complete(self, request: web.Request) -> web.StreamResponse:
        body, error = await self._begin(request)
        if error is not None:
            return error
        if not isinstance(body.get("prompt"), str):
            return _error(400, "prompt: field required")
        n, pace = self._params(request, body, "max_tokens_to_sample")
        model = body.get("model", self.config.model)
        log_id = "compl_" + uuid.uuid4().hex[:24]
        stop_reason = "max_tokens" if n == body.get("max_tokens_to_sample") else "stop_sequence"
        stop = None if stop_reason == "max_tokens" else "\n\nHuman:"
        if body.get("stream") is not True:
            await asyncio.sleep(pace * n)  # headers only once generation ends, like the API
            return web.json_response(
                {"type": "completion", "id": log_id, "completion": expected_text(n),
                 "stop_reason": stop_reason, "model": model, "stop": stop, "log_id": log_id},
                headers={"request-id": "req_" + uuid.uuid4().hex[:24]},
            )  # fmt: skip
        events: list[Event] = [
            ("completion", _completion_event(i % len(WORDS), model))
            if isinstance(model, str)
            else ("completion", {"type": "completion", "completion": token(i),
                                 "stop_reason": None, "model": model})
            for i in range(n)
        ]  # fmt: skip
        every = self.config.ping_every
        if every > 0:
            for at in range(n - n % every, 0, -every):
                events.insert(at, ("ping", {"type": "ping"}))
        final = {"type": "completion", "completion": "", "stop_reason": stop_reason,
                 "model": model, "stop": stop, "log_id": log_id}  # fmt: skip
        events.append(("completion", final))
        return await self._stream(request, events, pace, "completion")

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body, error = await self._begin(request)
        if error is not None:
            return error
        n, pace = self._params(request, body, "max_tokens")
        model = body.get("model", "claude-sonnet-4-5")
        msg_id = "msg_" + uuid.uuid4().hex[:24]
        stop_reason = "max_tokens" if n == body.get("max_tokens") else "end_turn"
        usage = {"input_tokens": 10, "output_tokens": n}
        if body.get("stream") is not True:
            await asyncio.sleep(pace * n)
            return web.json_response(
                {"id": msg_id, "type": "message", "role": "assistant", "model": model,
                 "content": [{"type": "text", "text": expected_text(n)}],
                 "stop_reason": stop_reason, "stop_sequence": None, "usage": usage},
                headers={"request-id": "req_" + uuid.uuid4().hex[:24]},
            )  # fmt: skip
        start = {"id": msg_id, "type": "message", "role": "assistant", "model": model,
                 "content": [], "stop_reason": None, "stop_sequence": None,
                 "usage": {"input_tokens": 10, "output_tokens": 1}}  # fmt: skip
        events: list[Event] = [
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"}),
        ]  # fmt: skip
        events += [
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": token(i)}})
            for i in range(n)
        ]  # fmt: skip
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta",
                               "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                               "usage": {"output_tokens": n}}),
            ("message_stop", {"type": "message_stop"}),
        ]  # fmt: skip
        return await self._stream(request, events, pace, "content_block_delta")

    async def _stream(
        self,
        request: web.Request,
        events: list[Event],
        pace: float,
        counted: str,
    ) -> web.StreamResponse:
        faults = _faults(request)
        if "not-sse" in faults:
            return web.json_response({"type": "completion", "completion": "not a stream"})
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                   "request-id": "req_" + uuid.uuid4().hex[:24]}  # fmt: skip
        zip_it = "gzip" in faults
        if zip_it:
            headers["Content-Encoding"] = "gzip"
        resp = web.StreamResponse(headers=headers)
        stats = self.stats
        stats.open_streams += 1
        try:
            await resp.prepare(request)
            chunks = self._render(events, faults, counted)
            if zip_it:
                chunks = [gzip.compress(b"".join(c for c in chunks if isinstance(c, bytes)))]
            pending_pace = False
            for chunk in chunks:
                if chunk == "RESET":
                    assert request.transport is not None
                    request.transport.abort()
                    return resp
                if chunk == "STALL":
                    await asyncio.sleep(3600)
                if chunk == "EOF":
                    break
                if not isinstance(chunk, bytes):
                    continue
                if pending_pace and pace:
                    await asyncio.sleep(pace)
                pending_pace = chunk.endswith(b"\n\n") or chunk.endswith(b"\r\r")
                if "split" in faults:
                    for i in range(0, len(chunk), 3):
                        await resp.write(chunk[i : i + 3])
                        await asyncio.sleep(0)
                else:
                    await resp.write(chunk)
            if "linger" in faults:
                await asyncio.sleep(float(faults["linger"]))
            await resp.write_eof()
            stats.completed_streams += 1
            return resp
        except (asyncio.CancelledError, ConnectionError):
            stats.client_disconnects += 1
            stats.changed.set()
            raise
        finally:
            stats.open_streams -= 1
            stats.changed.set()

    @staticmethod
    def _render(events: list[Event], faults: dict[str, str], counted: str) -> list[bytes | str]:
        out: list[bytes | str] = []
        seen = 0

        def after(name: str) -> bool:
            return name in faults and seen == int(faults[name] or 0)

        for name, obj in events:
            for fault, action in (("reset-after", "RESET"), ("eof-after", "EOF"),
                                  ("stall-after", "STALL")):  # fmt: skip
                if after(fault):
                    out.append(action)
            if after("error-after"):
                out.append(_sse("error", {"type": "error", "error": {
                    "type": "overloaded_error", "message": "Overloaded"}}))  # fmt: skip
                break
            if after("invalid-json-after"):
                out.append(b"event: completion\ndata: {not json\n\n")
            if "comments" in faults:
                out.append(b": keepalive\nretry: 3000\nid: 5\n")
            if "unknown-event" in faults and seen == 1:
                out.append(_sse("content_filter", {"type": "content_filter", "flagged": False}))
            out.append(obj if isinstance(obj, bytes) else _sse(name, obj))
            if name == counted:
                seen += 1
        if "crlf" in faults or "cr" in faults:
            eol = b"\r\n" if "crlf" in faults else b"\r"
            out = [c.replace(b"\n", eol) if isinstance(c, bytes) else c for c in out]
        return out

    async def models(self, request: web.Request) -> web.Response:
        await self._begin(request)
        return web.json_response({"data": [{"id": self.config.model, "type": "model"}]})

    async def stats_view(self, _: web.Request) -> web.Response:
        return web.json_response(self.stats.view())

    async def reset(self, _: web.Request) -> web.Response:
        self.stats.__init__()  # type: ignore[misc]
        return web.json_response({"reset": True})


def create_app(config: SimConfig | None = None) -> web.Application:
    config = config or SimConfig()
    stats = SimStats()
    sim = Simulator(config, stats)
    app = web.Application()
    app[SIM_CONFIG_KEY] = config
    app[SIM_STATS_KEY] = stats
    app.router.add_post("/v1/complete", sim.complete)
    app.router.add_post("/v1/messages", sim.messages)
    app.router.add_get("/v1/models", sim.models)
    app.router.add_get("/_sim/stats", sim.stats_view)
    app.router.add_post("/_sim/reset", sim.reset)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m proxy.simulator", description="An upstream that speaks API 2023-06-01."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--tokens", type=int, default=20, help="tokens per completion")
    parser.add_argument("--pace", type=float, default=0.0, help="seconds between events")
    parser.add_argument("--ping-every", type=int, default=0, help="a ping every N events")
    parser.add_argument("--fault", default="", help="x-sim-fault for requests that send none")
    args = parser.parse_args(argv)
    config = SimConfig(
        tokens=args.tokens, pace=args.pace, ping_every=args.ping_every, fault=args.fault
    )
    print(f"simulator: 2023-06-01 upstream on http://{args.host}:{args.port}", flush=True)
    app = create_app(config)
    # As a process of its own the simulator stands in for the real API in benchmarks, so it
    # should cost as little as it can, and above all never pause: uvloop; the objects of start-up
    # (imports, the app) kept out of every later garbage collection; and full collections rare
    # (each scans every open stream's objects and, on a busy 2-core machine, paused all streams
    # at once for up to ~100 ms after 1,500 streams, which the benchmark counted as a stall of
    # whatever path it was measuring). Young collections still run, so cycles are still freed.
    gc.freeze()
    gc.set_threshold(10_000, 10, 100)
    loop = _new_loop()
    web.run_app(
        app,
        loop=loop,
        host=args.host,
        port=args.port,
        print=None,
        backlog=4096,
        handler_cancellation=True,  # notice a departing client even while sleeping
        access_log=None,
    )


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a dependency of the package, except on Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


if __name__ == "__main__":
    main()
