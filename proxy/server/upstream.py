"""The upstream leg: one pooled ClientSession per app, header rules, timeouts. SHELL.

Timeouts (spec section 4, design "aiohttp traps"): aiohttp's default total of 5 minutes would cut
long streams, so there is no total. ``sock_read`` starts counting when the request is sent, so it
would also bound the wait for headers; time to headers is therefore an ``asyncio.timeout`` around
opening the response, and ``sock_read`` is the idle limit between body bytes: ``idle`` on
converted streams, and the generous ``headers`` value elsewhere (a non-streaming completion sends
its headers only when generation ends, and a pass-through request may be either kind).
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from proxy.errors import BadRequest, ProxyError, UpstreamError, UpstreamTimeout
from proxy.logs import get_logger
from proxy.server.deadline import Deadline
from proxy.settings import Settings

# RFC 9110 section 7.6.1, plus the proxy-only headers; names listed in Connection are added per
# request. Host is set by the client library for the upstream. Expect: aiohttp's server has
# already answered "100 Continue" to the client; forwarded, it would make the upstream leg hold
# the body back until the upstream sent a 100 of its own (a stall until the headers timeout).
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)


def end_to_end(headers: CIMultiDictProxy[str], *, lower: bool = False) -> CIMultiDict[str]:
    """A copy without hop-by-hop headers (and without those any Connection header names).

    ``lower``: write names in lower case, for the upstream leg. aiohttp's client folds repeated
    names only when they are spelled alike, so ``x-custom: a`` then ``X-Custom: b`` would reach
    the upstream as one header; in one spelling every value goes through."""
    named = {
        token.strip().lower()
        for value in headers.getall("connection", ())
        for token in value.split(",")
        if token.strip()
    }
    out: CIMultiDict[str] = CIMultiDict()
    for k, v in headers.items():
        lk = k.lower()
        if lk not in HOP_BY_HOP and lk not in named:
            out.add(lk if lower else k, v)
    return out


def egress_proxy(base_url: str) -> str | None:
    """The HTTPS_PROXY / HTTP_PROXY for the upstream, unless NO_PROXY exempts its host."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class InStepConnector(aiohttp.TCPConnector):
    """A pooled connection is reused only if nothing arrived on it while it sat idle.

    HTTP/1.1 answers requests in order, with nothing to match an answer to its request. Bytes
    that arrive on an idle pooled connection (an upstream or middlebox writing a response nobody
    asked for) wait in aiohttp's buffer and would be read as the answer to the next request sent
    on it, and every answer after that would be one request late: one client's completion handed
    to another (issue 15). Such a connection is closed here instead of reused; aiohttp's own
    ``should_close`` says it is not clean (unread bytes, an unfinished body, an error). Pooling
    otherwise goes on as before: reuse saves a TCP and TLS handshake per stream."""

    async def connect(
        self,
        req: aiohttp.ClientRequest,
        traces: list[aiohttp.tracing.Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature)
    ) -> aiohttp.connector.Connection:
        while True:
            conn = await super().connect(req, traces, timeout)
            proto = conn.protocol
            if proto is None or not proto.should_close:
                return conn
            # a fresh connection is always clean, so this ends once the pool has no dirty ones
            get_logger().warning("upstream.out_of_step_connection_discarded")
            conn.close()


def check_forwardable(raw_path_qs: str, headers: CIMultiDict[str]) -> None:
    """What must never be forwarded, checked where every upstream request passes (400s).

    Dot segments: under a path-prefixed ``upstream_url`` a normalising gateway would resolve
    ``/v1/../../admin`` (or ``%2e%2e``, or ``..%2f``) outside the prefix, with the client's key.
    Header bytes that are not UTF-8: aiohttp's parser keeps them as surrogates, which do not
    survive the upstream leg unchanged (``caf\\xe9`` arrived as ``caf``); refused, not altered."""
    decoded = urllib.parse.unquote(raw_path_qs.split("?", 1)[0]).replace("\\", "/")
    if any(seg in (".", "..") for seg in decoded.split("/")):
        raise BadRequest("the request path must not contain . or .. segments")
    for name, value in headers.items():
        if not (name.isascii() and value.isascii()):
            try:
                name.encode()
                value.encode()
            except UnicodeEncodeError:
                raise BadRequest(f"header {name[:64]!r} is not valid UTF-8") from None


