"""sseclient-py 1.7.2 over a streamed requests response, reading `completion` from every event.

    python sseclient_client.py --base-url URL --scenario stream [--max-tokens N]
"""

from __future__ import annotations

import json
import sys

import requests
import sseclient
from _common import body, headers, parse_args, run


def main() -> int:
    args = parse_args()

    def call(seen: list[str]) -> str | None:
        r = requests.post(
            args.base_url + "/v1/complete",
            headers={**headers(), "accept": "text/event-stream"},
            json=body(args, True),
            stream=True,
            timeout=60,
        )
        r.raise_for_status()
        for event in sseclient.SSEClient(r).events():
            if event.data == "[DONE]":
                break
            seen.append(json.loads(event.data)["completion"])
        return seen[-1] if seen else None

    return run(args, call)


if __name__ == "__main__":
    sys.exit(main())
