"""What every provider is: a name, an address, deltas streamed in batches, and its models' context
windows (codegen_site.llm.budget)."""

from __future__ import annotations

from typing import AsyncIterator

from codegen_site.llm.budget import ESTIMATE, ContextBudget, TokenCounter
from codegen_site.llm.errors import LLMError
from codegen_site.llm.thinking import Delta

Messages = list[dict[str, str]]


class Provider:
    """Every provider streams batches of deltas (`stream_batches`): what arrived together. It also
    has `list_models()`, `probe()` and, where the backend has one, `embed(texts, model)`; and for the
    context budget `context_window(model)`, `counter()` and `answer_tokens(options)`."""

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

    # --- the context budget ------------------------------------------------------------
    async def context_window(self, model: str) -> int:  # pragma: no cover - abstract
        """The tokens `model`'s prompt and answer together may take."""
        raise NotImplementedError

    async def counter(self) -> TokenCounter:
        """How this provider's prompts are counted: the calibrated estimate unless it can run the
        model's own tokenizer."""
        return ESTIMATE

    def answer_tokens(self, options: dict) -> int:  # pragma: no cover - abstract
        """The tokens an answer may take with these options (kept free in the window)."""
        raise NotImplementedError

    def sized_options(self, budget: ContextBudget, prompt_tokens: int) -> dict:
        """Options that tell the server the context a request needs (Ollama's num_ctx); none by default."""
        return {}

    async def budget(self, model: str, options: dict) -> ContextBudget:
        return ContextBudget(window=await self.context_window(model), answer_tokens=self.answer_tokens(options),
                             counter=await self.counter(), model=model, provider=self.label)