@dataclass(frozen=True, slots=True)
class Opened:
    response: aiohttp.ClientResponse
    first_byte_s: float  # request sent -> headers received


# After a stream's final event, how long its last bytes (Messages' message_stop, the chunked
# terminator) may take, and how many may wait unread, before closing the connection is cheaper
# than waiting on.
TAIL_SECONDS: Final = 1.0
TAIL_BUFFER_BYTES: Final = 1 << 17


class Tails:
    """Upstream responses whose client response is already complete, left to end on their own so
    their connections go back to the pool, without holding the request (issue 18).

    aiohttp serves a kept-alive client connection's next request only once the handler returns,
    so waiting for the tail inside the handler made every next request on that connection wait
    for the previous upstream's last bytes. Nothing needs to read the tail for the connection to
    be pooled: aiohttp's client protocol parses the body as it arrives and pools the connection
    the moment the body ends, read or not. So no task per stream: a timer closes the response if
    the body has not ended within ``TAIL_SECONDS``, and its end cancels the timer. Bytes are
    bounded too: unread, they fill the response's buffer up to its high-water mark (twice the
    session's ``read_bufsize``: ``TAIL_BUFFER_BYTES``), where aiohttp stops reading the socket;
    the timer then closes the connection. Pending responses are closed on shutdown."""

    __slots__ = ("_pending", "loop")

    def __init__(self) -> None:
        self._pending: dict[aiohttp.ClientResponse, asyncio.TimerHandle] = {}
        self.loop: asyncio.AbstractEventLoop | None = None  # set by Upstream.start

    def __len__(self) -> int:
        return len(self._pending)

    def release(self, response: aiohttp.ClientResponse) -> None:
        """Take ownership of ``response`` and release it exactly once: at once when its body has
        ended (aiohttp has pooled the connection then), otherwise when it ends or at the time
        limit, whichever comes first."""
        content = response.content
        if content.is_eof():
            response.close()  # the connection is already back in the pool: only frees the body
            return
        loop = self.loop or asyncio.get_running_loop()
        timer = loop.call_later(TAIL_SECONDS, self._settle, response)
        self._pending[response] = timer
        # after aiohttp's own end-of-body callback, which pooled the connection
        content.on_eof(lambda: self._settle(response))

    def _settle(self, response: aiohttp.ClientResponse) -> None:
        timer = self._pending.pop(response, None)
        if timer is not None:
            timer.cancel()
            response.close()  # past the limit this closes the connection; after the end, a no-op

    async def close(self) -> None:
        for response in list(self._pending):
            self._settle(response)


