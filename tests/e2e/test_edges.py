"""Edges of the shell, each pinned by a test: what compressed upstream bodies may not do, when a
stream counts as ok, what the upstream leg keeps or drops of the client's headers, idle
upstreams on relayed bodies, and reuse of upstream connections."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.server.app import UPSTREAM_KEY
from tests.conftest import ProxyFactory
from tests.e2e.scripted import FINAL, Respond, ScriptedUpstream, Stream, completion
from tests.e2e.test_process import slow_legacy_stream
from tests.e2e.test_proxy import LEGACY, MODERN, STREAM_BODY, events, read_all

TRANSCRIPTS = Path(__file__).parents[1] / "transcripts"
GZIP = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
SSE_GZIP = {"Content-Type": "text/event-stream", "Content-Encoding": "gzip"}


async def test_compressed_upstream_bodies_are_bounded_and_checked(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    client, _ = await make_proxy(limits_max_body_bytes="65536", limits_max_event_bytes="65536")
    plain = {**STREAM_BODY, "stream": False}
    # non-streaming: corrupt gzip, and 60 KB on the wire that inflate to 20 MB
    bomb = gzip.compress(b'{"completion": "' + b"a" * 20_000_000 + b'"}')
    assert len(bomb) < 65536
    for body, why in ((b"\x1f\x8b\x08\x00garbage", "corrupt"), (bomb, "too large")):
        scripted.script = Respond(200, body, GZIP)
        resp = await client.post("/v1/complete", json=plain, headers=LEGACY)
        assert resp.status == 502, why
        assert why in (await resp.json())["error"]["message"]
    # streaming: one event that inflates past the event limit ends as the legacy error event
    scripted.script = Stream(
        [gzip.compress(completion(" a") + b"event: completion\ndata: " + b"x" * 10_000_000)],
        headers=SSE_GZIP,
    )
    body, clean = await read_all(
        await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
    )
    assert not clean and events(body)[-1]["exception"] == "api_error: upstream event too large"
    # streaming: a corrupt compressed body mid-stream
    good = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    head = good.compress(completion(" a")) + good.flush(zlib.Z_SYNC_FLUSH)
    scripted.script = Stream([head, 0.1, b"\x00\xffnot deflate at all" * 4], headers=SSE_GZIP)
    body, clean = await read_all(
        await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
    )
    assert not clean and events(body)[0]["completion"] == " a"
    assert events(body)[-1]["exception"] == "api_error: upstream sent an invalid event"
    assert b"[DONE]" not in body


async def test_a_final_event_that_never_reached_the_client_is_not_ok(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    """Spec rule 8 counts a stream ok once its stop_reason event was *written*: converted is not
    enough when the client stops reading and leaves with the final event still queued."""
    scripted, _ = upstream
    scripted.script = Stream([completion(" " + "x" * 4000) for _ in range(400)] + [FINAL])
    client, metrics = await make_proxy()
    reader, writer = await slow_legacy_stream(client.port, STREAM_BODY)
    await asyncio.sleep(0.5)  # the proxy has read the whole upstream; the client nearly nothing
    got = await reader.read(65536)
    assert b'"stop_reason":"stop_sequence"' not in got
    writer.transport.abort()
    requests = metrics.requests.labels
    for _ in range(100):
        if requests("convert", "complete", "client_gone")._value.get():
            break
        await asyncio.sleep(0.02)
    assert requests("convert", "complete", "client_gone")._value.get() == 1
    assert requests("convert", "complete", "ok")._value.get() == 0


async def test_request_headers_on_the_upstream_leg(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    scripted.script = Respond(200, b"{}", {"Content-Type": "application/json"})
    client, _ = await make_proxy()
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nanthropic-version: 2023-06-01\r\n"
        b"x-custom: a\r\nX-Custom: b\r\nx-custom: c\r\n"  # one header, three spellings
        b"Connection: keep-alive, x-hop-one\r\nConnection: x-hop-two\r\n"
        b"x-hop-one: 1\r\nx-hop-two: 2\r\n"
        b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n{}"
    )
    await reader.readuntil(b"\r\n\r\n{}")
    writer.close()
    raw = [(k.lower(), v) for k, v in scripted.seen[0].raw_headers]
    assert [v for k, v in raw if k == b"x-custom"] == [b"a", b"b", b"c"]
    names = {k for k, _ in raw}
    # named by either Connection header; Expect was answered by the proxy itself
    assert not names & {b"x-hop-one", b"x-hop-two", b"expect"}, names


async def test_an_upstream_cookie_never_reaches_another_clients_request(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    """The upstream session is shared by every client: a cookie the upstream sets (Cloudflare's
    __cf_bm, say) must not be kept and sent with the next client's request. A client's own
    Cookie header goes through as sent."""
    scripted, url = upstream
    scripted.script = Respond(
        200, b"{}", {"Content-Type": "application/json", "Set-Cookie": "__cf_bm=one; Path=/"}
    )
    # a host name, not an address: aiohttp's cookie jar ignores cookies from IP addresses
    client, _ = await make_proxy(upstream_url=url.replace("127.0.0.1", "localhost"))
    modern = {"anthropic-version": "2023-06-01", "x-api-key": "k"}
    for _ in range(2):
        resp = await client.post("/v1/messages", json={}, headers=modern)
        assert resp.status == 200
        assert resp.headers.get("Set-Cookie") == "__cf_bm=one; Path=/"  # relayed to its client
        client.session.cookie_jar.clear()  # the test client's own jar: another client next
    await client.post("/v1/messages", json={}, headers={**modern, "Cookie": "mine=1"})
    assert [seen.headers.get("Cookie") for seen in scripted.seen] == [None, None, "mine=1"]


async def test_a_chunked_body_over_the_limit_is_413(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    client, _ = await make_proxy(limits_max_body_bytes="65536")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 16384

    resp = await client.post("/v1/files", data=chunks(), headers=MODERN)
    assert resp.status == 413
    assert (await resp.json())["error"]["type"] == "request_too_large"
    assert scripted.seen == []  # the upstream never got a whole request


async def test_a_relayed_body_whose_upstream_goes_silent_is_cut(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    scripted.script = Stream([b"event: message_start\ndata: {}\n\n", "stall"])
    client, metrics = await make_proxy(timeouts_idle="0.3")
    resp = await client.post("/v1/messages", json={}, headers=MODERN)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    body, clean = await read_all(resp)
    assert not clean and body == b"event: message_start\ndata: {}\n\n"
    assert loop.time() - t0 < 2
    await asyncio.wait_for(scripted.disconnected.wait(), 2)
    assert metrics.requests.labels("passthrough", "messages", "stream_error")._value.get() == 1


async def test_the_idle_limit_counts_from_the_last_upstream_bytes_not_the_first(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    """Events 0.2 s apart for 0.8 s under a 0.3 s idle limit: never idle, never cut. Then
    silence: cut with the legacy error event, counted from the last event, not the first."""
    scripted, _ = upstream
    words = [completion(f" w{i}") for i in range(5)]
    scripted.script = Stream([x for w in words for x in (w, 0.2)] + [FINAL])
    client, metrics = await make_proxy(timeouts_idle="0.3")
    body, clean = await read_all(
        await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
    )
    assert clean and body.endswith(b"data: [DONE]\n\n")
    scripted.script = Stream([*(x for w in words for x in (w, 0.2)), "stall"])
    body, clean = await read_all(
        await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
    )
    assert not clean and events(body)[-2]["completion"] == " w0 w1 w2 w3 w4"
    assert "idle timeout" in events(body)[-1]["exception"]
    assert metrics.stream_errors.labels("upstream_timeout")._value.get() == 1


async def test_converted_streams_reuse_the_upstream_connection(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    scripted.script = Stream([completion(" Hello"), FINAL])
    client, _ = await make_proxy()
    for _ in range(5):
        body, clean = await read_all(
            await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
        )
        assert clean and body.endswith(b"data: [DONE]\n\n")
    assert len({s.peer for s in scripted.seen}) == 1, [s.peer for s in scripted.seen]
    # a tail that comes after the client's response ended (read after the handler returned):
    # the connection still goes back to the pool once the body ends
    scripted.seen.clear()
    scripted.script = Stream([completion(" Hello"), FINAL, 0.05, b": tail\n\n"])
    tails = client.server.app[UPSTREAM_KEY].tails
    for _ in range(3):
        body, clean = await read_all(
            await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
        )
        assert clean and body.endswith(b"data: [DONE]\n\n")
        for _ in range(100):  # the tail ends 50 ms after the final event
            if not len(tails):
                break
            await asyncio.sleep(0.01)
    assert len({s.peer for s in scripted.seen}) == 1, [s.peer for s in scripted.seen]


def _lingering(path: str) -> tuple[Stream, dict[str, str]]:
    """An upstream that sends the stream's final event and then lingers 5 s before the rest of
    its body (Messages: message_stop; both: the chunked terminator), and the proxy settings
    that send a legacy completion to that upstream path."""
    if path == "complete":
        return Stream([completion(" Hello"), FINAL, 5.0]), {}
    upstream = (TRANSCRIPTS / "m01_basic.upstream").read_bytes()
    cut = upstream.index(b"event: message_stop")
    return (
        Stream([upstream[:cut], 5.0, upstream[cut:]]),
        {"messages_default": "claude-sonnet-4-5"},
    )


@pytest.mark.parametrize("path", ["messages", "complete"])
async def test_a_kept_alive_clients_next_request_does_not_wait_for_the_upstreams_tail(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str], path: str
) -> None:
    """aiohttp serves a kept-alive connection's next request only once the handler returns: the
    handler must not wait for the upstream's last bytes after the client's response is complete
    (issue 18). The upstream sends its final event, then lingers 5 s before its terminator; the
    second request on the same client connection gets its headers while the first upstream is
    still lingering: not finished, and not cut either (its tail is still being read)."""
    scripted, _ = upstream
    scripted.script, env = _lingering(path)
    client, _ = await make_proxy(**env)
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    data = json.dumps(STREAM_BODY).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in LEGACY.items())
    request = (
        f"POST /v1/complete HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data

    async def exchange_two() -> tuple[bytes, bytes, int, int]:
        writer.write(request)
        first = await reader.readuntil(b"\r\n0\r\n\r\n")  # the whole first response
        writer.write(request)  # the same connection, once the first response is complete
        second_head = await reader.readuntil(b"\r\n\r\n")
        return first, second_head, scripted.open_streams, scripted.disconnects

    try:
        # a safety net only: the ordering below is what the test asserts
        first, second_head, open_streams, disconnects = await asyncio.wait_for(exchange_two(), 30)
    finally:
        writer.close()
    assert first.startswith(b"HTTP/1.1 200") and b"data: [DONE]" in first
    assert second_head.startswith(b"HTTP/1.1 200")
    assert [seen.path_qs for seen in scripted.seen] == [f"/v1/{path}"] * 2
    # both upstream streams open: the first still lingering before its terminator, untouched
    assert (open_streams, disconnects) == (2, 0)
    # its tail is read in the background, by a task the app tracks and ends on shutdown
    tails = client.server.app[UPSTREAM_KEY].tails
    assert len(tails) >= 1
    await client.close()
    assert len(tails) == 0


async def test_the_response_headers_never_wait_for_a_quiet_upstream(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    """An upstream that answers its headers and then thinks (or stalls) must not hold the
    client's headers."""
    scripted, _ = upstream
    scripted.script = Stream(["stall"])
    client, _ = await make_proxy()
    # a safety net only: with the headers held, the response would never start
    resp = await asyncio.wait_for(client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY), 10)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    resp.close()


async def test_an_upstream_that_lingers_after_its_final_event_delays_nothing(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    """An upstream that lingers after its final event: the client is done at once, the stream is
    ok, and the lingering connection is simply not reused."""
    scripted, _ = upstream
    scripted.script = Stream([completion(" Hello"), FINAL, 5.0])
    client, metrics = await make_proxy()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    body, clean = await read_all(
        await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
    )
    assert clean and body.endswith(b"data: [DONE]\n\n")
    assert loop.time() - t0 < 1
    for _ in range(100):
        if metrics.requests.labels("convert", "complete", "ok")._value.get():
            break
        await asyncio.sleep(0.02)
    assert metrics.requests.labels("convert", "complete", "ok")._value.get() == 1
