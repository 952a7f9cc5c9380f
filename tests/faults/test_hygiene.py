"""Connection and relay hygiene against the real `python -m proxy` process (issue 15): nothing
held for free, bodies exact, nothing paid twice. Each test failed on the code before issue 15.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.clients.harness import run_fetch_event_source
from tests.e2e.scripted import (
    FINAL,
    OVERLOADED,
    Respond,
    ScriptedUpstream,
    Stream,
    completion,
)
from tests.e2e.test_process import ProxyProcess, start_proxy, stop

LEGACY = {"anthropic-version": "2023-01-01", "x-api-key": "test-key-not-a-real-key"}
MODERN = {"anthropic-version": "2023-06-01", "x-api-key": "test-key-not-a-real-key"}
BODY = {"model": "claude-2.0", "prompt": "\n\nHuman: hi\n\nAssistant:", "stream": True}
DONE = b"data: [DONE]\n\n"


def port_of(p: ProxyProcess) -> int:
    return int(p.url.rsplit(":", 1)[1])


async def metric(p: ProxyProcess, name: str) -> float:
    """The sum of a metric's samples on the admin port."""
    async with aiohttp.ClientSession() as s, s.get(p.admin + "/metrics") as r:
        text = await r.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if re.match(rf"{name}(\{{|\s)", line)
    )


async def stream_ok(p: ProxyProcess) -> bool:
    async with (
        aiohttp.ClientSession() as s,
        s.post(p.url + "/v1/complete", json=BODY, headers=LEGACY) as r,
    ):
        return r.status == 200 and (await r.read()).endswith(DONE)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes | None:
    """What the proxy sent before closing, or None if it kept the connection open."""
    data = b""
    try:
        async with asyncio.timeout(seconds):
            while chunk := await reader.read(65536):
                data += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return data


# -- 1. request heads ----------------------------------------------------------------------------


async def test_a_trickled_request_head_is_closed_at_its_deadline(
    upstream: tuple[ScriptedUpstream, str],
) -> None:
    up, url = upstream
    p = await start_proxy(url, timeouts_request_head="1")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(p))
        writer.write(b"POST /v1/comp")

        async def trickle() -> None:  # a byte every 0.2 s must not push the deadline back
            for b in b"lete HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                await asyncio.sleep(0.2)
                writer.write(bytes([b]))

        trickling = asyncio.create_task(trickle())
        got = await closed_within(reader, 2.5)
        trickling.cancel()
        writer.close()
        assert got is not None, "a head trickled past timeouts.request_head kept its connection"
        assert got.startswith(b"HTTP/1.1 408 ")
        # a kept-alive connection may sit idle between requests longer than the head deadline
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(p))
        up.script = Respond(200, b'{"data": []}', {"Content-Type": "application/json"})
        for _ in range(2):
            writer.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length: 12" in head
            assert await reader.readexactly(12) == b'{"data": []}'
            await asyncio.sleep(1.5)
        writer.close()
        assert await metric(p, "legacy_proxy_request_head_timeouts_total") == 1
        assert up.seen and all(s.path_qs == "/v1/models" for s in up.seen)
    finally:
        assert await stop(p) == 0


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def partial_heads(port: int, n: int) -> list[Conn]:
    conns = []
    for _ in range(n):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            continue
        writer.write(b"POST /v1/comp")
        conns.append((reader, writer))
    return conns


async def test_connections_that_never_finish_a_head_cannot_starve_the_proxy(
    upstream: tuple[ScriptedUpstream, str],
) -> None:
    """The issue's attack, scaled to a 256-descriptor limit: 400 connections that sent part of
    a head and wait. The oldest are closed to make room, probes and real requests go on."""
    up, url = upstream
    up.script = Stream([completion(" ok"), FINAL])
    p = await start_proxy(url, nofile=(256, 256))
    conns: list[Conn] = []
    try:
        conns = await partial_heads(port_of(p), 400)
        await asyncio.sleep(0.3)
        probe = aiohttp.ClientTimeout(total=3)
        async with aiohttp.ClientSession(timeout=probe) as s, s.get(p.admin + "/healthz") as r:
            assert r.status == 200
        assert await stream_ok(p)
        assert await closed_within(conns[0][0], 1.0) is not None, "the oldest was not closed"
        assert await metric(p, "legacy_proxy_connections_closed_by_cap_total") >= 300
        assert await metric(p, 'legacy_proxy_connections_open{listener="traffic"}') <= 64
    finally:
        for _, w in conns:
            w.close()
        assert await stop(p) == 0
    log = await p.output()
    assert "Traceback" not in log, log[-2000:]


