"""Run the real anthropic==0.2.10 SDK (API 2023-01-01) once and print the outcome as one JSON line.

Runs inside .venvs/anthropic-0.2.10 (made by `make clients`), never in the project's venv.
    python py_legacy.py --base-url URL --mode sync-stream|async-stream|sync|async
        [--model M] [--prompt P] [--max-tokens N] [--extra JSON]
--extra: more fields for the request body (0.2.10 sends any keyword argument as it is, as 2023
code did with temperature, top_k, top_p and the like).
"""

import argparse
import asyncio
import json
import sys
import threading

import anthropic


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument(
        "--mode", required=True, choices=["sync-stream", "async-stream", "sync", "async"]
    )
    ap.add_argument("--prompt", default=f"{anthropic.HUMAN_PROMPT} Say hello{anthropic.AI_PROMPT}")
    ap.add_argument("--max-tokens", type=int, default=100)
    ap.add_argument("--model", default="claude-2.0")
    ap.add_argument("--api-key", default="test-key-not-a-real-key")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--extra", default="{}", help="a JSON object of more body fields")
    args = ap.parse_args()

    # never hang a test run, whatever the client does
    timer = threading.Timer(
        args.timeout,
        lambda: (
            print(
                json.dumps({"ok": False, "error_class": "Timeout", "error": "client timed out"}),
                flush=True,
            ),
            __import__("os")._exit(3),
        ),
    )
    timer.daemon = True
    timer.start()

    client = anthropic.Client(args.api_key, api_url=args.base_url)
    params = dict(prompt=args.prompt, model=args.model, max_tokens_to_sample=args.max_tokens)
    params.update(json.loads(args.extra))
    events = []
    try:
        if args.mode == "sync-stream":
            for obj in client.completion_stream(**params):
                events.append(obj)
            final = events[-1] if events else None
        elif args.mode == "async-stream":

            async def run():
                async for obj in await client.acompletion_stream(**params):
                    events.append(obj)

            asyncio.run(run())
            final = events[-1] if events else None
        elif args.mode == "sync":
            final = client.completion(**params)
        else:
            final = asyncio.run(client.acompletion(**params))
    except anthropic.ApiException as exc:
        out = {
            "ok": False,
            "error_class": "ApiException",
            "error": str(exc.args[0])[:500],
            "detail": exc.args[1]
            if len(exc.args) > 1 and isinstance(exc.args[1], (dict, str))
            else None,
            "events": events,
        }
        print(json.dumps(out), flush=True)
        return 1
    except Exception as exc:  # the SDK's transport and parse errors surface as whatever they are
        out = {
            "ok": False,
            "error_class": type(exc).__name__,
            "error": str(exc)[:500],
            "events": events,
        }
        print(json.dumps(out), flush=True)
        return 1
    print(json.dumps({"ok": True, "events": events, "final": final}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
