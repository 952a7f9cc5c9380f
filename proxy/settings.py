"""One frozen Settings object, loaded once: defaults < TOML file < environment.

Top-level keys map to ``LEGACY_PROXY_<KEY>`` and section keys to ``LEGACY_PROXY_<SECTION>_<KEY>``
(``[timeouts] connect`` <-> ``LEGACY_PROXY_TIMEOUTS_CONNECT``). A new section is one dataclass
and one field on Settings. Every problem is a ConfigError naming the key (or the variable) and
what is wrong, in one line.

Unknown ``LEGACY_PROXY_*`` variables are never refused: Kubernetes injects service-link
variables such as ``LEGACY_PROXY_SERVICE_HOST`` for a Service named legacy-proxy. Start-up warns
about each one that is not such a link (``unknown_variables``), since it is most likely a typo; a
bad value in a *known* variable (``LEGACY_PROXY_PORT=tcp://...``, the link that collides with a
setting, hence ``enableServiceLinks: false`` in the manifests) names it. Unknown keys in the file
are errors (they are typos).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, Literal, get_args, get_origin, get_type_hints
from urllib.parse import SplitResult, urlsplit

from proxy.errors import ConfigError
from proxy.modeltable import (
    DEFAULT_PROFILES,
    DEFAULT_TIERS,
    LEGACY_NAMES,
    Profile,
    looks_like_messages_model,
    profile_for,
    targets_for,
)

ENV_PREFIX: Final = "LEGACY_PROXY_"


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    stream_headers: float = 60.0
    headers: float = 600.0
    idle: float = 120.0
    # a client that accepts no byte of a converted stream for this long is cut (issue 14)
    client_write: float = 120.0
    # a complete request head, from its first byte (issue 15)
    request_head: float = 30.0
    # the whole request body, from the end of its head
    request_body: float = 60.0


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = 10 * 1024 * 1024
    max_event_bytes: int = 1024 * 1024
    max_streams: int = 2048
    upstream_connections: int = 0
    backlog: int = 4096
    write_high_water_bytes: int = 65536
    # unsent output held for slow clients across all converted streams; past it, new requests
    # get 529 until the clients catch up or are cut (issue 14)
    max_pending_bytes: int = 64 * 1024 * 1024
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
class CompleteSettings:
    # Where POST /v1/complete goes (spec section 6): "messages" (every call through
    # /v1/messages, answered in the client's own format: no model is left on /v1/complete) or
    # "complete" (forward to /v1/complete, except the names [messages] maps).
    upstream: Literal["messages", "complete"] = "messages"


@dataclass(frozen=True, slots=True)
class MessagesSettings:
    # legacy model name -> current model: a per-name override of the built-in table (messages
    # mode); in complete mode, the names served through /v1/messages at all
    models: dict[str, str] = field(default_factory=dict)
    # the model for names neither in the table nor Messages-looking; empty: the balanced tier (in
    # complete mode: empty keeps them on /v1/complete)
    default: str = ""
    # the tiers' targets, tried in order when one answers 404 not_found_error (retired)
    fast: tuple[str, ...] = DEFAULT_TIERS["fast"]
    balanced: tuple[str, ...] = DEFAULT_TIERS["balanced"]
    # tokens added to max_tokens for targets whose thinking cannot be switched off
    thinking_allowance: int = 16000
    # target -> what it accepts; the built-in profiles, with the operator's entries over them
    profiles: dict[str, Profile] = field(default_factory=lambda: dict(DEFAULT_PROFILES))

    def target(self, legacy_model: object) -> str | None:
        """complete mode: the model serving a mapped name, or None (it stays on /v1/complete)."""
        if isinstance(legacy_model, str) and legacy_model in self.models:
            return self.models[legacy_model]
        return self.default or None

    def targets(self, legacy_model: object) -> tuple[str, ...]:
        """messages mode: the targets for the name a client asked for, in the order tried."""
        tiers = {"fast": self.fast, "balanced": self.balanced}
        return targets_for(legacy_model, tiers=tiers, overrides=self.models, default=self.default)

    def setting_for(self, legacy_model: object) -> str:
        """The setting that chose ``targets(legacy_model)``, or (for a Messages model ID the
        client named itself) the one that would override it: what to change when all are gone."""
        name = legacy_model if isinstance(legacy_model, str) else None
        if name is not None and (name in self.models or looks_like_messages_model(name)):
            return f'[messages.models] "{name}"'
        if name is not None and name in LEGACY_NAMES:
            return f"[messages] {LEGACY_NAMES[name]}"
        return "[messages] default" if self.default else "[messages] balanced"

    def profile(self, model: str) -> Profile:
        return profile_for(model, self.profiles)

    def known_targets(self) -> frozenset[str]:
        """Every model these settings can send to: the bounded set of target metric labels."""
        named = (*self.fast, *self.balanced, *self.models.values(), self.default)
        return frozenset(m for m in (*named, *self.profiles) if m)


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
    complete: CompleteSettings = field(default_factory=CompleteSettings)
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
    "timeouts.client_write": (lambda v: v > 0, _POSITIVE),
    "limits.max_body_bytes": (lambda v: v > 0, "must be > 0"),
    "limits.max_event_bytes": (lambda v: v >= 1024, "must be >= 1024"),
    "limits.max_streams": (lambda v: v > 0, "must be > 0"),
    "limits.upstream_connections": (lambda v: v >= 0, "must be >= 0 (0: no cap)"),
    "limits.backlog": (lambda v: v > 0, "must be > 0"),
    "limits.write_high_water_bytes": (lambda v: v >= 1024, "must be >= 1024"),
    "limits.max_pending_bytes": (lambda v: v >= 1 << 20, "must be >= 1048576"),
    "shutdown.drain_seconds": (lambda v: v >= 0, "must be a number >= 0"),
    "metrics.max_client_labels": (lambda v: 1 <= v <= 200, "must be 1-200"),
    "messages.fast": (bool, "must list at least one model"),
    "messages.balanced": (bool, "must list at least one model"),
    "messages.thinking_allowance": (lambda v: 0 <= v <= 1_000_000, "must be 0-1000000"),
    "timeouts.request_head": (lambda v: v > 0, _POSITIVE),
    "timeouts.request_body": (lambda v: v > 0, _POSITIVE),
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
    elif get_origin(hint) is dict and get_args(hint)[1] is Profile:
        result = _profiles(label, value, from_env)
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


_PROFILE_FIELDS: Final = tuple(f.name for f in fields(Profile))


def _profiles(label: str, value: Any, from_env: bool) -> dict[str, Profile]:
    """Target profiles over the built-in ones. TOML: ``[messages.profiles."<model>"]`` tables with
    any of max_output, sampling, prefill, thinking (the rest from the built-in or restrictive
    profile of that model); environment: ``model=max_output:sampling:prefill:thinking,...``."""
    if from_env and isinstance(value, str):
        table: dict[str, Any] = {}
        for item in (p.strip() for p in value.split(",")):
            if not item:
                continue
            name, sep, spec = item.partition("=")
            parts = spec.split(":")
            if not (sep and name.strip() and len(parts) == len(_PROFILE_FIELDS)):
                raise ConfigError(
                    label,
                    "must be model=max_output:sampling:prefill:thinking entries separated by "
                    f'commas, got "{item}"',
                )
            values = (p.strip() for p in parts)
            table[name.strip()] = dict(zip(_PROFILE_FIELDS, values, strict=True))
        value = table
    if not isinstance(value, dict):
        raise ConfigError(label, f"must be a table of model names to profiles, got {_shown(value)}")
    hints = get_type_hints(Profile)
    out = dict(DEFAULT_PROFILES)
    for model, spec in value.items():
        where = f"{label}.{model}" if not from_env else f"{label} ({model})"
        if not isinstance(spec, dict):
            raise ConfigError(where, f"must be a table of {', '.join(_PROFILE_FIELDS)}")
        for key in spec:
            if key not in _PROFILE_FIELDS:
                raise ConfigError(f"{where}.{key}", "unknown setting")
        base = profile_for(model, DEFAULT_PROFILES)
        kwargs = {
            name: _convert(f"{where}.{name}", "", hints[name], spec[name], from_env)
            for name in _PROFILE_FIELDS
            if name in spec
        }
        if kwargs.get("max_output", 1) <= 0:
            raise ConfigError(f"{where}.max_output", f"must be > 0, got {spec['max_output']}")
        out[model] = dataclasses.replace(base, **kwargs)
    return out


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


# --- What the command line shows: generated from the dataclasses above, so a setting added there
# appears in --help, --print-config and the unknown-variable check with nothing else to edit.


def variables() -> dict[str, str]:
    """Every setting's environment variable -> its dotted key, in declaration order."""
    out: dict[str, str] = {}
    sections = _sections()
    for f in fields(Settings):
        if f.name in sections:
            for sub in fields(sections[f.name]):
                out[f"{ENV_PREFIX}{f.name.upper()}_{sub.name.upper()}"] = f"{f.name}.{sub.name}"
        else:
            out[ENV_PREFIX + f.name.upper()] = f.name
    return out


