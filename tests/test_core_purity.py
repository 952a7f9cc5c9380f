"""The core is sans-I/O: importing it must not import networking, logging or metrics."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = [
    "proxy.sse",
    "proxy.legacy",
    "proxy.convert",
    "proxy.jsonfast",
    "proxy.modeltable",
    "proxy.translate.completions",
    "proxy.translate.messages",
    "proxy.translate.legacy_stream",
    "proxy.translate.modern_stream",
    "proxy.translate.output",
    "proxy.errors",
]
FORBIDDEN = ["aiohttp", "asyncio", "structlog", "prometheus_client"]
ROOT = Path(__file__).resolve().parents[1]


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


def _proxy_imports(path: Path) -> set[str]:
    """The ``proxy.*`` modules a file imports (absolute imports; the project uses no others)."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("proxy"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("proxy"))
    return out


def test_the_core_never_imports_the_shell() -> None:
    core_files = [ROOT / "proxy" / f"{m.removeprefix('proxy.').replace('.', '/')}.py" for m in CORE]
    core_files += sorted((ROOT / "proxy" / "translate").glob("*.py"))
    for path in core_files:
        shell = {m for m in _proxy_imports(path) if m.startswith("proxy.server")}
        assert not shell, f"{path.relative_to(ROOT)} imports the shell: {shell}"


def test_routes_never_import_each_other() -> None:
    routes = sorted((ROOT / "proxy" / "server" / "routes").glob("[!_]*.py"))
    assert {p.stem for p in routes} >= {"complete", "messages", "passthrough"}
    for path in routes:
        others = {
            m for m in _proxy_imports(path)
            if m.startswith("proxy.server.routes") and not m.endswith(path.stem)
        }  # fmt: skip
        assert not others, f"{path.relative_to(ROOT)} imports another route: {others}"
