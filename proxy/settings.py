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

import contextlib
import dataclasses
import datetime as dt
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, Literal, get_args, get_origin, get_type_hints
from urllib.parse import SplitResult, urlsplit

from proxy.errors import ConfigError

ENV_PREFIX: Final = "LEGACY_PROXY_"


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    stream_headers: float = 60.0
    headers: float = 600.0
    idle: float = 120.0
    # a complete request head, from its first byte (issue 15)
    request_head: float = 30.0


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = 10 * 1024 * 1024
    max_event_bytes: int = 1024 * 1024
    max_streams: int = 2048
    upstream_connections: int = 0
    backlog: int = 4096
    write_high_water_bytes: int = 65536
    # open client connections; 0: derived from RLIMIT_NOFILE (issue 15)
    max_connections: int = 0


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


_POSITIVE: Final = "must be a number > 0"
_PORT: Final = "must be a port number 1-65535"
# An empty host makes asyncio listen on every interface: never what an operator who cleared the
# variable meant, and for the traffic port it would expose the proxy beyond the pod.
_HOST: Final = "must not be empty (an empty host listens on every interface)"

# Checks beyond the type, by dotted key: (predicate, what must hold). A float field's type error
# uses the same words, so "abc", 0 and -1 for a timeout all read "must be a number > 0".
_RULES: Final[dict[str, tuple[Any, str]]] = {
    "host": (bool, _HOST),
    "port": (lambda v: 1 <= v <= 65535, _PORT),
    "admin_host": (bool, _HOST),
    "admin_port": (lambda v: 1 <= v <= 65535, _PORT),
    "timeouts.connect": (lambda v: v > 0, _POSITIVE),
    "timeouts.stream_headers": (lambda v: v > 0, _POSITIVE),
    "timeouts.headers": (lambda v: v > 0, _POSITIVE),
    "timeouts.idle": (lambda v: v > 0, _POSITIVE),
    "limits.max_body_bytes": (lambda v: v > 0, "must be > 0"),
    "limits.max_event_bytes": (lambda v: v >= 1024, "must be >= 1024"),
    "limits.max_streams": (lambda v: v > 0, "must be > 0"),
    "limits.upstream_connections": (lambda v: v >= 0, "must be >= 0 (0: no cap)"),
    "limits.backlog": (lambda v: v > 0, "must be > 0"),
    "limits.write_high_water_bytes": (lambda v: v >= 1024, "must be >= 1024"),
    "shutdown.drain_seconds": (lambda v: v >= 0, "must be a number >= 0"),
    "metrics.max_client_labels": (lambda v: 1 <= v <= 200, "must be 1-200"),
    "timeouts.request_head": (lambda v: v > 0, _POSITIVE),
    "limits.max_connections": (lambda v: v >= 0, "must be >= 0 (0: from the descriptor limit)"),
}


def _sections() -> dict[str, type]:
    hints = get_type_hints(Settings)
    return {
        f.name: hints[f.name] for f in fields(Settings) if dataclasses.is_dataclass(hints[f.name])
    }


