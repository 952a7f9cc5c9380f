"""python -m proxy / legacy-stream-proxy: load settings, configure logs, serve until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from proxy import __version__
from proxy.errors import ConfigError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="legacy-stream-proxy",
        description="Keeps Anthropic API 2023-01-01 clients working against a 2023-06-01 upstream.",
    )
    parser.add_argument("--config", type=Path, help="TOML file (see config/proxy.toml)")
    parser.add_argument("--version", action="version", version=__version__)
    args = parser.parse_args(argv)

    from proxy.settings import load_settings

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

    from proxy import logs
    from proxy.app import serve

    logs.configure(settings.log_level, settings.log_format)
    if settings.event_loop == "uvloop":
        # measured: about 20 % less CPU than asyncio's selector loop on paced streams, where
        # socket handling dominates the proxy's profile (bench/RESULTS.md)
        import uvloop

        uvloop.run(serve(settings))
    else:
        asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
