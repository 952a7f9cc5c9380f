"""Start-up as an operator meets it (issue 16): every failure is one line on stderr naming the
setting and the cause, with a documented exit status, and never a traceback or a leak warning;
misspelled variables and an upstream that cannot be resolved are warned about, never refused; an
unreachable upstream is named, with the operating system's reason."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import structlog

from tests.conftest import ProxyFactory
from tests.e2e.test_process import LEGACY, free_port, start_proxy, stop

ROOT = Path(__file__).resolve().parents[2]
BODY = {"model": "claude-2.0", "prompt": "\n\nHuman: hi\n\nAssistant:", "stream": True}


def run_proxy(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m proxy` with only the given settings (no LEGACY_PROXY_* from the caller)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEGACY_PROXY_")}
    environ.update({"LEGACY_PROXY_ADMIN_HOST": "127.0.0.1", "LEGACY_PROXY_LOG_FORMAT": "json"})
    environ.update({f"LEGACY_PROXY_{k.upper()}": v for k, v in env.items()})
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        capture_output=True, text=True, timeout=30, cwd=ROOT, env=environ,
    )  # fmt: skip


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other process listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def resolver_says(name: str) -> str:
    try:
        socket.getaddrinfo(name, None)
    except socket.gaierror as exc:
        return str(exc.strerror)
    pytest.skip(reason=f"this machine's resolver answers for {name!r}")


def assert_one_line(result: subprocess.CompletedProcess[str], line: str, status: int) -> None:
    assert result.stderr.splitlines() == [line], result.stderr
    assert result.returncode == status
    assert "Traceback" not in result.stdout and "Unclosed" not in result.stdout, result.stdout


def test_traffic_port_in_use(taken_port: int) -> None:
    result = run_proxy(port=str(taken_port), admin_port=str(free_port()))
    assert_one_line(result, f"could not listen: port: 127.0.0.1:{taken_port} is already in use", 3)


def test_admin_port_in_use(taken_port: int) -> None:
    result = run_proxy(port=str(free_port()), admin_port=str(taken_port))
    assert_one_line(
        result, f"could not listen: admin_port: 127.0.0.1:{taken_port} is already in use", 3
    )


@pytest.mark.parametrize("key", ["host", "admin_host"])
def test_an_address_this_machine_does_not_have(key: str) -> None:
    port, admin = free_port(), free_port()
    result = run_proxy(port=str(port), admin_port=str(admin), **{key: "10.255.255.1"})
    reason = os.strerror(errno.EADDRNOTAVAIL)
    where = f"10.255.255.1:{port if key == 'host' else admin}"
    assert_one_line(
        result,
        f"could not listen: {key}: {where}: {reason} (not an address of this machine)",
        3,
    )


@pytest.mark.parametrize("key", ["host", "admin_host"])
def test_a_host_that_does_not_resolve(key: str) -> None:
    reason = resolver_says("localhostt")
    result = run_proxy(port=str(free_port()), admin_port=str(free_port()), **{key: "localhostt"})
    assert_one_line(result, f'could not listen: {key}: cannot resolve "localhostt": {reason}', 3)


def test_bad_configuration_is_status_2() -> None:
    result = run_proxy(timeouts_connect="-1")
    assert_one_line(result, 'config error: LEGACY_PROXY_TIMEOUTS_CONNECT: must be a number > 0, '
                    'got "-1"', 2)  # fmt: skip


def test_a_ca_bundle_openssl_cannot_read_is_a_configuration_error(tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text("not a certificate\n")
    result = run_proxy(port=str(free_port()), admin_port=str(free_port()),
                       upstream_ca_bundle=str(pem))  # fmt: skip
    assert_one_line(
        result,
        "config error: upstream.ca_bundle: not a PEM certificate bundle: "
        "NO_CERTIFICATE_OR_CRL_FOUND",
        2,
    )


@pytest.mark.parametrize(
    ("name", "value", "link"),
    [
        ("LEGACY_PROXY_SERVICE_HOST", "10.0.0.1", True),
        ("LEGACY_PROXY_SERVICE_PORT", "8787", True),
        ("LEGACY_PROXY_SERVICE_PORT_HTTP", "8787", True),  # a named port
        ("LEGACY_PROXY_PORT_8787_TCP", "tcp://10.0.0.1:8787", True),
        ("LEGACY_PROXY_PORT_8787_TCP_PROTO", "tcp", True),
        ("LEGACY_PROXY_PORT_8787_TCP_PORT", "8787", True),
        ("LEGACY_PROXY_PORT_8787_TCP_ADDR", "10.0.0.1", True),
        ("LEGACY_PROXY_ADMIN_SERVICE_HOST", "10.0.0.2", True),  # Service "legacy-proxy-admin"
        ("LEGACY_PROXY_ADMIN_PORT_8788_UDP", "udp://10.0.0.2:8788", True),
        ("LEGACY_PROXY_TIMEOUT_CONNECT", "5", False),  # typos are not links
        ("LEGACY_PROXY_NOPE", "1", False),
        ("LEGACY_PROXY_SERVICEHOST", "x", False),
        ("LEGACY_PROXY_WEB_PORT", "tcp://10.0.0.3:80", True),  # Service "legacy-proxy-web"
        ("LEGACY_PROXY_PORT", "tcp://10.0.0.1:8787", True),  # a link, though also a setting
        ("LEGACY_PROXY_ADMN_PORT", "8788", False),  # a typo for ADMIN_PORT, not a link
        ("LEGACY_PROXY_ADMN_PORT", "tcp://10.0.0.1:8788", True),
    ],
)
def test_service_links_are_told_from_typos(name: str, value: str, link: bool) -> None:
    from proxy.settings import is_service_link, unknown_variables

    assert is_service_link(name, value) is link
    assert (unknown_variables({name: value}) == []) is link


def test_a_service_link_in_the_port_variable_says_what_to_do() -> None:
    result = run_proxy(port="tcp://10.0.0.1:8787")
    assert_one_line(
        result,
        'config error: LEGACY_PROXY_PORT: must be a whole number, got "tcp://10.0.0.1:8787" '
        "(a Kubernetes service link for a Service named legacy-proxy: set enableServiceLinks: "
        "false in the pod spec)",
        2,
    )


def test_help_lists_every_setting_and_the_exit_statuses() -> None:
    from proxy.settings import described, toml_value

    result = run_proxy("--help")
    assert result.returncode == 0 and not result.stderr
    split = [line.split(None, 2) for line in result.stdout.splitlines()]
    rows = {r[0]: r[1:] for r in split if len(r) == 3}
    for key, variable, default in described():
        # a long table starts on the row with "{" and lists its entries below
        assert rows[key] in ([variable, toml_value(default)], [variable, "{"]), key
    for phrase in ("without --config", "relative to the current directory", "--print-config",
                   "2 bad configuration", "3 could not listen"):  # fmt: skip
        assert phrase in " ".join(result.stdout.split()), phrase


def test_long_defaults_are_shown_one_entry_per_line() -> None:
    from proxy.settings import Legacy, shown_default

    assert shown_default({}, 70) == "{}"
    assert shown_default(["a", "b"], 70) == '["a", "b"]'
    tiers = {"fast": ["claude-haiku-4-5"], "balanced": ["claude-sonnet-4-6", "claude-sonnet-4-5"]}
    assert shown_default(tiers, 70).splitlines() == [
        "{",
        '    fast = ["claude-haiku-4-5"],',
        '    balanced = ["claude-sonnet-4-6", "claude-sonnet-4-5"]',
        "  }",
    ]
    profiles = {"claude-x-1": Legacy()}  # any dataclass: a profile per model
    assert shown_default(profiles, 70).splitlines()[1] == (
        '    claude-x-1 = { missing_version = "legacy", pings = "forward", event_ids = "auto" }'
    )


def test_print_config_prints_the_settings_in_force(tmp_path: Path) -> None:
    import tomllib

    from proxy.settings import load_settings

    path = tmp_path / "proxy.toml"
    path.write_text('port = 9000\n[messages.models]\n"claude-2.1" = "claude-sonnet-4-5"\n')
    result = run_proxy("--config", str(path), "--print-config", legacy_pings="drop")
    assert result.returncode == 0 and not result.stderr
    printed = tmp_path / "printed.toml"
    printed.write_text(result.stdout)
    expected = load_settings(path, {
        "LEGACY_PROXY_LEGACY_PINGS": "drop",
        "LEGACY_PROXY_ADMIN_HOST": "127.0.0.1",  # as run_proxy sets them
        "LEGACY_PROXY_LOG_FORMAT": "json",
    })  # fmt: skip
    assert load_settings(printed, {}) == expected
    data = tomllib.loads(result.stdout)
    assert data["port"] == 9000 and data["legacy"]["pings"] == "drop"
    assert data["messages"]["models"] == {"claude-2.1": "claude-sonnet-4-5"}


async def test_warnings_at_start_up_and_no_created_series() -> None:
    """Unknown variables get one warning line each (service links none), an upstream name that
    does not resolve gets one, and the proxy starts all the same; /metrics has no `_created`
    series. A request then gets a 502 naming the upstream and the resolver's answer."""
    reason = resolver_says("upstream.invalid")
    p = await start_proxy(
        "http://upstream.invalid:8700",
        upstream_trust_env="false",
        timeout_connect="5",  # a typo for TIMEOUTS_CONNECT
        nope="1",
        service_host="10.0.0.1",  # what Kubernetes injects for a Service "legacy-proxy"
        service_port="8787",
        port_8787_tcp="tcp://10.0.0.1:8787",
        port_8787_tcp_addr="10.0.0.1",
        web_port="tcp://10.0.0.2:80",  # ... and for a Service "legacy-proxy-web"
    )
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(p.admin + "/metrics") as r:
                text = await r.text()
            assert "legacy_proxy_requests_total" in text
            assert "_created" not in text
            async with session.post(p.url + "/v1/complete", json=BODY, headers=LEGACY) as r:
                assert r.status == 502
                error = (await r.json())["error"]
    finally:
        assert await stop(p) == 0
    message = (
        f"upstream unreachable: upstream.invalid:8700: cannot resolve the host name ({reason})"
    )
    assert error == {"type": "api_error", "message": message}
    lines = [json.loads(line) for line in (await p.output()).splitlines() if line.startswith("{")]
    warnings = [(d["event"], d.get("variable") or d.get("error")) for d in lines
                if d["level"] == "warning"]  # fmt: skip
    assert sorted(warnings) == sorted([
        ("config.unknown_variable", "LEGACY_PROXY_NOPE"),
        ("config.unknown_variable", "LEGACY_PROXY_TIMEOUT_CONNECT"),
        ("upstream.unresolved", f"cannot resolve upstream.invalid: {reason}"),
        ("upstream.unreachable", message),
    ])  # fmt: skip
    typo = next(d for d in lines if d.get("variable") == "LEGACY_PROXY_TIMEOUT_CONNECT")
    assert typo["note"] == "not a setting, ignored; did you mean LEGACY_PROXY_TIMEOUTS_CONNECT?"


