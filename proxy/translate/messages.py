"""Legacy /v1/complete on a model that only speaks the Messages API (spec section 6). CORE.

Three pure pieces: the request (a ``\\n\\nHuman:`` / ``\\n\\nAssistant:`` prompt to ``system`` +
``messages``, per target profile), the stream (Messages events to the client's own format: the
legacy stream of Text Completions, or the 2023-06-01 one), and the non-streaming body (a Message
to a completion body in either format).

Stream events, by name:

    message_start        model and id (the legacy log_id)
    content_block_start  a text block is read; any other kind is dropped: thinking and
                         redacted_thinking counted apart (expected on 5.x), the rest together
    content_block_delta  text_delta appends and emits a snapshot; other deltas are dropped
    message_delta        stop_reason / stop_sequence, mapped (table below): the final event + [DONE]
    message_stop         the final event, if message_delta did not carry a stop_reason
    ping, error          as in Text Completions

An emulated prefill (``strip_prefix``, spec section 6 "Prefill") is removed from the start of the
answer, as Text Completions returned only what followed the prefill. The translator holds the
answer's first characters until it knows: the answer begins with the prefix, possibly after
whitespace the model put first (removed together with the prefix: it was never part of the
answer a prefill continues), or it does not (then the held text goes on unchanged, whitespace
included). It decides on text, not on deltas, so any split gives the same result; a stream that
ends (or fails) undecided releases what is held before its last event.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

from proxy import jsonfast
from proxy.errors import BadRequest, StreamError
from proxy.modeltable import Profile, profile_for
from proxy.translate.completions import error_event, parse_object
from proxy.translate.output import ClientStream

HUMAN: Final = "\n\nHuman:"
ASSISTANT: Final = "\n\nAssistant:"
_TURN: Final = re.compile(r"\n\n(Human|Assistant):")

# Messages stop_reason -> (legacy stop_reason, legacy stop). None in the stop column means "the
# stop_sequence the upstream reported". Anything not listed maps to OTHER_STOP and is counted.
STOP_REASONS: Final[dict[str, tuple[str, str | None]]] = {
    "end_turn": ("stop_sequence", HUMAN),
    "stop_sequence": ("stop_sequence", None),
    "max_tokens": ("max_tokens", None),
}
OTHER_STOP: Final = ("stop_sequence", None)
# content blocks that are thinking: expected from 5.x models, so counted apart from the others
THINKING_BLOCKS: Final = ("thinking", "redacted_thinking")  # a tuple: a block type may be any JSON
# translator counts, for metrics: the same keys streaming and not
COUNTS: Final = ("dropped_blocks", "thinking_blocks", "other_stop_reason", "prefill_stripped")


def map_stop(stop_reason: Any, stop_sequence: Any) -> tuple[str, Any, bool]:
    """(legacy stop_reason, legacy stop, whether the reason was one the table knows)."""
    known = STOP_REASONS.get(stop_reason) if isinstance(stop_reason, str) else None
    legacy, stop = known or OTHER_STOP
    if stop is None and stop_reason == "stop_sequence":
        stop = stop_sequence
    return legacy, stop, known is not None


def prompt_to_messages(prompt: str) -> tuple[str | None, list[dict[str, str]]]:
    """Split a legacy prompt into ``system`` and alternating user/assistant messages.

    Text before the first ``\\n\\nHuman:`` is the system prompt; text after the final
    ``\\n\\nAssistant:`` is an assistant prefill (trailing whitespace removed, as the Messages API
    requires). Raises BadRequest naming what is wrong with a prompt that cannot be translated.
    """
    parts = _TURN.split(prompt)
    system = parts[0].strip() or None
    turns = [(parts[i], parts[i + 1]) for i in range(1, len(parts), 2)]
    if not turns or turns[0][0] != "Human":
        raise BadRequest('prompt: must contain a "\\n\\nHuman:" turn before any "\\n\\nAssistant:"')
    if turns[-1][0] != "Assistant":
        raise BadRequest('prompt: must end with an "\\n\\nAssistant:" turn')
    messages: list[dict[str, str]] = []
    for n, (role, text) in enumerate(turns):
        if n and role == turns[n - 1][0]:
            raise BadRequest(
                f"prompt: turns out of order, two {role} turns in a row (turn {n + 1})"
            )
        last = n == len(turns) - 1
        content = text.rstrip() if last else text.strip()
        if last:
            content = content.lstrip(" ")
            if content:
                messages.append({"role": "assistant", "content": content})  # a prefill
            continue
        if not content:
            raise BadRequest(f"prompt: turn {n + 1} ({role}) is empty")
        messages.append({"role": "user" if role == "Human" else "assistant", "content": content})
    return system, messages


# -- request translation with target profiles (spec section 6, "Request translation") ----------

# The fields a 2023 Text Completions request could carry; anything else is counted as "other"
# when it is left out (the npm SDK 0.4.x sends ``tags``; the Messages API refuses extra fields).
LEGACY_FIELDS: Final = frozenset(
    {
        "model",
        "prompt",
        "max_tokens_to_sample",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
        "stream",
    }
)
_SAMPLING: Final = ("temperature", "top_p", "top_k")
# (low, high) of each sampling parameter in the Messages API; None: no upper bound
_RANGES: Final[dict[str, tuple[float, float | None]]] = {
    "temperature": (0.0, 1.0),
    "top_p": (0.0, 1.0),
    "top_k": (0.0, None),
}
# The instruction that emulates a prefill on a model that refuses one. Deterministic (it is part
# of the request bytes, which tests pin) and explicit about where the text starts and ends: the
# tags keep a prefill that ends in a colon or a quote from running into the sentence.
PREFILL_INSTRUCTION: Final = (
    "\n\nBegin your response with exactly the text between <prefill> and </prefill> (without "
    "the tags), then continue it:\n<prefill>{prefill}</prefill>"
)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One upstream request for one target, and what the shell must know about it.

    ``strip_prefix``: the emulated prefill, removed from the start of the answer (give it to
    StreamConverter / message_to_completion); "" unless ``prefill`` is "emulated".
    ``dropped``: one label from modeltable.DROPPED_FIELDS per field left out or capped."""

    model: str
    body: bytes
    strip_prefix: str
    prefill: Literal["none", "sent", "emulated"]
    dropped: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Request:
    """A legacy request, validated once: nothing here depends on the target."""

    system: str | None
    messages: list[dict[str, str]]  # ends with the user turn; the prefill is apart
    prefill: str  # "" when the prompt has none
    max_tokens: int
    sampling: dict[str, float | int]  # the values to send if the target takes them
    stop_sequences: list[str] | None
    user_id: str | None
    stream: bool | None
    dropped: tuple[str, ...]  # what is left out whatever the target (-1 values, "other", ...)


