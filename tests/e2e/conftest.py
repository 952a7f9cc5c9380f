from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.app import create_admin_app, create_app
from proxy.handlers import ServerState
from proxy.metrics import Metrics
from proxy.settings import Settings, load_settings
from tests.e2e.scripted import ScriptedUpstream


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[ScriptedUpstream, str]]:
    scripted = ScriptedUpstream()
    server = TestServer(scripted.app(), host="127.0.0.1")
    await server.start_server()
    yield scripted, str(server.make_url("")).rstrip("/")
    await server.close()


def settings_for(url: str, **env: str) -> Settings:
    environ = {"LEGACY_PROXY_UPSTREAM_URL": url}
    environ.update({f"LEGACY_PROXY_{k.upper()}": v for k, v in env.items()})
    return load_settings(None, environ)


ProxyFactory = Callable[..., Coroutine[Any, Any, tuple[TestClient[Any, Any], Metrics]]]


@pytest.fixture
async def make_proxy(
    upstream: tuple[ScriptedUpstream, str],
) -> AsyncIterator[ProxyFactory]:
    """make_proxy(**env) -> (client, metrics): the proxy app on a test server, in front of the
    scripted upstream, with settings overridden as LEGACY_PROXY_<KEY>=value would."""
    clients: list[TestClient[Any, Any]] = []

    async def factory(**env: str) -> tuple[TestClient[Any, Any], Metrics]:
        metrics = Metrics()
        app = create_app(settings_for(upstream[1], **env), metrics, ServerState())
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client, metrics

    yield factory
    for c in clients:
        await c.close()


async def admin_client(metrics: Metrics, state: ServerState) -> TestClient[Any, Any]:
    client = TestClient(TestServer(create_admin_app(metrics, state), host="127.0.0.1"))
    await client.start_server()
    return client


__all__ = ["admin_client", "settings_for", "web"]
