"""StreamConverter: upstream bytes in, the client's bytes out. CORE: no I/O, no clock, no logging.

    sse.Decoder ──events──▶ translator (completions | messages) ──▶ LegacyStream  ──bytes──▶
                                                                 └▶ ModernStream

``kind`` says what the upstream speaks: "complete" (Text Completions) or "messages" (a Text
Completions request served by a Messages-only model, spec section 6; ``legacy_model`` is then the
model name reported back to the client). ``client_format`` says what the client reads: "legacy"
(2023-01-01, spec section 2) or "modern" (2023-06-01 Text Completions, only with "messages": a
modern client of /v1/complete otherwise reads the upstream untouched). ``strip_prefix`` is an
emulated prefill to remove from the answer ("messages" only; ``translate.messages``). Modern
output never has ``id:`` lines, so ``event_id`` is ignored there.

The shell's whole contract:

    conv = StreamConverter(pings=True, event_id=None)
    conv.room = n                 # bytes the client transport can take now (issue 14)
    out = conv.feed(chunk)        # for every chunk read from the upstream; write ``out``
    out = conv.take_pending()     # once the client has room again: the held event, if any
    conv.has_pending              # whether one is held (the shell then waits for the client)
    out = conv.close()            # clean end of the upstream body
    out = conv.abort("upstream_closed" | "upstream_timeout" | "drain_deadline")
    conv.finished, conv.failed    # once failed, end the client response abnormally (rule 5)
    conv.stats()                  # frozen Stats for metrics and the log line

``feed``, ``close`` and ``abort`` never raise: the decoder's and translators' StreamError becomes
the error event here (rule 6). Memory per stream: see ``translate.legacy_stream``; the decoder
adds at most one event (``max_event_bytes``). Output per ``feed``: at most ``room`` bytes, plus
one non-final event, plus the ending (``translate.output``). ``behind = True/False`` still works:
it sets no room / unlimited room.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from proxy.errors import StreamError, StreamErrorReason
from proxy.sse import DEFAULT_MAX_EVENT_BYTES, Decoder, Event, EventTooLarge
from proxy.translate.completions import CompletionsTranslator
from proxy.translate.legacy_stream import LegacyStream
from proxy.translate.messages import MessagesTranslator
from proxy.translate.modern_stream import ModernStream
from proxy.translate.output import ClientStream

UpstreamKind = Literal["complete", "messages"]
ClientFormat = Literal["legacy", "modern"]


@dataclass(frozen=True, slots=True)
class Stats:
    """What one stream did, for metrics and the request's log line."""

    events_in: dict[str, int]  # upstream events by kind; names outside the table are "unknown"
    # client events by kind: snapshot (a completion event), ping, error, done (the stream ended
    # with a stop_reason: [DONE] for legacy clients, the final event for modern ones)
    events_out: dict[str, int]
    bytes_in: int
    bytes_out: int
    snapshots_skipped: int
    outcome: str | None  # None while running; "ok"; or a StreamErrorReason
    # what the translator dropped or mapped (Messages: translate.messages.COUNTS)
    translator: dict[str, int]


