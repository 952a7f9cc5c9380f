"""Server-sent events at the byte level: an incremental decoder and a pure encoder. CORE: no I/O.

The decoder follows the WHATWG event-stream parsing rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation)
with the two departures our spec (section 7) asks for:

* a last event that is missing its blank line is dispatched by ``close()`` at a clean end of the
  body (WHATWG drops it; dropping it would turn a finished stream into a failure);
* ``id`` and ``retry`` are read and ignored: they never reach a legacy client.

Bytes are split into lines *before* they are decoded, so a UTF-8 character or a CR LF pair cut
across two reads is handled by construction: CR and LF are ASCII and never occur inside a
multi-byte sequence, and a line is decoded only once it is complete. Invalid UTF-8 becomes U+FFFD,
as the WHATWG decoder does.

Memory: the decoder holds at most one incomplete line and one event's data, together capped by
``max_event_bytes`` (raw bytes, line ends included; the core's StreamError "event_too_large" past
it).
"""

from __future__ import annotations

import re
from typing import Any, Final, NamedTuple

from proxy.errors import StreamError

_BOM: Final = b"\xef\xbb\xbf"
_LINE_SPLIT: Final = re.compile(rb"\r\n|\r|\n")
_STR_LINE_SPLIT: Final = re.compile(r"\r\n|\r|\n")
DEFAULT_MAX_EVENT_BYTES: Final = 1 << 20


class EventTooLarge(StreamError):
    """An event outgrew ``max_event_bytes``. ``events`` holds the events completed before it in
    the same read, so that what reaches the client does not depend on how the bytes were cut."""

    def __init__(self) -> None:
        super().__init__("event_too_large")
        self.events: list[Event] = []


class Event(NamedTuple):
    """One dispatched event. ``event`` is "message" when the stream named none (WHATWG).

    A NamedTuple rather than a frozen dataclass: it is made once per upstream event, and a frozen
    dataclass's __init__ costs several times more."""

    event: str
    data: str


class Decoder:
    """Incremental SSE decoder: ``feed(bytes) -> list[Event]``, ``close() -> list[Event]``."""

    __slots__ = ("_buf", "_data", "_event", "_has_data", "_max", "_size", "_skip_lf", "_started")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._buf = b""  # an incomplete line (or the first bytes of a possible BOM)
        self._skip_lf = False  # the previous chunk ended in CR: a leading LF belongs to it
        self._started = False  # past the BOM check
        self._event = ""
        self._data: list[str] = []
        self._has_data = False
        self._size = 0  # bytes of the event being read, lines included

    def feed(self, chunk: bytes) -> list[Event]:
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
                if not chunk:
                    return []
        buf = self._buf + chunk if self._buf else chunk
        if not self._started:
            if len(buf) < 3 and _BOM.startswith(buf):
                self._buf = buf  # could still be a BOM cut across reads
                return []
            self._started = True
            if buf.startswith(_BOM):
                buf = buf[3:]
                if not buf:
                    self._buf = b""
                    return []
        # One split: every piece but the last is a complete line; the last is what follows the
        # final line end (b"" when the read ended on one) and waits for more bytes.
        lines = buf.split(b"\n") if 13 not in buf else _LINE_SPLIT.split(buf)
        if buf[-1] == 13:
            self._skip_lf = True  # ends in CR: an LF in the next read belongs to it
        self._buf = lines.pop()
        return self._lines(lines)

    def close(self) -> list[Event]:
        """Clean end of the body: dispatch a last event that lacks its blank line."""
        lines = [self._buf, b""] if self._buf else [b""]
        self._buf = b""
        return self._lines(lines)

    def _check_size(self, pending: int) -> None:
        # counted as the complete line will be (its bytes plus one line end), so that the verdict
        # does not depend on where the reads were cut
        if self._size + pending + 1 > self._max:
            raise EventTooLarge

    def _lines(self, lines: list[bytes]) -> list[Event]:
        """Process complete lines, then check what is left of an incomplete one.

        Events are returned as plain ``(event, data)`` tuples, which compare equal to Event: a
        NamedTuple's constructor costs about as much again per upstream event."""
        events: list[Any] = []
        size = self._size
        try:
            size = self._process(lines, events, size)
            self._size = size
            if self._buf:
                self._check_size(len(self._buf))
        except EventTooLarge as exc:
            exc.events = events
            raise
        return events

    def _process(self, lines: list[bytes], events: list[Any], size: int) -> int:
        limit = self._max
        data = self._data
        append = events.append
        for raw in lines:
            if not raw:
                if self._has_data:
                    append(
                        (self._event or "message", data[0] if len(data) == 1 else "\n".join(data))
                    )
                    data = self._data = []
                    self._has_data = False
                self._event = ""
                size = 0
                continue
            size += len(raw) + 1
            if size > limit:
                self._size = size
                raise EventTooLarge
            # the two lines every upstream event has, without the general field parse
            if raw.startswith(b"data: "):
                data.append(raw[6:].decode("utf-8", "replace"))
                self._has_data = True
                continue
            if raw.startswith(b"event: "):
                self._event = raw[7:].decode("utf-8", "replace")
                continue
            if raw[0] == 58:
                continue  # ":" starts a comment
            name, colon, value = raw.decode("utf-8", "replace").partition(":")
            if colon and value[:1] == " ":
                value = value[1:]
            if name == "data":
                data.append(value)
                self._has_data = True
            elif name == "event":
                self._event = value
            # id, retry and unknown fields are ignored (spec section 7)
        return size


def encode(data: str, event: str | None = None, id: str | None = None) -> bytes:
    """One event in LF-only form. Multi-line data becomes several ``data:`` lines."""
    parts = []
    if event is not None:
        parts.append(f"event: {event}\n")
    if id is not None:
        parts.append(f"id: {id}\n")
    for line in _STR_LINE_SPLIT.split(data):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode()
