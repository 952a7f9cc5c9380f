"""Wiring: the traffic app, the admin app, and serving both with a graceful drain. SHELL."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Coroutine
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy.errors import ConfigError, ListenError
from proxy.logs import get_logger
from proxy.metrics import Metrics
from proxy.server.connections import (
    ADMIN_MAX_BUSY_S,
    ADMIN_MAX_CONNECTIONS,
    Listener,
    accept_error_handler,
    connection_cap,
    raise_nofile_limit,
)
from proxy.server.entry import Entry
from proxy.server.exchange import Recorder
from proxy.server.relay import Deps, deprecation_headers
from proxy.server.state import ServerState
from proxy.server.upstream import Upstream, egress_proxy
from proxy.settings import Settings

STATE_KEY = web.AppKey("state", ServerState)
METRICS_KEY = web.AppKey("metrics", Metrics)
UPSTREAM_KEY = web.AppKey("upstream", Upstream)


def create_app(
    settings: Settings, metrics: Metrics, state: ServerState | None = None
) -> web.Application:
    app = web.Application(
        handler_args={
            "max_field_size": 16384,
            "max_line_size": 16384,
            # bodies as they came: pass-through relays them byte for byte with their own
            # Content-Encoding and Content-Length; converted routes inflate them within the body
            # limit themselves (bodies.read_body)
            "auto_decompress": False,
        }
    )
    state = state if state is not None else ServerState()
    upstream = Upstream(settings)
    app[STATE_KEY] = state
    app[METRICS_KEY] = metrics
    app[UPSTREAM_KEY] = upstream

    async def upstream_ctx(_: web.Application) -> AsyncIterator[None]:
        await upstream.start()
        yield
        await upstream.close()

    app.cleanup_ctx.append(upstream_ctx)
    deps = Deps(
        settings=settings,
        upstream=upstream,
        metrics=metrics,
        recorder=Recorder(metrics, settings.messages.known_targets()),
        state=state,
        deprecation=deprecation_headers(settings),
    )
    metrics.pending_output.set_function(lambda: state.pending_bytes)
    app.router.add_route("*", "/{tail:.*}", Entry(deps).handle)
    return app


def create_admin_app(metrics: Metrics, state: ServerState) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        if state.draining:
            return web.json_response({"status": "draining"}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics_endpoint(_: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest(metrics.registry))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def migration(_: web.Request) -> web.Response:
        return web.json_response(metrics.migration.view())

    admin = web.Application()
    admin.router.add_get("/healthz", healthz)
    admin.router.add_get("/readyz", readyz)
    admin.router.add_get("/metrics", metrics_endpoint)
    admin.router.add_get("/migration", migration)
    return admin


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run both apps until SIGTERM/SIGINT (or ``stop``), then drain (issue 4, item 8):
    readiness flips to 503, the listener closes, requests in flight run on until
    ``shutdown.drain_seconds``; then every request still open is interrupted: converted streams
    end with the legacy error event (spec rule 6), requests not yet answered get a 503, relayed
    bodies are cut; then everything closes and the function returns (exit status 0)."""
    log = get_logger()
    metrics = Metrics(
        client_allowlist=settings.metrics.client_allowlist,
        max_client_labels=settings.metrics.max_client_labels,
    )
    state = ServerState()
    state.idle.set()
    app = create_app(settings, metrics, state)
    runner = web.AppRunner(
        app,
        handler_cancellation=True,  # a client that leaves cancels its upstream request
        access_log=None,  # one structured line per request comes from the handler instead
        # what is still running once the drain above is over is stuck: do not wait on it long
        shutdown_timeout=1.0,
    )
    # shutdown_timeout: aiohttp's 60 s, spent twice, on an admin connection that does not read
    # its answer, would outlast the pod's grace period
    admin_runner = web.AppRunner(
        create_admin_app(metrics, state), access_log=None, shutdown_timeout=1.0
    )
    try:
        await runner.setup()  # opens the upstream session, reading upstream.ca_bundle
    except ssl.SSLError as exc:
        # the file exists (settings checked that) but holds no certificate OpenSSL can read
        raise ConfigError(
            "upstream.ca_bundle", f"not a PEM certificate bundle: {exc.reason or exc}"
        ) from None
    await admin_runner.setup()
    traffic, admin = _listeners(settings, metrics)
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(accept_error_handler(traffic))
    assert runner.server is not None and admin_runner.server is not None
    # aiohttp's Server is a protocol factory; each connection is wrapped for the head deadline
    # and the cap (proxy.server.connections says why this and not a TCPSite)
    try:
        site = await _listen(
            loop.create_server(
                traffic.factory(runner.server),
                settings.host,
                settings.port,
                backlog=settings.limits.backlog,
                reuse_address=True,
            ),
            "host", "port", settings.host, settings.port,
        )  # fmt: skip
        try:
            admin_site = await _listen(
                loop.create_server(
                    admin.factory(admin_runner.server),
                    settings.admin_host,
                    settings.admin_port,
                    reuse_address=True,
                ),
                "admin_host", "admin_port", settings.admin_host, settings.admin_port,
            )  # fmt: skip
        except ListenError:
            site.close()
            raise
    except ListenError:
        # close what was opened (the upstream session above all), or Python warns about it
        await runner.cleanup()
        await admin_runner.cleanup()
        raise
    resolving = asyncio.create_task(check_upstream_resolves(settings, log))
    log.info(
        "proxy.started",
        listen=f"{settings.host}:{settings.port}",
        admin=f"{settings.admin_host}:{settings.admin_port}",
        upstream=settings.upstream_url,
        max_connections=traffic.max_connections,
    )

    metrics.ready.set(1)
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()

    drain = settings.shutdown.drain_seconds
    state.draining = True
    metrics.ready.set(0)
    log.info("proxy.draining", in_flight=state.in_flight, deadline_s=drain)
    site.close()  # no new connections; requests on kept-alive ones get 503
    try:
        await asyncio.wait_for(state.idle.wait(), timeout=drain)
    except TimeoutError:
        log.warning("proxy.drain_deadline", still_open=state.in_flight)
        state.end_all()
        # each request ends itself at once; a converted stream gives its error event up to a
        # second to reach a client that is behind
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.idle.wait(), timeout=3.0)
    resolving.cancel()
    await runner.cleanup()
    admin_site.close()
    await admin_runner.cleanup()
    log.info("proxy.stopped")


