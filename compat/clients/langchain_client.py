"""LangChain 0.0.1xx `Anthropic` / `ChatAnthropic` (anthropic 0.2.x underneath), sync or async.

    python langchain_client.py --base-url URL --scenario stream|nostream --variant llm-sync|...

The model is pointed at the proxy the way that LangChain version allows: `anthropic_api_url`
where the class has it, else by setting the underlying anthropic client's `api_url` (LangChain
0.0.150 passes no URL to `anthropic.Client`, and anthropic 0.2.7 reads no environment variable).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from _common import API_KEY, PROMPT, parse_args, run
from langchain.chat_models import ChatAnthropic
from langchain.llms import Anthropic
from langchain.schema import HumanMessage

VARIANTS = ["llm-sync", "llm-async", "chat-sync", "chat-async"]


def make_model(args: Any) -> Any:
    cls = ChatAnthropic if args.variant.startswith("chat") else Anthropic
    kw: dict[str, Any] = {
        "model": args.model,
        "anthropic_api_key": API_KEY,
        "max_tokens_to_sample": args.max_tokens,
        "streaming": args.scenario == "stream",
    }
    if "anthropic_api_url" in cls.__fields__:
        kw["anthropic_api_url"] = args.base_url
    model = cls(**kw)
    if "anthropic_api_url" not in cls.__fields__:
        model.client.api_url = args.base_url
    return model


def main() -> int:
    args = parse_args(VARIANTS)
    model = make_model(args)
    chat = args.variant.startswith("chat")
    batch: Any = [[HumanMessage(content="Say hello")]] if chat else [PROMPT]

    def call(seen: list[str]) -> str | None:
        if args.variant.endswith("async"):
            result = asyncio.run(model.agenerate(batch))
        else:
            result = model.generate(batch)
        return str(result.generations[0][0].text)

    return run(args, call)


if __name__ == "__main__":
    sys.exit(main())
