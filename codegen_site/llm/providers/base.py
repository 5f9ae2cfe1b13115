"""What every provider is: a name, an address, and deltas streamed in batches."""

from __future__ import annotations

from typing import AsyncIterator

from codegen_site.llm.errors import LLMError
from codegen_site.llm.thinking import Delta

Messages = list[dict[str, str]]


class Provider:
    """Every provider streams batches of deltas (`stream_batches`): what arrived together. It also
    has `list_models()`, `probe()` and, where the backend has one, `embed(texts, model)`."""

    name = "provider"
    label = "LLM"
    host = ""

    def error(self, kind: type[LLMError], detail: str) -> LLMError:
        """An error of this kind naming this provider and its address."""
        return kind(detail, provider=self.name, host=self.host)

    def stream_batches(self, messages: Messages, model: str,
                       options: dict | None = None) -> AsyncIterator[list[Delta]]:  # pragma: no cover
        raise NotImplementedError

    async def list_models(self, timeout: float | None = None) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    async def probe(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError
