"""The proxy handler: convert legacy /v1/complete, pass everything else through. SHELL.

All format logic lives in the core (legacy, convert); this module moves bytes, applies timeouts
and limits, and turns what happened into one log line and a few metric samples.

A converted stream runs as two coroutines (spec rule 7): the handler reads the upstream and feeds
the converter; a writer task writes to the client. While a write is waiting for the client to
drain, the converter is told the client is behind and holds only the latest snapshot, so reading
never stops and nothing queues up; the writer sends the held snapshot when the client catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import aiohttp
from aiohttp import web

from proxy import legacy
from proxy.convert import Stats, StreamConverter
from proxy.errors import (
    BadRequest,
    Overloaded,
    PayloadTooLarge,
    ProxyError,
    ShuttingDown,
    UpstreamError,
    UpstreamTimeout,
)
from proxy.logs import get_logger
from proxy.metrics import Metrics, status_class
from proxy.settings import Settings
from proxy.translate.messages import message_to_completion, messages_request_body
from proxy.upstream import Opened, Upstream, end_to_end

SSE_HEADERS: Final = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx and friends: do not hold events back
}
# Upstream response headers a converted or error response keeps (spec section 4).
KEPT_HEADERS: Final = ("request-id", "retry-after", "content-type", "content-encoding")
READ_CHUNK: Final = 1 << 16


@dataclass(frozen=True, slots=True)
class _Via:
    """What answers a legacy /v1/complete: Text Completions, or Messages (spec section 6)."""

    kind: Literal["complete", "messages"]
    legacy_model: str | None  # the name the client asked for, reported back to it


@dataclass(eq=False)
class ServerState:
    """Requests in flight, as the overload cap and the shutdown drain see them."""

    draining: bool = False
    deadline_passed: bool = False
    in_flight: int = 0
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def enter(self) -> None:
        self.in_flight += 1
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        self.idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        task = asyncio.current_task()
        if task is not None:
            self.tasks.discard(task)
        if self.in_flight == 0:
            self.idle.set()

    def end_all(self) -> None:
        """The drain deadline passed: interrupt every request still in flight. Each ends as it
        must: a converted stream with the legacy error event (spec rule 6), a request not yet
        answered with a 503, a relayed body by a cut."""
        self.deadline_passed = True
        for task in self.tasks:
            task.cancel()

    def deadline_cancel(self) -> bool:
        """Called where a request task caught CancelledError: True, with the cancellation taken
        back, when it was the drain deadline's (the handler then ends the request itself);
        False when the client left (the cancellation goes on)."""
        task = asyncio.current_task()
        if not self.deadline_passed or task is None or task.cancelling() == 0:
            return False
        task.uncancel()
        return True


@dataclass
class RequestLog:
    """What the request's single log line and its metric samples say."""

    request_id: str
    method: str
    mode: str = "passthrough"
    route: str = "other"
    status: int = 0
    outcome: str = "ok"
    stream: bool = False
    client: str | None = None
    upstream_request_id: str | None = None
    upstream_status_class: str | None = None
    upstream_first_byte_s: float | None = None
    events_in: int = 0
    events_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    error: str | None = None
    settled: bool = False  # a converted stream decided its own outcome (rule 8)


def route_of(path: str) -> str:
    if path == "/v1/complete":
        return "complete"
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return "messages"
    return "other"


def error_response(exc: ProxyError, **headers: str) -> web.Response:
    return web.Response(
        status=exc.status,
        body=legacy.error_body(exc.error_type, exc.message),
        content_type="application/json",
        headers=headers,
    )


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