class StreamConverter:
    __slots__ = ("_decoder", "_events_in", "_out", "_translator", "bytes_in", "bytes_out")

    def __init__(
        self,
        kind: UpstreamKind = "complete",
        *,
        client_format: ClientFormat = "legacy",
        strip_prefix: str = "",
        pings: bool = True,
        event_id: str | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        legacy_model: str | None = None,
    ) -> None:
        if kind != "messages" and (client_format != "legacy" or strip_prefix):
            raise ValueError("client_format 'modern' and strip_prefix need kind 'messages'")
        self._decoder = Decoder(max_event_bytes)
        self._out: ClientStream = (
            ModernStream(pings=pings)
            if client_format == "modern"
            else LegacyStream(pings=pings, event_id=event_id)
        )
        self._translator: CompletionsTranslator | MessagesTranslator = (
            MessagesTranslator(self._out, legacy_model, strip_prefix=strip_prefix)
            if kind == "messages"
            else CompletionsTranslator(self._out)
        )
        self._events_in = dict.fromkeys((*self._translator.KINDS, "unknown"), 0)
        self.bytes_in = 0
        self.bytes_out = 0

    # -- the shell's side ----------------------------------------------------------------------

    @property
    def room(self) -> int:
        """Bytes the converter may still hand out before it holds (issue 14; see
        ``translate.output``). The shell sets it from the client transport's free buffer."""
        return self._out.room

    @room.setter
    def room(self, value: int) -> None:
        self._out.room = value

    @property
    def behind(self) -> bool:
        """The boolean view of ``room``, kept for callers of the flag's era: True sets no room,
        False an unlimited one."""
        return self._out.behind

    @behind.setter
    def behind(self, value: bool) -> None:
        self._out.behind = value

    @property
    def finished(self) -> bool:
        return self._out.finished

    @property
    def failed(self) -> bool:
        return self._out.finished and self._out.outcome != "ok"

    @property
    def outcome(self) -> str | None:
        return self._out.outcome

    def feed(self, chunk: bytes) -> bytes:
        self.bytes_in += len(chunk)
        if self._out.finished:
            return b""  # after the final event or an error nothing more reaches the client
        try:
            events = self._decoder.feed(chunk)
        except EventTooLarge as exc:
            out = self._dispatch_then_fail(exc)
        else:
            out = self._dispatch(events)
        self.bytes_out += len(out)
        return out

    def close(self) -> bytes:
        """The upstream body ended cleanly."""
        if self._out.finished:
            return b""
        try:
            events = self._decoder.close()
        except EventTooLarge as exc:
            out = self._dispatch_then_fail(exc)
        else:
            out = self._dispatch(events)
        if not self._out.finished:
            out += self._fail("upstream_closed")  # ended before a stop_reason (rule 6)
        self.bytes_out += len(out)
        return out

    def abort(self, reason: StreamErrorReason) -> bytes:
        """The shell saw the upstream fail (reset, idle timeout) or the drain deadline pass.

        An event cut by a reset is dropped, not dispatched (spec section 7)."""
        out = self._fail(reason)
        self.bytes_out += len(out)
        return out

    @property
    def has_pending(self) -> bool:
        return self._out.has_pending

    def take_pending(self) -> bytes:
        out = self._out.take_pending()
        self.bytes_out += len(out)
        return out

    def stats(self) -> Stats:
        return Stats(
            events_in=dict(self._events_in),
            events_out=dict(self._out.out_counts),
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            snapshots_skipped=self._out.snapshots_skipped,
            outcome=self._out.outcome,
            translator=dict(self._translator.counts),
        )

    # -- internals -----------------------------------------------------------------------------

    def _fail(self, reason: StreamErrorReason) -> bytes:
        # text a translator still holds (the start of an answer) belongs before the error
        self._translator.flush()
        return self._out.fail(reason)

    def _dispatch_then_fail(self, exc: EventTooLarge) -> bytes:
        out = self._dispatch(exc.events)
        return out + self._fail(exc.reason)

    def _dispatch(self, events: list[Event]) -> bytes:
        if not events:
            return b""
        parts = []
        counts = self._events_in
        translator = self._translator
        handlers = translator.HANDLERS
        out = self._out
        for name, data in events:
            handler = handlers.get(name)
            if handler is None:
                counts["unknown"] += 1  # rule 4: dropped, never passed on
                continue
            counts[name] += 1
            try:
                parts.append(handler(translator, data))
            except StreamError as exc:  # an invalid event (rule 6)
                parts.append(self._fail(exc.reason))
            if out.finished:
                break  # nothing after the final event or an error reaches the client
        return parts[0] if len(parts) == 1 else b"".join(parts)