class Upstream:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._base = settings.upstream_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._proxy: str | None = None
        self.tails = Tails()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the session runs on (looked up once: see proxy.server.deadline)."""
        assert self._loop is not None, "Upstream.start() was not called"
        return self._loop

    async def start(self) -> None:
        self._loop = self.tails.loop = asyncio.get_running_loop()
        s = self._settings
        ssl_ctx: ssl.SSLContext | bool = True
        if s.upstream.ca_bundle:
            ssl_ctx = ssl.create_default_context(cafile=s.upstream.ca_bundle)
        connector = InStepConnector(
            # aiohttp's default limit of 100 would silently queue stream 101 with no timeout
            limit=s.limits.upstream_connections,
            limit_per_host=0,
            ssl=ssl_ctx,
            enable_cleanup_closed=False,
        )
        if s.upstream.trust_env:
            self._proxy = egress_proxy(self._base)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=s.timeouts.connect),
            auto_decompress=False,  # pass-through bodies are relayed as received (spec 4)
            # One session serves every client: a cookie the upstream sets on one client's answer
            # (Cloudflare's __cf_bm, say) must not ride along on the next client's requests.
            # Set-Cookie is relayed to the client it was meant for; a client's Cookie header
            # goes up as sent.
            cookie_jar=aiohttp.DummyCookieJar(),
            # The egress proxy is resolved once, above: with trust_env aiohttp re-reads the
            # environment and ~/.netrc on every request, which profiling showed to be the largest
            # single cost of opening a stream.
            trust_env=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
            raise_for_status=False,
            # a body's unread bytes stop at twice this (aiohttp then stops reading the socket):
            # what bounds a stream's tail in Tails, 128 KiB, and not aiohttp's default 512 KiB
            read_bufsize=TAIL_BUFFER_BYTES // 2,
        )

    async def close(self) -> None:
        await self.tails.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, raw_path_qs: str) -> URL:
        return URL(self._base + raw_path_qs, encoded=True)

    async def open(
        self,
        method: str,
        raw_path_qs: str,
        headers: CIMultiDict[str],
        body: bytes | AsyncIterable[bytes] | None,
        *,
        headers_timeout: float,
        read_timeout: float,
    ) -> Opened:
        """Send the request; return once response headers arrived (or raise 502/504)."""
        assert self._session is not None, "Upstream.start() was not called"
        check_forwardable(raw_path_qs, headers)
        t0 = time.perf_counter()
        try:
            with Deadline(self.loop, headers_timeout):
                resp = await self._session.request(
                    method,
                    self.url(raw_path_qs),
                    headers=headers,
                    data=body,
                    allow_redirects=False,
                    proxy=self._proxy,
                    timeout=aiohttp.ClientTimeout(
                        total=None,
                        sock_connect=self._settings.timeouts.connect,
                        sock_read=read_timeout,
                    ),
                )
        except TimeoutError:
            raise UpstreamTimeout("upstream did not answer within the timeout") from None
        except aiohttp.ClientError as exc:
            if isinstance(exc.__cause__, ProxyError):
                # the request body's own limit stopped the upload: the client's fault, not the
                # upstream's (the handler answers 413)
                raise UpstreamError(exc.__cause__.message) from None
            # the operator's first question is where and why: host:port and the OS's reason
            message = describe(exc, self.url(raw_path_qs))
            get_logger().warning("upstream.unreachable", error=message)
            raise UpstreamError(message) from None
        if resp.status == 101:
            # no route here speaks another protocol, and relayed, the 101 leaves the client
            # waiting on a connection nothing will ever write to
            resp.close()
            raise UpstreamError("upstream switched protocols (101), which the proxy does not relay")
        return Opened(resp, time.perf_counter() - t0)


def _reason(err: BaseException) -> str:
    """The operating system's words for an error ("Connection refused"), else the message."""
    if isinstance(err, OSError):
        if isinstance(err, socket.gaierror) and err.strerror:
            return err.strerror
        if err.errno and err.errno > 0:
            return os.strerror(err.errno)
        if err.strerror:
            return err.strerror
    return str(err) or type(err).__name__


def describe(exc: aiohttp.ClientError, url: URL) -> str:
    """One line for the client's 502 and the warning log line: the upstream's host:port and what
    went wrong there, e.g. ``upstream unreachable: api.example:443: Connection refused``."""
    where = f"{url.host}:{url.port}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        where = f"{exc.host}:{exc.port}"
        if isinstance(exc, aiohttp.ClientProxyConnectionError):
            where = f"egress proxy {where}"
        if isinstance(exc, aiohttp.ClientConnectorDNSError) or isinstance(
            exc.os_error, socket.gaierror
        ):
            reason = _reason(exc.os_error)
            return f"upstream unreachable: {where}: cannot resolve the host name ({reason})"
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            cert = exc.certificate_error
            detail = getattr(cert, "verify_message", None) or _reason(cert)
            return f"upstream unreachable: {where}: TLS certificate not trusted ({detail})"
        return f"upstream unreachable: {where}: {_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"upstream unreachable: {where}: the connection closed before the response headers"
    cause = exc.__cause__
    return f"upstream unreachable: {where}: {_reason(cause if isinstance(cause, OSError) else exc)}"