class _ClientWriter:
    """The writer half of a converted stream (see the module docstring)."""

    __slots__ = (
        "_conv",
        "_done",
        "_first_t",
        "_hist",
        "_parts",
        "_resp",
        "_wake",
        "bytes_written",
        "delivered_end",
        "failed",
    )

    def __init__(self, resp: web.StreamResponse, conv: StreamConverter, hist: Any) -> None:
        self._resp = resp
        self._conv = conv
        self._hist = hist
        self._parts: list[bytes] = []
        self._first_t: float | None = None
        self._wake = asyncio.Event()
        self._done = False
        self.failed = False
        self.bytes_written = 0
        # the final event (and [DONE]) reached the client transport: the stream is "ok" (rule 8)
        self.delivered_end = False

    def push(self, data: bytes, arrived: float) -> None:
        if data:
            self._parts.append(data)
            if self._first_t is None:
                self._first_t = arrived
            self._wake.set()

    def finish(self) -> None:
        self._done = True
        self._wake.set()

    async def run(self) -> None:
        conv = self._conv
        clock = time.perf_counter
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while True:
                    data = b"".join(self._parts) if self._parts else b""
                    self._parts.clear()
                    # a held snapshot is never older than what is queued: the converter holds
                    # snapshots only while behind, and a final or error event clears it
                    data += conv.take_pending()
                    if not data:
                        break
                    # push() and the converter's finishing happen in one step of the reader, so
                    # once it is finished its last bytes are in ``data`` or were written before
                    ends_ok = conv.outcome == "ok"
                    if self._first_t is not None:
                        # handed to the transport synchronously inside write(); any wait after
                        # that is the client's backpressure, not the proxy's latency
                        self._hist.observe(clock() - self._first_t)
                        self._first_t = None
                    conv.behind = True
                    await self._resp.write(data)
                    conv.behind = False
                    self.bytes_written += len(data)
                    self.delivered_end = ends_ok
                    if self._parts:
                        # bytes that arrived while the client held the write up: the proxy's
                        # own time for them starts now
                        self._first_t = clock()
                if self._done:
                    return
        except (ConnectionError, aiohttp.ClientConnectionResetError, RuntimeError):
            # the client went away; the handler notices through `failed` or its cancellation
            self.failed = True