def _shown(value: Any) -> str:
    """A value as the operator wrote it: strings quoted, TOML dates and numbers as written."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return repr(value)


def _convert(label: str, key: str, hint: Any, value: Any, from_env: bool) -> Any:
    """Turn a TOML value, or an environment string, into the field's type, or say what is wrong.

    `label` is what the operator set (the dotted key or the variable name), `key` the dotted key.
    """
    shown = _shown(value)
    rule = _RULES.get(key)
    if get_origin(hint) is Literal:
        choices = get_args(hint)
        if value not in choices:
            raise ConfigError(label, f"must be one of {', '.join(choices)}, got {shown}")
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
        raise ConfigError(label, f"must be true or false, got {shown}")
    result: Any = None
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            result = value
        elif from_env and isinstance(value, str):
            with contextlib.suppress(ValueError):
                result = int(value.strip())
        if result is None:
            raise ConfigError(label, f"must be a whole number, got {shown}")
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            result = float(value)
        elif from_env and isinstance(value, str):
            with contextlib.suppress(ValueError):
                result = float(value.strip())
        # nan and inf (TOML spells them too) would slip past every comparison downstream
        if result is None or not math.isfinite(result):
            raise ConfigError(label, f"{rule[1] if rule else 'must be a number'}, got {shown}")
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(label, f"must be a string in quotes, got {shown}")
        result = value
    elif get_origin(hint) is dict:
        # tables come from TOML; the environment form is name=value pairs separated by commas
        if from_env and isinstance(value, str):
            pairs = [p.partition("=") for p in value.split(",") if p.strip()]
            if not all(sep and k.strip() and v.strip() for k, sep, v in pairs):
                raise ConfigError(
                    label, f"must be name=value pairs separated by commas, got {shown}"
                )
            value = {k.strip(): v.strip() for k, _, v in pairs}
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()
        ):
            raise ConfigError(label, f"must be a table of names to non-empty strings, got {shown}")
        result = dict(value)
    elif get_origin(hint) is tuple:
        if from_env and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(label, f"must be a list of strings, got {shown}")
        result = tuple(value)
    else:  # pragma: no cover - a field type the loader does not know yet
        raise ConfigError(label, f"unsupported setting type {hint!r}")
    if rule is not None and not rule[0](result):
        raise ConfigError(label, f"{rule[1]}, got {shown}")
    return result


def _build(cls: type, prefix: str, values: dict[str, Any], env_names: dict[str, str]) -> Any:
    hints = get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        if f.name in values:
            key = prefix + f.name
            label = env_names.get(key, key)
            kwargs[f.name] = _convert(
                label, key, hints[f.name], values[f.name], from_env=key in env_names
            )
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
            # tomllib's message ends with "(at line N, column M)"
            raise ConfigError(str(path), f"invalid TOML: {exc}") from None
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
    return _check(dataclasses.replace(settings, **built), env_names)


def _http_url(url: str) -> SplitResult | None:
    """The parts of an http(s) URL with a host and a valid port, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if any(c.isspace() or not c.isprintable() for c in url):
        return None
    return parts


# Any address on the host: an equal port on one of these collides with every other address.
_WILDCARDS: Final = frozenset({"0.0.0.0", "::"})


def _check(s: Settings, env_names: dict[str, str]) -> Settings:
    """Rules across fields, and the ones that need the whole value. Returns the normalised copy."""

    def label(key: str) -> str:
        return env_names.get(key, key)

    url = s.upstream_url
    parts = _http_url(url)
    if parts is None:
        raise ConfigError(label("upstream_url"), f'must be an http:// or https:// URL, got "{url}"')
    if parts.username is not None or parts.password is not None:
        # not echoed: the value holds a credential, and this line goes to the logs
        raise ConfigError(
            label("upstream_url"),
            "must not carry a user or password (the application sends its own API key)",
        )
    if parts.query or parts.fragment:
        raise ConfigError(label("upstream_url"), f'must not have a query or fragment, got "{url}"')
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
    if s.deprecation.link and _http_url(s.deprecation.link) is None:
        raise ConfigError(
            label("deprecation.link"),
            f'must be an http:// or https:// URL, got "{s.deprecation.link}"',
        )
    if s.port == s.admin_port:
        if s.host == s.admin_host:
            raise ConfigError(label("admin_port"), f"must differ from port ({s.port}) on {s.host}")
        if {s.host, s.admin_host} & _WILDCARDS:
            raise ConfigError(
                label("admin_port"),
                f"must differ from port ({s.port}): {s.host} and {s.admin_host} overlap",
            )
    # a path prefix is kept; the trailing slash goes so that prefix + request path has one slash
    return dataclasses.replace(s, upstream_url=url.rstrip("/"))
