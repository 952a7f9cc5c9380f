"""One frozen Settings object, loaded once: defaults < TOML file < environment.

Top-level keys map to ``LEGACY_PROXY_<KEY>`` and section keys to ``LEGACY_PROXY_<SECTION>_<KEY>``
(``[timeouts] connect`` <-> ``LEGACY_PROXY_TIMEOUTS_CONNECT``). A new section is one dataclass
and one field on Settings. Every problem is a ConfigError naming the key (or the variable) and
what is wrong, in one line.

Unknown ``LEGACY_PROXY_*`` variables are ignored on purpose: Kubernetes injects service-link
variables such as ``LEGACY_PROXY_PORT=tcp://10.0.0.1:8787`` for a Service named legacy-proxy, so
the manifests set ``enableServiceLinks: false``, and a bad value in a *known* variable names it.
Unknown keys in the file are errors (they are typos).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, Literal, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from proxy.errors import ConfigError

ENV_PREFIX: Final = "LEGACY_PROXY_"


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    stream_headers: float = 60.0
    headers: float = 600.0
    idle: float = 120.0


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = 10 * 1024 * 1024
    max_event_bytes: int = 1024 * 1024
    max_streams: int = 2048
    upstream_connections: int = 0
    backlog: int = 4096
    write_high_water_bytes: int = 65536


@dataclass(frozen=True, slots=True)
class Legacy:
    missing_version: Literal["legacy", "modern", "reject"] = "legacy"
    pings: Literal["forward", "drop"] = "forward"
    event_ids: Literal["auto", "always", "never"] = "auto"


@dataclass(frozen=True, slots=True)
class Shutdown:
    drain_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    ca_bundle: str = ""
    trust_env: bool = True


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    client_allowlist: tuple[str, ...] = ("anthropic-python", "anthropic-typescript")
    max_client_labels: int = 20


@dataclass(frozen=True, slots=True)
class Deprecation:
    enabled: bool = False
    date: str = "2023-06-01"
    sunset: str = ""
    link: str = ""


@dataclass(frozen=True, slots=True)
class MessagesSettings:
    # legacy model name -> current model; a legacy /v1/complete request for one of these names
    # is served through /v1/messages (spec section 6)
    models: dict[str, str] = field(default_factory=dict)
    # the model for legacy names not in the table; empty: they keep going to /v1/complete
    default: str = ""

    def target(self, legacy_model: object) -> str | None:
        if isinstance(legacy_model, str) and legacy_model in self.models:
            return self.models[legacy_model]
        return self.default or None


@dataclass(frozen=True, slots=True)
class Settings:
    upstream_url: str = "https://api.anthropic.com"
    host: str = "127.0.0.1"
    port: int = 8787
    admin_host: str = "0.0.0.0"
    admin_port: int = 8788
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
    legacy: Legacy = field(default_factory=Legacy)
    shutdown: Shutdown = field(default_factory=Shutdown)
    upstream: UpstreamSettings = field(default_factory=UpstreamSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    deprecation: Deprecation = field(default_factory=Deprecation)
    messages: MessagesSettings = field(default_factory=MessagesSettings)


# Checks beyond the type, by dotted key: (predicate, what must hold).
_RULES: Final[dict[str, tuple[Any, str]]] = {
    "port": (lambda v: 1 <= v <= 65535, "must be a port number 1-65535"),
    "admin_port": (lambda v: 1 <= v <= 65535, "must be a port number 1-65535"),
    "limits.max_body_bytes": (lambda v: v > 0, "must be > 0"),
    "limits.max_event_bytes": (lambda v: v >= 1024, "must be >= 1024"),
    "limits.max_streams": (lambda v: v > 0, "must be > 0"),
    "limits.upstream_connections": (lambda v: v >= 0, "must be >= 0 (0: no cap)"),
    "limits.backlog": (lambda v: v > 0, "must be > 0"),
    "limits.write_high_water_bytes": (lambda v: v >= 1024, "must be >= 1024"),
    "shutdown.drain_seconds": (lambda v: v >= 0, "must be a number >= 0"),
    "metrics.max_client_labels": (lambda v: 1 <= v <= 200, "must be 1-200"),
}


def _sections() -> dict[str, type]:
    hints = get_type_hints(Settings)
    return {
        f.name: hints[f.name] for f in fields(Settings) if dataclasses.is_dataclass(hints[f.name])
    }


def _convert(key: str, hint: Any, value: Any, source: str) -> Any:
    """Turn a TOML value, or an environment string, into the field's type."""
    from_env = source == "env"
    shown = f'"{value}"' if isinstance(value, str) else repr(value)
    if get_origin(hint) is Literal:
        choices = get_args(hint)
        if value not in choices:
            raise ConfigError(key, f"must be one of {', '.join(choices)}, got {shown}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if from_env and isinstance(value, str):
            low = value.strip().lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
        raise ConfigError(key, f"must be true or false, got {shown}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_env and isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(key, f"must be a whole number, got {shown}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif from_env and isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise ConfigError(key, f"must be a number > 0, got {shown}") from None
        else:
            raise ConfigError(key, f"must be a number > 0, got {shown}")
        if key.startswith("timeouts.") and not number > 0:
            raise ConfigError(key, f"must be a number > 0, got {shown}")
        return number
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"must be a string, got {shown}")
    if get_origin(hint) is dict:
        if from_env and isinstance(value, str):
            pairs = [p.partition("=") for p in value.split(",") if p.strip()]
            if all(sep and k.strip() and v.strip() for k, sep, v in pairs):
                return {k.strip(): v.strip() for k, _, v in pairs}
            raise ConfigError(key, f"must be name=value pairs separated by commas, got {shown}")
        if isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()
        ):
            return dict(value)
        raise ConfigError(key, f"must be a table of names to non-empty strings, got {shown}")
    if get_origin(hint) is tuple:
        if from_env and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(key, f"must be a list of strings, got {shown}")
    raise ConfigError(key, f"unsupported setting type {hint!r}")  # pragma: no cover