class ProxyHandler:
    def __init__(
        self, settings: Settings, upstream: Upstream, metrics: Metrics, state: ServerState
    ) -> None:
        self.settings = settings
        self.upstream = upstream
        self.metrics = metrics
        self.state = state
        self.log = get_logger()
        self._client_labels = metrics.client_labels
        self._deprecation = deprecation_headers(settings)

    # -- entry ---------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        t0 = time.perf_counter()
        info = RequestLog(request_id="req_proxy_" + uuid.uuid4().hex[:20], method=request.method)
        response: web.StreamResponse | None = None
        counted = False
        info.route = route_of(request.path)
        try:
            if self.state.draining:
                raise ShuttingDown("the proxy is shutting down; retry")
            mode = legacy.classify(
                request.headers.get("anthropic-version"), self.settings.legacy.missing_version
            )
            if mode == "reject":
                raise BadRequest("the anthropic-version header is required")
            is_legacy = mode == "legacy"
            convert = is_legacy and info.route == "complete" and request.method == "POST"
            info.mode = "convert" if convert else "passthrough"
            if is_legacy:
                cid = legacy.client_id(
                    request.headers.get("anthropic-sdk"),
                    request.headers.get("client"),
                    request.headers.get("user-agent"),
                )
                info.client = self._client_labels.label(cid)
            if self.state.in_flight >= self.settings.limits.max_streams:
                raise Overloaded("too many concurrent requests through the proxy; retry later")
            self.state.enter()
            self.metrics.streams_in_progress.labels(info.mode).inc()
            counted = True
            try:
                if convert:
                    response = await self._convert(request, info)
                else:
                    response = await self._passthrough(request, info, is_legacy)
            except asyncio.CancelledError:
                # responses that had started end themselves at the deadline (or, in their last
                # moments, end as cancelled); this one had not started
                if info.status or not self.state.deadline_cancel():
                    raise
                raise ShuttingDown(
                    "the proxy shut down before the upstream answered; retry"
                ) from None
        except ProxyError as exc:
            info.error = exc.message
            info.outcome = _OUTCOME_OF.get(type(exc), "upstream_error")
            if isinstance(exc, UpstreamError):
                info.upstream_status_class = (
                    "timeout" if isinstance(exc, UpstreamTimeout) else "unreachable"
                )
            response = error_response(exc)
            if isinstance(exc, ShuttingDown):
                response.force_close()  # a kept-alive client must reconnect, to another replica
        except asyncio.CancelledError:
            if not info.settled:
                info.outcome = "client_gone"
            raise
        finally:
            if counted:
                self.state.leave()
                self.metrics.streams_in_progress.labels(info.mode).dec()
            if response is not None:
                info.status = response.status
            self._record(info, time.perf_counter() - t0)
        return response

    # -- legacy /v1/complete -----------------------------------------------------------------------

    async def _convert(self, request: web.Request, info: RequestLog) -> web.StreamResponse:
        if "last-event-id" in request.headers:
            # an EventSource client's automatic retry after a failed stream: a completion cannot
            # be resumed, and forwarding would pay for a second one (spec section 1, rule 5)
            self.metrics.resume_refused.inc()
            raise BadRequest("streams cannot be resumed; send a new request")
        body = await _read_body(request, self.settings.limits.max_body_bytes)
        fields = legacy.parse_request(body)
        stream = fields.get("stream") is True
        info.stream = stream
        path = request.rel_url.raw_path_qs
        target = self.settings.messages.target(fields.get("model"))
        via = _Via("complete", None)
        if target is not None:
            # a model that only speaks the Messages API (spec section 6)
            info.route = "complete_via_messages"
            legacy_model = fields.get("model")
            via = _Via("messages", legacy_model if isinstance(legacy_model, str) else None)
            body = messages_request_body(fields, target)
            path = "/v1/messages"
        headers = end_to_end(request.headers, lower=True)
        headers.popall("content-length", None)  # recomputed for the bytes we send
        headers["anthropic-version"] = legacy.UPSTREAM_VERSION
        headers["accept-encoding"] = "identity"
        t = self.settings.timeouts
        opened = await self.upstream.open(
            "POST",
            path,
            headers,
            body,
            headers_timeout=t.stream_headers if stream else t.headers,
            read_timeout=t.idle if stream else t.headers,
        )
        up = opened.response
        try:
            self._note_upstream(info, opened)
            if up.status >= 300:
                info.outcome = "upstream_error"
                return await self._relay_buffered(up, info)
            if not stream:
                return await self._complete_body(up, info, via)
            ctype = up.headers.get("content-type", "")
            if not ctype.lower().startswith("text/event-stream"):
                raise UpstreamError("upstream did not answer with an event stream")
            return await self._stream(request, up, info, via)
        finally:
            up.close()  # an unread body must not go back to the pool; a no-op when read

    async def _complete_body(
        self, up: aiohttp.ClientResponse, info: RequestLog, via: _Via
    ) -> web.Response:
        limit = self.settings.limits.max_body_bytes
        raw = await _read_upstream(up, limit)
        inflater = Inflater.for_response(up)
        if inflater is not None:
            size, parts = 0, []
            for piece in inflater.pieces(raw):
                size += len(piece)
                if size > limit:  # checked on what it inflates to, not on the wire bytes
                    raise UpstreamError("upstream response body is too large")
                parts.append(piece)
            inflater.check_complete()
            raw = b"".join(parts)
        ctype = up.headers.get("content-type", "")
        converted: bytes | None = None
        if "json" not in ctype.lower():
            pass  # only a successful JSON response is rewritten (spec section 3)
        elif via.kind == "messages":
            result = message_to_completion(raw, via.legacy_model)
            if result is not None:
                converted, dropped, known = result
                self._record_translator({"dropped_blocks": dropped, "other_stop_reason": not known})
        else:
            converted = legacy.legacy_completion_body(raw)
        headers = {k: up.headers[k] for k in ("request-id", "retry-after") if k in up.headers}
        info.bytes_in, info.bytes_out = len(raw), len(converted or raw)
        return web.Response(
            status=up.status,
            body=converted if converted is not None else raw,
            headers={**headers, **self._deprecation, "Content-Type": ctype or "application/json"},
        )

    async def _relay_buffered(self, up: aiohttp.ClientResponse, info: RequestLog) -> web.Response:
        """A non-2xx answer: status, body and the headers that matter, unchanged (spec 4)."""
        raw = await _read_upstream(up, self.settings.limits.max_body_bytes)
        headers = {k: up.headers[k] for k in KEPT_HEADERS if k in up.headers}
        headers.update(self._deprecation)
        info.bytes_in = info.bytes_out = len(raw)
        return web.Response(status=up.status, body=raw, headers=headers)

    async def _stream(
        self, request: web.Request, up: aiohttp.ClientResponse, info: RequestLog, via: _Via
    ) -> web.StreamResponse:
        settings = self.settings
        inflater = Inflater.for_response(up)
        sdk = legacy.client_id(request.headers.get("anthropic-sdk"), None, None)
        event_id = (
            info.request_id if legacy.wants_event_ids(settings.legacy.event_ids, sdk) else None
        )
        conv = StreamConverter(
            via.kind,
            legacy_model=via.legacy_model,
            pings=settings.legacy.pings == "forward",
            event_id=event_id,
            max_event_bytes=settings.limits.max_event_bytes,
        )
        resp = web.StreamResponse(status=200, headers={**SSE_HEADERS, **self._deprecation})
        if "request-id" in up.headers:
            resp.headers["request-id"] = up.headers["request-id"]
        await resp.prepare(request)
        info.status = resp.status
        if request.transport is not None:
            request.transport.set_write_buffer_limits(high=settings.limits.write_high_water_bytes)
        writer = _ClientWriter(resp, conv, self.metrics.added_latency)
        writer_task = asyncio.create_task(writer.run())
        deadline = False
        try:
            try:
                await self._pump(up, conv, writer, inflater)
            except asyncio.CancelledError:
                if not self.state.deadline_cancel():
                    raise
                deadline = True  # shutdown's drain deadline passed (spec rule 6)
                writer.push(conv.abort("drain_deadline"), time.perf_counter())
            writer.finish()
            try:
                # past the deadline the error event gets a moment, not the client's pace
                await (asyncio.wait_for(writer_task, 1.0) if deadline else writer_task)
            except TimeoutError:
                writer.failed = True
            except asyncio.CancelledError:
                if not self.state.deadline_cancel():
                    raise
                deadline = True  # the client was behind when the drain deadline passed
                writer_task.cancel()
                writer.failed = True
            if conv.failed or writer.failed or not writer.delivered_end:
                _end_abnormally(request)
            else:
                await resp.write_eof()
                await _finish_for_reuse(up)
            return resp
        finally:
            if not writer_task.done():
                writer_task.cancel()
            stats = conv.stats()
            info.events_in = sum(stats.events_in.values())
            info.events_out = sum(stats.events_out.values())
            info.bytes_in, info.bytes_out = stats.bytes_in, writer.bytes_written
            info.settled = True
            if stats.outcome == "ok" and writer.delivered_end:
                info.outcome = "ok"  # even if the client then left before [DONE] (rule 8)
            elif stats.outcome not in (None, "ok"):
                info.outcome, info.error = "stream_error", stats.outcome
            elif deadline:
                info.outcome, info.error = "stream_error", "drain_deadline"
            else:
                info.outcome = "client_gone"  # it left before the final event reached it
            self._record_stream(stats, writer.bytes_written)

    async def _pump(
        self,
        up: aiohttp.ClientResponse,
        conv: StreamConverter,
        writer: _ClientWriter,
        inflater: Inflater | None,
    ) -> None:
        clock = time.perf_counter
        push = writer.push
        feed = conv.feed
        try:
            async for chunk in up.content.iter_any():
                t = clock()
                if inflater is None:
                    push(feed(chunk), t)
                else:
                    for piece in inflater.pieces(chunk):
                        push(feed(piece), t)
                if conv.finished or writer.failed:
                    return
            push(conv.close(), clock())
        except aiohttp.ServerTimeoutError:
            push(conv.abort("upstream_timeout"), clock())  # silent past the idle limit
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
            push(conv.abort("upstream_closed"), clock())
        except UpstreamError:  # a corrupt compressed body
            push(conv.abort("invalid_event"), clock())

    # -- everything else -----------------------------------------------------------------------

    async def _passthrough(
        self, request: web.Request, info: RequestLog, is_legacy: bool
    ) -> web.StreamResponse:
        limit = self.settings.limits.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        headers = end_to_end(request.headers, lower=True)
        if is_legacy:
            # the route did not exist in 2023-01-01: no legacy shape to restore (spec section 5)
            headers["anthropic-version"] = legacy.UPSTREAM_VERSION
        body = _LimitedBody(request, limit) if request.body_exists else None
        t = self.settings.timeouts
        try:
            opened = await self.upstream.open(
                request.method,
                request.rel_url.raw_path_qs,
                headers,
                body,
                headers_timeout=t.headers,
                read_timeout=t.headers,
            )
        except UpstreamError:
            if body is not None and body.too_large:  # aiohttp reports it as a broken connection
                raise PayloadTooLarge(f"request body is larger than {limit} bytes") from None
            raise
        up = opened.response
        try:
            self._note_upstream(info, opened)
            if up.status >= 300:
                info.outcome = "upstream_error"
            resp = web.StreamResponse(status=up.status, reason=up.reason)
            for k, v in end_to_end(up.headers).items():
                resp.headers.add(k, v)
            await resp.prepare(request)
            info.status = resp.status
            try:
                await self._relay(up, resp, info, t.idle)
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError):
                info.outcome, info.error = "stream_error", "upstream_closed"
                _end_abnormally(request)  # a cut body must not look complete downstream
                return resp
            except asyncio.CancelledError:
                if not self.state.deadline_cancel():
                    raise
                info.outcome, info.error = "stream_error", "drain_deadline"
                _end_abnormally(request)
                return resp
            await resp.write_eof()
            return resp
        finally:
            up.close()

    @staticmethod
    async def _relay(
        up: aiohttp.ClientResponse, resp: web.StreamResponse, info: RequestLog, idle: float
    ) -> None:
        """Relay the body as received. Silence from the upstream past ``idle`` is a failure;
        time spent waiting for a slow client is not counted as the upstream's silence."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(loop.time() + idle) as silence:
            async for chunk in up.content.iter_any():
                silence.reschedule(None)
                info.bytes_in += len(chunk)
                await resp.write(chunk)
                info.bytes_out += len(chunk)
                silence.reschedule(loop.time() + idle)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _note_upstream(self, info: RequestLog, opened: Opened) -> None:
        info.upstream_request_id = opened.response.headers.get("request-id")
        info.upstream_status_class = status_class(opened.response.status)
        info.upstream_first_byte_s = opened.first_byte_s

    def _record_stream(self, stats: Stats, bytes_written: int) -> None:
        """``bytes_written``: what reached the client transport, not what the converter made."""
        m = self.metrics
        for kind, n in stats.events_in.items():
            if n:
                m.upstream_events.labels(kind).inc(n)
        for kind, n in stats.events_out.items():
            if n:
                m.legacy_events.labels(kind).inc(n)
        m.stream_bytes.labels("in").inc(stats.bytes_in)
        m.stream_bytes.labels("out").inc(bytes_written)
        if stats.snapshots_skipped:
            m.snapshots_skipped.inc(stats.snapshots_skipped)
        if stats.events_in.get("unknown"):
            m.unknown_events.inc(stats.events_in["unknown"])
        if stats.outcome not in (None, "ok"):
            m.stream_errors.labels(stats.outcome).inc()
        self._record_translator(stats.translator)

    def _record_translator(self, counts: Mapping[str, int]) -> None:
        if counts.get("dropped_blocks"):
            self.metrics.messages_dropped_blocks.inc(counts["dropped_blocks"])
        if counts.get("other_stop_reason"):
            self.metrics.messages_other_stop_reasons.inc(counts["other_stop_reason"])

    def _record(self, info: RequestLog, duration: float) -> None:
        m = self.metrics
        m.requests.labels(info.mode, info.route, info.outcome).inc()
        m.request_duration.labels(info.mode, info.route).observe(duration)
        if info.upstream_status_class is not None:
            m.upstream_responses.labels(info.upstream_status_class).inc()
        if info.upstream_first_byte_s is not None:
            m.upstream_first_byte.labels(info.mode).observe(info.upstream_first_byte_s)
        if info.client is not None:
            m.legacy_requests.labels(info.client, "true" if info.stream else "false").inc()
            m.migration.record(info.client, streamed=info.stream, ok=info.outcome == "ok")
        self.log.info(
            "request.done",
            request_id=info.request_id,
            method=info.method,
            mode=info.mode,
            route=info.route,
            stream=info.stream,
            status=info.status,
            outcome=info.outcome,
            error=info.error,
            duration_s=round(duration, 6),
            upstream_request_id=info.upstream_request_id,
            upstream_first_byte_s=(
                None if info.upstream_first_byte_s is None else round(info.upstream_first_byte_s, 6)
            ),
            client=info.client,
            events_in=info.events_in,
            events_out=info.events_out,
            bytes_in=info.bytes_in,
            bytes_out=info.bytes_out,
        )


_OUTCOME_OF: Final[dict[type[ProxyError], str]] = {
    BadRequest: "bad_request",
    PayloadTooLarge: "bad_request",
    Overloaded: "overloaded",
    ShuttingDown: "overloaded",
    UpstreamError: "upstream_error",
    UpstreamTimeout: "upstream_error",
}


def _end_abnormally(request: web.Request) -> None:
    """End the response without its chunked terminator, so no client can take a failed stream for
    a complete one (spec rule 5). Buffered bytes (the legacy error event) are flushed first."""
    transport = request.transport
    if transport is not None and not transport.is_closing():
        transport.close()


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


class _LimitedBody:
    """A request body streamed upstream, cut at ``limit`` bytes. ``too_large`` tells the handler
    why the upstream request failed: aiohttp reports an error raised here as a broken
    connection."""

    __slots__ = ("_limit", "_request", "too_large")

    def __init__(self, request: web.Request, limit: int) -> None:
        self._request = request
        self._limit = limit
        self.too_large = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in self._request.content.iter_chunked(READ_CHUNK):
            size += len(chunk)
            if size > self._limit:
                self.too_large = True
                raise PayloadTooLarge(f"request body is larger than {self._limit} bytes")
            yield chunk


async def _finish_for_reuse(up: aiohttp.ClientResponse) -> None:
    """After a converted stream's final event the body's last bytes (Messages' message_stop, the
    chunked terminator) usually follow at once. Reading them, briefly and boundedly, lets the
    connection go back to the pool: otherwise the next stream pays a new TCP and TLS handshake."""
    size = 0
    with contextlib.suppress(TimeoutError, aiohttp.ClientError):
        async with asyncio.timeout(1.0):
            async for chunk in up.content.iter_any():
                size += len(chunk)
                if size > READ_CHUNK:
                    return  # more than a last event: close it rather than read on


async def _read_upstream(up: aiohttp.ClientResponse, limit: int) -> bytes:
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
