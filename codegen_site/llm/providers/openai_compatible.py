"""LM Studio and any server speaking the OpenAI wire format: SSE streams from /chat/completions
ending with [DONE], reasoning in `delta.reasoning_content` (or `delta.reasoning`)."""

from __future__ import annotations

from codegen_site.llm.config import LLMSection, OpenAICompatibleSection
from codegen_site.llm.providers.base import Messages
from codegen_site.llm.providers.http import HTTPProvider
from codegen_site.llm.thinking import Delta, ThinkSplitter


class OpenAICompatibleProvider(HTTPProvider):
    name = "lm_studio"
    label = "LM Studio"

    def __init__(self, settings: OpenAICompatibleSection, llm: LLMSection):
        super().__init__(settings.base_url, settings.timeout, settings.connect_timeout, llm)
        self.api_key = settings.api_key
        self.context_tokens = settings.context_tokens

    async def context_window(self, model: str) -> int:
        # The wire format has no way to ask for a context size: the server's is the setting's.
        return self.context_tokens

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    async def list_models(self, timeout: float | None = None) -> list[str]:
        payload = await self._json("GET", "/models", timeout=timeout)
        return [item["id"] for item in payload.get("data", [])]

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

    async def embed(self, texts: list[str], model: str) -> list[list[float]]:
        payload = await self._json("POST", "/embeddings", json_body={"model": model, "input": texts}, model=model)
        rows = sorted(payload["data"], key=lambda row: row.get("index", 0))
        return [row["embedding"] for row in rows]
