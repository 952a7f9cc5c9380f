"""The 2023-06-01 side of a Text Completions request served through Messages. CORE.

A 2023-06-01 Text Completions client (``anthropic`` 0.49 ``completions.create``, LangChain's
``Anthropic``) reaches Messages too (spec section 6, "Routing") and must get exactly the stream
/v1/complete sent it (spec section 2, "Upstream, 2023-06-01"). The exact bytes [decision], each
``data:`` line one line on the wire (wrapped here):

    event: completion
    data: {"type":"completion","id":"msg_01","completion":" Hello","stop_reason":null,
          "model":"claude-2.1","stop":null,"log_id":"msg_01"}

    event: ping
    data: {"type":"ping"}

    event: completion
    data: {"type":"completion","id":"msg_01","completion":"","stop_reason":"stop_sequence",
          "model":"claude-2.1","stop":"\\n\\nHuman:","log_id":"msg_01"}

    event: error
    data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}

- One ``event: completion`` per piece of new text, ``completion`` holding only that text; events
  with no new text are not written (a 2023-06-01 client appends each one, so an empty one says
  nothing).
- Every completion event has all seven keys, in this order: ``type``, ``id``, ``completion``,
  ``stop_reason``, ``model``, ``stop``, ``log_id``; a value not known yet is null. ``id`` and
  ``log_id`` are the Messages message id (``log_id`` falls back to ``id``, as in legacy output);
  ``model`` is the name the client asked for.
- JSON as ``json.dumps(ensure_ascii=False, separators=(",", ":"))`` writes it (spec section 9.3);
  LF line ends; no ``id:`` lines, no ``[DONE]``, and never the legacy fields (``truncated``,
  ``exception``): modern clients never get legacy fields (spec section 6).
- The final event has ``completion: ""`` and the mapped ``stop_reason``/``stop`` (the same table
  as for legacy clients); the stream is then finished.
- Errors: ``event: error`` with the upstream's error object (rule 5), or an ``api_error`` naming
  what happened (rule 6, the texts of STREAM_ERROR_MESSAGES). The shell then ends the response
  abnormally, as for legacy clients.

Backpressure (``room``, see ``translate.output``): while there is no room, new text is merged into
ONE pending completion event (never split, never reordered: it is the text that follows what was
sent), handed over by ``take_pending``. The ending writes a pending event first, then the final or
error event, so the client always has the whole text. Memory: the pending text (O(text)) and the
encoded fields.
"""

from __future__ import annotations

from typing import Any, Final

from proxy import jsonfast
from proxy.errors import STREAM_ERROR_MESSAGES, StreamError, StreamErrorReason
from proxy.jsonfast import escape_str
from proxy.translate.output import ClientStream

PING: Final = b'event: ping\ndata: {"type":"ping"}\n\n'
_HEAD: Final = b'event: completion\ndata: {"type":"completion","id":'
_ERROR_HEAD: Final = b'event: error\ndata: {"type":"error","error":'


