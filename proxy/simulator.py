"""An upstream simulator as strict as today's API (2026-12), for the demo, tests and benchmarks.

    python -m proxy.simulator [--host 127.0.0.1] [--port 8700] [--tokens 20] [--pace 0]
                              [--ping-every 0] [--fault F] [--thinking-tokens 12]
                              [--text-completions] [--permissive-messages]

It answers in the 2023-06-01 format whatever ``anthropic-version`` the client sent, like today's
API, so a legacy client pointed at it directly breaks exactly as it breaks against the real API.
It shares no code with the proxy (an independent implementation of the other side) and keeps its
own copy of the model facts (``MODELS``, as of 2026-12-01, from the API's models overview).

Routes: POST /v1/complete, POST /v1/messages (streaming and not), GET /v1/models,
GET /_sim/stats, POST /_sim/reset. Requests without ``x-api-key`` get 401; a body that is not JSON
400; ``x-sim-fault: status:<code>`` comes before any check below.

POST /v1/complete, by default, serves no model, like today's API (spec section 6):
    a live model (in MODELS)    400 invalid_request_error
                                ``"<model>" is not supported on this API. Please use the Messages
                                API instead.``
    a retired or unknown model  404 not_found_error ``model: <name>`` (every Text Completions name,
                                claude-v1*, claude-1*, claude-instant-*, claude-2, claude-2.0/2.1,
                                Claude 3.x, claude-sonnet-4-5*, claude-sonnet-4-0/opus-4-0 and
                                their dated forms: ``RETIRED``)
    no model                    400 ``model: Field required``
With ``--text-completions`` (``SimConfig(text_completions=True)``) it streams a completion for any
model, as the API did until 2025: for the proxy's ``complete.upstream = complete`` mode and the
tests of Text Completions clients.

POST /v1/messages validates like today's API (``check_messages``), every refusal a 400
invalid_request_error unless marked, in this order:
    model, max_tokens, messages missing     ``<field>: Field required``
    a field not in MESSAGES_FIELDS          ``<field>: Extra inputs are not permitted``
    max_tokens not a positive integer, messages not a non-empty list
    temperature / top_p outside 0..1, top_k < 0   ``<field>: Input should be ... <bound>``
    messages not alternating user/assistant from a user turn, a role other than those two, a
        content that is neither a non-empty string nor a list of blocks (text blocks non-empty);
        only a final assistant message may be empty
    stop_sequences with an empty or whitespace-only entry
    metadata with a key other than user_id  ``metadata.<key>: Extra inputs are not permitted``
    thinking.type not enabled/disabled/adaptive (enabled needs budget_tokens >= 1024, < max_tokens)
    a retired or unknown model              404 not_found_error ``model: <name>``
    max_tokens over the model's max_output  ``max_tokens: N > M, which is the maximum allowed
                                            number of output tokens for <model>``
    sampling "one": temperature with top_p  ```temperature` and `top_p` cannot both be
                                            specified for this model. Please use only one.``
    sampling "none": temperature, top_p or top_k   ```<field>` is not supported for this model.``
    a final assistant message (prefill) where refused   ``This model does not support assistant
                                            message prefill. The conversation must end with a user
                                            message.``
    a prefill ending in whitespace where accepted   ``final assistant content cannot end with
                                            trailing whitespace``
    thinking disabled on an always_on model ``"thinking.type.disabled" is not supported for this
                                            model. ...``
With ``--permissive-messages`` (``SimConfig(strict=False)``) it accepts any body and model, never
thinks and ignores stop_sequences, as before 2026-12.

Answers: ``x-sim-tokens`` text tokens (default ``--tokens``), at most max_tokens (then stop_reason
max_tokens, else end_turn). A model that thinks (thinking default_on and not disabled, always_on,
or a request for enabled/adaptive) first sends a ``thinking`` block at index 0: content_block_start
``{"type": "thinking", "thinking": "", "signature": ""}``, one thinking_delta per thinking token,
one signature_delta, content_block_stop; then the text block at index 1. The thinking tokens
(``x-sim-thinking-tokens``, default ``--thinking-tokens`` = 12) count against max_tokens, so a
small max_tokens gives a short text or none (then no text block at all) and stop_reason
max_tokens, like the real API; non-streaming answers carry the thinking block in ``content`` too.
A prefill is continued, never repeated: the text is the same as without one. The text ends before
the first of ``stop_sequences`` it contains (stop_reason stop_sequence, with the sequence).

Per-request headers: ``x-sim-tokens`` (token count), ``x-sim-thinking-tokens``, ``x-sim-pace``
(seconds between events), and ``x-sim-fault`` (comma-separated; on /v1/messages n counts text
deltas only, never thinking deltas, so a fault lands on the same text with or without thinking):

    status:<code>        the API's error body for that status (429 adds retry-after: 7)
    error-after:<n>      an overloaded_error event after n completion events, then a clean end
    reset-after:<n>      abort the connection after n events
    eof-after:<n>        end the body cleanly after n events, without a stop_reason
    stall-after:<n>      n events, then silence until the client leaves
    linger:<s>           wait s seconds after the last event before ending the body
    not-sse              200 application/json to a streaming request
    invalid-json-after:<n>  an event whose data is not JSON after n events
    gzip                 compress the body even though the client asked for identity
    slow-headers:<s>     wait s seconds before the response headers
    comments             interleave ": keepalive", "retry:" and "id:" lines
    crlf | cr            CR LF or CR line ends
    split                write every event in 3-byte pieces (cuts CR LF pairs and characters)
    unknown-event        interleave an unknown "event: content_filter" event
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import gzip
import json
import re
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

WORDS: Final = (
    " Hello", " world", ",", " caf\u00e9", " \u65e5\u672c\u8a9e", " \U0001f600",
    ' "quoted"', " back\\slash", "\n", " and", " more", " text", ".",
)  # fmt: skip


def token(i: int) -> str:
    return WORDS[i % len(WORDS)]


def expected_text(n_tokens: int) -> str:
    """The full text of a completion of ``n_tokens`` tokens."""
    return "".join(token(i) for i in range(n_tokens))


@dataclass
class SimConfig:
    tokens: int = 20
    pace: float = 0.0
    ping_every: int = 0
    model: str = "claude-2.0"
    fault: str = ""  # x-sim-fault for requests that send none (SDKs cannot add headers)
    # POST /v1/complete as in 2023-2025 (any model streams a completion): for the proxy's
    # `complete.upstream = complete` mode and tests of Text Completions clients. Off, it refuses
    # every model like today's API.
    text_completions: bool = False
    # POST /v1/messages validates like today's API (MODELS, _check_messages); off, it accepts any
    # body and model and never thinks, as before 2026-12.
    strict: bool = True
    thinking_tokens: int = 12  # tokens of a thinking block, charged against max_tokens
    # text every /v1/messages answer begins with (x-sim-answer-prefix per request): a model that
    # follows an instruction to begin its answer with exactly that text, as the proxy's prefill
    # emulation asks
    answer_prefix: str = ""


@dataclass
class SimStats:
    requests: int = 0
    by_path: Counter[str] = field(default_factory=Counter)
    open_streams: int = 0
    completed_streams: int = 0
    client_disconnects: int = 0
    last_requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=50))
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def view(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_path": dict(self.by_path),
            "open_streams": self.open_streams,
            "completed_streams": self.completed_streams,
            "client_disconnects": self.client_disconnects,
            "last_requests": list(self.last_requests),
        }

    async def wait_disconnects(self, n: int, within_s: float) -> None:
        async with asyncio.timeout(within_s):
            while self.client_disconnects < n:
                self.changed.clear()
                await self.changed.wait()


SIM_CONFIG_KEY: Final = web.AppKey("sim_config", SimConfig)
SIM_STATS_KEY: Final = web.AppKey("sim_stats", SimStats)
ERROR_TYPES: Final = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    500: "api_error", 529: "overloaded_error",
}  # fmt: skip


# -- Model facts, as of 2026-12-01 ---------------------------------------------------------------
# Source: https://platform.claude.com/docs/en/about-claude/models/overview and spec section 6's
# profile table. Deliberately a copy, not an import of the proxy's table: the simulator stands in
# for the real API, so a mistake in the proxy's facts must show up as a refusal here.


@dataclass(frozen=True, slots=True)
class ModelFacts:
    max_output: int
    sampling: str  # "one": not temperature with top_p; "none": no temperature, top_p or top_k
    prefill: bool  # a final assistant message is accepted
    thinking: str  # "off" | "default_on" (accepts {"type": "disabled"}) | "always_on"


_GEN_4_5: Final = ModelFacts(64_000, "one", True, "off")
_GEN_4_1: Final = ModelFacts(32_000, "one", True, "off")
_GEN_4_6: Final = ModelFacts(128_000, "one", False, "off")
_GEN_4_7: Final = ModelFacts(128_000, "none", False, "off")
_GEN_5: Final = ModelFacts(128_000, "none", False, "default_on")
_GEN_5_ALWAYS: Final = ModelFacts(128_000, "none", False, "always_on")
MODELS: Final[dict[str, ModelFacts]] = {
    "claude-haiku-4-5": _GEN_4_5, "claude-haiku-4-5-20251001": _GEN_4_5,
    "claude-opus-4-5": _GEN_4_5, "claude-opus-4-5-20251101": _GEN_4_5,
    "claude-opus-4-1": _GEN_4_1, "claude-opus-4-1-20250805": _GEN_4_1,
    "claude-sonnet-4-6": _GEN_4_6, "claude-opus-4-6": _GEN_4_6,
    "claude-opus-4-7": _GEN_4_7, "claude-opus-4-8": _GEN_4_7,
    "claude-sonnet-5": _GEN_5, "claude-sonnet-5-5": _GEN_5, "claude-haiku-5-5": _GEN_5,
    "claude-opus-5-5": _GEN_5_ALWAYS, "claude-fable-5-1": _GEN_5_ALWAYS,
}  # fmt: skip
# Retired names answer exactly like unknown ones (404 `model: <name>`); the pattern documents which
# names are retired (every Text Completions model, Claude 3.x, Sonnet 4.0/4.5 and Opus 4.0) and lets
# the tests check that none of them slipped into MODELS.
RETIRED: Final = re.compile(
    r"claude-(v1.*|1(\.\d)?(-.*)?|instant-.*|2|2\.[01]|3.*"
    r"|sonnet-4-5.*|sonnet-4(-0)?(-\d{8})?|opus-4(-0)?(-\d{8})?)"
)
MESSAGES_FIELDS: Final = frozenset({
    "model", "messages", "max_tokens", "system", "stop_sequences", "temperature", "top_p",
    "top_k", "metadata", "stream", "thinking", "tools", "tool_choice", "service_tier",
    "output_config", "container", "mcp_servers", "context_management",
})  # fmt: skip
THINKING_TEXT: Final = (
    "Let", " me", " think", " about", " this", ".", " The", " user", " wants", " an",
    " answer", ".",
)  # fmt: skip


class Refusal(Exception):
    """A request the real API would refuse: its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_complete(body: dict[str, Any]) -> Refusal:
    """Today's POST /v1/complete: no model is served any more (spec section 6)."""
    model = body.get("model")
    if not isinstance(model, str):
        return Refusal(400, "model: Field required")
    if model in MODELS:
        return Refusal(
            400, f'"{model}" is not supported on this API. Please use the Messages API instead.'
        )
    return Refusal(404, f"model: {model}")


