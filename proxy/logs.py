"""structlog set-up: JSON lines on stdout in production, the console renderer on a terminal.

One summary line per request with a fixed event name and data in keys. Nothing here ever receives
a body or a header value other than the few the handler picks by name, so keys and prompts cannot
reach the logs by accident; ``scrub`` is the last guard for anything that still looks like a key.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Final

import structlog

_KEY_RE: Final = re.compile(r"sk-ant-[A-Za-z0-9_\-]{4,}")


def scrub(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for k, v in event.items():
        if isinstance(v, str) and "sk-ant-" in v:
            event[k] = _KEY_RE.sub("sk-ant-<redacted>", v)
    return event


def configure(level: str = "info", fmt: str = "auto") -> None:
    if fmt == "auto":
        fmt = "console" if sys.stdout.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
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
    # aiohttp's own loggers (server errors, client warnings) go to stderr, at warning and above.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(message)s")


def get_logger() -> Any:
    return structlog.get_logger("legacy_stream_proxy")
