"""The 2023-01-01 side of a converted stream: running text in, exact legacy bytes out. CORE.

Both translators (Text Completions and Messages) feed one of these. It owns the rules that do not
depend on what the upstream speaks: cumulative snapshots in the exact bytes of spec section 2,
pings, the optional ``id:`` line (rule 5), the error event with no ``[DONE]`` (rules 5 and 6),
``[DONE]`` only after a ``stop_reason`` (rule 2), and snapshot skipping (rule 7).

Memory per stream (rule 7): the running text, kept once as its escaped JSON bytes (O(text)), the
few short fields, and *no* queued snapshots. While the client has no ``room`` (see
``translate.output``), a pending snapshot is a flag, not bytes: when the shell asks for it, it is
built from the current state, which is the latest snapshot. So a stream costs O(len(text)) plus
the one event being returned, and one read costs at most ``room`` plus one snapshot of output.

CPU: each delta is JSON-escaped once, when it arrives (``escape_str``), never the whole text per
event; a snapshot is then a concatenation. Cumulative output is quadratic in bytes by nature
(spec section 2, cost note); it is not made quadratic in escaping work too.
"""

from __future__ import annotations

from typing import Any, Final

from proxy import jsonfast
from proxy.errors import STREAM_ERROR_MESSAGES, StreamError, StreamErrorReason
from proxy.jsonfast import escape_str
from proxy.translate.output import ClientStream

DONE: Final = b"data: [DONE]\n\n"
PING: Final = b"event: ping\ndata: {}\n\n"
_HEAD: Final = b'data: {"completion":"'
_TAIL_OK: Final = b',"truncated":false,"exception":null}\n\n'


