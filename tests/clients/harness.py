"""Run the real SDKs (tests/clients/*) as subprocesses from async tests.

Each SDK lives in its own environment made by `make clients`; a missing one is a failure that says
so, never a silent skip. The subprocess is started with asyncio, so servers in the test's own event
loop keep serving while the client runs.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PY_OLDEST = ROOT / ".venvs" / "anthropic-0.2.2" / "bin" / "python"
PY_LEGACY = ROOT / ".venvs" / "anthropic-0.2.10" / "bin" / "python"
PY_MODERN = ROOT / ".venvs" / "anthropic-0.3" / "bin" / "python"
PY_049 = ROOT / ".venvs" / "anthropic-0.49" / "bin" / "python"
PY_CURRENT = ROOT / ".venvs" / "anthropic-current" / "bin" / "python"
JS_DIR = HERE / "js"
FES_DIR = HERE / "fetch_event_source"


@dataclass(frozen=True)
class ClientResult:
    returncode: int
    out: dict[str, Any]
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and bool(self.out.get("ok"))


def _require(path: Path) -> None:
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make clients` (make test does it)", pytrace=False)


async def _run(argv: list[str], cwd: Path, timeout: float) -> ClientResult:
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"client did not finish within {timeout} s: {argv}") from None
    text = stdout.decode().strip()
    try:
        out = json.loads(text.splitlines()[-1]) if text else {}
    except ValueError:
        raise AssertionError(f"client printed no JSON: {text!r} / {stderr.decode()!r}") from None
    return ClientResult(proc.returncode or 0, out, stderr.decode())


def _options(kw: dict[str, Any]) -> list[str]:
    """Keyword arguments as the scripts' --options; a dict (``extra``: more body fields) as JSON."""
    argv: list[str] = []
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", json.dumps(v) if isinstance(v, dict) else str(v)]
    return argv


async def run_py_legacy(base_url: str, mode: str, timeout: float = 60.0, **kw: Any) -> ClientResult:
    """anthropic==0.2.10; mode: sync-stream | async-stream | sync | async. ``extra``: a dict of
    more body fields, sent as they are (0.2.10 passes any keyword argument into the body)."""
    _require(PY_LEGACY)
    argv = [str(PY_LEGACY), str(HERE / "py_legacy.py"), "--base-url", base_url, "--mode", mode]
    return await _run(argv + _options(kw), ROOT, timeout)


async def run_py_oldest(base_url: str, mode: str, timeout: float = 60.0, **kw: Any) -> ClientResult:
    """anthropic==0.2.2 (no anthropic-version header at all); mode: sync-stream | sync."""
    _require(PY_OLDEST)
    argv = [str(PY_OLDEST), str(HERE / "py_oldest.py"), "--base-url", base_url, "--mode", mode]
    return await _run(argv + _options(kw), ROOT, timeout)


async def run_py_049(base_url: str, mode: str, timeout: float = 60.0, **kw: Any) -> ClientResult:
    """anthropic==0.49's completions.create (2023-06-01 Text Completions); mode: stream | sync."""
    _require(PY_049)
    argv = [str(PY_049), str(HERE / "py_049.py"), "--base-url", base_url, "--mode", mode]
    return await _run(argv + _options(kw), ROOT, timeout)


async def run_js_legacy(base_url: str, mode: str, timeout: float = 60.0, **kw: Any) -> ClientResult:
    """@anthropic-ai/sdk@0.4.4; mode: stream | complete. ``linger`` keeps the process alive
    after the promise settles, so a test can see what the SDK's retry loop sends by itself."""
    _require(JS_DIR / "node_modules" / "@anthropic-ai" / "sdk")
    argv = ["node", "legacy_client.mjs", "--base-url", base_url, "--mode", mode]
    return await _run(argv + _options(kw), JS_DIR, timeout)


async def _run_py(
    python: Path, script: str, base_url: str, stream: bool, timeout: float
) -> ClientResult:
    _require(python)
    argv = [str(python), str(HERE / script), "--base-url", base_url]
    if not stream:
        argv.append("--no-stream")
    return await _run(argv, ROOT, timeout)


async def run_py_modern(base_url: str, stream: bool = True, timeout: float = 60.0) -> ClientResult:
    """anthropic 0.3.x, which speaks 2023-06-01, on /v1/complete."""
    return await _run_py(PY_MODERN, "py_modern.py", base_url, stream, timeout)


async def run_py_current(base_url: str, stream: bool = True, timeout: float = 60.0) -> ClientResult:
    """Today's official anthropic SDK, on /v1/messages (a live model: claude-sonnet-5-5)."""
    return await _run_py(PY_CURRENT, "py_current.py", base_url, stream, timeout)


async def run_fetch_event_source(url: str, linger: float, timeout: float = 60.0) -> ClientResult:
    """@microsoft/fetch-event-source 2.0.1 POSTs a legacy streaming request to ``url`` and, on
    a failed stream, retries as its default onerror does for ``linger`` seconds; ``out`` has the
    data of every message, the errors, each attempt's status and Last-Event-ID."""
    _require(FES_DIR / "node_modules" / "@microsoft" / "fetch-event-source")
    argv = ["node", "client.mjs", "--url", url, "--linger", str(linger)]
    return await _run(argv, FES_DIR, timeout)