def _number(name: str, value: Any) -> float | int:
    """A sampling value, or BadRequest naming the field (spec section 6: nothing forwarded)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{name}: must be a number")
    low, high = _RANGES[name]
    if not low <= value or (high is not None and value > high):  # also refuses NaN
        bounds = f"between {low:g} and {high:g}" if high is not None else f">= {low:g}"
        raise BadRequest(f"{name}: must be {bounds} (or -1 to leave it unset), got {value!r}")
    if name == "top_k":
        if isinstance(value, float) and not value.is_integer():
            raise BadRequest(f"top_k: must be an integer, got {value!r}")
        return int(value)
    return value


def _parse(fields: Mapping[str, Any]) -> _Request:
    """Validate a legacy request before any target is chosen, so that a bad value is refused
    the same way whichever model would have served it, and nothing is forwarded."""
    prompt = fields.get("prompt")
    if not isinstance(prompt, str):
        raise BadRequest("prompt: a string is required")
    max_tokens = fields.get("max_tokens_to_sample")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise BadRequest("max_tokens_to_sample: a positive integer is required")
    dropped: list[str] = []
    sampling: dict[str, float | int] = {}
    for name in _SAMPLING:
        value = fields.get(name)
        if value is None:
            continue  # absent, or null: nothing to say (a null is not a value to drop)
        if value == -1 and not isinstance(value, bool):
            dropped.append(name)  # "disabled" in the 2023 API and LangChain.js's defaults
            continue
        sampling[name] = _number(name, value)
    stops = fields.get("stop_sequences")
    stop_sequences: list[str] | None = None
    if stops is not None:
        if not isinstance(stops, list):
            raise BadRequest("stop_sequences: must be a list of strings")
        if not all(isinstance(s, str) for s in stops):
            raise BadRequest("stop_sequences: every entry must be a string")
        # the Messages API refuses empty and whitespace-only stop sequences
        stop_sequences = [s for s in stops if s.strip()]
        if len(stop_sequences) != len(stops):
            dropped.append("stop_sequences")
    metadata = fields.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    stream = fields.get("stream")
    dropped.extend("other" for key in fields if key not in LEGACY_FIELDS)
    system, messages = prompt_to_messages(prompt)
    prefill = ""
    if messages[-1]["role"] == "assistant":
        prefill = messages.pop()["content"]
    return _Request(
        system=system,
        messages=messages,
        prefill=prefill,
        max_tokens=max_tokens,
        sampling=sampling,
        stop_sequences=stop_sequences,
        user_id=user_id if isinstance(user_id, str) else None,
        stream=None if stream is None else stream is True,
        dropped=tuple(dropped),
    )


def plan(
    fields: Mapping[str, Any], targets: Sequence[str], profiles: Mapping[str, Profile]
) -> list[tuple[str, Profile]]:
    """The order the targets are tried in, each with its profile.

    Without a prefill, the tier's order. With one, the targets that accept a prefill first (it is
    sent as it is), then the others (they emulate it), each group in the tier's order (spec
    section 6, "Prefill"). Raises BadRequest for a request that cannot be translated, before
    anything is sent."""
    request = _parse(fields)
    with_profiles = [(t, profile_for(t, profiles)) for t in targets]
    if not request.prefill:
        return with_profiles
    accepting = [tp for tp in with_profiles if tp[1].prefill == "accepted"]
    return accepting + [tp for tp in with_profiles if tp[1].prefill != "accepted"]


def translate(
    fields: Mapping[str, Any], model: str, profile: Profile, *, thinking_allowance: int
) -> Attempt:
    """A legacy /v1/complete body as the Messages request for ``model`` (spec section 6)."""
    request = _parse(fields)
    dropped = list(request.dropped)
    messages = [dict(m) for m in request.messages]
    prefill_mode: Literal["none", "sent", "emulated"] = "none"
    strip_prefix = ""
    if request.prefill:
        if profile.prefill == "accepted":
            # prompt_to_messages removed its trailing whitespace: the API refuses it there
            messages.append({"role": "assistant", "content": request.prefill})
            prefill_mode = "sent"
        else:
            messages[-1]["content"] += PREFILL_INSTRUCTION.format(prefill=request.prefill)
            prefill_mode, strip_prefix = "emulated", request.prefill
    max_tokens = request.max_tokens
    if max_tokens > profile.max_output:
        max_tokens = profile.max_output  # the old API stopped at the model's limit instead
        dropped.append("max_tokens")
    out: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages}
    if profile.thinking == "default_on":
        out["thinking"] = {"type": "disabled"}
    elif profile.thinking == "always_on":
        # thinking tokens count against max_tokens: a small max_tokens_to_sample still gets text
        out["max_tokens"] = min(max_tokens + max(thinking_allowance, 0), profile.max_output)
    if request.system is not None:
        out["system"] = request.system
    sampling = dict(request.sampling)
    if profile.sampling == "none":
        dropped.extend(sampling)
        sampling.clear()
    elif profile.sampling == "one" and "temperature" in sampling and "top_p" in sampling:
        del sampling["top_p"]  # keep temperature, as Portkey does (spec section 6)
        dropped.append("top_p")
    out.update(sampling)
    if request.stop_sequences:
        out["stop_sequences"] = request.stop_sequences
    if request.user_id is not None:
        out["metadata"] = {"user_id": request.user_id}
    if request.stream is not None:
        out["stream"] = request.stream
    try:
        body = jsonfast.dumps(out)
    except ValueError:
        raise BadRequest(
            "request body cannot be translated: a value is nested too deeply"
        ) from None
    return Attempt(model, body, strip_prefix, prefill_mode, tuple(dropped))


def strip_prefill(text: str, prefix: str) -> tuple[str, bool]:
    """``text`` without ``prefix`` at its start (after any leading whitespace), and whether it
    was there. The whole-text form of what MessagesTranslator does on a stream."""
    if not prefix:
        return text, False
    body = text.lstrip()
    if body.startswith(prefix):
        return body[len(prefix) :], True
    return text, False


def message_to_completion(
    body: bytes,
    legacy_model: str | None,
    *,
    client_format: Literal["legacy", "modern"] = "legacy",
    strip_prefix: str = "",
) -> tuple[bytes, dict[str, int]] | None:
    """A non-streaming Messages response as a completion body in the client's format (spec
    sections 3 and 6): legacy adds ``truncated`` and ``exception`` to the 2023-06-01 body.

    Returns (body, counts: the keys of COUNTS), or None when the body is not a Message (the
    shell then passes it through)."""
    try:
        msg = jsonfast.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if type(msg) is not dict or not isinstance(msg.get("content"), list):
        return None
    text = "".join(
        t
        for b in msg["content"]
        if isinstance(b, dict) and b.get("type") == "text" and isinstance(t := b.get("text"), str)
    )
    kinds = [b.get("type") if isinstance(b, dict) else None for b in msg["content"]]
    thinking = sum(1 for k in kinds if k in THINKING_BLOCKS)
    stop_reason, stop, known = map_stop(msg.get("stop_reason"), msg.get("stop_sequence"))
    text, stripped = strip_prefill(text, strip_prefix)
    counts = {
        "dropped_blocks": sum(1 for k in kinds if k != "text") - thinking,
        "thinking_blocks": thinking,
        "other_stop_reason": 0 if known else 1,
        "prefill_stripped": 1 if stripped else 0,
    }
    completion: dict[str, Any] = {
        "type": "completion",
        "id": msg.get("id"),
        "completion": text,
        "stop_reason": stop_reason,
        "model": legacy_model if legacy_model is not None else msg.get("model"),
        "stop": stop,
        "log_id": msg.get("id"),
    }
    if client_format == "legacy":
        completion["truncated"] = False
        completion["exception"] = None
    try:
        return jsonfast.dumps(completion), counts
    except ValueError:  # an id or stop sequence no JSON writer can echo: pass it through
        return None


def _index(event: dict[str, Any]) -> int:
    """A content block's index: an integer (-1 when absent), or the event is invalid (rule 6)."""
    index = event.get("index", -1)
    if type(index) is not int:
        raise StreamError("invalid_event")
    return index