class ModernStream(ClientStream):
    """Builds 2023-06-01 Text Completions event bytes from running text and fields."""

    __slots__ = ("_fields", "_head", "_pending", "_tail")
    PING = PING

    def __init__(self, *, pings: bool = True) -> None:
        super().__init__(pings=pings)
        # stop_reason, stop, model, log_id, id: the latest value of each (spec section 2)
        self._fields: tuple[Any, ...] = (None, None, None, None, None)
        self._head, self._tail = self._encode_fields(self._fields)
        self._pending = bytearray()  # escaped JSON of text not yet written, without quotes

    # -- state updates -------------------------------------------------------------------------

    def update(
        self, delta: str, stop_reason: Any, stop: Any, model: Any, log_id: Any, upstream_id: Any
    ) -> bytes:
        if self.finished:
            return b""
        fields = (stop_reason, stop, model, log_id, upstream_id)
        # encoded before anything changes: an event that cannot be encoded adds no text
        encoded = self._encode_fields(fields) if fields != self._fields else None
        if delta:
            if self._pending:
                self.snapshots_skipped += 1  # held text and this one go out as one event
            self._pending += escape_str(delta)
        if stop_reason is not None:
            # the last text goes out under the fields it came with (stop_reason null), then
            # the final event under the new ones
            pending = self._increment() if self._pending else b""
            if encoded is not None:
                (self._head, self._tail), self._fields = encoded, fields
            return self._end(pending)
        if encoded is not None:
            (self._head, self._tail), self._fields = encoded, fields
        if not self._pending:
            return b""  # no new text: nothing to tell a client that appends
        if self.room <= 0:
            return b""  # held: the next increments join it (module doc)
        out = self._increment()
        self.room -= len(out)
        return out

    def set_fields(self, stop: Any, model: Any, log_id: Any, upstream_id: Any) -> None:
        if self.finished:
            return
        fields = (self._fields[0], stop, model, log_id, upstream_id)
        if fields != self._fields:
            self._head, self._tail = self._encode_fields(fields)
            self._fields = fields

    @property
    def fields(self) -> tuple[Any, ...]:
        return self._fields

    def append(self, delta: str) -> None:
        """Text for the next event: it joins the pending increment, written by the ending."""
        if not self.finished and delta:
            self._pending += escape_str(delta)

    # -- output --------------------------------------------------------------------------------

    @property
    def has_pending(self) -> bool:
        return bool(self._pending) and not self.finished

    def take_pending(self) -> bytes:
        if not self._pending or self.finished:
            return b""
        out = self._increment()
        self.room -= len(out)
        return out


    def finish(self) -> bytes:
        """Text still pending, then the final event (``completion: ""``, the stop reason)."""
        if self.finished:
            return b""
        return self._end(self._increment() if self._pending else b"")

    def _end(self, pending: bytes) -> bytes:
        out = pending + self._head + b',"completion":""' + self._tail
        self.out_counts["snapshot"] += 1
        self.out_counts["done"] += 1  # no [DONE] line in this format: the final event is the end
        self.finished = True
        self.outcome = "ok"
        self.room -= len(out)
        return out

    def fail(
        self, reason: StreamErrorReason, error: Any = None, exception: str | None = None
    ) -> bytes:
        """Text still pending, then ``event: error``. ``exception`` is a legacy field: unused."""
        if self.finished:
            return b""
        pending = self._increment() if self._pending else b""
        try:
            error_json = jsonfast.dumps(error) if error is not None else b""
        except ValueError:  # an upstream error object no JSON writer can echo (rule 6)
            reason, error = "invalid_event", None
        if error is None:
            error_json = jsonfast.dumps(
                {"type": "api_error", "message": STREAM_ERROR_MESSAGES[reason]}
            )
        out = pending + _ERROR_HEAD + error_json + b"}\n\n"
        self.out_counts["error"] += 1
        self.finished = True
        self.outcome = reason
        self.room -= len(out)
        return out

    # -- internals -----------------------------------------------------------------------------

    def _increment(self) -> bytes:
        out = b"".join((self._head, b',"completion":"', self._pending, b'"', self._tail))
        self._pending = bytearray()
        self.out_counts["snapshot"] += 1
        return out

    @staticmethod
    def _encode_fields(fields: tuple[Any, ...]) -> tuple[bytes, bytes]:
        """(the event up to ``"id":<id>``, everything after ``completion``)."""
        stop_reason, stop, model, log_id, upstream_id = fields
        if log_id is None:
            log_id = upstream_id
        d = jsonfast.dumps
        try:
            head = _HEAD + d(upstream_id)
            tail = b"".join(
                (
                    b',"stop_reason":',
                    d(stop_reason),
                    b',"model":',
                    d(model),
                    b',"stop":',
                    d(stop),
                    b',"log_id":',
                    d(log_id),
                    b"}\n\n",
                )
            )
        except ValueError:  # a value no JSON writer can echo (nested too deep)
            raise StreamError("invalid_event") from None
        return head, tail
