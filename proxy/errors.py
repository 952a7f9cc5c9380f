"""The proxy's own errors: a small tree, each with the HTTP status and API error type it maps to.

    ProxyError                      500 api_error         anything the proxy means to say
    ├── ConfigError                 (start-up only)       bad configuration: names the key
    ├── ListenError                 (start-up only)       a listener could not be opened
    ├── BadRequest                  400 invalid_request_error
    │   ├── PayloadTooLarge         413 request_too_large
    │   └── RequestTimeout          408 invalid_request_error  body not sent in time
    ├── Overloaded                  529 overloaded_error  concurrent stream cap reached
    ├── ShuttingDown                503 api_error         arrived while draining for shutdown
    ├── UpstreamError               502 api_error         upstream unreachable or not SSE
    │   └── UpstreamTimeout         504 api_error         no headers within the timeout
    └── StreamError                 (mid-stream)          reason from a fixed set, a metric label

Anything else escaping a handler is a bug. The core (sse, legacy, translate, convert) raises only
StreamError (from the decoder) and BadRequest (from request rewrites).
"""

from __future__ import annotations

from typing import Final, Literal, get_args

StreamErrorReason = Literal[
    "upstream_error_event",
    "upstream_closed",
    "upstream_timeout",
    "invalid_event",
    "event_too_large",
    "drain_deadline",
]
STREAM_ERROR_REASONS: Final[tuple[StreamErrorReason, ...]] = get_args(StreamErrorReason)

# What a legacy client reads in `exception` when the proxy, not the upstream, ends a stream
# (spec rules 6 and 7). The upstream's own error events carry their own message.
STREAM_ERROR_MESSAGES: Final[dict[StreamErrorReason, str]] = {
    "upstream_error_event": "upstream sent an error event",
    "upstream_closed": "upstream closed the stream early",
    "upstream_timeout": "upstream sent nothing within the idle timeout",
    "invalid_event": "upstream sent an invalid event",
    "event_too_large": "upstream event too large",
    "drain_deadline": "proxy shut down before the stream finished",
}


class ProxyError(Exception):
    status: int = 500
    error_type: str = "api_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(ProxyError):
    """A setting is wrong. Start-up prints `config error: <key>: <problem>` and exits 2."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class ListenError(ProxyError):
    """A listener could not be opened (port taken, host not bound or not resolved). Start-up
    prints `could not listen: <key>: <problem>` and exits 3: the settings were valid, the machine
    refused them, so a supervisor may retry where it would not for a configuration error."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class BadRequest(ProxyError):
    status = 400
    error_type = "invalid_request_error"


class PayloadTooLarge(BadRequest):
    status = 413
    error_type = "request_too_large"


class RequestTimeout(BadRequest):
    """The request body did not arrive within ``timeouts.request_body``."""

    status = 408


class Overloaded(ProxyError):
    status = 529
    error_type = "overloaded_error"


class ShuttingDown(ProxyError):
    status = 503


class UpstreamError(ProxyError):
    status = 502


class UpstreamTimeout(UpstreamError):
    status = 504


class StreamError(ProxyError):
    """A stream cannot go on. `reason` is one of STREAM_ERROR_REASONS (a metric label)."""

    def __init__(self, reason: StreamErrorReason, message: str | None = None) -> None:
        super().__init__(message or STREAM_ERROR_MESSAGES[reason])
        self.reason: StreamErrorReason = reason