def check_messages(body: dict[str, Any]) -> tuple[ModelFacts, bool]:
    """Validate a /v1/messages body like today's API; the model's facts and whether it thinks.

    Raises Refusal. Schema errors come first (as the API validates the body before it looks the
    model up), then the model, then what the model's facts forbid.
    """
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            raise Refusal(400, f"{name}: Field required")
    extra = sorted(k for k in body if k not in MESSAGES_FIELDS)
    if extra:
        raise Refusal(400, f"{extra[0]}: Extra inputs are not permitted")
    model, max_tokens, messages = body["model"], body["max_tokens"], body["messages"]
    if not isinstance(model, str) or not model:
        raise Refusal(400, "model: Input should be a valid string")
    if not _is_int(max_tokens) or max_tokens < 1:
        raise Refusal(400, "max_tokens: Input should be a positive integer")
    if not isinstance(messages, list) or not messages:
        raise Refusal(400, "messages: at least one message is required")
    for name, low, high in (("temperature", 0, 1), ("top_p", 0, 1), ("top_k", 0, None)):
        if name not in body:
            continue
        value = body[name]
        if not (_is_int(value) if name == "top_k" else _is_number(value)):
            want = "a valid integer" if name == "top_k" else "a valid number"
            raise Refusal(400, f"{name}: Input should be {want}")
        if value < low:
            raise Refusal(400, f"{name}: Input should be greater than or equal to {low}")
        if high is not None and value > high:
            raise Refusal(400, f"{name}: Input should be less than or equal to {high}")
    _check_turns(messages)
    _check_stop_sequences(body.get("stop_sequences"))
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise Refusal(400, "metadata: Input should be a valid dictionary")
        for key in sorted(metadata):
            if key != "user_id":
                raise Refusal(400, f"metadata.{key}: Extra inputs are not permitted")
    thinking = body.get("thinking")
    kind: str | None = None
    if thinking is not None:
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        if kind not in ("enabled", "disabled", "adaptive"):
            raise Refusal(400, "thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'")
        if kind == "enabled":
            budget = thinking.get("budget_tokens")
            if not _is_int(budget) or budget < 1024:
                raise Refusal(
                    400, "thinking.enabled.budget_tokens: Input should be greater than or equal "
                    "to 1024"
                )  # fmt: skip
            if budget >= max_tokens:
                raise Refusal(400, "`max_tokens` must be greater than `thinking.budget_tokens`.")

    facts = MODELS.get(model)
    if facts is None:
        raise Refusal(404, f"model: {model}")
    if max_tokens > facts.max_output:
        raise Refusal(
            400,
            f"max_tokens: {max_tokens} > {facts.max_output}, which is the maximum allowed "
            f"number of output tokens for {model}",
        )
    if facts.sampling == "one" and "temperature" in body and "top_p" in body:
        raise Refusal(
            400,
            "`temperature` and `top_p` cannot both be specified for this model. "
            "Please use only one.",
        )
    if facts.sampling == "none":
        for name in ("temperature", "top_p", "top_k"):
            if name in body:
                raise Refusal(400, f"`{name}` is not supported for this model.")
    if messages[-1]["role"] == "assistant":
        if not facts.prefill:
            raise Refusal(
                400,
                "This model does not support assistant message prefill. "
                "The conversation must end with a user message.",
            )
        if _text_of(messages[-1]["content"]) != _text_of(messages[-1]["content"]).rstrip():
            raise Refusal(400, "final assistant content cannot end with trailing whitespace")
    if kind == "disabled" and facts.thinking == "always_on":
        raise Refusal(
            400,
            '"thinking.type.disabled" is not supported for this model. '
            'Use "thinking": {"type": "adaptive"} or omit it.',
        )
    thinks = (
        facts.thinking == "always_on"
        or (facts.thinking == "default_on" and kind != "disabled")
        or kind in ("enabled", "adaptive")
    )
    return facts, thinks


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if b.get("type") == "text")


