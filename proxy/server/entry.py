"""Every request enters here once: admission, who the client is, which route answers it; errors
become responses in the API's shape; the exchange is recorded once, at the end. SHELL."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Final

from aiohttp import web

from proxy import legacy
from proxy.errors import (
    BadRequest,
    Overloaded,
    PayloadTooLarge,
    ProxyError,
    RequestTimeout,
    ShuttingDown,
    UpstreamError,
    UpstreamTimeout,
)
from proxy.metrics import Children
from proxy.server.bodies import read_body
from proxy.server.exchange import Exchange
from proxy.server.relay import CompleteCall, Deps, error_response
from proxy.server.routes import complete, messages, passthrough

_OUTCOME_OF: Final[dict[type[ProxyError], str]] = {
    BadRequest: "bad_request",
    PayloadTooLarge: "bad_request",
    RequestTimeout: "bad_request",
    Overloaded: "overloaded",
    ShuttingDown: "overloaded",
    UpstreamError: "upstream_error",
    UpstreamTimeout: "upstream_error",
}


# Request ids: 80 random bits from a generator seeded once from the OS. uuid4 reads the OS's
# random source on every call, a system call per request; these ids correlate log lines and
# event ids, they guard nothing
_ids: Final = random.Random()


def route_of(path: str) -> str:
    if path == "/v1/complete":
        return "complete"
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return "messages"
    return "other"


class Entry:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._client_labels = deps.metrics.client_labels
        self._in_progress = Children(deps.metrics.streams_in_progress)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        deps = self.deps
        state = deps.state
        t0 = time.perf_counter()
        ex = Exchange(request_id=f"req_proxy_{_ids.getrandbits(80):020x}", method=request.method)
        response: web.StreamResponse | None = None
        counted = False
        ex.route = route_of(request.path)
        try:
            if state.draining:
                raise ShuttingDown("the proxy is shutting down; retry")
            mode = legacy.classify(
                request.headers.get("anthropic-version"), deps.settings.legacy.missing_version
            )
            if mode == "reject":
                raise BadRequest("the anthropic-version header is required")
            is_legacy = mode == "legacy"
            # Text Completions is converted for legacy clients, and for 2023-06-01 and later ones
            # when it goes through Messages: no model is left on /v1/complete (spec section 6);
            # any other version passes through, for the upstream to judge (section 9, 5)
            convert = (
                ex.route == "complete"
                and request.method == "POST"
                and (
                    is_legacy
                    or (
                        deps.settings.complete.upstream == "messages"
                        and legacy.is_modern_version(request.headers.get("anthropic-version"))
                    )
                )
            )
            ex.mode = "convert" if convert else "passthrough"
            if is_legacy:
                cid = legacy.client_id(
                    request.headers.get("anthropic-sdk"),
                    request.headers.get("client"),
                    request.headers.get("user-agent"),
                )
                ex.client = self._client_labels.label(cid)
            limits = deps.settings.limits
            if state.in_flight >= limits.max_streams:
                raise Overloaded("too many concurrent requests through the proxy; retry later")
            if state.pending_bytes > limits.max_pending_bytes:
                # slow clients hold this much unsent output already: taking more streams would
                # only grow it (issue 14); they catch up, or are cut after client_write
                deps.metrics.pending_refused.inc()
                raise Overloaded("the proxy is holding too much output for slow clients; retry")
            # the serving loop, looked up once by Upstream.start: on Python 3.11 current_task()
            # without it is a getpid system call (proxy.server.deadline)
            task = asyncio.current_task(deps.upstream.loop)
            state.enter(task)
            self._in_progress(ex.mode).inc()
            counted = True
            try:
                if convert:
                    response = await self._complete(request, ex, is_legacy)
                else:
                    response = await passthrough.handle(deps, request, ex, is_legacy)
            except asyncio.CancelledError:
                # responses that had started end themselves at the deadline (or, in their last
                # moments, end as cancelled); this one had not started
                if ex.status or not state.deadline_cancel():
                    raise
                raise ShuttingDown(
                    "the proxy shut down before the upstream answered; retry"
                ) from None
        except ProxyError as exc:
            ex.error = exc.message
            ex.outcome = _OUTCOME_OF.get(type(exc), "upstream_error")
            if isinstance(exc, UpstreamError):
                ex.upstream_status_class = (
                    "timeout" if isinstance(exc, UpstreamTimeout) else "unreachable"
                )
            response = error_response(exc)
            if isinstance(exc, ShuttingDown | RequestTimeout):
                # shutting down: a kept-alive client must reconnect, to another replica; a body
                # that never came: the connection is out of step, and holds nothing worth keeping
                response.force_close()
        except asyncio.CancelledError:
            if not ex.settled:
                ex.outcome = "client_gone"
            raise
        finally:
            if counted:
                state.leave(task)
                self._in_progress(ex.mode).dec()
            if response is not None:
                ex.status = response.status
            deps.recorder.done(ex, time.perf_counter() - t0)
        return response

    async def _complete(
        self, request: web.Request, ex: Exchange, is_legacy: bool
    ) -> web.StreamResponse:
        """A Text Completions call: read it once, then pick the route that answers it."""
        deps = self.deps
        if "last-event-id" in request.headers:
            # an EventSource client's automatic retry after a failed stream: a completion cannot
            # be resumed, and forwarding would pay for a second one (spec section 1, rule 5)
            deps.metrics.resume_refused.inc()
            raise BadRequest("streams cannot be resumed; send a new request")
        body = await read_body(
            request, deps.settings.limits.max_body_bytes, deps.settings.timeouts.request_body
        )
        fields = legacy.parse_request(body)
        call = CompleteCall(body, fields, fields.get("stream") is True)
        ex.stream = call.stream
        model = fields.get("model")
        via = deps.settings.messages
        if deps.settings.complete.upstream == "messages":
            targets = via.targets(model)
            return await messages.handle(
                deps, request, ex, call, targets, "legacy" if is_legacy else "modern"
            )
        target = via.target(model)  # complete mode: only the names [messages] maps
        if target is not None:
            return await messages.handle(deps, request, ex, call, (target,), "legacy")
        return await complete.handle(deps, request, ex, call)
