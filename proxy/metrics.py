"""Every metric the proxy exports, declared once, on a registry that is passed in (tests make their
own). Base units, ``_total`` on counters, and labels drawn only from the small fixed sets below:
never a path, request id, model name or client address.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)

from proxy import __version__
from proxy.errors import STREAM_ERROR_REASONS
from proxy.legacy import ClientId
from proxy.modeltable import DROPPED_FIELDS, name_label

MODES: Final = ("convert", "passthrough")
ROUTES: Final = ("complete", "complete_via_messages", "messages", "other")
OUTCOMES: Final = (
    "ok",
    "client_gone",
    "upstream_error",
    "stream_error",
    "bad_request",
    "overloaded",
)
STATUS_CLASSES: Final = ("2xx", "3xx", "4xx", "5xx", "unreachable", "timeout")
UPSTREAM_EVENT_KINDS: Final = (
    "completion", "ping", "error", "unknown",
    # Messages streams (spec section 6)
    "message_start", "content_block_start", "content_block_delta", "content_block_stop",
    "message_delta", "message_stop",
)  # fmt: skip
LEGACY_EVENT_KINDS: Final = ("snapshot", "ping", "error", "done")
CLIENT_FORMATS: Final = ("legacy", "modern")  # 2023-01-01 and 2023-06-01 Text Completions
PREFILL_HANDLING: Final = ("sent", "emulated")

# Streams last seconds to many minutes: buckets reach 10 minutes.
DURATION_BUCKETS: Final = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# The proxy's own work per chunk is microseconds; a bucket past 10 ms means something is wrong.
ADDED_LATENCY_BUCKETS: Final = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
)  # fmt: skip

PREFIX: Final = "legacy_proxy"


class Metrics:
    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        client_allowlist: Iterable[str] = ("anthropic-python", "anthropic-typescript"),
        max_client_labels: int = 20,
    ) -> None:
        # A `_created` series per counter and histogram child (123 of 429 lines) carries only the
        # process start time, which `process_start_time_seconds` already gives. The switch is
        # process-wide in prometheus_client and must be set before the metrics are made.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        p = PREFIX
        self.requests = Counter(
            f"{p}_requests",
            "Requests handled, by mode, route class and outcome.",
            ["mode", "route", "outcome"],
            registry=r,
        )
        self.streams_in_progress = Gauge(
            f"{p}_streams_in_progress",
            "Requests being proxied right now (streams and non-streaming calls).",
            ["mode"],
            registry=r,
        )
        self.request_duration = Histogram(
            f"{p}_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            ["mode", "route"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.upstream_first_byte = Histogram(
            f"{p}_upstream_first_byte_seconds",
            "Time from sending the request upstream to its response headers.",
            ["mode"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.added_latency = Histogram(
            f"{p}_added_latency_seconds",
            "Converted streams: time from an upstream chunk's arrival to its converted bytes "
            "being handed to the client transport.",
            buckets=ADDED_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_events = Counter(
            f"{p}_upstream_events",
            "Upstream SSE events received on converted streams, by kind.",
            ["kind"],
            registry=r,
        )
        self.legacy_events = Counter(
            f"{p}_legacy_events",
            "Events sent to Text Completions clients by kind (for 2023-06-01 clients: completion "
            "events as snapshot, the end of the stream as done).",
            ["kind"],
            registry=r,
        )
        self.stream_bytes = Counter(
            f"{p}_stream_bytes",
            "Bytes of converted streams: in from the upstream, out to clients. out/in is the "
            "cumulative-format amplification.",
            ["direction"],
            registry=r,
        )
        self.snapshots_skipped = Counter(
            f"{p}_snapshots_skipped",
            "Cumulative snapshots never sent because the client was behind (docs/wire-format.md, "
            "rule 7).",
            registry=r,
        )
        self.pending_output = Gauge(
            f"{p}_pending_output_bytes",
            "Converted output handed to client transports and not yet sent, across streams "
            "(bounded per stream by limits.write_high_water_bytes plus one event).",
            registry=r,
        )
        self.client_write_timeouts = Counter(
            f"{p}_client_write_timeouts",
            "Converted streams cut because the client accepted no byte for "
            "timeouts.client_write.",
            registry=r,
        )
        self.pending_refused = Counter(
            f"{p}_pending_budget_refused",
            "Requests answered 529 because unsent output across streams was over "
            "limits.max_pending_bytes.",
            registry=r,
        )
        self.unknown_events = Counter(
            f"{p}_unknown_events_dropped",
            "Upstream events of unknown kind dropped instead of reaching a legacy client.",
            registry=r,
        )
        self.stream_errors = Counter(
            f"{p}_stream_errors",
            "Converted streams that ended in a legacy error event, by reason.",
            ["reason"],
            registry=r,
        )
        self.upstream_responses = Counter(
            f"{p}_upstream_responses",
            "Upstream answers by HTTP status class (or unreachable / timeout before headers).",
            ["status_class"],
            registry=r,
        )
        self.messages_dropped_blocks = Counter(
            f"{p}_messages_dropped_blocks",
            "Non-text content blocks (tool use, thinking, ...) dropped from Messages answers to "
            "legacy clients.",
            registry=r,
        )
        self.messages_other_stop_reasons = Counter(
            f"{p}_messages_other_stop_reasons",
            "Messages stop reasons outside end_turn, stop_sequence and max_tokens, reported to "
            "legacy clients as stop_sequence.",
            registry=r,
        )
        self.resume_refused = Counter(
            f"{p}_resume_refused",
            "Requests carrying Last-Event-ID answered 400 without forwarding (docs/wire-format.md, "
            "rule 5).",
            registry=r,
        )
        self.legacy_requests = Counter(
            f"{p}_legacy_requests",
            "Requests from legacy (2023-01-01) clients, by SDK identity reduced to a bounded set.",
            ["client", "streamed"],
            registry=r,
        )
        self.complete_models = Counter(
            f"{p}_complete_models",
            "Text Completions calls by the legacy model name asked for (the built-in table's "
            "names, else other), the model that answered (a configured target, else other) and "
            "the client's format (legacy 2023-01-01, modern 2023-06-01).",
            ["model", "target", "format"],
            registry=r,
        )
        self.messages_fallbacks = Counter(
            f"{p}_messages_fallbacks",
            "Targets that answered 404 not_found_error (retired) before any byte, so the tier's "
            "next target was tried.",
            registry=r,
        )
        self.messages_prefill = Counter(
            f"{p}_messages_prefill",
            "Prompts ending in an assistant prefill: sent as an assistant message, or emulated "
            "(the target refuses prefill).",
            ["handling"],
            registry=r,
        )
        self.messages_dropped_fields = Counter(
            f"{p}_messages_dropped_fields",
            "Request fields left out of the Messages request: sampling values the target "
            "refuses or set to -1, blank stop sequences, max_tokens capped, fields the Messages "
            "API does not take (other).",
            ["field"],
            registry=r,
        )
        self.messages_thinking_blocks = Counter(
            f"{p}_messages_thinking_blocks",
            "Thinking blocks kept from Text Completions clients (expected on 5.x models).",
            registry=r,
        )
        self.ready = Gauge(
            f"{p}_ready",
            "1 while the proxy accepts traffic, 0 while it drains for shutdown.",
            registry=r,
        )
        self.build_info = Info(f"{p}_build", "Version of legacy-stream-proxy.", registry=r)
        self.client_labels = ClientLabels(client_allowlist, max_client_labels)
        self.migration = Migration()
        self.build_info.info({"version": __version__})
        self._prime()
        self.connections = ConnectionMetrics(r)

    def _prime(self) -> None:
        """Create every fixed label combination at zero, so rates and alerts work from the start
        and dashboards show every series."""
        for mode in MODES:
            self.streams_in_progress.labels(mode)
            self.upstream_first_byte.labels(mode)
            for route in ROUTES:
                self.request_duration.labels(mode, route)
                for outcome in OUTCOMES:
                    self.requests.labels(mode, route, outcome)
        for kind in UPSTREAM_EVENT_KINDS:
            self.upstream_events.labels(kind)
        for kind in LEGACY_EVENT_KINDS:
            self.legacy_events.labels(kind)
        for direction in ("in", "out"):
            self.stream_bytes.labels(direction)
        for reason in STREAM_ERROR_REASONS:
            self.stream_errors.labels(reason)
        for cls in STATUS_CLASSES:
            self.upstream_responses.labels(cls)
        for handling in PREFILL_HANDLING:
            self.messages_prefill.labels(handling)
        for name in DROPPED_FIELDS:
            self.messages_dropped_fields.labels(name)

    def complete_call(self, model: object, target: str, client_format: str) -> None:
        """``target``: already a label (a configured target, or "other")."""
        name = name_label(model)
        self.complete_models.labels(name, target, client_format).inc()
        self.migration.record_model(name, target)

    def metric_names(self) -> Iterable[str]:
        """Every series name this registry can export, labelled ones with no samples yet
        included (for checking that dashboards and rules name only real metrics)."""
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_count", "_sum"),
            "gauge": ("",),
            "info": ("_info",),
        }
        for family in self.registry.collect():
            for suffix in suffixes.get(family.type, ("",)):
                yield family.name + suffix


class Children:
    """``metric.labels(*values)``, remembered. prometheus_client checks, converts and locks on
    every ``labels`` call (about 1 us, some twenty per request); the label values here come from
    the small fixed sets above, so the children are kept in a plain dict after the first call."""

    __slots__ = ("_cache", "_labels")

    def __init__(self, metric: Any) -> None:
        self._labels = metric.labels
        self._cache: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._cache.get(values)
        if child is None:
            child = self._cache[values] = self._labels(*values)
        return child


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 200 <= status < 600 else "5xx"


class ClientLabels:
    """Legacy client identities reduced to a bounded label set: an allowlisted SDK name plus its
    major.minor version, at most ``max_values`` distinct labels; everything else is "other"."""

    def __init__(
        self,
        allow: Iterable[str] = ("anthropic-python", "anthropic-typescript"),
        max_values: int = 20,
    ) -> None:
        self._allow = frozenset(allow)
        self._max = max_values
        self._seen: set[str] = set()

    def label(self, client: ClientId | None) -> str:
        if client is None or client.name not in self._allow:
            return "other"
        label = f"{client.name}/{'.'.join(client.version.split('.')[:2])}"
        if label not in self._seen:
            if len(self._seen) >= self._max:
                return "other"
            self._seen.add(label)
        return label


@dataclass
class ClientUsage:
    first_seen: float
    last_seen: float
    requests: int = 0
    streamed: int = 0
    errors: int = 0


class Migration:
    """Who still needs the proxy: per legacy client label (bounded by ClientLabels), first and
    last seen, requests, streamed requests and errors. Served as JSON on /migration."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.clients: dict[str, ClientUsage] = {}
        # legacy model name label -> target label -> calls (both bounded sets)
        self.models: dict[str, dict[str, int]] = {}

    def record_model(self, name: str, target: str) -> None:
        targets = self.models.setdefault(name, {})
        targets[target] = targets.get(target, 0) + 1

    def record(self, client: str, *, streamed: bool, ok: bool) -> None:
        now = self._clock()
        usage = self.clients.get(client)
        if usage is None:
            usage = self.clients[client] = ClientUsage(first_seen=now, last_seen=now)
        usage.last_seen = now
        usage.requests += 1
        usage.streamed += streamed
        usage.errors += not ok

    def view(self) -> dict[str, Any]:
        def iso(t: float) -> str:
            return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")

        clients = {
            name: {
                "first_seen": iso(u.first_seen),
                "last_seen": iso(u.last_seen),
                "requests": u.requests,
                "streamed_requests": u.streamed,
                "errors": u.errors,
            }
            for name, u in sorted(self.clients.items())
        }
        models = {
            name: {"requests": sum(t.values()), "targets": dict(sorted(t.items()))}
            for name, t in sorted(self.models.items())
        }
        return {
            "clients": clients,
            "models": models,
            "totals": {
                "clients": len(clients),
                "requests": sum(u.requests for u in self.clients.values()),
                "streamed_requests": sum(u.streamed for u in self.clients.values()),
                "errors": sum(u.errors for u in self.clients.values()),
            },
        }


LISTENERS: Final = ("traffic", "admin")


class ConnectionMetrics:
    """Client connections, per listener (issue 15): what the head deadline and the connection
    cap did (proxy.server.connections)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        p = PREFIX
        self.open = Gauge(
            f"{p}_connections_open",
            "Client connections open now, by listener.",
            ["listener"],
            registry=registry,
        )
        self.head_timeouts = Counter(
            f"{p}_request_head_timeouts",
            "Connections closed because a request head was not complete within "
            "timeouts.request_head.",
            ["listener"],
            registry=registry,
        )
        self.closed_by_cap = Counter(
            f"{p}_connections_closed_by_cap",
            "Connections without a request in progress closed to make room for a new one "
            "(limits.max_connections).",
            ["listener"],
            registry=registry,
        )
        self.refused = Counter(
            f"{p}_connections_refused",
            "New connections refused: the cap was reached with every connection busy, or "
            "accept() ran out of descriptors.",
            ["listener"],
            registry=registry,
        )
        for listener in LISTENERS:
            for metric in (self.open, self.head_timeouts, self.closed_by_cap, self.refused):
                metric.labels(listener)
