"""Settings: defaults < file < environment, and one clear line for every bad value."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.errors import ConfigError
from proxy.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "proxy.toml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "proxy.toml"
    p.write_text(text)
    return p


def test_defaults() -> None:
    s = load_settings(None, {})
    assert s == Settings()
    assert (s.upstream_url, s.host, s.port, s.admin_host, s.admin_port) == (
        "https://api.anthropic.com", "127.0.0.1", 8787, "0.0.0.0", 8788,
    )  # fmt: skip
    assert s.limits.upstream_connections == 0  # never aiohttp's silent 100


def test_documented_config_equals_the_defaults() -> None:
    """config/proxy.toml shows every key with its default: it cannot drift from the code."""
    assert load_settings(CONFIG, {}) == Settings()


def all_keys() -> list[tuple[str | None, str]]:
    keys: list[tuple[str | None, str]] = []
    defaults = Settings()
    for f in dataclasses.fields(Settings):
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            keys += [(f.name, sub.name) for sub in dataclasses.fields(value)]
        else:
            keys.append((None, f.name))
    return keys


def test_every_key_is_documented_in_the_file_and_the_env_example() -> None:
    toml = CONFIG.read_text()
    env = (ROOT / "config" / "example.env").read_text()
    for section, key in all_keys():
        table = section is not None and re.search(rf"^\[{section}\.{key}\]$", toml, re.M)
        assert table or re.search(rf"^{key} = ", toml, re.M), key
        var = f"LEGACY_PROXY_{(section + '_' if section else '').upper()}{key.upper()}"
        assert f"{var}=" in env, var
        if section:
            assert f"[{section}]" in toml


def test_file_then_env(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = 9000\n[timeouts]\nconnect = 3\n[legacy]\npings = "drop"\n')
    s = load_settings(path, {})
    assert (s.port, s.timeouts.connect, s.legacy.pings) == (9000, 3.0, "drop")
    s = load_settings(path, {"LEGACY_PROXY_PORT": "9100", "LEGACY_PROXY_TIMEOUTS_CONNECT": "4.5"})
    assert (s.port, s.timeouts.connect) == (9100, 4.5)
    s = load_settings(None, {"LEGACY_PROXY_UPSTREAM_TRUST_ENV": "no"})
    assert s.upstream.trust_env is False


def test_messages_model_table(tmp_path: Path) -> None:
    path = write(tmp_path, '[messages.models]\n"claude-2.1" = "claude-sonnet-4-5"\n')
    s = load_settings(path, {})
    assert s.messages.models == {"claude-2.1": "claude-sonnet-4-5"}
    assert s.messages.target("claude-2.1") == "claude-sonnet-4-5"
    assert s.messages.target("claude-2.0") is None  # unmapped: still /v1/complete
    env = {"LEGACY_PROXY_MESSAGES_MODELS": "a=b, c=d", "LEGACY_PROXY_MESSAGES_DEFAULT": "x"}
    s = load_settings(None, env)
    assert s.messages.models == {"a": "b", "c": "d"} and s.messages.target("zzz") == "x"
    with pytest.raises(ConfigError, match="LEGACY_PROXY_MESSAGES_MODELS: must be name=value"):
        load_settings(None, {"LEGACY_PROXY_MESSAGES_MODELS": "oops"})
    with pytest.raises(ConfigError, match=r"messages\.models: must be a table"):
        load_settings(write(tmp_path, '[messages]\nmodels = "x"\n'), {})


def test_unknown_env_vars_are_ignored() -> None:
    # what Kubernetes service links inject for a Service named legacy-proxy
    s = load_settings(
        None, {"LEGACY_PROXY_SERVICE_HOST": "10.0.0.1", "LEGACY_PROXY_PORT_8787_TCP": "x"}
    )
    assert s == Settings()


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ('[timeouts]\nconnect = "abc"\n', {}, 'timeouts.connect: must be a number > 0, got "abc"'),
        ("[timeouts]\nconnect = 0\n", {}, "timeouts.connect: must be a number > 0, got 0"),
        (
            "",
            {"LEGACY_PROXY_TIMEOUTS_IDLE": "soon"},
            'LEGACY_PROXY_TIMEOUTS_IDLE: must be a number > 0, got "soon"',
        ),
        (
            "",
            {"LEGACY_PROXY_PORT": "tcp://10.0.0.1:8787"},
            'LEGACY_PROXY_PORT: must be a whole number, got "tcp://10.0.0.1:8787"',
        ),
        ("port = 70000\n", {}, "port: must be a port number 1-65535, got 70000"),
        (
            '[legacy]\npings = "sometimes"\n',
            {},
            'legacy.pings: must be one of forward, drop, got "sometimes"',
        ),
        ("[timeouts]\nconect = 3\n", {}, "timeouts.conect: unknown setting"),
        ('uptream_url = "x"\n', {}, "uptream_url: unknown setting"),
        (
            'upstream_url = "ftp://x"\n',
            {},
            'upstream_url: must be an http:// or https:// URL, got "ftp://x"',
        ),
        (
            "",
            {"LEGACY_PROXY_UPSTREAM_TRUST_ENV": "maybe"},
            'LEGACY_PROXY_UPSTREAM_TRUST_ENV: must be true or false, got "maybe"',
        ),
        (
            '[upstream]\nca_bundle = "/nonexistent.pem"\n',
            {},
            "upstream.ca_bundle: no such file: /nonexistent.pem",
        ),
        ("timeouts = 3\n", {}, "timeouts: must be a table ([timeouts])"),
    ],
)
def test_bad_values_name_the_key(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), env)
    assert str(info.value) == message


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, "port = 80\nhost = \n"), {})
    assert "proxy.toml" in str(info.value) and "line 2" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "nope.toml", {})


def test_bad_config_stops_start_up_with_one_line_and_status_2(tmp_path: Path) -> None:
    path = write(tmp_path, "[timeouts]\nconnect = -1\n")
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "--config", str(path)],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "config error: timeouts.connect: must be a number > 0, got -1"
    ]
