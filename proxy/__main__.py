"""python -m proxy / legacy-stream-proxy: load settings, configure logs, serve until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
from pathlib import Path

from proxy import __version__
from proxy.errors import ConfigError, ListenError

# Exit statuses, documented in --help and the README. A supervisor can tell "fix the
# configuration" (2: retrying cannot help) from "the machine refused to listen" (3: a port still
# held by a process on its way out, an address not up yet, may be gone on the next try).
EXIT_CONFIG = 2
EXIT_LISTEN = 3


def _epilog() -> str:
    from proxy.settings import ENV_PREFIX, described, shown_default

    rows = described()
    key_w = max(len(k) for k, _, _ in rows) + 2
    var_w = max(len(v) for _, v, _ in rows) + 2
    table = "\n".join(
        f"  {k:<{key_w}}{v:<{var_w}}{shown_default(d, 2 + key_w + var_w)}" for k, v, d in rows
    )
    return f"""\
settings: built-in defaults < the --config file < environment variables
  --config PATH is read from PATH as given (relative to the current directory); there is no
  default file: without --config only the defaults and {ENV_PREFIX}* variables apply.
  config/proxy.toml in the repository shows every key with its default and what it does;
  --print-config prints the settings in force, as TOML, and exits.
  Environment variables: {ENV_PREFIX}<KEY> for top-level keys, {ENV_PREFIX}<SECTION>_<KEY> for
  section keys. Booleans take true/false/1/0/yes/no, lists are comma-separated, tables are
  name=value pairs separated by commas. Other {ENV_PREFIX}* variables are ignored with a
  warning, except those Kubernetes service links inject.

  {"key":<{key_w}}{"variable":<{var_w}}default
{table}

exit status:
  0  stopped by SIGTERM or SIGINT after draining (or --print-config, --help, --version)
  {EXIT_CONFIG}  bad configuration: one line on stderr, "config error: <key>: <problem>"
  {EXIT_LISTEN}  could not listen: one line on stderr, "could not listen: <key>: <problem>"
     (port or admin_port already in use, host or admin_host not an address of this machine
     or not resolvable)
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="legacy-stream-proxy",
        description="Keeps Anthropic API 2023-01-01 clients working against a 2023-06-01 upstream.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", type=Path, metavar="PATH", help="TOML settings file (see below); default: none"
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the settings in force (defaults, file and environment) as TOML and exit",
    )
    parser.add_argument("--version", action="version", version=__version__)
    args = parser.parse_args(argv)

    from proxy.settings import is_service_link, load_settings, to_toml, unknown_variables

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        hint = ""
        value = os.environ.get(exc.key, "")
        if exc.key.startswith("LEGACY_PROXY_") and is_service_link(exc.key, value):
            hint = (
                " (a Kubernetes service link for a Service named legacy-proxy: set"
                " enableServiceLinks: false in the pod spec)"
            )
        print(f"config error: {exc}{hint}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    if args.print_config:
        sys.stdout.write(to_toml(settings))
        return

    from proxy import logs
    from proxy.server.app import serve

    logs.configure(settings.log_level, settings.log_format)
    log = logs.get_logger()
    for name, close in unknown_variables(os.environ):
        log.warning(
            "config.unknown_variable",
            variable=name,
            note="not a setting, ignored" + (f"; did you mean {close}?" if close else ""),
        )
    _tune_gc()
    try:
        if settings.event_loop == "uvloop":
            # measured: about 20 % less CPU than asyncio's selector loop on paced streams, where
            # socket handling dominates the proxy's profile (bench/RESULTS.md)
            import uvloop

            uvloop.run(serve(settings))
        else:
            asyncio.run(serve(settings))
    except ConfigError as exc:  # found only when it is used (a CA bundle OpenSSL cannot read)
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    except ListenError as exc:
        print(f"could not listen: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_LISTEN) from None


def _tune_gc() -> None:
    """Keep the garbage collector from pausing every stream at once.

    A full collection walks every tracked object, and all open streams wait for it: measured
    (make bench, 2 cores) 40-110 ms at 1,000-1,500 open streams, and a 36 ms pause at 100
    streams paced at 20 ms right after such a burst, which is a stall (a gap over twice the pace)
    on every stream. The ~40,000 objects of start-up (imports, settings, metrics) never become
    garbage, so they are frozen out of every later collection. The first generation's threshold
    is raised from 700 to 10,000 allocations, which makes the full collections that remain about
    14 times rarer (measured: none during 1,000- and 1,500-stream runs, against 17-125 ms pauses
    with the default); young collections still free cyclic garbage within 10,000 allocations."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


if __name__ == "__main__":
    main()
