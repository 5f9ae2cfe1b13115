"""LM Studio and any server speaking the OpenAI wire format: SSE streams from /chat/completions
ending with [DONE], reasoning in `delta.reasoning_content` (or `delta.reasoning`)."""

from __future__ import annotations

import asyncio
from typing import Any

from codegen_site.llm.config import LLMSection, OpenAICompatibleSection
from codegen_site.llm.errors import LLMError
from codegen_site.llm.providers.base import COMPLETION, EMBEDDING, Messages, ModelInfo
from codegen_site.llm.providers.http import HTTPProvider
from codegen_site.llm.thinking import Delta, ThinkSplitter

# A model's `type` in LM Studio's own listing (/api/v0/models) as capabilities.
MODEL_TYPES = {"llm": (COMPLETION,), "vlm": (COMPLETION, "vision"), "embeddings": (EMBEDDING,),
               "embedding": (EMBEDDING,)}


def listed_capabilities(item: Any) -> tuple[str, ...] | None:
    """What a model list entry says the model does: a `capabilities` list, or LM Studio's `type`."""
    if not isinstance(item, dict):
        return None
    listed = item.get("capabilities")
    if isinstance(listed, list) and all(isinstance(entry, str) for entry in listed):
        return tuple(listed)
    return MODEL_TYPES.get(item.get("type")) if isinstance(item.get("type"), str) else None


class OpenAICompatibleProvider(HTTPProvider):
    name = "lm_studio"
    label = "LM Studio"

    reports_parallelism = True

    def __init__(self, settings: OpenAICompatibleSection, llm: LLMSection):
        super().__init__(settings.base_url, settings.timeout, settings.connect_timeout, llm)
        self.api_key = settings.api_key
        self.context_tokens = settings.context_tokens

    async def context_window(self, model: str) -> int:
        # The wire format has no way to ask for a context size: the server's is the setting's.
        return self.context_tokens

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    async def listed(self, timeout: float | None = None) -> list[str]:
        payload = await self._json("GET", "/models", timeout=timeout)
        return [item["id"] for item in payload.get("data", [])]

    @property
    def root(self) -> str:
        """The server's own root: the address without its /v1."""
        return self.host.removesuffix("/v1")

    async def parallelism(self) -> int | None:
        """llama.cpp's server gives its slots at /props; others have no such page (None)."""
        if not self.host.endswith("/v1"):
            return None
        try:
            async with asyncio.timeout(self.probe_timeout):
                props = await self._post_json("/props", None, method="GET", base=self.root)
        except (LLMError, TimeoutError):
            return None
        slots = props.get("total_slots") if isinstance(props, dict) else None
        return slots if isinstance(slots, int) and not isinstance(slots, bool) and slots > 0 else None

    async def described(self) -> list[ModelInfo]:
        """The wire format's model list says nothing of what a model does; LM Studio's own listing
        (/api/v0/models beside /v1) gives each one's type, and is asked when the address ends in /v1."""
        payload = await self._json("GET", "/models")
        entries = {item["id"]: listed_capabilities(item) for item in payload.get("data", [])}
        if self.host.endswith("/v1") and any(found is None for found in entries.values()):
            try:
                native = await self._json("GET", "/api/v0/models", timeout=self.probe_timeout, base=self.root)
            except LLMError:  # not LM Studio: the abilities stay unknown
                native = {}
            for item in native.get("data", []) if isinstance(native, dict) else []:
                if isinstance(item, dict) and entries.get(item.get("id"), ()) is None:
                    entries[item["id"]] = listed_capabilities(item)
        return [ModelInfo(name, found) for name, found in entries.items()]

    chat_path = "/chat/completions"
    end_of_stream = "[DONE]"

    def chat_body(self, messages: Messages, model: str, options: dict) -> dict:
        body = {"model": model, "messages": messages, "stream": True}
        for key in ("temperature", "max_tokens"):
            if options.get(key) is not None:
                body[key] = options[key]
        return body

    def payloads(self, lines: list[bytes]) -> tuple[list[bytes], bool]:
        events = []
        for line in lines:
            if not line.startswith(b"data:"):
                continue  # comments, event names, keep-alives
            data = line[5:].strip()
            if data == b"[DONE]":
                return events, True
            events.append(data)
        return events, False

    def item_deltas(self, item: dict, splitter: ThinkSplitter, batch: list[Delta]) -> bool:
        for choice in item.get("choices") or []:
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                batch.append(Delta("thinking", reasoning))
            if delta.get("content"):
                batch.extend(splitter.feed(delta["content"]))
        return False

    async def embed_here(self, texts: list[str], model: str) -> list[list[float]]:
        payload = await self._json("POST", "/embeddings", json_body={"model": model, "input": texts}, model=model)
        rows = sorted(payload["data"], key=lambda row: row.get("index", 0))
        return [row["embedding"] for row in rows]