def _build(cls: type, prefix: str, values: dict[str, Any], env_names: dict[str, str]) -> Any:
    hints = get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        if f.name in values:
            key = prefix + f.name
            label = env_names.get(key, key)
            value = _convert(
                label, hints[f.name], values[f.name], "env" if key in env_names else "file"
            )
            rule = _RULES.get(key)
            if rule is not None and not rule[0](value):
                raise ConfigError(label, f"{rule[1]}, got {value!r}")
            kwargs[f.name] = value
    return cls(**kwargs)


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    sections = _sections()
    top_level = {f.name for f in fields(Settings)} - set(sections)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("--config", f"no such file: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{path}: {exc}") from None
        except OSError as exc:
            raise ConfigError("--config", f"{path}: {exc.strerror}") from None
    for key, value in data.items():
        if key in sections:
            if not isinstance(value, dict):
                raise ConfigError(key, "must be a table ([" + key + "])")
            known = {f.name for f in fields(sections[key])}
            for sub in value:
                if sub not in known:
                    raise ConfigError(f"{key}.{sub}", "unknown setting")
        elif key not in top_level:
            raise ConfigError(key, "unknown setting")

    env_names: dict[str, str] = {}
    for name in top_level:
        var = ENV_PREFIX + name.upper()
        if var in environ:
            data[name] = environ[var]
            env_names[name] = var
    for section, cls in sections.items():
        for f in fields(cls):
            var = f"{ENV_PREFIX}{section.upper()}_{f.name.upper()}"
            if var in environ:
                data.setdefault(section, {})
                data[section] = {**data[section], f.name: environ[var]}
                env_names[f"{section}.{f.name}"] = var

    built = {
        section: _build(cls, section + ".", data.get(section, {}), env_names)
        for section, cls in sections.items()
    }
    settings: Settings = _build(
        Settings, "", {k: v for k, v in data.items() if k in top_level}, env_names
    )
    settings = dataclasses.replace(settings, **built)
    _check(settings, env_names)
    return settings


def _check(s: Settings, env_names: dict[str, str]) -> None:
    def label(key: str) -> str:
        return env_names.get(key, key)

    parts = urlsplit(s.upstream_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            label("upstream_url"), f'must be an http:// or https:// URL, got "{s.upstream_url}"'
        )
    if parts.query or parts.fragment:
        raise ConfigError(label("upstream_url"), "must not have a query or fragment")
    if s.upstream.ca_bundle and not Path(s.upstream.ca_bundle).is_file():
        raise ConfigError(label("upstream.ca_bundle"), f"no such file: {s.upstream.ca_bundle}")
    for key, value in (("deprecation.date", s.deprecation.date),
                       ("deprecation.sunset", s.deprecation.sunset)):  # fmt: skip
        if value:
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                raise ConfigError(
                    label(key), f'must be a date like 2024-09-30, got "{value}"'
                ) from None
    if s.deprecation.link and urlsplit(s.deprecation.link).scheme not in ("http", "https"):
        raise ConfigError(label("deprecation.link"), "must be an http:// or https:// URL")
    if (s.host, s.port) == (s.admin_host, s.admin_port):
        raise ConfigError(label("admin_port"), "must differ from port on the same host")
    object.__setattr__(s, "upstream_url", s.upstream_url.rstrip("/"))
