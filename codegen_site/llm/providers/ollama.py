"""Ollama's native API: NDJSON streams from /api/chat, reasoning in `message.thinking`. Each request
says the context size it needs (`options.num_ctx`): without it Ollama cuts every prompt to its own
default size, silently. A model's context length comes from /api/show, asked once per model."""

from __future__ import annotations

import asyncio
from typing import Any

from codegen_site.llm.budget import ContextBudget, context_size
from codegen_site.llm.config import LLMSection, OllamaSection
from codegen_site.llm.errors import LLMError
from codegen_site.llm.providers.base import COMPLETION, EMBEDDING, Messages, ModelInfo
from codegen_site.llm.providers.http import HTTPProvider
from codegen_site.llm.resources import llm_resources
from codegen_site.llm.thinking import Delta, ThinkSplitter


def context_length(show: Any) -> int | None:
    """The model's trained context length from an /api/show answer (`model_info["<arch>.context_length"]`)."""
    info = show.get("model_info") if isinstance(show, dict) else None
    if not isinstance(info, dict):
        return None
    value = info.get(f"{info.get('general.architecture')}.context_length")
    if value is None:
        value = next((item for key, item in info.items() if key.endswith(".context_length")), None)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def capabilities(show: Any) -> tuple[str, ...] | None:
    """What an /api/show answer says the model can do: its `capabilities` (Ollama 0.6.4 on); from an
    older server, an embedding model is one whose model_info has a pooling type, any other completes."""
    if not isinstance(show, dict):
        return None
    listed = show.get("capabilities")
    if isinstance(listed, list) and all(isinstance(item, str) for item in listed):
        return tuple(listed)
    info = show.get("model_info")
    if not isinstance(info, dict):
        return None
    return (EMBEDDING,) if any(key.endswith(".pooling_type") for key in info) else (COMPLETION,)


# /api/show lookups made at once for a model list.
SHOW_LOOKUPS = 8


class OllamaProvider(HTTPProvider):
    name = "ollama"
    label = "Ollama"

    def __init__(self, settings: OllamaSection, llm: LLMSection):
        super().__init__(settings.host, settings.timeout, settings.connect_timeout, llm)
        self.settings = settings

    async def listed(self, timeout: float | None = None) -> list[str]:
        payload = await self._json("GET", "/api/tags", timeout=timeout)
        return [item.get("name") or item.get("model") for item in payload.get("models", [])]

    async def _show(self, model: str) -> Any:
        """The model's /api/show answer; its context length is kept as model_context_length's."""
        show = await self._post_json("/api/show", {"model": model, "name": model}, model=model)
        llm_resources().windows[(self.name, self.host, model)] = context_length(show)
        return show

    async def described(self) -> list[ModelInfo]:
        names = await self.listed()
        gate = asyncio.Semaphore(SHOW_LOOKUPS)

        async def details(name: str) -> ModelInfo:
            async with gate:
                try:
                    return ModelInfo(name, capabilities(await self._show(name)))
                except LLMError:  # a model the server cannot describe is listed, its abilities unknown
                    return ModelInfo(name)

        return list(await asyncio.gather(*(details(name) for name in names)))

    async def model_context_length(self, model: str) -> int | None:
        """What /api/show says the model holds; None when it says nothing. Kept per address and model;
        a failed lookup is not kept (the chat request that follows reports the failure)."""
        if len(self.endpoints) > 1:  # asked of a server that is up
            return await self.at(llm_resources().dispatcher.preferred(self, model).url).model_context_length(model)
        key = (self.name, self.host, model)
        windows = llm_resources().windows
        if key in windows:
            return windows[key]
        try:
            show = await self._show(model)
        except LLMError:
            return None
        return context_length(show)

    async def context_window(self, model: str) -> int:
        length = await self.model_context_length(model)
        ceiling = self.settings.max_context_tokens
        return min(length or self.settings.min_context_tokens, ceiling)

    def sized_options(self, budget: ContextBudget, prompt_tokens: int) -> dict:
        return {"num_ctx": context_size(prompt_tokens + budget.answer_tokens, budget.window,
                                        self.settings.min_context_tokens)}

    chat_path = "/api/chat"
    end_of_stream = "it was done"

    def chat_body(self, messages: Messages, model: str, options: dict) -> dict:
        settings = {"temperature": options.get("temperature"), "num_predict": options.get("max_tokens"),
                    "num_ctx": options.get("num_ctx")}
        return {"model": model, "messages": messages, "stream": True,
                "options": {k: v for k, v in settings.items() if v is not None}}

    def payloads(self, lines: list[bytes]) -> tuple[list[bytes], bool]:
        return lines, False  # NDJSON: every line is an object; the last says "done"

    def item_deltas(self, item: dict, splitter: ThinkSplitter, batch: list[Delta]) -> bool:
        message = item.get("message") or {}
        if message.get("thinking"):
            batch.append(Delta("thinking", message["thinking"]))
        if message.get("content"):
            batch.extend(splitter.feed(message["content"]))
        return bool(item.get("done"))

    async def embed_here(self, texts: list[str], model: str) -> list[list[float]]:
        payload = await self._json("POST", "/api/embed", json_body={"model": model, "input": texts}, model=model)
        return payload["embeddings"]
