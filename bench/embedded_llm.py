"""Bundled model speed: tokens/s through the LLM layer against llama.cpp called directly.

Run: .venv/bin/python bench/embedded_llm.py [--tokens 128] [--runs 3]
Prints load time, tokens/s both ways and their ratio (the layer's overhead)."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codegen_site.settings")

from codegen_site.core.config import deep_merge, get_config  # noqa: E402
from codegen_site.llm import get_llm  # noqa: E402
from codegen_site.llm.providers import EmbeddedProvider, bundled_model_path  # noqa: E402

PROMPT = [{"role": "user", "content": "Write a Python function that checks whether a number is prime, "
                                      "then explain it step by step."}]


def direct_run(llama, max_tokens: int) -> tuple[int, float, float]:
    started = time.perf_counter()
    first = None
    tokens = 0
    for chunk in llama.create_chat_completion(messages=PROMPT, stream=True, max_tokens=max_tokens, temperature=0.2):
        if chunk["choices"][0].get("delta", {}).get("content"):
            tokens += 1
            first = first or time.perf_counter() - started
    return tokens, time.perf_counter() - started, first or 0.0


async def layer_run(max_tokens: int) -> tuple[int, float, float]:
    config = deep_merge(get_config(), {"llm": {"provider": "embedded"}, "embedded": {"max_tokens": max_tokens}})
    llm = get_llm(config)
    started = time.perf_counter()
    first = None
    tokens = 0
    chat = await llm.stream(PROMPT, max_tokens=max_tokens)
    async for _ in chat:
        tokens += 1  # one delta per generated token piece
        first = first or time.perf_counter() - started
    return tokens, time.perf_counter() - started, first or 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    path = bundled_model_path()
    print(f"model: {path}")
    started = time.perf_counter()
    llama = EmbeddedProvider().load()
    print(f"load: {time.perf_counter() - started:.2f} s")
    direct_run(llama, 8)  # warm-up

    direct, layer = [], []
    for _ in range(args.runs):
        tokens, seconds, first = direct_run(llama, args.tokens)
        direct.append((tokens / seconds, first))
        tokens, seconds, first = asyncio.run(layer_run(args.tokens))
        layer.append((tokens / seconds, first))

    direct_tps = statistics.median(t for t, _ in direct)
    layer_tps = statistics.median(t for t, _ in layer)
    print(f"direct llama.cpp : {direct_tps:7.1f} tokens/s  first token {statistics.median(f for _, f in direct) * 1000:6.1f} ms")
    print(f"through get_llm(): {layer_tps:7.1f} tokens/s  first token {statistics.median(f for _, f in layer) * 1000:6.1f} ms")
    print(f"ratio layer/direct: {layer_tps / direct_tps:.3f}  (runs={args.runs}, max_tokens={args.tokens}, cores={os.cpu_count()})")


if __name__ == "__main__":
    main()
