"""Ollama's native API: NDJSON streams from /api/chat, reasoning in `message.thinking`."""

from __future__ import annotations

from codegen_site.llm.config import LLMSection, OllamaSection
from codegen_site.llm.providers.base import Messages
from codegen_site.llm.providers.http import HTTPProvider
from codegen_site.llm.thinking import Delta, ThinkSplitter


class OllamaProvider(HTTPProvider):
    name = "ollama"
    label = "Ollama"

    def __init__(self, settings: OllamaSection, llm: LLMSection):
        super().__init__(settings.host, settings.timeout, settings.connect_timeout, llm)

    async def list_models(self, timeout: float | None = None) -> list[str]:
        payload = await self._json("GET", "/api/tags", timeout=timeout)
        return [item.get("name") or item.get("model") for item in payload.get("models", [])]

    chat_path = "/api/chat"
    end_of_stream = "it was done"

    def chat_body(self, messages: Messages, model: str, options: dict) -> dict:
        settings = {"temperature": options.get("temperature"), "num_predict": options.get("max_tokens")}
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

    async def embed(self, texts: list[str], model: str) -> list[list[float]]:
        payload = await self._json("POST", "/api/embed", json_body={"model": model, "input": texts}, model=model)
        return payload["embeddings"]