# What Kubernetes injects for a Service whose name starts with "legacy-proxy" (service links):
# LEGACY_PROXY_SERVICE_HOST, LEGACY_PROXY_SERVICE_PORT[_<NAME>], LEGACY_PROXY_PORT_8787_TCP[_PROTO
# |_PORT|_ADDR], and for a Service "legacy-proxy-x" the same after LEGACY_PROXY_X_; the bare
# LEGACY_PROXY_PORT=tcp://... of a Service named exactly "legacy-proxy" is a real setting's name.
_SERVICE_LINK: Final = re.compile(
    r"(?:[A-Z0-9_]+_)?(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?"
    r"|PORT_\d+_(?:TCP|UDP|SCTP)(?:_PROTO|_PORT|_ADDR)?)"
)
# <NAME>_PORT itself is a link only with a link's value: LEGACY_PROXY_ADMN_PORT=8788 is a typo
_SERVICE_LINK_PORT: Final = re.compile(r"(?:[A-Z0-9_]+_)?PORT")
_SERVICE_LINK_VALUE: Final = re.compile(r"(?:tcp|udp|sctp)://\S+")


def is_service_link(name: str, value: str) -> bool:
    """A variable Kubernetes service links inject, not a setting someone misspelled."""
    rest = name.removeprefix(ENV_PREFIX)
    if _SERVICE_LINK.fullmatch(rest):
        return True
    return bool(_SERVICE_LINK_PORT.fullmatch(rest) and _SERVICE_LINK_VALUE.fullmatch(value))


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``LEGACY_PROXY_*`` variables that are no setting, each with the closest setting's variable
    (or None). They are never refused (a deployment may set variables for a later version), but
    each deserves a warning: a misspelled name otherwise leaves the default in force unseen."""
    known = variables()
    out: list[tuple[str, str | None]] = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known or is_service_link(name, environ[name]):
            continue
        # compared without the shared prefix, or every name would look close to every other
        stems = {var.removeprefix(ENV_PREFIX): var for var in known}
        close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), stems, n=1, cutoff=0.75)
        out.append((name, stems[close[0]] if close else None))
    return out


def toml_value(value: Any) -> str:
    """A value in TOML's inline syntax (strings as JSON writes them, which TOML reads)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in fields(value)}
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        pairs = ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + pairs + " }"
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # pragma: no cover - a value type the loader does not know


