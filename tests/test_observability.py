"""Metrics, the migration view, deprecation headers and logs, after real SDK traffic (issue 5)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from proxy.legacy import ClientId
from proxy.metrics import ClientLabels, Metrics
from proxy.server.state import ServerState
from tests.clients.harness import run_py_legacy, run_py_modern
from tests.conftest import ProxyFactory, StackFactory, admin_client
from tests.e2e.scripted import FINAL, Respond, ScriptedUpstream, Stream, completion

ROOT = Path(__file__).resolve().parents[1]
METRIC_RE = re.compile(r"\blegacy_proxy_[a-z_]+")


def referenced_metrics() -> set[str]:
    dashboard = json.loads((ROOT / "deploy/grafana/legacy-stream-proxy.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules.yaml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return {name for e in exprs for name in METRIC_RE.findall(e)}


def test_dashboard_and_rules_use_only_exported_metrics() -> None:
    exported = set(Metrics().metric_names())
    used = referenced_metrics()
    assert used, "found no metric names: the check itself is broken"
    assert used <= exported, sorted(used - exported)
    assert "legacy_proxy_added_latency_seconds_bucket" in used


def test_client_labels_are_bounded() -> None:
    labels = ClientLabels(["anthropic-python"], max_values=2)
    assert labels.label(ClientId("anthropic-python", "0.2.10")) == "anthropic-python/0.2"
    assert labels.label(ClientId("anthropic-python", "0.2.2")) == "anthropic-python/0.2"
    assert labels.label(ClientId("curl", "8.0")) == "other"
    assert labels.label(None) == "other"
    assert labels.label(ClientId("anthropic-python", "0.3.1")) == "anthropic-python/0.3"
    assert labels.label(ClientId("anthropic-python", "0.4.0")) == "other"  # cap of 2 reached


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.mark.clients
async def test_metrics_and_migration_tell_the_story(stack: StackFactory) -> None:
    """The proxy on its defaults: every /v1/complete through Messages (spec section 6), legacy and
    2023-06-01 clients alike, counted per legacy model name and per target that answered."""
    s = await stack()
    for mode in ("sync-stream", "async-stream"):
        assert (await run_py_legacy(s.url, mode)).ok  # claude-2.0
    # a name outside the built-in table: served, but counted as "other", never as a label
    assert (await run_py_legacy(s.url, "sync", model="claude-2.0-my-finetune")).ok
    assert (await run_py_modern(s.url)).ok  # claude-2.0, in the 2023-06-01 format

    admin = await admin_client(s.metrics, ServerState())
    text = await (await admin.get("/metrics")).text()
    got = samples(text)

    def value(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    def total(name: str) -> float:
        return sum(v for (n, _), v in got.items() if n == name)

    route = {"mode": "convert", "route": "complete_via_messages"}
    assert value("legacy_proxy_requests_total", **route, outcome="ok") == 4
    assert total("legacy_proxy_requests_total") == 4
    assert (
        value("legacy_proxy_legacy_requests_total", client="anthropic-python/0.2", streamed="true")
        == 2
    )
    assert (
        value("legacy_proxy_legacy_requests_total", client="anthropic-python/0.2", streamed="false")
        == 1
    )
    balanced = "claude-sonnet-5-5"
    for model, target, client_format, n in (
        ("claude-2.0", balanced, "legacy", 2),
        ("other", balanced, "legacy", 1),
        ("claude-2.0", balanced, "modern", 1),
    ):
        labels = {"model": model, "target": target, "format": client_format}
        assert value("legacy_proxy_complete_models_total", **labels) == n, labels
    assert total("legacy_proxy_complete_models_total") == 4
    # three streams (two legacy, one 2023-06-01) of 12 text deltas; thinking was switched off
    assert value("legacy_proxy_upstream_events_total", kind="content_block_delta") == 3 * 12
    assert value("legacy_proxy_upstream_events_total", kind="message_delta") == 3
    # "done": a stream ended with its stop_reason ([DONE] for legacy, the final event for 0.3.x)
    assert value("legacy_proxy_legacy_events_total", kind="done") == 3
    assert value("legacy_proxy_upstream_responses_total", status_class="2xx") == 4
    assert value("legacy_proxy_messages_thinking_blocks_total") == 0
    assert value("legacy_proxy_messages_fallbacks_total") == 0
    # nothing in a plain "Say hello" needs changing for a 5.x target
    assert total("legacy_proxy_messages_prefill_total") == 0
    assert total("legacy_proxy_messages_dropped_fields_total") == 0
    assert value("legacy_proxy_streams_in_progress", mode="convert") == 0
    assert value("legacy_proxy_added_latency_seconds_count") > 0
    bytes_in = value("legacy_proxy_stream_bytes_total", direction="in")
    bytes_out = value("legacy_proxy_stream_bytes_total", direction="out")
    assert bytes_in > 0 and bytes_out > 0
    assert value("legacy_proxy_build_info", version=__import__("proxy").__version__) == 1
    # labels only from fixed sets: no request ids, paths or free-form model names; the legacy
    # model names are the built-in table's (a bounded set), so claude-2.0 may appear, as a label
    assert "req_" not in text and "/v1/" not in text and "my-finetune" not in text
    assert text.count("claude-2.0") == text.count('model="claude-2.0"') > 0

    view = await (await admin.get("/migration")).json()
    python = view["clients"]["anthropic-python/0.2"]
    assert (python["requests"], python["streamed_requests"], python["errors"]) == (3, 2, 0)
    assert python["first_seen"] <= python["last_seen"]
    assert view["totals"] == {"clients": 1, "requests": 3, "streamed_requests": 2, "errors": 0}
    assert view["models"] == {
        "claude-2.0": {"requests": 3, "targets": {balanced: 3}},
        "other": {"requests": 1, "targets": {balanced: 1}},
    }
    await admin.close()


async def test_errors_and_a_client_that_leaves_are_counted(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    client, metrics = await make_proxy()
    scripted.script = Stream([completion(" a"), "stall"])
    resp = await client.post(
        "/v1/complete",
        json={"prompt": "x", "stream": True},
        headers={"anthropic-version": "2023-01-01", "Anthropic-SDK": "anthropic-typescript/0.4.4"},
    )
    await resp.content.readuntil(b"\n\n")
    resp.close()
    await scripted.disconnected.wait()
    await client.post("/v1/complete", data=b"{", headers={"anthropic-version": "2023-01-01"})
    assert metrics.requests.labels("convert", "complete", "client_gone")._value.get() == 1
    assert metrics.requests.labels("convert", "complete", "bad_request")._value.get() == 1
    view = metrics.migration.view()
    assert view["clients"]["anthropic-typescript/0.4"]["errors"] == 1


async def test_a_client_that_leaves_before_upstream_headers_is_client_gone(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    scripted.script = Stream([FINAL], delay_headers=5.0)
    client, metrics = await make_proxy()
    task = asyncio.create_task(
        client.post(
            "/v1/complete",
            json={"prompt": "x", "stream": True},
            headers={"anthropic-version": "2023-01-01"},
        )
    )
    await asyncio.wait_for(_seen(scripted), 2)
    task.cancel()
    await asyncio.wait_for(scripted.disconnected.wait(), 2)
    await asyncio.sleep(0.05)
    assert metrics.requests.labels("convert", "complete", "client_gone")._value.get() == 1
    assert metrics.requests.labels("convert", "complete", "ok")._value.get() == 0


async def _seen(scripted: ScriptedUpstream) -> None:
    while not scripted.seen:  # noqa: ASYNC110 (a list in another server)
        await asyncio.sleep(0.01)


async def test_deprecation_headers_when_switched_on(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    scripted.script = Stream([completion(" a"), FINAL])
    legacy = {"anthropic-version": "2023-01-01"}
    client, _ = await make_proxy()
    resp = await client.post("/v1/complete", json={"prompt": "x", "stream": True}, headers=legacy)
    assert "Deprecation" not in resp.headers  # off by default
    await resp.read()
    client, _ = await make_proxy(
        deprecation_enabled="true",
        deprecation_date="2023-07-01",
        deprecation_sunset="2027-01-31",
        deprecation_link="https://example.com/migrate",
    )
    resp = await client.post("/v1/complete", json={"prompt": "x", "stream": True}, headers=legacy)
    assert resp.headers["Deprecation"] == "@1688169600"
    assert resp.headers["Sunset"] == "Sun, 31 Jan 2027 00:00:00 GMT"
    assert (
        resp.headers["Link"] == '<https://example.com/migrate>; rel="deprecation"; type="text/html"'
    )
    await resp.read()
    resp = await client.get("/v1/models", headers={"anthropic-version": "2023-06-01"})
    assert "Deprecation" not in resp.headers  # only converted responses carry it


async def test_logs_never_hold_keys_or_bodies(
    make_proxy: ProxyFactory,
    upstream: tuple[ScriptedUpstream, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    scripted, _ = upstream
    scripted.script = Stream([completion(" SECRET-COMPLETION-TEXT"), FINAL])
    client, _ = await make_proxy()
    # shaped like a real key (built here so no key-shaped literal sits in the repository)
    key = "sk-ant-" + "api03-" + "abcdefghijklmnopqrstuvwxyz0123456789"
    body = {"prompt": "\n\nHuman: SECRET-PROMPT\n\nAssistant:", "stream": True}
    for headers in (
        {"anthropic-version": "2023-01-01", "x-api-key": key},
        {"anthropic-version": "2023-06-01", "Authorization": f"Bearer {key}"},
    ):
        await (await client.post("/v1/complete", json=body, headers=headers)).read()
    await (
        await client.post("/v1/complete", data=b"{" + key.encode(), headers={"x-api-key": key})
    ).read()
    out = capsys.readouterr()
    logged = out.out + out.err
    assert logged.count("request.done") == 3  # the check looks at real log lines
    for secret in (key, "abcdefghijklmnop", "SECRET-PROMPT", "SECRET-COMPLETION-TEXT"):
        assert secret not in logged


async def test_every_stream_metric_counts_what_happened(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    """The counters a migration dashboard is built from, each driven by a request that must move
    it: unknown events dropped, Messages blocks dropped and stop reasons mapped (streaming and
    not), durations and time to upstream headers, and spec rule 8 (a client that hangs up right
    after the stop_reason event, as the TypeScript 0.4.x client does, leaves an ok stream)."""
    scripted, _ = upstream
    legacy = {"anthropic-version": "2023-01-01"}
    client, m = await make_proxy(messages_models="claude-2.1=claude-sonnet-4-5")
    transcripts = Path(__file__).parent / "transcripts"

    scripted.script = Stream([(transcripts / "11_unknown_events_dropped.upstream").read_bytes()])
    await (await client.post("/v1/complete", json={"stream": True}, headers=legacy)).read()
    assert m.unknown_events._value.get() == 3

    scripted.script = Stream([(transcripts / "m04_tool_use_dropped.upstream").read_bytes()])
    body = {"model": "claude-2.1", "prompt": "\n\nHuman: hi\n\nAssistant:", "stream": True}
    body["max_tokens_to_sample"] = 5
    await (await client.post("/v1/complete", json=body, headers=legacy)).read()
    assert m.messages_dropped_blocks._value.get() == 1
    assert m.messages_other_stop_reasons._value.get() == 1

    message = {
        "id": "msg_1",
        "type": "message",
        "content": [{"type": "tool_use", "id": "t", "name": "x", "input": {}}],
        "stop_reason": "tool_use",
    }
    scripted.script = Respond(
        200, json.dumps(message).encode(), {"Content-Type": "application/json"}
    )
    resp = await client.post("/v1/complete", json={**body, "stream": False}, headers=legacy)
    assert (await resp.json())["stop_reason"] == "stop_sequence"
    assert m.messages_dropped_blocks._value.get() == 2
    assert m.messages_other_stop_reasons._value.get() == 2

    scripted.script = Stream([completion(" a"), FINAL, "stall"])
    resp = await client.post("/v1/complete", json={"stream": True}, headers=legacy)
    await resp.content.readuntil(b'"stop_reason":"stop_sequence"')
    resp.close()  # gone before [DONE] was read, and before the upstream ended
    await asyncio.wait_for(scripted.disconnected.wait(), 3)
    await asyncio.sleep(0.05)

    ok = m.requests.labels("convert", "complete", "ok")._value.get()
    assert ok == 2 and m.requests.labels("convert", "complete", "client_gone")._value.get() == 0
    assert m.requests.labels("convert", "complete_via_messages", "ok")._value.get() == 2
    assert m.request_duration.labels("convert", "complete")._sum.get() > 0
    assert m.request_duration.labels("convert", "complete_via_messages")._sum.get() > 0
    first_byte = [
        s.value
        for metric in m.upstream_first_byte.collect()
        for s in metric.samples
        if s.name.endswith("_count") and s.labels == {"mode": "convert"}
    ]
    assert first_byte == [4.0]  # every converted request above