class LegacyStream(ClientStream):
    """Builds the legacy event bytes. ``room`` is set by the shell (spec rule 7, issue 14)."""

    __slots__ = ("_fields", "_id_line", "_middle", "_pending", "_text")
    PING = PING

    def __init__(self, *, pings: bool = True, event_id: str | None = None) -> None:
        super().__init__(pings=pings)
        self._id_line = b"" if event_id is None else b"id: " + event_id.encode() + b"\n"
        self._text = bytearray()  # escaped JSON of the running text, without quotes
        # stop_reason, stop, model, log_id, id: the latest value of each (spec section 2)
        self._fields: tuple[Any, ...] = (None, None, None, None, None)
        self._middle = self._encode_fields(self._fields)
        self._pending = False

    # -- state updates -------------------------------------------------------------------------

    def update(
        self, delta: str, stop_reason: Any, stop: Any, model: Any, log_id: Any, upstream_id: Any
    ) -> bytes:
        """New text and the latest field values: a snapshot, or the final event and [DONE] when
        ``stop_reason`` is set (rules 1, 2). The per-event hot path: one call per event."""
        if self.finished:
            return b""
        fields = (stop_reason, stop, model, log_id, upstream_id)
        if fields != self._fields:
            # encoded before anything changes: an event that cannot be encoded adds no text
            self._middle = self._encode_fields(fields)
            self._fields = fields
        if delta:
            self._text += escape_str(delta)
        if stop_reason is not None:
            return self.finish()
        if self.room <= 0:
            return self.snapshot()  # held as pending
        if self._pending:  # a held snapshot superseded by this one before it was taken
            self._pending = False
            self.snapshots_skipped += 1
        self.out_counts["snapshot"] += 1
        if self._id_line:
            out = self._render(_TAIL_OK, "snapshot", counted=True)
        else:
            out = b"".join((_HEAD, self._text, self._middle, _TAIL_OK))
        self.room -= len(out)
        return out

    def set_fields(self, stop: Any, model: Any, log_id: Any, upstream_id: Any) -> None:
        """Take field values that come with no text (Messages' message_start): nothing is
        rendered, so the one-time ``id:`` line waits for the first event actually written."""
        if self.finished:
            return
        fields = (self._fields[0], stop, model, log_id, upstream_id)
        if fields != self._fields:
            self._middle = self._encode_fields(fields)
            self._fields = fields

    @property
    def fields(self) -> tuple[Any, ...]:
        """stop_reason, stop, model, log_id, upstream id: the latest value of each."""
        return self._fields

    def append(self, delta: str) -> None:
        """Text for the next event (held text a translator releases at the end): the final or
        error event written next carries it, since every legacy event has the whole text."""
        if not self.finished and delta:
            self._text += escape_str(delta)

    # -- output --------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The event for the text so far, or b"" when there is no room (held as pending)."""
        if self.finished:
            return b""
        if self.room <= 0:
            if self._pending:
                self.snapshots_skipped += 1
            self._pending = True
            return b""
        self._supersede_pending()
        out = self._render(_TAIL_OK, "snapshot")
        self.room -= len(out)
        return out

    @property
    def has_pending(self) -> bool:
        return bool(self._pending) and not self.finished

    def take_pending(self) -> bytes:
        """The latest held snapshot, once; b"" when none is held. Handed over whatever the room
        (the shell asks when it can write), and charged to it."""
        if not self._pending or self.finished:
            return b""
        self._pending = False
        out = self._render(_TAIL_OK, "snapshot")
        self.room -= len(out)
        return out


    def finish(self) -> bytes:
        """The final snapshot (it carries stop_reason) and ``[DONE]``; never held back."""
        if self.finished:
            return b""
        self._supersede_pending()
        out = self._render(_TAIL_OK, "snapshot") + DONE
        self.out_counts["done"] += 1
        self.finished = True
        self.outcome = "ok"
        self.room -= len(out)
        return out

    def fail(
        self, reason: StreamErrorReason, error: Any = None, exception: str | None = None
    ) -> bytes:
        """The legacy error event (rules 5 and 6): running text, stop_reason null, no [DONE].

        ``error`` is the upstream's error object when it sent one; otherwise the proxy names what
        happened as an ``api_error``.
        """
        if self.finished:
            return b""
        self._supersede_pending()
        try:
            error_json = jsonfast.dumps(error) if error is not None else b""
        except ValueError:  # an upstream error object no JSON writer can echo (rule 6)
            reason, error, exception = "invalid_event", None, None
        if error is None:
            error = {"type": "api_error", "message": STREAM_ERROR_MESSAGES[reason]}
            error_json = jsonfast.dumps(error)
        if exception is None:
            exception = _readable(error)
        middle = self._encode_fields((None, *self._fields[1:]))
        tail = (
            b',"truncated":false,"exception":'
            + jsonfast.dumps(exception)
            + b',"error":'
            + error_json
            + b"}\n\n"
        )
        out = self._render(tail, "error", middle)
        self.finished = True
        self.outcome = reason
        self.room -= len(out)
        return out

    # -- internals -----------------------------------------------------------------------------

    def _supersede_pending(self) -> None:
        if self._pending:
            self._pending = False
            self.snapshots_skipped += 1

    def _render(
        self, tail: bytes, kind: str, middle: bytes | None = None, counted: bool = False
    ) -> bytes:
        if not counted:
            self.out_counts[kind] += 1
        id_line = self._id_line
        if id_line:
            self._id_line = b""  # only the first event carries the id (rule 5)
        return b"".join(
            (id_line, _HEAD, self._text, self._middle if middle is None else middle, tail)
        )

    @staticmethod
    def _encode_fields(fields: tuple[Any, ...]) -> bytes:
        stop_reason, stop, model, log_id, upstream_id = fields
        if log_id is None:
            log_id = upstream_id
        d = jsonfast.dumps
        try:
            return b"".join(
                (
                    b'","stop_reason":',
                    d(stop_reason),
                    b',"stop":',
                    d(stop),
                    b',"model":',
                    d(model),
                    b',"log_id":',
                    d(log_id),
                )
            )
        except ValueError:  # a value no JSON writer can echo (nested too deep)
            raise StreamError("invalid_event") from None


def _readable(error: dict[str, Any]) -> str:
    """``exception`` for an error object: "overloaded_error: Overloaded" (spec rule 5), without
    a "None" where the upstream left a part out."""
    parts = [str(error[k]) for k in ("type", "message") if error.get(k) is not None]
    return ": ".join(parts) or "upstream error"
