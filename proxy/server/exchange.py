"""One request's record (the Exchange) and the Recorder that turns it into metrics and the single
``request.done`` log line, once, when the request ends. SHELL.

Routes and helpers write fields on the Exchange as things happen; only the entry reads it, in its
``finally`` (Envoy's StreamInfo and access log, mitmproxy's flow and its log add-on).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from proxy.convert import Stats
from proxy.logs import get_logger
from proxy.metrics import Children, Metrics, status_class
from proxy.modeltable import name_label
from proxy.server.upstream import Opened
from proxy.translate.messages import Attempt


@dataclass(slots=True)
class Exchange:
    request_id: str
    method: str
    mode: str = "passthrough"
    route: str = "other"
    status: int = 0
    outcome: str = "ok"
    stream: bool = False
    client: str | None = None
    upstream_request_id: str | None = None
    upstream_status_class: str | None = None
    upstream_first_byte_s: float | None = None
    # the client's response is complete and only the upstream body's tail is to come: wait for
    # it off the request path, so the connection is pooled (relay.upstream_response)
    upstream_tail: bool = False
    events_in: int = 0
    events_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    error: str | None = None
    settled: bool = False  # a converted stream decided its own outcome (rule 8)
    # Text Completions through Messages: the legacy name asked for and the model that answered,
    # both as their bounded labels, and how many retired targets were skipped on the way
    model: str | None = None
    target: str | None = None
    fallbacks: int = 0

    def note_upstream(self, opened: Opened) -> None:
        self.upstream_request_id = opened.response.headers.get("request-id")
        self.upstream_status_class = status_class(opened.response.status)
        self.upstream_first_byte_s = opened.first_byte_s


class Recorder:
    """Metrics and the log line, from what a request or stream reports."""

    def __init__(self, metrics: Metrics, targets: frozenset[str] = frozenset()) -> None:
        self.metrics = metrics
        self.log = get_logger()
        self._targets = targets  # the models the settings name: the target labels
        m = metrics
        self._requests = Children(m.requests)
        self._duration = Children(m.request_duration)
        self._upstream_responses = Children(m.upstream_responses)
        self._first_byte = Children(m.upstream_first_byte)
        self._legacy_requests = Children(m.legacy_requests)
        self._upstream_events = Children(m.upstream_events)
        self._legacy_events = Children(m.legacy_events)
        self._bytes_in = m.stream_bytes.labels("in")
        self._bytes_out = m.stream_bytes.labels("out")

    def fallback(self, ex: Exchange, retired: str) -> None:
        ex.fallbacks += 1
        self.metrics.messages_fallbacks.inc()
        self.log.warning(
            "messages.fallback",
            request_id=ex.request_id,
            retired=retired if retired in self._targets else "other",
        )

    def attempt(self, ex: Exchange, asked: object, attempt: Attempt, client_format: str) -> None:
        """The target that answered a Text Completions call, and what its request left out."""
        m = self.metrics
        ex.model = name_label(asked)
        ex.target = attempt.model if attempt.model in self._targets else "other"
        m.complete_call(asked, ex.target, client_format)
        if attempt.prefill != "none":
            m.messages_prefill.labels(attempt.prefill).inc()
        for name in attempt.dropped:
            m.messages_dropped_fields.labels(name).inc()

    def stream(self, stats: Stats, bytes_written: int) -> None:
        """``bytes_written``: what reached the client transport, not what the converter made."""
        m = self.metrics
        for kind, n in stats.events_in.items():
            if n:
                self._upstream_events(kind).inc(n)
        for kind, n in stats.events_out.items():
            if n:
                self._legacy_events(kind).inc(n)
        self._bytes_in.inc(stats.bytes_in)
        self._bytes_out.inc(bytes_written)
        if stats.snapshots_skipped:
            m.snapshots_skipped.inc(stats.snapshots_skipped)
        if stats.events_in.get("unknown"):
            m.unknown_events.inc(stats.events_in["unknown"])
        if stats.outcome not in (None, "ok"):
            m.stream_errors.labels(stats.outcome).inc()
        self.translator(stats.translator)

    def translator(self, counts: Mapping[str, int]) -> None:
        if counts.get("dropped_blocks"):
            self.metrics.messages_dropped_blocks.inc(counts["dropped_blocks"])
        if counts.get("other_stop_reason"):
            self.metrics.messages_other_stop_reasons.inc(counts["other_stop_reason"])
        if counts.get("thinking_blocks"):
            self.metrics.messages_thinking_blocks.inc(counts["thinking_blocks"])

    def done(self, ex: Exchange, duration: float) -> None:
        self._requests(ex.mode, ex.route, ex.outcome).inc()
        self._duration(ex.mode, ex.route).observe(duration)
        if ex.upstream_status_class is not None:
            self._upstream_responses(ex.upstream_status_class).inc()
        if ex.upstream_first_byte_s is not None:
            self._first_byte(ex.mode).observe(ex.upstream_first_byte_s)
        if ex.client is not None:
            self._legacy_requests(ex.client, "true" if ex.stream else "false").inc()
            self.metrics.migration.record(ex.client, streamed=ex.stream, ok=ex.outcome == "ok")
        self.log.info(
            "request.done",
            request_id=ex.request_id,
            method=ex.method,
            mode=ex.mode,
            route=ex.route,
            stream=ex.stream,
            status=ex.status,
            outcome=ex.outcome,
            error=ex.error,
            duration_s=round(duration, 6),
            upstream_request_id=ex.upstream_request_id,
            upstream_first_byte_s=(
                None if ex.upstream_first_byte_s is None else round(ex.upstream_first_byte_s, 6)
            ),
            client=ex.client,
            model=ex.model,
            target=ex.target,
            fallbacks=ex.fallbacks,
            events_in=ex.events_in,
            events_out=ex.events_out,
            bytes_in=ex.bytes_in,
            bytes_out=ex.bytes_out,
        )
