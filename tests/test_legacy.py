"""Version detection, client identity and the non-streaming rewrite (spec sections 1, 3, 4)."""

from __future__ import annotations

import json

import pytest

from proxy.errors import BadRequest
from proxy.legacy import (
    ClientId,
    classify,
    client_id,
    error_body,
    is_modern_version,
    legacy_completion_body,
    parse_request,
    wants_event_ids,
)


@pytest.mark.parametrize(
    ("version", "missing", "mode"),
    [
        ("2023-01-01", "legacy", "legacy"),
        (" 2023-01-01 ", "modern", "legacy"),
        ("2023-06-01", "legacy", "modern"),
        ("2024-10-22", "legacy", "modern"),
        ("garbage", "legacy", "modern"),  # passed through: the upstream answers for its versions
        (None, "legacy", "legacy"),
        (None, "modern", "modern"),
        (None, "reject", "reject"),
    ],
)
def test_classify(version: str | None, missing: str, mode: str) -> None:
    assert classify(version, missing) == mode  # type: ignore[arg-type]


def test_client_id() -> None:
    assert client_id("anthropic-python/0.2.10", None, "python-requests/2.31") == ClientId(
        "anthropic-python", "0.2.10"
    )
    assert client_id(None, "anthropic-python/0.2.2", None) == ClientId("anthropic-python", "0.2.2")
    assert client_id("anthropic-typescript/0.4.4", None, None) == ClientId(
        "anthropic-typescript", "0.4.4"
    )
    assert client_id(None, None, "curl/8.5.0") == ClientId("curl", "8.5.0")
    assert client_id(None, None, "???") is None


def test_event_ids_per_client() -> None:
    ts = ClientId("anthropic-typescript", "0.4.4")
    py = ClientId("anthropic-python", "0.2.10")
    assert wants_event_ids("auto", ts) and not wants_event_ids("auto", py)
    assert not wants_event_ids("auto", None)
    assert wants_event_ids("always", py) and not wants_event_ids("never", ts)


@pytest.mark.parametrize(
    ("accept", "wanted"),
    [
        ("text/event-stream", True),  # @microsoft/fetch-event-source, any EventSource
        ("application/json, Text/Event-Stream;q=0.5", True),
        ("text/event-stream;q=0", False),
        ("application/json", False),  # Python 0.2.10
        ("*/*", False),
        (None, False),
    ],
)
def test_event_ids_auto_follows_accept(accept: str | None, wanted: bool) -> None:
    """Spec rule 5: auto covers any client asking for text/event-stream, never anthropic-python."""
    other = ClientId("my-app", "1.0")
    assert wants_event_ids("auto", None, accept) is wanted
    assert wants_event_ids("auto", other, accept) is wanted
    py = ClientId("anthropic-python", "0.2.10")
    assert not wants_event_ids("auto", py, accept)


def test_parse_request() -> None:
    assert parse_request(b'{"stream": true}') == {"stream": True}
    deep = b"[" * 3000 + b"]" * 3000  # too deep for json's recursive parser
    for bad in (b"", b"{", b"[1]", b"\xff", b'"x"', deep, b'{"a": NaN}', b'{"a": 1e400}'):
        with pytest.raises(BadRequest):
            parse_request(bad)


def test_legacy_completion_body_restores_removed_fields() -> None:
    body = (
        '{"type": "completion", "id": "compl_1", "completion": " Hi é", "stop_reason": '
        '"stop_sequence", "model": "claude-2.0", "stop": "\\n\\nHuman:", "log_id": "compl_1"}'
    ).encode()
    out = legacy_completion_body(body)
    assert (
        out
        == (
            '{"type":"completion","id":"compl_1","completion":" Hi é",'
            '"stop_reason":"stop_sequence",'
            '"model":"claude-2.0","stop":"\\n\\nHuman:","log_id":"compl_1","truncated":false,'
            '"exception":null}'
        ).encode()
    )
    assert legacy_completion_body(b"not json") is None
    assert legacy_completion_body(b"[]") is None
    assert legacy_completion_body(b"[" * 3000 + b"]" * 3000) is None  # passed through as is


def test_error_body() -> None:
    assert json.loads(error_body("api_error", "x")) == {
        "type": "error",
        "error": {"type": "api_error", "message": "x"},
    }


@pytest.mark.parametrize(
    ("version", "modern"),
    [
        ("2023-06-01", True), (" 2023-06-01 ", True), ("2024-10-22", True), ("2099-01-01", True),
        ("2023-01-01", False), ("2023-05-31", False), ("banana", False), ("", False),
        (None, False), ("2023-6-1", False), ("2023-06-01x", False),
    ],
)  # fmt: skip
def test_which_versions_get_the_2023_06_01_completions_format(
    version: str | None, modern: bool
) -> None:
    assert is_modern_version(version) is modern
