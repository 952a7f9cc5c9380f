"""aiohttp-sse-client 0.2.1 (aiohttp 3.8), reading `completion` from every event.

    python aiohttp_sse_client_client.py --base-url URL --scenario stream [--max-tokens N]
"""

from __future__ import annotations

import asyncio
import json
import sys

import aiohttp
from _common import body, headers, parse_args, run
from aiohttp_sse_client import client as sse_client


def main() -> int:
    args = parse_args(read_bufsize=True)

    async def read(seen: list[str]) -> str | None:
        # aiohttp 3.8 refuses a line longer than twice read_bufsize (64 KiB by default)
        session = None
        if args.read_bufsize:
            session = aiohttp.ClientSession(read_bufsize=args.read_bufsize)
        async with sse_client.EventSource(
            args.base_url + "/v1/complete",
            option={"method": "POST"},
            json=body(args, True),
            headers=headers(),
            session=session,
        ) as source:
            # the library reconnects (POSTs again) when a stream ends, so leave at [DONE]
            async for event in source:
                if event.data == "[DONE]":
                    break
                seen.append(json.loads(event.data)["completion"])
        if session is not None:
            await session.close()
        return seen[-1] if seen else None

    return run(args, lambda seen: asyncio.run(read(seen)))


if __name__ == "__main__":
    sys.exit(main())
