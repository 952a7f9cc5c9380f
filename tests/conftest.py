"""Shared fixtures: the proxy app on a test server in front of a scripted upstream (make_proxy),
and in front of the simulator for tests that drive it with real SDKs as subprocesses (stack)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from proxy.metrics import Metrics
from proxy.server.app import create_admin_app, create_app
from proxy.server.state import ServerState
from proxy.settings import Settings, load_settings
from proxy.simulator import SIM_STATS_KEY, SimConfig
from proxy.simulator import create_app as create_simulator
from tests.e2e.scripted import ScriptedUpstream

TOKENS = 12


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
        # the scripted upstream speaks Text Completions: these tests hold the native conversion,
        # so /v1/complete stays on /v1/complete unless a test says otherwise
        env.setdefault("complete_upstream", "complete")
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


class Stack:
    def __init__(self, sim: TestServer, proxy: TestServer, metrics: Metrics) -> None:
        self.sim, self.proxy, self.metrics = sim, proxy, metrics
        self.sim_url = str(sim.make_url("")).rstrip("/")
        self.url = str(proxy.make_url("")).rstrip("/")

    @property
    def upstream_requests(self) -> int:
        return self.sim.app[SIM_STATS_KEY].requests


StackFactory = Callable[..., Coroutine[Any, Any, Stack]]


@pytest.fixture
async def stack() -> AsyncIterator[StackFactory]:
    servers: list[TestServer] = []

    async def make(
        fault: str = "", text_completions: bool = False, answer_prefix: str = "", **env: str
    ) -> Stack:
        # By default the simulator answers like today's API (no model on /v1/complete, strict
        # /v1/messages) and the proxy runs on its defaults (every /v1/complete through Messages):
        # the path real users run. text_completions=True serves /v1/complete for any model, for
        # tests of complete.upstream = complete.
        sim_app = create_simulator(
            SimConfig(
                tokens=TOKENS,
                fault=fault,
                text_completions=text_completions,
                answer_prefix=answer_prefix,
            )
        )
        sim = TestServer(sim_app, host="127.0.0.1")
        await sim.start_server()
        metrics = Metrics()
        app = create_app(
            settings_for(str(sim.make_url("")).rstrip("/"), **env), metrics, ServerState()
        )
        proxy = TestServer(app, host="127.0.0.1")
        await proxy.start_server()
        servers.extend([proxy, sim])
        return Stack(sim, proxy, metrics)

    yield make
    for s in servers:
        await s.close()
