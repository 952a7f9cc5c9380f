"""Client connections before aiohttp sees a request: a deadline for a complete request head, a cap
on open connections, and the descriptor limit they both protect. SHELL.

aiohttp has no request-head timeout (its keep-alive timer only runs while a connection is idle
between requests, and for an hour by default), and no connection cap: 2,000 connections that each
sent ``POST /v1/comp`` and waited held a descriptor each for ever, until accept(), the admin
probes and the upstream connects all failed with EMFILE (issue 15).

How it is wired, and why this way. ``web.Server`` (what ``AppRunner.server`` returns) is a plain
protocol factory: ``loop.create_server(server, ...)`` is how aiohttp itself serves it. So
``serve()`` calls ``loop.create_server`` with ``Listener.factory(runner.server)`` instead of
using a ``TCPSite``; each connection's protocol is a ``GuardedConnection`` that owns the real
``RequestHandler`` and forwards the transport's callbacks to it unchanged. Nothing in aiohttp is
subclassed or patched, the app lifecycle (startup, cleanup, graceful shutdown) stays the runner's,
and ``pytest-aiohttp``'s test servers are untouched. Alternatives weighed: subclassing
``RequestHandler`` means replacing ``Server.__call__`` and ``AppRunner._make_server`` (private);
a ``TCPSite`` subclass copies its ``start()``; both tie us to more of aiohttp than this does.

What the wrapper still reads of the handler (private, checked by tests/faults/test_hygiene.py):
``_request_count`` (bumped by aiohttp for every parsed head: the head is complete),
``_messages`` (parsed requests not yet handled) and ``_request_in_progress``.

- The head deadline starts at the first byte of a head (the first request's, or the next one's
  on a kept-alive connection: the wait between requests is the keep-alive timer's) and is never
  pushed back by more bytes, so trickling one byte a second does not keep a connection. Past it
  the client gets ``408`` and the connection closes; a pipelined head still incomplete behind a
  response in flight closes the connection once that response ends.
- The cap: when ``max_connections`` are open, a new connection closes the oldest one that has no
  request head waiting for an answer (never sent a head, is trickling one, or is idle between
  requests); when every open connection is busy, the new one is refused. Either way the count
  stays under the descriptor limit, so the admin listener (with its own small cap) and the
  upstream connections always find descriptors. One warning line a minute at most says that
  connections are being refused.
- Left to the kernel and libuv: with uvloop, an accept() that fails for lack of descriptors makes
  libuv accept and close the pending connections silently (its EMFILE trick), so the cap is kept
  below the descriptor limit (``connection_cap``) rather than relying on seeing that failure.
  With the asyncio loop, its repeated "socket.accept() out of system resource" error is turned
  into the same single warning (``accept_error_handler``).
"""

from __future__ import annotations

import asyncio
import collections
import resource
import time
from collections.abc import Callable
from typing import Any, Final, cast

from aiohttp import web

from proxy import legacy
from proxy.logs import get_logger
from proxy.metrics import ConnectionMetrics

# Descriptors kept aside from client connections: the listeners, the admin listener's own cap,
# log and event-loop descriptors, DNS and TLS files.
ADMIN_MAX_CONNECTIONS: Final = 64
# an admin connection busy this long has an answer nobody reads: the cap may close it
ADMIN_MAX_BUSY_S: Final = 5.0
RESERVED_FDS: Final = 64 + ADMIN_MAX_CONNECTIONS
# Assumed when the descriptor limit cannot be read (not on a POSIX system).
DEFAULT_CAP: Final = 4096
WARN_EVERY_S: Final = 60.0


def raise_nofile_limit() -> tuple[int, int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit: (soft before, soft now, hard). Container
    runtimes commonly start processes at a soft 1,024 under a hard limit far above it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if target == resource.RLIM_INFINITY:
        target = 1 << 20  # Linux refuses an unlimited RLIMIT_NOFILE; macOS caps it lower still
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft, soft, hard
    return soft, target, hard


def connection_cap(configured: int, nofile: int) -> tuple[int, int]:
    """(the cap to use, the most the descriptor limit allows). Every client connection may hold
    one upstream connection too, so client connections get half of what is left after the
    reserve. 0 configured means that most; a larger configured value is lowered to it, since
    past it accept() fails silently (see the module docstring)."""
    if nofile <= 0 or nofile == resource.RLIM_INFINITY:
        allowed = DEFAULT_CAP
    else:
        allowed = max(16, (nofile - RESERVED_FDS) // 2)
    return (min(configured, allowed) if configured else allowed), allowed


_408_BODY: Final = legacy.error_body(
    "invalid_request_error", "the request head did not arrive within the timeout"
)
RESPONSE_408: Final = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(_408_BODY)).encode() + b"\r\n\r\n" + _408_BODY
)


