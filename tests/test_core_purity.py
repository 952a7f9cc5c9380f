"""The core is sans-I/O: importing it must not import networking, logging or metrics."""

from __future__ import annotations

import subprocess
import sys

CORE = [
    "proxy.sse",
    "proxy.legacy",
    "proxy.convert",
    "proxy.translate.completions",
    "proxy.translate.messages",
    "proxy.translate.legacy_stream",
    "proxy.translate.modern_stream",
    "proxy.translate.output",
    "proxy.modeltable",
    "proxy.jsonfast",
    "proxy.errors",
]
FORBIDDEN = ["aiohttp", "asyncio", "structlog", "prometheus_client"]


def test_core_imports_no_io() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE)
        + f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"the core imported {result.stdout.strip()}"


def test_the_check_can_fail() -> None:
    code = "import sys, asyncio\nprint('asyncio' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "True"