def _check_turns(messages: list[Any]) -> None:
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise Refusal(400, f"messages.{i}: Input should be a valid dictionary")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise Refusal(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
        extra = sorted(k for k in message if k not in ("role", "content"))
        if extra:
            raise Refusal(400, f"messages.{i}.{extra[0]}: Extra inputs are not permitted")
        if i == 0 and role != "user":
            raise Refusal(400, 'messages: first message must use the "user" role')
        if i > 0 and role == messages[i - 1].get("role"):
            raise Refusal(
                400,
                f'messages: roles must alternate between "user" and "assistant", '
                f'but found multiple "{role}" roles in a row',
            )
        content = message.get("content")
        if isinstance(content, list):
            for j, block in enumerate(content):
                if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                    raise Refusal(400, f"messages.{i}.content.{j}: Input should be a valid block")
                if block["type"] == "text" and (
                    not isinstance(block.get("text"), str) or not block["text"]
                ):
                    raise Refusal(400, "messages: text content blocks must be non-empty")
        elif not isinstance(content, str):
            raise Refusal(400, f"messages.{i}.content: Input should be a valid string or list")
        if not content and not (i == len(messages) - 1 and role == "assistant"):
            raise Refusal(
                400,
                f"messages.{i}: all messages must have non-empty content except for the "
                "optional final assistant message",
            )


def _check_stop_sequences(stops: Any) -> None:
    if stops is None:
        return
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise Refusal(400, "stop_sequences: Input should be a valid list of strings")
    for i, stop in enumerate(stops):
        if not stop.strip():
            raise Refusal(
                400, f"stop_sequences.{i}: stop sequences must contain non-whitespace characters"
            )


def _error(status: int, message: str, **headers: str) -> web.Response:
    body = {
        "type": "error",
        "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
    }
    return web.json_response(body, status=status, headers=headers)


def _faults(request: web.Request) -> dict[str, str]:
    out = {}
    default = request.app[SIM_CONFIG_KEY].fault
    for item in request.headers.get("x-sim-fault", default).split(","):
        name, _, arg = item.strip().partition(":")
        if name:
            out[name] = arg
    return out


def _sse(name: str, obj: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


@functools.lru_cache(maxsize=1024)
def _completion_event(word: int, model: str) -> bytes:
    """A token's completion event, encoded once: the words repeat, and encoding the same JSON
    again for every event of every stream was most of the simulator's own cost in benchmarks."""
    return _sse(
        "completion",
        {"type": "completion", "completion": WORDS[word], "stop_reason": None, "model": model},
    )


def _is_thinking(obj: dict[str, Any] | bytes) -> bool:
    """A thinking or signature delta: faults count text deltas only, with or without thinking."""
    return isinstance(obj, dict) and obj.get("delta", {}).get("type") in (
        "thinking_delta", "signature_delta"
    )  # fmt: skip


# an event as the handlers build it: a name and the object to encode, or the encoded bytes
Event = tuple[str, "dict[str, Any] | bytes"]


class Simulator:
    def __init__(self, config: SimConfig, stats: SimStats) -> None:
        self.config = config
        self.stats = stats

    async def _begin(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        raw = await request.read()
        headers = {
            k: ("<redacted>" if k.lower() in ("x-api-key", "authorization") else v)
            for k, v in request.headers.items()
        }
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        s = self.stats
        s.requests += 1
        s.by_path[request.path] += 1
        s.last_requests.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": headers,
                "json": body,
                "anthropic_version": request.headers.get("anthropic-version"),
            }
        )
        s.changed.set()
        faults = _faults(request)
        if "slow-headers" in faults:
            await asyncio.sleep(float(faults["slow-headers"]))
        if "x-api-key" not in request.headers and "authorization" not in request.headers:
            return {}, _error(401, "x-api-key header is required")
        if not isinstance(body, dict):
            return {}, _error(400, "request body is not valid JSON")
        if "status" in faults:
            status = int(faults["status"])
            extra = {"retry-after": "7"} if status == 429 else {}
            return {}, _error(status, f"simulated {status}", **extra)
        return body, None

    def _params(
        self, request: web.Request, body: dict[str, Any], limit_key: str
    ) -> tuple[int, float]:
        n = int(request.headers.get("x-sim-tokens", self.config.tokens))
        limit = body.get(limit_key)
        if isinstance(limit, int) and limit > 0:
            n = min(n, limit)
        return n, float(request.headers.get("x-sim-pace", self.config.pace))

    async def complete(self, request: web.Request) -> web.StreamResponse:
        body, error = await self._begin(request)
        if error is not None:
            return error
        if not self.config.text_completions:
            refusal = check_complete(body)
            return _error(refusal.status, refusal.message)
        if not isinstance(body.get("prompt"), str):
            return _error(400, "prompt: field required")
        n, pace = self._params(request, body, "max_tokens_to_sample")
        model = body.get("model", self.config.model)
        log_id = "compl_" + uuid.uuid4().hex[:24]
        stop_reason = "max_tokens" if n == body.get("max_tokens_to_sample") else "stop_sequence"
        stop = None if stop_reason == "max_tokens" else "\n\nHuman:"
        if body.get("stream") is not True:
            await asyncio.sleep(pace * n)  # headers only once generation ends, like the API
            return web.json_response(
                {"type": "completion", "id": log_id, "completion": expected_text(n),
                 "stop_reason": stop_reason, "model": model, "stop": stop, "log_id": log_id},
                headers={"request-id": "req_" + uuid.uuid4().hex[:24]},
            )  # fmt: skip
        events: list[Event] = [
            ("completion", _completion_event(i % len(WORDS), model))
            if isinstance(model, str)
            else ("completion", {"type": "completion", "completion": token(i),
                                 "stop_reason": None, "model": model})
            for i in range(n)
        ]  # fmt: skip
        every = self.config.ping_every
        if every > 0:
            for at in range(n - n % every, 0, -every):
                events.insert(at, ("ping", {"type": "ping"}))
        final = {"type": "completion", "completion": "", "stop_reason": stop_reason,
                 "model": model, "stop": stop, "log_id": log_id}  # fmt: skip
        events.append(("completion", final))
        return await self._stream(request, events, pace, "completion")

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body, error = await self._begin(request)
        if error is not None:
            return error
        thinks = False
        if self.config.strict:
            try:
                _, thinks = check_messages(body)
            except Refusal as refusal:
                return _error(refusal.status, refusal.message)
        wanted, pace = self._params(request, body, "max_tokens")
        limit = body.get("max_tokens")
        budget = limit if isinstance(limit, int) and limit > 0 else None
        # thinking comes first and is charged against max_tokens: a small max_tokens leaves little
        # or no text, and the answer stops with max_tokens, like the real API
        t = 0
        if thinks:
            t = int(request.headers.get("x-sim-thinking-tokens", self.config.thinking_tokens))
            t = min(t, budget) if budget is not None else t
        n = min(wanted, budget - t) if budget is not None else wanted
        pieces = [token(i) for i in range(n)]
        prefix = request.headers.get("x-sim-answer-prefix", self.config.answer_prefix)
        if prefix and n:
            pieces[0] = prefix + pieces[0]
        stop_reason = "max_tokens" if budget is not None and t + n == budget else "end_turn"
        stop_sequence = None
        # stop_sequences, minimally: the text ends before the first one it contains
        stops = body.get("stop_sequences") if self.config.strict else None
        if stops:
            text = "".join(pieces)
            hits = [(text.find(st), st) for st in stops if st in text]
            if hits:
                at, stop_sequence = min(hits)
                pieces, length = [], 0
                for i in range(n):
                    if length >= at:
                        break
                    pieces.append(token(i)[: at - length])
                    length += len(token(i))
                n, stop_reason = len(pieces), "stop_sequence"
        thought = "".join(THINKING_TEXT[i % len(THINKING_TEXT)] for i in range(t))
        signature = "sig_" + uuid.uuid4().hex
        model = body.get("model", "claude-sonnet-4-5")
        msg_id = "msg_" + uuid.uuid4().hex[:24]
        usage = {"input_tokens": 10, "output_tokens": t + n}
        if body.get("stream") is not True:
            await asyncio.sleep(pace * (t + n))
            content: list[dict[str, Any]] = []
            if thinks:
                content.append({"type": "thinking", "thinking": thought, "signature": signature})
            if pieces or not thinks:
                content.append({"type": "text", "text": "".join(pieces)})
            return web.json_response(
                {"id": msg_id, "type": "message", "role": "assistant", "model": model,
                 "content": content, "stop_reason": stop_reason,
                 "stop_sequence": stop_sequence, "usage": usage},
                headers={"request-id": "req_" + uuid.uuid4().hex[:24]},
            )  # fmt: skip
        start = {"id": msg_id, "type": "message", "role": "assistant", "model": model,
                 "content": [], "stop_reason": None, "stop_sequence": None,
                 "usage": {"input_tokens": 10, "output_tokens": 1}}  # fmt: skip
        events: list[Event] = [("message_start", {"type": "message_start", "message": start})]
        index = 0
        if thinks:
            events += [
                ("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "thinking", "thinking": "",
                                                           "signature": ""}}),
                ("ping", {"type": "ping"}),
            ]  # fmt: skip
            events += [
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                    "type": "thinking_delta",
                    "thinking": THINKING_TEXT[i % len(THINKING_TEXT)]}})
                for i in range(t)
            ]  # fmt: skip
            events += [
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                    "type": "signature_delta", "signature": signature}}),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ]  # fmt: skip
            index = 1
        if pieces or not thinks:
            events.append(
                ("content_block_start", {"type": "content_block_start", "index": index,
                                         "content_block": {"type": "text", "text": ""}})
            )  # fmt: skip
            if not thinks:
                events.append(("ping", {"type": "ping"}))
            events += [
                ("content_block_delta", {"type": "content_block_delta", "index": index,
                                         "delta": {"type": "text_delta", "text": piece}})
                for piece in pieces
            ]  # fmt: skip
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        events += [
            ("message_delta", {"type": "message_delta",
                               "delta": {"stop_reason": stop_reason,
                                         "stop_sequence": stop_sequence},
                               "usage": {"output_tokens": t + n}}),
            ("message_stop", {"type": "message_stop"}),
        ]  # fmt: skip
        return await self._stream(request, events, pace, "content_block_delta")

    async def _stream(
        self,
        request: web.Request,
        events: list[Event],
        pace: float,
        counted: str,
    ) -> web.StreamResponse:
        faults = _faults(request)
        if "not-sse" in faults:
            return web.json_response({"type": "completion", "completion": "not a stream"})
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                   "request-id": "req_" + uuid.uuid4().hex[:24]}  # fmt: skip
        zip_it = "gzip" in faults
        if zip_it:
            headers["Content-Encoding"] = "gzip"
        resp = web.StreamResponse(headers=headers)
        stats = self.stats
        stats.open_streams += 1
        try:
            await resp.prepare(request)
            chunks = self._render(events, faults, counted)
            if zip_it:
                chunks = [gzip.compress(b"".join(c for c in chunks if isinstance(c, bytes)))]
            pending_pace = False
            for chunk in chunks:
                if chunk == "RESET":
                    assert request.transport is not None
                    request.transport.abort()
                    return resp
                if chunk == "STALL":
                    await asyncio.sleep(3600)
                if chunk == "EOF":
                    break
                if not isinstance(chunk, bytes):
                    continue
                if pending_pace and pace:
                    await asyncio.sleep(pace)
                pending_pace = chunk.endswith(b"\n\n") or chunk.endswith(b"\r\r")
                if "split" in faults:
                    for i in range(0, len(chunk), 3):
                        await resp.write(chunk[i : i + 3])
                        await asyncio.sleep(0)
                else:
                    await resp.write(chunk)
            if "linger" in faults:
                await asyncio.sleep(float(faults["linger"]))
            await resp.write_eof()
            stats.completed_streams += 1
            return resp
        except (asyncio.CancelledError, ConnectionError):
            stats.client_disconnects += 1
            stats.changed.set()
            raise
        finally:
            stats.open_streams -= 1
            stats.changed.set()

    @staticmethod
    def _render(events: list[Event], faults: dict[str, str], counted: str) -> list[bytes | str]:
        out: list[bytes | str] = []
        seen = 0

        def after(name: str) -> bool:
            return name in faults and seen == int(faults[name] or 0)

        for name, obj in events:
            for fault, action in (("reset-after", "RESET"), ("eof-after", "EOF"),
                                  ("stall-after", "STALL")):  # fmt: skip
                if after(fault):
                    out.append(action)
            if after("error-after"):
                out.append(_sse("error", {"type": "error", "error": {
                    "type": "overloaded_error", "message": "Overloaded"}}))  # fmt: skip
                break
            if after("invalid-json-after"):
                out.append(b"event: completion\ndata: {not json\n\n")
            if "comments" in faults:
                out.append(b": keepalive\nretry: 3000\nid: 5\n")
            if "unknown-event" in faults and seen == 1:
                out.append(_sse("content_filter", {"type": "content_filter", "flagged": False}))
            out.append(obj if isinstance(obj, bytes) else _sse(name, obj))
            if name == counted and not _is_thinking(obj):
                seen += 1
        if "crlf" in faults or "cr" in faults:
            eol = b"\r\n" if "crlf" in faults else b"\r"
            out = [c.replace(b"\n", eol) if isinstance(c, bytes) else c for c in out]
        return out

    async def models(self, request: web.Request) -> web.Response:
        await self._begin(request)
        ids = [self.config.model] if self.config.text_completions else list(MODELS)
        return web.json_response({"data": [{"id": i, "type": "model"} for i in ids]})

    async def stats_view(self, _: web.Request) -> web.Response:
        return web.json_response(self.stats.view())

    async def reset(self, _: web.Request) -> web.Response:
        self.stats.__init__()  # type: ignore[misc]
        return web.json_response({"reset": True})


