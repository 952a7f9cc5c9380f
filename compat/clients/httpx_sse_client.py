"""httpx-sse 0.3.1 (httpx 0.24), reading `completion` from every event.

    python httpx_sse_client.py --base-url URL --scenario stream [--max-tokens N]
"""

from __future__ import annotations

import json
import sys

import httpx
from _common import body, headers, parse_args, run
from httpx_sse import connect_sse


def main() -> int:
    args = parse_args()

    def call(seen: list[str]) -> str | None:
        with httpx.Client(timeout=60) as client, connect_sse(
            client, "POST", args.base_url + "/v1/complete", json=body(args, True), headers=headers()
        ) as source:
            for sse in source.iter_sse():
                if sse.data == "[DONE]":
                    break
                seen.append(json.loads(sse.data)["completion"])
        return seen[-1] if seen else None

    return run(args, call)


if __name__ == "__main__":
    sys.exit(main())