class Listener:
    """One listening port's connections: the cap, the head deadline, the counts."""

    def __init__(
        self,
        name: str,
        *,
        head_timeout: float,
        max_connections: int,
        metrics: ConnectionMetrics | None = None,
        nofile: int = 0,
        max_busy_s: float | None = None,
    ) -> None:
        self.name = name
        # a connection busy longer than this may be closed by the cap all the same (the admin
        # port: its answers take milliseconds, so one that is not read is not a real client)
        self.max_busy_s = max_busy_s
        self.head_timeout = head_timeout
        self.max_connections = max_connections
        self.nofile = nofile
        self._metrics = metrics
        # oldest first; busy connections met while looking for one to close move to the end
        self._open: collections.OrderedDict[GuardedConnection, None] = collections.OrderedDict()
        self._log = get_logger()
        self._refused_since_warning = 0
        self._warned_at: float | None = None
        if metrics is not None:
            metrics.open.labels(name).set(0)

    def __len__(self) -> int:
        return len(self._open)

    def factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """The protocol factory for ``loop.create_server``."""

        def make() -> asyncio.Protocol:
            return GuardedConnection(self, server)

        return make

    def admit(self, conn: GuardedConnection) -> bool:
        if len(self._open) >= self.max_connections:
            victim = self._oldest_without_head()
            if victim is None:
                self.refused("connection cap reached and every connection is busy")
                return False
            self.forget(victim)
            victim.shed()
            if self._metrics is not None:
                self._metrics.closed_by_cap.labels(self.name).inc()
        self._open[conn] = None
        if self._metrics is not None:
            self._metrics.open.labels(self.name).inc()
        return True

    def _oldest_without_head(self) -> GuardedConnection | None:
        # each busy connection is looked at once and moved to the end: amortised O(1)
        stuck = self.max_busy_s
        for _ in range(len(self._open)):
            conn = next(iter(self._open))
            if not conn.busy() or (stuck is not None and conn.busy_for() > stuck):
                return conn
            self._open.move_to_end(conn)
        return None

    def forget(self, conn: GuardedConnection) -> None:
        if conn in self._open:
            del self._open[conn]
            if self._metrics is not None:
                self._metrics.open.labels(self.name).dec()

    def head_timed_out(self) -> None:
        if self._metrics is not None:
            self._metrics.head_timeouts.labels(self.name).inc()

    def refused(self, why: str) -> None:
        """A connection refused for lack of room (the cap stands for descriptors): counted, and
        one warning line a minute at most, with the count since the last one."""
        if self._metrics is not None:
            self._metrics.refused.labels(self.name).inc()
        self._refused_since_warning += 1
        now = time.monotonic()
        if self._warned_at is not None and now - self._warned_at < WARN_EVERY_S:
            return
        self._warned_at = now
        self._log.warning(
            "connections.refused",
            listener=self.name,
            reason=why,
            refused=self._refused_since_warning,
            open=len(self._open),
            max_connections=self.max_connections,
            nofile=self.nofile,
        )
        self._refused_since_warning = 0


class GuardedConnection(asyncio.Protocol):
    """The protocol of one client connection: aiohttp's RequestHandler inside, every transport
    callback forwarded to it, plus the head deadline and the cap's bookkeeping."""

    __slots__ = ("_head_at", "_inner", "_listener", "_payload", "_server", "_timer", "_transport")

    def __init__(self, listener: Listener, server: web.Server) -> None:
        self._listener = listener
        self._server = server
        self._inner: Any = None  # aiohttp's RequestHandler (private attributes are read)
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._payload: Any = None  # the body stream of the latest complete head
        self._head_at = 0.0

    # -- forwarded -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        if not self._listener.admit(self):
            transport.abort()
            return
        self._inner = self._server()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._listener.forget(self)
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def eof_received(self) -> bool | None:
        return None if self._inner is None else self._inner.eof_received()

    def data_received(self, data: bytes) -> None:
        inner = self._inner
        if inner is None:
            return
        # bytes that end a body are no head's first bytes: decided before the parser sees them
        in_body = self._payload is not None and not self._payload.is_eof()
        before = inner._request_count
        inner.data_received(data)
        if inner._request_count != before:
            # a complete head (or aiohttp's 400 for a bad one): the deadline is met
            self._cancel_timer()
            self._head_at = time.monotonic()
            messages = inner._messages
            self._payload = messages[-1][1] if messages else None
        elif self._timer is None and data and not in_body and not self._closing(inner):
            # the first byte of a head: its deadline starts now and stays put
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._listener.head_timeout, self._head_timeout)

    # -- ours ------------------------------------------------------------------------------------

    @staticmethod
    def _closing(inner: Any) -> bool:
        return bool(inner._force_close or inner._close)

    def busy(self) -> bool:
        """A request head arrived and is not answered yet (or arrived a moment ago: aiohttp
        starts handling it on the next loop iteration)."""
        inner = self._inner
        if inner is None:
            return False
        if inner._request_in_progress or inner._messages:
            return True
        if self._payload is not None and not self._payload.is_eof():
            return True  # its body is still arriving
        return time.monotonic() - self._head_at < 1.0

    def busy_for(self) -> float:
        """Seconds since this connection's latest request head was complete."""
        return time.monotonic() - self._head_at if self._head_at else 0.0

    def shed(self) -> None:
        """Closed by the cap, to make room for a new connection."""
        self._cancel_timer()
        if self._transport is not None:
            self._transport.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timeout(self) -> None:
        self._timer = None
        self._listener.head_timed_out()
        inner = self._inner
        if inner is None or self._transport is None:
            return
        if inner._request_in_progress or inner._messages:
            # a pipelined head behind a response in flight: end after that response
            inner.close()
            return
        self._transport.write(RESPONSE_408)
        inner.force_close()  # closes the transport once the 408 is flushed


def accept_error_handler(
    listener: Listener,
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """An event-loop exception handler that turns the asyncio loop's accept() failures for lack
    of descriptors (an error with a traceback every second while they last) into
    ``Listener.refused``; everything else goes to the default handler."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            listener.refused("accept() failed: out of file descriptors")
            return
        loop.default_exception_handler(context)

    return handle
