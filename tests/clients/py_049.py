"""Run anthropic 0.49's ``completions.create`` once; print what its own types parsed as JSON.

0.49 (2025) is the last kind of official SDK that still has Text Completions: it sends
``anthropic-version: 2023-06-01`` to /v1/complete and parses the 2023-06-01 format (named
``completion`` events with incremental text; spec sections 2 and 3) into its ``Completion`` type.
Every object it returns is validated again against that type, strictly, and checked for fields the
format does not have, so an answer in another shape (legacy truncated / exception, a missing id)
fails here even where the SDK's lenient parsing lets it by.
Runs inside .venvs/anthropic-0.49 (made by `make clients`).
    python py_049.py --base-url URL --mode stream|sync
        [--model M] [--prompt P] [--max-tokens N] [--extra JSON]
"""

import argparse
import json
import sys

import anthropic
from anthropic.types import Completion

# what a 2023-06-01 completion may carry beyond the SDK's type (spec section 2): never the legacy
# truncated / exception
FORMAT_FIELDS = set(Completion.model_fields) | {"stop", "log_id"}


def checked(obj: object) -> dict:
    if not isinstance(obj, Completion):
        raise TypeError(f"not a Completion: {type(obj).__name__}")
    data = obj.model_dump(exclude_unset=True)
    extra = sorted(set(data) - FORMAT_FIELDS)
    if extra:
        raise TypeError(f"fields the 2023-06-01 format does not have: {extra}")
    Completion.model_validate(data, strict=True)
    return data


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--mode", required=True, choices=["stream", "sync"])
    ap.add_argument("--prompt", default=f"{anthropic.HUMAN_PROMPT} Say hello{anthropic.AI_PROMPT}")
    ap.add_argument("--max-tokens", type=int, default=100)
    ap.add_argument("--model", default="claude-2.1")
    ap.add_argument("--api-key", default="test-key-not-a-real-key")
    ap.add_argument("--extra", default="{}", help="a JSON object of more body fields")
    args = ap.parse_args()
    client = anthropic.Anthropic(
        api_key=args.api_key, base_url=args.base_url, max_retries=0, timeout=30.0
    )
    params = dict(prompt=args.prompt, model=args.model, max_tokens_to_sample=args.max_tokens)
    extra = json.loads(args.extra)
    named = {"temperature", "top_k", "top_p", "stop_sequences", "metadata"}
    params.update({k: v for k, v in extra.items() if k in named})
    extra_body = {k: v for k, v in extra.items() if k not in named} or None
    events: list[dict] = []
    try:
        if args.mode == "sync":
            final = checked(client.completions.create(**params, extra_body=extra_body))
        else:
            stream = client.completions.create(**params, stream=True, extra_body=extra_body)
            for event in stream:
                events.append(checked(event))
            final = events[-1] if events else None
    except Exception as exc:
        out = {"ok": False, "error_class": type(exc).__name__, "error": str(exc)[:800]}
        status = getattr(exc, "status_code", None)
        body = getattr(exc, "body", None)
        print(json.dumps({**out, "status": status, "body": body, "events": events}))
        return 1
    text = "".join(e["completion"] for e in events) if events else final["completion"]
    print(json.dumps({"ok": True, "events": events, "final": final, "text": text}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