async def test_an_unreachable_upstream_is_named_with_the_os_reason(
    make_proxy: ProxyFactory,
) -> None:
    port = free_port()  # nothing listens there
    client, _ = await make_proxy(upstream_url=f"http://127.0.0.1:{port}")
    with structlog.testing.capture_logs() as logs:
        resp = await client.post("/v1/complete", json=BODY, headers=LEGACY)
    message = f"upstream unreachable: 127.0.0.1:{port}: {os.strerror(errno.ECONNREFUSED)}"
    assert resp.status == 502
    assert (await resp.json()) == {
        "type": "error",
        "error": {"type": "api_error", "message": message},
    }
    assert {"event": "upstream.unreachable", "error": message, "log_level": "warning"} in logs


async def test_a_body_over_the_limit_is_not_an_upstream_failure(make_proxy: ProxyFactory) -> None:
    """The upload stops at the body limit inside the upstream client: a 413, and no warning that
    blames the upstream."""
    client, _ = await make_proxy(limits_max_body_bytes="65536")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 65536

    headers = {"anthropic-version": "2023-06-01"}
    with structlog.testing.capture_logs() as logs:
        resp = await client.post("/v1/files", data=chunks(), headers=headers)
    assert resp.status == 413
    assert [e for e in logs if e["log_level"] == "warning"] == []


