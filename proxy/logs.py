"""structlog set-up: JSON lines on stdout in production, the console renderer on a terminal.

One summary line per request with a fixed event name and data in keys. Nothing here ever receives
a body or a header value other than the few the handler picks by name, so keys and prompts cannot
reach the logs by accident; ``scrub`` is the last guard for anything that still looks like a key.

aiohttp's own records (stdlib logging, on stderr) go through the same processors, so they are
JSON lines too and are scrubbed too. One kind needs more than a scrub: for a malformed request,
aiohttp logs its parser's error, which quotes the raw bytes around the fault, header values
included (``x-api-key: <key>\x01``). ``MalformedRequestFilter`` keeps the kind of fault and drops
the text.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Final

import structlog
from aiohttp.http_exceptions import HttpProcessingError

_KEY_RE: Final = re.compile(r"sk-ant-[A-Za-z0-9_\-]{4,}")


def scrub(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for k, v in event.items():
        if isinstance(v, str) and "sk-ant-" in v:
            event[k] = _KEY_RE.sub("sk-ant-<redacted>", v)
    return event


class MalformedRequestFilter(logging.Filter):
    """A request aiohttp could not parse is logged as ``request.malformed`` with the exception's
    class name and status only: its message quotes the client's raw bytes (see the module
    docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = "request.malformed: %s (status %s)"
            record.args = (type(exc).__name__, exc.code)
            record.levelno, record.levelname = logging.WARNING, "WARNING"  # the client's fault
            record.exc_info = None
            record.exc_text = None
        return True


def configure(level: str = "info", fmt: str = "auto") -> None:
    if fmt == "auto":
        fmt = "console" if sys.stdout.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    )
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.processors.format_exc_info,
            scrub,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    # aiohttp's own loggers (server errors, client warnings): stderr, warning and above, in the
    # same format and through the same scrub
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                *shared,
                structlog.processors.format_exc_info,
                scrub,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    handler.addFilter(MalformedRequestFilter())
    root = logging.getLogger()
    for old_handler in root.handlers[:]:
        root.removeHandler(old_handler)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def get_logger() -> Any:
    return structlog.get_logger("legacy_stream_proxy")
