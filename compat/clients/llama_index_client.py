"""llama-index 0.6.20's `LLMPredictor` over LangChain's `Anthropic` (0.0.190, anthropic 0.2.10).

    python llama_index_client.py --base-url URL --scenario stream|nostream --variant sync|async

sync: `stream()` (a thread and a callback handler, the way llama-index 0.6 streams) or `predict()`;
async: `apredict()` with `streaming=True` or not (llama-index 0.6 has no async stream()).

llama-index counts tokens with tiktoken's GPT-2 encoding, which it downloads on first use; no such
download is possible where `make compat` runs, so token counting is replaced by a word count here.
It plays no part in the request.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from _common import API_KEY, parse_args, run
from langchain.llms import Anthropic
from llama_index import LLMPredictor
from llama_index.prompts.prompts import Prompt
from llama_index.utils import globals_helper


class _Words:
    def __call__(self, text: str) -> list[str]:
        return text.split()


def main() -> int:
    args = parse_args(["sync", "async"])
    globals_helper._tokenizer = _Words()  # see the docstring
    llm = Anthropic(
        model=args.model,
        anthropic_api_key=API_KEY,
        max_tokens_to_sample=args.max_tokens,
        streaming=args.scenario == "stream",
    )
    llm.client.api_url = args.base_url  # LangChain 0.0.190 has no option for it
    predictor = LLMPredictor(llm=llm, retry_on_throttling=False)
    prompt = Prompt("{question}")

    def call(seen: list[str]) -> Any:
        if args.variant == "async":
            return asyncio.run(predictor.apredict(prompt, question="Say hello"))[0]
        if args.scenario == "nostream":
            return predictor.predict(prompt, question="Say hello")[0]
        gen, _ = predictor.stream(prompt, question="Say hello")
        for token in gen:
            seen.append((seen[-1] if seen else "") + token)
        return seen[-1] if seen else ""

    return run(args, call)


if __name__ == "__main__":
    sys.exit(main())
