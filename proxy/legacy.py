"""Who is a legacy client, and the request/response rewrites for them (spec sections 1, 3, 4). CORE.

Pure functions over header values and body bytes; the shell extracts the values (aiohttp's
headers are already case-insensitive) and applies the results.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from proxy import jsonfast
from proxy.errors import BadRequest

LEGACY_VERSION: Final = "2023-01-01"
UPSTREAM_VERSION: Final = "2023-06-01"

Mode = Literal["legacy", "modern", "reject"]
MissingVersion = Literal["legacy", "modern", "reject"]
EventIds = Literal["auto", "always", "never"]


def classify(version: str | None, missing: MissingVersion = "legacy") -> Mode:
    """Legacy or modern, from the ``anthropic-version`` header value (spec section 1).

    ``2023-01-01`` is legacy; no header is whatever the ``missing`` setting says (the oldest SDKs
    sent none, and the API then applied 2023-01-01); any other value passes through, and the
    upstream judges it (2023-06-01 and later are modern, anything else the API rejects itself).
    """
    if version is None:
        return missing
    version = version.strip()
    if version == LEGACY_VERSION:
        return "legacy"
    return "modern"


_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


def is_modern_version(version: str | None) -> bool:
    """A version the Messages route answers in the 2023-06-01 Text Completions format: a date
    from 2023-06-01 on (spec section 9, decision 5). Anything else on /v1/complete passes
    through, and the upstream judges it."""
    if version is None:
        return False
    version = version.strip()
    return _DATE.fullmatch(version) is not None and version >= UPSTREAM_VERSION


@dataclass(frozen=True, slots=True)
class ClientId:
    """A client's self-description, e.g. ``anthropic-python`` ``0.2.10``. Raw: not yet bounded
    for use as a metric label."""

    name: str
    version: str


_SDK_RE: Final = re.compile(r"^\s*([A-Za-z0-9._-]{1,64})/v?([0-9A-Za-z.+-]{1,32})")


def client_id(sdk: str | None, client: str | None, user_agent: str | None) -> ClientId | None:
    """From ``Anthropic-SDK`` (0.2.10, TS 0.4.x), then ``Client`` (0.2.2), then ``User-Agent``."""
    for value in (sdk, client, user_agent):
        if value:
            m = _SDK_RE.match(value)
            if m:
                return ClientId(m.group(1).lower(), m.group(2))
    return None


def wants_event_ids(
    policy: EventIds, client: ClientId | None, accept: str | None = None
) -> bool:
    """Rule 5: an ``id:`` line lets an EventSource client's automatic retry carry
    ``Last-Event-ID``, so the retry can be refused instead of paid for again. ``auto``: the
    TypeScript 0.4.x SDK, and any client whose ``Accept`` asks for ``text/event-stream`` (a
    spec-following EventSource parser such as ``@microsoft/fetch-event-source``, which tolerates
    ``id:``); never a client that identifies as ``anthropic-python`` (0.2.x parses every unknown
    line as JSON; 0.2.10 sends ``Accept: application/json`` anyway)."""
    if policy == "always":
        return True
    if policy == "never":
        return False
    if client is not None and client.name == "anthropic-python":
        return False
    if client is not None and client.name == "anthropic-typescript":
        return True
    return accepts_event_stream(accept)


def accepts_event_stream(accept: str | None) -> bool:
    """True when one of the ``Accept`` media ranges is ``text/event-stream`` with q > 0
    (RFC 9110 section 12.5.1). ``*/*`` does not count: it is any client's default."""
    for media_range in (accept or "").split(","):
        kind, *params = (part.strip() for part in media_range.split(";"))
        if kind.lower() != "text/event-stream":
            continue
        q = next((p[2:].strip() for p in params if p.lower().startswith("q=")), "1")
        try:
            if float(q) > 0:
                return True
        except ValueError:
            return True  # a malformed weight is ignored, as if absent
    return False


def parse_request(body: bytes) -> dict[str, Any]:
    """A legacy /v1/complete body: it must be a JSON object (we have to read ``stream``)."""
    try:
        obj = jsonfast.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None
    if type(obj) is not dict:
        raise BadRequest("request body must be a JSON object")
    return obj


def legacy_completion_body(body: bytes) -> bytes | None:
    """Spec section 3: a 2023-06-01 completion body with ``truncated`` and ``exception`` restored.

    None when the body is not a JSON object (the shell then passes it through unchanged)."""
    try:
        obj = jsonfast.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if type(obj) is not dict:
        return None
    obj.setdefault("truncated", False)
    obj.setdefault("exception", None)
    return jsonfast.dumps(obj)


def error_body(error_type: str, message: str) -> bytes:
    """The API's error shape (spec section 4), for errors the proxy itself answers."""
    return jsonfast.dumps({"type": "error", "error": {"type": error_type, "message": message}})