# How much whitespace may come before an emulated prefill in the answer and still be removed with
# it; past it the answer is taken not to begin with the prefill (and held text goes out as is).
MAX_LEADING_WHITESPACE: Final = 256


class MessagesTranslator:
    """Messages stream events -> the client's bytes through a LegacyStream or a ModernStream.

    ``legacy_model``: the model name the client asked for, reported back to it (a legacy client
    that asked for claude-2.1 is told claude-2.1, whatever model served it).
    ``strip_prefix``: an emulated prefill to remove from the start of the answer (module doc)."""

    KINDS: Final = (
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    )
    __slots__ = ("_held", "_legacy_model", "_prefix", "_skip", "counts", "out")
    # event name -> handler(translator, data): a class table, no per-stream cycle (completions)
    HANDLERS: ClassVar[dict[str, Callable[[Any, str], bytes]]]

    def __init__(
        self, out: ClientStream, legacy_model: str | None = None, *, strip_prefix: str = ""
    ) -> None:
        self.out = out
        self._legacy_model = legacy_model
        if legacy_model is not None:
            # the name the client asked for, even on events before message_start (an error first)
            out.set_fields(None, legacy_model, None, None)
        self._skip: set[int] = set()  # indexes of non-text content blocks
        # the prefix still to look for ("" once decided) and the answer's text held meanwhile
        self._prefix = strip_prefix
        self._held = ""
        # dropped_blocks: non-text blocks other than thinking; thinking_blocks: thinking and
        # redacted_thinking; other_stop_reason: stop reasons outside the table;
        # prefill_stripped: the emulated prefill was found and removed
        self.counts = dict.fromkeys(COUNTS, 0)

    def _message_start(self, data: str) -> bytes:
        message = parse_object(data).get("message")
        if type(message) is not dict:
            raise StreamError("invalid_event")
        out = self.out
        _, stop, model, log_id, upstream_id = out.fields
        model = self._legacy_model or message.get("model", model)
        # nothing to show yet: the first text makes the first snapshot (and carries the id line)
        out.set_fields(stop, model, log_id, message.get("id", upstream_id))
        return b""

    def _block_start(self, data: str) -> bytes:
        obj = parse_object(data)
        block = obj.get("content_block")
        if type(block) is not dict:
            raise StreamError("invalid_event")
        kind = block.get("type")
        if kind != "text":
            self._skip.add(_index(obj))
            self.counts["thinking_blocks" if kind in THINKING_BLOCKS else "dropped_blocks"] += 1
            return b""
        text = block.get("text", "")
        return self._append(text) if isinstance(text, str) and text else b""

    def _block_delta(self, data: str) -> bytes:
        obj = parse_object(data)
        delta = obj.get("delta")
        if type(delta) is not dict:
            raise StreamError("invalid_event")
        if _index(obj) in self._skip or delta.get("type") != "text_delta":
            return b""  # part of a non-text block (already counted once, at its start)
        text = delta.get("text")
        if type(text) is not str:
            raise StreamError("invalid_event")
        return self._append(text)

    def _append(self, text: str) -> bytes:
        if self._prefix:
            text = self._strip(text)
            if not text:
                return b""  # held, or all of it was the prefix: nothing new for the client
        out = self.out
        return out.update(text, None, *out.fields[1:])

    def _strip(self, text: str) -> str:
        """What of the answer can go out now: "" while it is undecided whether the answer
        begins with the prefix (the text is held), then the answer without it, or unchanged."""
        held = self._held + text
        body = held.lstrip()
        prefix = self._prefix
        if body.startswith(prefix):
            self._prefix = self._held = ""
            self.counts["prefill_stripped"] += 1
            return body[len(prefix) :]
        # all whitespace so far, or a start of the prefix: wait, unless the whitespace runs on
        # (a degenerate answer of newlines would otherwise make every delta copy all it holds)
        if prefix.startswith(body) and len(held) - len(body) <= MAX_LEADING_WHITESPACE:
            self._held = held
            return ""
        self._prefix = self._held = ""
        return held

    def flush(self) -> None:
        """The stream ends undecided: what is held is the answer's text, unchanged."""
        if self._held:
            self.out.append(self._held)
        self._prefix = self._held = ""

    def _message_delta(self, data: str) -> bytes:
        delta = parse_object(data).get("delta")
        if type(delta) is not dict:
            raise StreamError("invalid_event")
        stop_reason = delta.get("stop_reason")
        if stop_reason is None:
            return b""
        if type(stop_reason) is not str:
            raise StreamError("invalid_event")
        return self._finish(stop_reason, delta.get("stop_sequence"))

    def _message_stop(self, data: str) -> bytes:
        return self._finish("end_turn", None)  # only reached if no message_delta finished it

    def _finish(self, stop_reason: Any, stop_sequence: Any) -> bytes:
        self.flush()
        legacy, stop, known = map_stop(stop_reason, stop_sequence)
        if not known:
            self.counts["other_stop_reason"] += 1
        out = self.out
        _, _, model, log_id, upstream_id = out.fields
        return out.update("", legacy, stop, model, log_id, upstream_id)

    def _nothing(self, data: str) -> bytes:
        return b""

    def _ping(self, data: str) -> bytes:
        return self.out.ping()

    def _error(self, data: str) -> bytes:
        self.flush()
        return error_event(self.out, data)


MessagesTranslator.HANDLERS = {
    "message_start": MessagesTranslator._message_start,
    "content_block_start": MessagesTranslator._block_start,
    "content_block_delta": MessagesTranslator._block_delta,
    "content_block_stop": MessagesTranslator._nothing,
    "message_delta": MessagesTranslator._message_delta,
    "message_stop": MessagesTranslator._message_stop,
    "ping": MessagesTranslator._ping,
    "error": MessagesTranslator._error,
}
