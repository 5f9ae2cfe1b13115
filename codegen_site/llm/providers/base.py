"""What every provider is: a name, an address, deltas streamed in batches, and its models' context
windows (codegen_site.llm.budget)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator

from codegen_site.llm.budget import ESTIMATE, ContextBudget, TokenCounter
from codegen_site.llm.errors import LLMError
from codegen_site.llm.thinking import Delta

Messages = list[dict[str, str]]

# What a model can do as model servers name it (Ollama's /api/show words): "completion" is a
# chat or completion model, "embedding" one that only embeds.
COMPLETION = "completion"
EMBEDDING = "embedding"


@dataclass(frozen=True)
class ModelInfo:
    """A model as its server reports it; capabilities None: the server does not say."""

    name: str
    capabilities: tuple[str, ...] | None = None

    @property
    def chat(self) -> bool | None:
        """Whether it answers chat requests (None: unknown)."""
        return None if self.capabilities is None else COMPLETION in self.capabilities


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

    async def model_details(self) -> list[ModelInfo]:
        """Every model with what the server says it can do; by default it says nothing."""
        return [ModelInfo(name) for name in await self.list_models()]

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