async def _listen(
    opening: Coroutine[Any, Any, asyncio.Server], host_key: str, port_key: str, host: str, port: int
) -> asyncio.Server:
    try:
        return await opening
    except OSError as exc:
        raise listen_error(exc, host_key, port_key, host, port) from None


def listen_error(exc: OSError, host_key: str, port_key: str, host: str, port: int) -> ListenError:
    """One line naming the setting to change and the operating system's reason."""
    if isinstance(exc, socket.gaierror):
        return ListenError(host_key, f'cannot resolve "{host}": {exc.strerror}')
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return ListenError(port_key, f"{where} is already in use")
    if exc.errno == errno.EACCES:
        return ListenError(
            port_key, f"{where}: permission denied (ports below 1024 need privileges)"
        )
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    if exc.errno == errno.EADDRNOTAVAIL:
        reason += " (not an address of this machine)"
    return ListenError(host_key, f"{where}: {reason}")


# long enough for a slow resolver, short enough that the warning comes with the start-up lines
RESOLVE_TIMEOUT_S = 3.0


async def check_upstream_resolves(settings: Settings, log: Any) -> None:
    """Warn at start-up when the upstream's host name does not resolve: every request would get
    a 502. Only a warning, and off the start-up path: DNS may come up after the proxy (a sidecar
    often starts before the pod's network is complete). Skipped behind an egress proxy, which
    resolves the name itself."""
    host = urlsplit(settings.upstream_url).hostname or ""
    if settings.upstream.trust_env and egress_proxy(settings.upstream_url):
        return
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        log.warning(
            "upstream.unresolved", host=host, error=f"cannot resolve {host}: {exc.strerror}"
        )
    except TimeoutError:
        log.warning(
            "upstream.unresolved",
            host=host,
            error=f"cannot resolve {host}: no answer within {RESOLVE_TIMEOUT_S:.0f} s",
        )


def _listeners(settings: Settings, metrics: Metrics) -> tuple[Listener, Listener]:
    """The traffic and admin listeners, after raising the descriptor limit (issue 15)."""
    log = get_logger()
    before, nofile, hard = raise_nofile_limit()
    cap, allowed = connection_cap(settings.limits.max_connections, nofile)
    log.info("proxy.nofile", soft_before=before, soft=nofile, hard=hard, max_connections=cap)
    if settings.limits.max_connections > allowed:
        log.warning(
            "proxy.max_connections_lowered",
            configured=settings.limits.max_connections,
            max_connections=cap,
            nofile=nofile,
        )
    head = settings.timeouts.request_head
    c = metrics.connections
    traffic = Listener("traffic", head_timeout=head, max_connections=cap, metrics=c, nofile=nofile)
    admin = Listener(
        "admin",
        head_timeout=head,
        max_connections=ADMIN_MAX_CONNECTIONS,
        metrics=c,
        nofile=nofile,
        # probes and scrapes are answered in milliseconds: a connection still "busy" after this
        # is one whose answer is not being read, and may be closed to make room for the kubelet
        max_busy_s=ADMIN_MAX_BUSY_S,
    )
    return traffic, admin