def run_demo(port: int, admin: int, sim: int) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEGACY_PROXY_")}
    return subprocess.run(
        [sys.executable, "-m", "proxy.demo", "--once", "--port", str(port),
         "--admin-port", str(admin), "--sim-port", str(sim)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=environ,
    )  # fmt: skip


def test_the_demo_stops_at_once_with_the_proxys_own_message(taken_port: int) -> None:
    loop_start = time.monotonic()
    result = run_demo(taken_port, free_port(), free_port())
    assert time.monotonic() - loop_start < 5  # not a 15 s wait that blames /readyz
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        f"could not listen: port: 127.0.0.1:{taken_port} is already in use",
        "demo: the proxy exited with status 3 at start-up (its own message is the line above)",
    ]


def test_the_demo_shows_one_request_before_and_after_with_a_ping() -> None:
    result = run_demo(free_port(), free_port(), free_port())
    assert result.returncode == 0, result.stderr
    assert not result.stderr  # no warnings
    text = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    before, _, after = text.partition("What the legacy client received")
    assert "What the upstream" in before and after
    # one exchange upstream, and it is the same request: the legacy stream's final log_id (or
    # Messages id) is the upstream's own
    assert before.count("What the upstream") == 1
    final = json.loads(after.splitlines()[-3].removeprefix("data: "))
    assert final["stop_reason"] is not None and final["log_id"] in before
    assert "event: ping" in before and "event: ping\ndata: {}\n" in after
    assert after.rstrip().endswith("data: [DONE]")
