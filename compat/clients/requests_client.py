"""requests + iter_lines, the way 2023 tutorials read the stream: `completion` from every data line.

    python requests_client.py --base-url URL --scenario stream|nostream [--max-tokens N]
"""

from __future__ import annotations

import json
import sys

import requests
from _common import body, headers, parse_args, run


def main() -> int:
    args = parse_args(chunk_size=True)
    url = args.base_url + "/v1/complete"

    def call(seen: list[str]) -> str | None:
        if args.scenario == "nostream":
            r = requests.post(url, headers=headers(), json=body(args, False), timeout=60)
            r.raise_for_status()
            return r.json()["completion"]
        r = requests.post(url, headers=headers(), json=body(args, True), stream=True, timeout=60)
        r.raise_for_status()
        # requests' default chunk_size is 512; "none" reads whatever has arrived
        chunk = None if args.chunk_size == "none" else int(args.chunk_size)
        for line in r.iter_lines(chunk_size=chunk):
            if not line or not line.startswith(b"data:"):
                continue
            data = line[len(b"data:") :].strip()
            if data == b"[DONE]":
                break
            seen.append(json.loads(data)["completion"])
        return seen[-1] if seen else None

    return run(args, call)


if __name__ == "__main__":
    sys.exit(main())