def _toml_key(key: object) -> str:
    text = str(key)
    return text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else json.dumps(text, ensure_ascii=False)


def to_toml(settings: Settings) -> str:
    """The settings as a TOML file that load_settings reads back to the same values: top-level
    keys, then one table per section; a table-valued field becomes a sub-table of its own."""
    lines: list[str] = []
    later: list[str] = []
    sections = _sections()
    for f in fields(Settings):
        if f.name not in sections:
            lines.append(f"{f.name} = {toml_value(getattr(settings, f.name))}")
    for name in sections:
        section = getattr(settings, name)
        lines += ["", f"[{name}]"]
        later = []
        for f in fields(section):
            value = getattr(section, f.name)
            if isinstance(value, Mapping) or dataclasses.is_dataclass(value):
                later += _toml_table(f"{name}.{f.name}", value)
            else:
                lines.append(f"{f.name} = {toml_value(value)}")
        lines += later
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_table(path: str, value: Any) -> list[str]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in fields(value)}
    lines = ["", f"[{path}]"]
    lines += [f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items()]
    return lines


def described() -> list[tuple[str, str, Any]]:
    """(dotted key, variable, default value) for every setting, for --help."""
    defaults = Settings()
    out = []
    for var, key in variables().items():
        value: Any = defaults
        for part in key.split("."):
            value = getattr(value, part)
        out.append((key, var, value))
    return out


def shown_default(value: Any, indent: int, width: int = 100) -> str:
    """A default for --help: inline TOML when it fits on the line, else a table with one entry
    per line below the row (tier lists, model tables, per-model profiles)."""
    inline = toml_value(value)
    if indent + len(inline) <= width:
        return inline
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in fields(value)}
    pad = "  "  # the table's margin: entries under the default column would be too long
    if isinstance(value, Mapping) and value:
        entries = [f"{pad}  {_toml_key(k)} = {toml_value(v)}" for k, v in value.items()]
        return "{\n" + ",\n".join(entries) + "\n" + pad + "}"
    return inline  # a list stays on its line: a tier's few names read best side by side
