"""2023-06-01 Text Completions stream -> 2023-01-01 legacy stream (spec section 2). CORE.

Upstream events, by name (a table, so a new kind is one line):

    completion  append the new text, keep the latest stop_reason/stop/model/log_id/id, emit a
                snapshot; a non-null stop_reason emits the final snapshot and [DONE] (rules 1-2)
    ping        ``event: ping`` / ``data: {}``, or nothing when pings are dropped (rule 3)
    error       the legacy error event, no [DONE], abnormal end (rule 5)
    (other)     dropped and counted (rule 4)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Final

from proxy import jsonfast
from proxy.errors import StreamError
from proxy.jsonfast import loads as _loads
from proxy.translate.output import ClientStream


def parse_object(data: str) -> dict[str, Any]:
    """An event's data as a JSON object, or the core's "invalid_event" error."""
    try:
        obj = jsonfast.loads(data)
    except ValueError:
        raise StreamError("invalid_event") from None
    if type(obj) is not dict:
        raise StreamError("invalid_event")
    return obj


def error_event(out: ClientStream, data: str) -> bytes:
    """An upstream ``error`` event (rule 5); shared by every translator."""
    error = parse_object(data).get("error")
    if type(error) is not dict:
        raise StreamError("invalid_event")
    return out.fail("upstream_error_event", error)


class CompletionsTranslator:
    """Turns decoded upstream events into legacy bytes through a LegacyStream (a 2023-06-01
    client reads /v1/complete untouched, so this translator only ever writes legacy output)."""

    KINDS: Final = ("completion", "ping", "error")
    __slots__ = ("counts", "out")
    # upstream event name -> handler, called as handler(translator, data); a name not in the
    # table is unknown (rule 4). A class table of plain functions: a per-stream table of bound
    # methods made every stream a reference cycle, left to the garbage collector's pauses.
    HANDLERS: ClassVar[dict[str, Callable[[Any, str], bytes]]]

    def __init__(self, out: ClientStream) -> None:
        self.out = out
        self.counts: dict[str, int] = {}  # nothing is dropped or mapped here

    def _completion(self, data: str) -> bytes:
        try:
            obj = _loads(data)
            delta = obj.get("completion")
        except (ValueError, AttributeError):  # not JSON, or JSON but not an object
            raise StreamError("invalid_event") from None
        if type(delta) is not str or type(obj) is not dict:
            raise StreamError("invalid_event")
        out = self.out
        old = out.fields
        g = obj.get
        return out.update(
            delta,
            g("stop_reason", old[0]),
            g("stop", old[1]),
            g("model", old[2]),
            g("log_id", old[3]),
            g("id", old[4]),
        )

    def _ping(self, data: str) -> bytes:
        return self.out.ping()

    def flush(self) -> None:
        """Nothing is held here (the Messages translator may hold the start of an answer)."""

    def _error(self, data: str) -> bytes:
        return error_event(self.out, data)


CompletionsTranslator.HANDLERS = {
    "completion": CompletionsTranslator._completion,
    "ping": CompletionsTranslator._ping,
    "error": CompletionsTranslator._error,
}