def create_app(config: SimConfig | None = None) -> web.Application:
    config = config or SimConfig()
    stats = SimStats()
    sim = Simulator(config, stats)
    app = web.Application()
    app[SIM_CONFIG_KEY] = config
    app[SIM_STATS_KEY] = stats
    app.router.add_post("/v1/complete", sim.complete)
    app.router.add_post("/v1/messages", sim.messages)
    app.router.add_get("/v1/models", sim.models)
    app.router.add_get("/_sim/stats", sim.stats_view)
    app.router.add_post("/_sim/reset", sim.reset)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m proxy.simulator",
        description="An upstream that speaks API 2023-06-01 and is as strict as today's API: "
        "/v1/complete refuses every model (404 retired or unknown, 400 live), /v1/messages "
        "validates models, max_tokens, sampling, prefill, thinking and extra fields, and "
        "5.x models stream a thinking block first. See the module docstring for every refusal.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--tokens", type=int, default=20, help="tokens per completion")
    parser.add_argument("--pace", type=float, default=0.0, help="seconds between events")
    parser.add_argument("--ping-every", type=int, default=0, help="a ping every N events")
    parser.add_argument("--fault", default="", help="x-sim-fault for requests that send none")
    parser.add_argument(
        "--thinking-tokens",
        type=int,
        default=12,
        help="tokens of the thinking block of a model that thinks, charged against max_tokens "
        "(x-sim-thinking-tokens per request)",
    )
    parser.add_argument(
        "--text-completions",
        action="store_true",
        help="serve POST /v1/complete for any model, as the API did until 2025 (default: refuse "
        "every model like today's API: 404 retired or unknown, 400 live)",
    )
    parser.add_argument(
        "--permissive-messages",
        action="store_true",
        help="accept any /v1/messages body and model, without thinking (default: validate like "
        "today's API)",
    )
    args = parser.parse_args(argv)
    config = SimConfig(
        tokens=args.tokens,
        pace=args.pace,
        ping_every=args.ping_every,
        fault=args.fault,
        text_completions=args.text_completions,
        strict=not args.permissive_messages,
        thinking_tokens=args.thinking_tokens,
    )
    kind = "Text Completions for any model" if config.text_completions else "strict"
    print(f"simulator: 2023-06-01 upstream ({kind}) on http://{args.host}:{args.port}", flush=True)
    app = create_app(config)
    # As a process of its own the simulator stands in for the real API in benchmarks, so it
    # should cost as little as it can, and above all never pause: uvloop; the objects of start-up
    # (imports, the app) kept out of every later garbage collection; and full collections rare
    # (each scans every open stream's objects and, on a busy 2-core machine, paused all streams
    # at once for up to ~100 ms after 1,500 streams, which the benchmark counted as a stall of
    # whatever path it was measuring). Young collections still run, so cycles are still freed.
    gc.freeze()
    gc.set_threshold(10_000, 10, 100)
    loop = _new_loop()
    web.run_app(
        app,
        loop=loop,
        host=args.host,
        port=args.port,
        print=None,
        backlog=4096,
        handler_cancellation=True,  # notice a departing client even while sleeping
        access_log=None,
    )


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a dependency of the package, except on Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


if __name__ == "__main__":
    main()