async def test_the_soft_descriptor_limit_is_raised_to_the_hard_one_and_logged(
    upstream: tuple[ScriptedUpstream, str],
) -> None:
    _, url = upstream
    p = await start_proxy(url, nofile=(256, 2048))
    try:
        limits = Path(f"/proc/{p.proc.pid}/limits").read_text()  # noqa: ASYNC240 (procfs)
        assert re.search(r"Max open files\s+2048\s+2048", limits), limits
    finally:
        assert await stop(p) == 0
    lines = [json.loads(x) for x in (await p.output()).splitlines() if x.startswith("{")]
    nofile = [x for x in lines if x["event"] == "proxy.nofile"]
    assert nofile and nofile[0]["soft_before"] == 256 and nofile[0]["soft"] == 2048


async def test_connections_refused_when_every_one_is_busy_are_warned_about_once(
    upstream: tuple[ScriptedUpstream, str],
) -> None:
    up, url = upstream
    up.script = Stream([completion(" a"), "stall"])
    p = await start_proxy(url, limits_max_connections="4")
    sessions, responses = [], []
    try:
        for _ in range(4):  # four streams in flight: four busy connections
            s = aiohttp.ClientSession()
            sessions.append(s)
            r = await s.post(p.url + "/v1/complete", json=BODY, headers=LEGACY)
            responses.append(r)
            await r.content.readuntil(b"\n\n")
        for _ in range(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", port_of(p))
            writer.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await closed_within(reader, 2.0) == b""  # refused: closed, nothing sent
            writer.close()
        assert await metric(p, "legacy_proxy_connections_refused_total") == 10
        async with aiohttp.ClientSession() as s, s.get(p.admin + "/healthz") as r:
            assert r.status == 200
    finally:
        for r in responses:
            r.close()
        for s in sessions:
            await s.close()
        assert await stop(p) == 0
    log = await p.output()
    warnings = [x for x in log.splitlines() if '"connections.refused"' in x]
    assert len(warnings) == 1, log[-3000:]
    assert '"level": "warning"' in warnings[0]


# -- 2. request bodies ---------------------------------------------------------------------------


@pytest.fixture
async def raw_bodies() -> AsyncIterator[tuple[ScriptedUpstream, str]]:
    """The scripted upstream, reading request bodies as they came (no inflating)."""
    up = ScriptedUpstream()
    server = TestServer(up.app(), host="127.0.0.1")
    await server.start_server(auto_decompress=False)
    yield up, str(server.make_url("")).rstrip("/")
    await server.close()


async def test_request_bodies_are_relayed_byte_exact_compressed_or_not(
    raw_bodies: tuple[ScriptedUpstream, str],
) -> None:
    up, url = raw_bodies
    up.script = Respond(200, b"{}", {"Content-Type": "application/json"})
    p = await start_proxy(url, timeouts_headers="3", limits_max_body_bytes="65536")
    payload = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi " * 50}]})
    zipped = gzip.compress(payload.encode())
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as s:
            # pass-through, compressed: the same bytes, with their own encoding and length
            headers = {**MODERN, "Content-Encoding": "gzip", "Content-Type": "application/json"}
            async with s.post(p.url + "/v1/messages", data=zipped, headers=headers) as r:
                assert r.status == 200
            seen = up.seen[-1]
            assert seen.body == zipped
            assert seen.headers["Content-Encoding"] == "gzip"
            assert seen.headers["Content-Length"] == str(len(zipped))
            # pass-through, plain and chunked
            async def chunks() -> AsyncIterator[bytes]:
                yield payload.encode()[:10]
                yield payload.encode()[10:]

            async with s.post(p.url + "/v1/messages", data=chunks(), headers=MODERN) as r:
                assert r.status == 200
            assert up.seen[-1].body == payload.encode()
            # converted: inflated, and labelled as what is sent
            up.script = Stream([completion(" ok"), FINAL])
            body = gzip.compress(json.dumps(BODY).encode())
            headers = {**LEGACY, "Content-Encoding": "gzip", "Content-Type": "application/json"}
            async with s.post(p.url + "/v1/complete", data=body, headers=headers) as r:
                assert r.status == 200 and (await r.read()).endswith(DONE)
            seen = up.seen[-1]
            assert json.loads(seen.body)["prompt"] == BODY["prompt"]
            assert "Content-Encoding" not in seen.headers
            assert seen.headers["Content-Length"] == str(len(seen.body))
            # converted: the limit applies to what it inflates to
            n = len(up.seen)
            bomb = gzip.compress(json.dumps({**BODY, "prompt": " " * 200_000}).encode())
            assert len(bomb) < 65536
            async with s.post(p.url + "/v1/complete", data=bomb, headers=headers) as r:
                assert r.status == 413
                assert (await r.json())["error"]["type"] == "request_too_large"
            # converted: a coding the proxy cannot undo is refused, never forwarded
            headers["Content-Encoding"] = "br"
            async with s.post(p.url + "/v1/complete", data=b"\x0b\x02", headers=headers) as r:
                assert r.status == 400
            assert len(up.seen) == n
    finally:
        assert await stop(p) == 0


# -- 3. out-of-step upstream connections ---------------------------------------------------------


class InjectingUpstream:
    """A raw-socket upstream: answers each request in order on a kept-alive connection, and on
    its first connection writes a response nobody asked for once that connection is idle."""

    def __init__(self) -> None:
        self.connections = 0
        self.answered = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        first = self.connections == 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                if length:
                    await reader.readexactly(int(length.group(1)))
                self.answered += 1
                body = json.dumps({"answer": self.answered}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(body)).encode() + b"\r\n\r\n" + body
                )  # fmt: skip
                await writer.drain()
                if first:
                    first = False
                    await asyncio.sleep(0.2)  # idle in the proxy's pool by now
                    injected = b'{"answer": "INJECTED"}'
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                        + str(len(injected)).encode() + b"\r\n\r\n" + injected
                    )  # fmt: skip
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_a_response_nobody_asked_for_never_reaches_a_client() -> None:
    raw = InjectingUpstream()
    server = await asyncio.start_server(raw.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    p = await start_proxy(f"http://127.0.0.1:{port}")
    try:
        answers = []
        async with aiohttp.ClientSession() as s:
            for _ in range(4):
                async with s.get(p.url + "/v1/models", headers=MODERN) as r:
                    answers.append((await r.json())["answer"])
                await asyncio.sleep(0.5)
        assert answers == [1, 2, 3, 4]
        assert raw.connections == 2  # the out-of-step one was dropped; the next one is reused
    finally:
        assert await stop(p) == 0
        server.close()
        await server.wait_closed()
    assert "upstream.out_of_step_connection_discarded" in await p.output()


# -- 4. event ids for generic EventSource clients (spec rule 5) ----------------------------------


@pytest.mark.clients
async def test_a_generic_eventsource_client_is_not_paid_for_twice_after_a_cut_stream(
    upstream: tuple[ScriptedUpstream, str],
) -> None:
    """@microsoft/fetch-event-source 2.0.1 re-POSTs every second after a failed stream unless its
    onerror rethrows. With an id: line its retries carry Last-Event-ID and are refused by the
    proxy: the upstream sees (and bills) exactly one request."""
    up, url = upstream
    up.script = Stream([completion(" Hello"), completion(" world"), OVERLOADED])
    p = await start_proxy(url)
    try:
        result = await run_fetch_event_source(p.url + "/v1/complete", linger=3.5)
    finally:
        assert await stop(p) == 0
    out = result.out
    assert result.returncode == 0, result
    assert len(up.seen) == 1, out  # without the id line: one per second
    assert out["statuses"][0] == 200 and len(out["statuses"]) >= 2, out
    assert all(s == 400 for s in out["statuses"][1:]), out
    assert all(i is not None for i in out["last_event_ids"][1:]), out
    last = json.loads(out["messages"][-1])
    assert last["completion"] == " Hello world"
    assert last["exception"] == "overloaded_error: Overloaded"


# -- 5. the smaller items ------------------------------------------------------------------------


async def raw_exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    got = await closed_within(reader, 5.0)
    writer.close()
    assert got is not None
    return got


async def test_dot_segments_are_refused_so_nothing_leaves_the_upstream_prefix(
    upstream: tuple[ScriptedUpstream, str],
) -> None:
    up, url = upstream
    up.script = Respond(200, b'{"data": []}', {"Content-Type": "application/json"})
    p = await start_proxy(url + "/gateway/prefix")
    close = b"Connection: close\r\nanthropic-version: 2023-06-01\r\nx-api-key: k\r\n"
    try:
        for path in (b"/v1/../../admin", b"/v1/%2e%2e/%2E%2E/admin", b"/v1/.%2e/x", b"/v1/./x",
                     b"/v1/..%2f..%2fadmin", b"/v1/..%5cadmin"):  # fmt: skip
            answer = await raw_exchange(port_of(p), b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n"
                                        + close + b"\r\n")  # fmt: skip
            assert answer.startswith(b"HTTP/1.1 400 "), (path, answer[:200])
            body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
            assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        assert up.seen == [], [s.path_qs for s in up.seen]
        # dots inside a segment are no dot segments
        files = b"GET /v1/files/a..b/.x HTTP/1.1\r\nHost: x\r\n" + close + b"\r\n"
        assert (await raw_exchange(port_of(p), files)).startswith(b"HTTP/1.1 200 ")
        assert up.seen[0].path_qs == "/gateway/prefix/v1/files/a..b/.x"
    finally:
        assert await stop(p) == 0


async def test_header_bytes_that_are_not_utf8_are_refused_not_altered(
    upstream: tuple[ScriptedUpstream, str],
) -> None:
    up, url = upstream
    up.script = Respond(200, b'{"data": []}', {"Content-Type": "application/json"})
    p = await start_proxy(url)
    models = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    try:
        for legacy in (b"", b"anthropic-version: 2023-01-01\r\n"):
            answer = await raw_exchange(port_of(p), models + legacy + b"X-Name: caf\xe9\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
        assert up.seen == [], [s.raw_headers for s in up.seen]
        # valid UTF-8 goes through, byte for byte
        answer = await raw_exchange(port_of(p), models + "X-Name: café\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
        assert dict(up.seen[0].raw_headers)[b"x-name"] == "café".encode()
    finally:
        assert await stop(p) == 0


async def test_a_redirect_on_a_converted_route_keeps_its_location(
    upstream: tuple[ScriptedUpstream, str],
) -> None:
    up, url = upstream
    up.script = Respond(307, b"", {"Location": "https://elsewhere.example/v1/complete"})
    p = await start_proxy(url)
    try:
        async with (
            aiohttp.ClientSession() as s,
            s.post(p.url + "/v1/complete", json=BODY, headers=LEGACY, allow_redirects=False) as r,
        ):
            assert r.status == 307
            assert r.headers.get("Location") == "https://elsewhere.example/v1/complete"
        assert len(up.seen) == 1  # relayed, never followed
    finally:
        assert await stop(p) == 0


async def test_an_upstream_101_is_a_502(upstream: tuple[ScriptedUpstream, str]) -> None:
    async def switching(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                         b"Connection: Upgrade\r\n\r\n")  # fmt: skip
            await asyncio.sleep(30)
        finally:
            writer.close()

    server = await asyncio.start_server(switching, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    p = await start_proxy(f"http://127.0.0.1:{port}")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
            async with s.get(p.url + "/v1/models", headers=MODERN) as r:
                assert r.status == 502
                assert (await r.json())["error"]["type"] == "api_error"
            async with s.post(p.url + "/v1/complete", json=BODY, headers=LEGACY) as r:
                assert r.status == 502
    finally:
        assert await stop(p) == 0
        server.close()
        await server.wait_closed()


async def test_a_client_that_leaves_with_the_final_event_leaves_no_traceback(
    upstream: tuple[ScriptedUpstream, str],
) -> None:
    """Like TypeScript 0.4.x: it closes as soon as it has the stop_reason, with a reset, often
    while the proxy is writing the stream's last bytes."""
    up, url = upstream
    up.script = Stream([completion(" a"), FINAL])
    modern = Stream([b"event: x\ndata: {}\n\n", b"event: message_stop\ndata: {}\n\n"])
    up.by_path = {"/v1/relayed": modern}
    p = await start_proxy(url)
    logged = asyncio.create_task(p.output())  # read as it comes: a full pipe would block it
    port = port_of(p)
    body = json.dumps(BODY).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in LEGACY.items()).encode()
    converted = (b"POST /v1/complete HTTP/1.1\r\nHost: x\r\n" + head
                 + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
    relayed = b"GET /v1/relayed HTTP/1.1\r\nHost: x\r\nanthropic-version: 2023-06-01\r\n\r\n"

    async def leave_at(request: bytes, marker: bytes) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await reader.readuntil(marker)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # a reset, at once

    try:
        for _ in range(20):
            await asyncio.gather(
                *(leave_at(converted, b"stop_sequence") for _ in range(5)),
                *(leave_at(relayed, b"message_stop") for _ in range(5)),
            )
        assert await stream_ok(p)
    finally:
        assert await stop(p) == 0
    log = await logged
    assert "Traceback" not in log and '"level": "error"' not in log, log[-3000:]
    done = [json.loads(x) for x in log.splitlines() if '"request.done"' in x]
    converted = [d["outcome"] for d in done if d["mode"] == "convert"]
    assert converted == ["ok"] * 101  # rule 8: the final event reached them


async def test_admin_connections_that_never_read_cannot_take_the_probes_down(
    upstream: tuple[ScriptedUpstream, str],
) -> None:
    """The second attack's H1: 64 admin connections (the admin cap) each pipelining 200
    /metrics requests and reading nothing stay "busy" for ever, and /healthz was refused until
    they left. Past ADMIN_MAX_BUSY_S the cap may close them, so the kubelet's probe gets in."""
    from proxy.server.connections import ADMIN_MAX_BUSY_S, ADMIN_MAX_CONNECTIONS

    _, url = upstream
    p = await start_proxy(url)
    admin_port = int(p.admin.rsplit(":", 1)[1])
    socks: list[socket.socket] = []
    try:
        for _ in range(ADMIN_MAX_CONNECTIONS):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", admin_port))
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
            socks.append(sock)
        await asyncio.sleep(ADMIN_MAX_BUSY_S + 1.0)
        probe = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=probe) as s, s.get(p.admin + "/healthz") as r:
            assert r.status == 200
    finally:
        for sock in socks:
            sock.close()
        assert await stop(p) == 0


@pytest.mark.parametrize(
    ("path", "headers"),
    [("/v1/complete", LEGACY), ("/v1/messages", MODERN)],
    ids=["converted", "passthrough"],
)
async def test_a_body_that_stalls_is_answered_408_and_frees_its_slot(
    upstream: tuple[ScriptedUpstream, str], path: str, headers: dict[str, str]
) -> None:
    """The second attack's H2: a complete head, then half the body and silence, held a
    request slot (and the bytes so far) for ever: 20 of them made every request a 529. Now the
    body must arrive within timeouts.request_body; the slot is free again after it."""
    up, url = upstream
    up.script = Stream([completion(" ok"), FINAL])
    p = await start_proxy(url, timeouts_request_body="1", limits_max_streams="5")
    conns: list[Conn] = []
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        for _ in range(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", port_of(p))
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: x\r\n{head}Content-Type: application/json\r\n"
                f"Content-Length: 1000\r\n\r\n{{\"model\": ".encode()
            )  # fmt: skip
            conns.append((reader, writer))
        statuses = []
        for reader, _ in conns:
            line = await asyncio.wait_for(reader.readline(), 10)
            statuses.append(int(line.split()[1]))
        assert statuses == [408] * 5
        assert await stream_ok(p)  # the slots are free again
    finally:
        for _, w in conns:
            w.close()
        assert await stop(p) == 0


async def test_a_passthrough_client_that_reads_nothing_is_cut_and_its_upstream_closed(
    upstream: tuple[ScriptedUpstream, str],
) -> None:
    """The second attack's M3: a relayed (2023-06-01) stream to a client that never reads held
    its upstream generation, slot and connection for as long as the upstream streamed; now it is
    cut after timeouts.client_write like a converted one."""
    up, url = upstream
    event = b"event: content_block_delta\ndata: " + b"x" * 60_000 + b"\n\n"
    up.script = Stream([event] * 400 + ["stall"])
    p = await start_proxy(url, timeouts_client_write="2")
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port_of(p)))
        body = json.dumps({"model": "claude-sonnet-5-5", "stream": True}).encode()
        head = "".join(f"{k}: {v}\r\n" for k, v in MODERN.items())
        sock.sendall(
            f"POST /v1/messages HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(body)}\r\n\r\n"
            .encode() + body
        )  # fmt: skip
        await asyncio.wait_for(up.disconnected.wait(), 30)  # the upstream request was closed
        assert await metric(p, "legacy_proxy_client_write_timeouts_total") == 1
    finally:
        sock.close()
        assert await stop(p) == 0
