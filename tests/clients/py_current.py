"""Run today's official anthropic SDK against an upstream's /v1/messages and print what it parsed.

Runs inside .venvs/anthropic-current (made by `make clients`). Used to check that the simulator
speaks the real Messages format: if the official SDK parses its stream, the simulator is faithful.
It asks a live 5.x model, so the answer starts with a thinking block, as today's answers do.
    python py_current.py --base-url URL [--no-stream]
"""

import argparse
import json
import sys

import anthropic


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--no-stream", action="store_true")
    args = ap.parse_args()
    client = anthropic.Anthropic(
        api_key="test-key-not-a-real-key", base_url=args.base_url, max_retries=0, timeout=30.0
    )
    params = dict(
        model="claude-sonnet-5-5",
        max_tokens=100,
        messages=[{"role": "user", "content": "Say hello"}],
    )
    try:
        if args.no_stream:
            message = client.messages.create(**params)
        else:
            with client.messages.stream(**params) as stream:
                for _ in stream.text_stream:
                    pass
                message = stream.get_final_message()
    except Exception as exc:
        print(json.dumps({"ok": False, "error_class": type(exc).__name__, "error": str(exc)[:500]}))
        return 1
    text = "".join(b.text for b in message.content if b.type == "text")
    print(
        json.dumps(
            {
                "ok": True,
                "text": text,
                "stop_reason": message.stop_reason,
                "model": message.model,
                "id": message.id,
                "blocks": [b.type for b in message.content],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
