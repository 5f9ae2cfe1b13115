"""The one entry point every app uses: `get_llm()`.

Resolves the configured provider (auto → Ollama when it answers, else the
embedded model), routes tasks to a model tier, falls back to the configured
fallback model when the chosen one is missing or fails before answering.
Every request is fitted to its model's context window first
(codegen_site.llm.budget): what it sent and what was left out is its
`context` (a ContextReport), on the ChatStream and on the Completion."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import AsyncIterator

from codegen_site.core.config import get_config
from codegen_site.llm.budget import ContextBudget, ContextReport
from codegen_site.llm.config import (
    EmbeddingsSection,
    LLMSection,
    embedded_settings,
    embeddings_settings,
    llm_settings,
    models_settings,
    ollama_settings,
    openai_compatible_settings,
)
from codegen_site.llm.errors import LLMError, LLMModelNotFound, LLMUpstreamError
from codegen_site.llm.providers import EmbeddedProvider, Messages, ModelInfo, OllamaProvider, OpenAICompatibleProvider
from codegen_site.llm.resources import llm_resources
from codegen_site.llm.router import classify_task
from codegen_site.llm.thinking import Delta

logger = logging.getLogger(__name__)


def clear_probe_cache() -> None:
    """Forget what the availability probes and the models' context lengths said (a test that changed
    the config without a reload)."""
    llm_resources().forget()


@dataclass
class Completion:
    content: str
    thinking: str
    model: str
    provider: str
    # What the request sent against the model's window, and what it left out to fit.
    context: ContextReport | None = None


class ChatStream:
    """Async iterator of Delta; `.model` names the model actually answering, `.context` what its
    request sent against the model's window (set as the request goes, before the first delta)."""

    def __init__(self, provider, candidates: list[str], messages: Messages, options: dict):
        self.provider = provider
        self.candidates = candidates
        self.messages = messages
        self.options = options
        self.model = candidates[0]
        self.context: ContextReport | None = None

    @property
    def provider_name(self) -> str:
        return self.provider.name

    async def __aiter__(self) -> AsyncIterator[Delta]:
        async for batch in self.batches():
            for delta in batch:
                yield delta

    async def _fitted(self, model: str) -> tuple[Messages, dict]:
        """The messages and options for `model`: fitted to its window (ContextTooLarge, 413, when they
        cannot be), with the context size the server is asked for."""
        budget = await self.provider.budget(model, self.options)
        fitted = await budget.afit(self.messages)
        sized = self.provider.sized_options(budget, fitted.prompt_tokens)
        self.context = budget.report(fitted, num_ctx=sized.get("num_ctx"))
        return fitted.messages, {**self.options, **sized}

    async def batches(self) -> AsyncIterator[list[Delta]]:
        """Deltas grouped as they arrived together; for relays that forward
        many tokens at once (one write per batch instead of per token)."""
        for index, model in enumerate(self.candidates):
            self.model = model
            answered = False
            try:
                messages, options = await self._fitted(model)
                async for batch in self.provider.stream_batches(messages, model, options):
                    answered = True
                    yield batch
                return
            except (LLMModelNotFound, LLMUpstreamError) as exc:
                # A model that already produced text cannot be silently swapped.
                if answered or index == len(self.candidates) - 1:
                    raise
                logger.warning("Model %s failed (%s); trying fallback %s", model, exc.detail,
                               self.candidates[index + 1])


@dataclass
class LLMService:
    """The layer for one config (the current one by default); providers are built from it on every
    get_llm(), so a changed config reaches the next request by itself."""

    config: dict = field(default_factory=get_config)

    # --- settings ------------------------------------------------------------
    @property
    def llm(self) -> LLMSection:
        return llm_settings(self.config)

    @property
    def embeddings(self) -> EmbeddingsSection:
        return embeddings_settings(self.config)

    # --- providers ---------------------------------------------------------
    def ollama(self) -> OllamaProvider:
        return OllamaProvider(ollama_settings(self.config), self.llm)

    def lm_studio(self) -> OpenAICompatibleProvider:
        return OpenAICompatibleProvider(openai_compatible_settings(self.config), self.llm)

    def embedded(self) -> EmbeddedProvider:
        return EmbeddedProvider(embedded_settings(self.config))

    @property
    def setting(self) -> str:
        return self.llm.provider

    async def _available(self, provider) -> bool:
        """The provider's availability: the last answer while it is fresh, else one
        probe shared by every caller that asks while it runs."""
        return await llm_resources().probes.available(provider, self.llm.probe_cache_seconds)

    async def provider(self):
        setting = self.setting
        if setting == "ollama":
            return self.ollama()
        if setting == "lm_studio":
            return self.lm_studio()
        if setting == "embedded":
            return self.embedded()
        ollama = self.ollama()
        return ollama if await self._available(ollama) else self.embedded()

    async def health(self) -> dict:
        provider = await self.provider()
        return {"llm_provider": provider.name, "llm_available": await self._available(provider),
                "llm_host": provider.host}

    async def list_models(self) -> list[str]:
        provider = await self.provider()
        return await provider.list_models()

    async def model_details(self) -> list[ModelInfo]:
        """The active provider's models with what it says each can do; one answer is reused for
        llm.models_cache_seconds (an Ollama list costs a lookup per model)."""
        provider = await self.provider()
        key = (provider.name, provider.host)
        cache = llm_resources().model_details
        kept = cache.get(key)
        if kept and time.monotonic() - kept[0] < self.llm.models_cache_seconds:
            return kept[1]
        details = await provider.model_details()
        cache[key] = (time.monotonic(), details)
        return details

    # --- routing -----------------------------------------------------------
    def models_for(self, provider_name: str) -> dict[str, str]:
        return models_settings(self.config).table(provider_name)

    def candidates(self, provider_name: str, *, model: str | None = None, task: str | None = None,
                   tier: str | None = None) -> list[str]:
        table = self.models_for(provider_name)
        chosen = model or table.get(tier or classify_task(task or ""), table.get("medium"))
        fallback = table.get("fallback")
        return [chosen] + ([fallback] if fallback and fallback != chosen else [])

    def options(self, **overrides) -> dict:
        llm = self.llm
        base = {"temperature": llm.temperature, "max_tokens": llm.max_tokens}
        return {**base, **{k: v for k, v in overrides.items() if v is not None}}

    # --- the context budget ------------------------------------------------
    async def budget(self, *, model: str | None = None, task: str | None = None, tier: str | None = None,
                     **options) -> ContextBudget:
        """The window, the answer's share and the counter of the model a request with these arguments
        goes to first: a caller that builds a long prompt (history, code) fits it with this."""
        provider = await self.provider()
        chosen = self.candidates(provider.name, model=model, task=task, tier=tier)[0]
        return await provider.budget(chosen, self.options(**options))

    # --- generation --------------------------------------------------------
    async def stream(self, messages: Messages, *, model: str | None = None, task: str | None = None,
                     tier: str | None = None, **options) -> ChatStream:
        provider = await self.provider()
        if task is None and messages:
            task = messages[-1].get("content", "")
        return ChatStream(provider, self.candidates(provider.name, model=model, task=task, tier=tier),
                          messages, self.options(**options))

    async def complete(self, messages: Messages, *, model: str | None = None, task: str | None = None,
                       tier: str | None = None, **options) -> Completion:
        chat = await self.stream(messages, model=model, task=task, tier=tier, **options)
        content, thinking = [], []
        async for delta in chat:
            (content if delta.kind == "content" else thinking).append(delta.text)
        return Completion("".join(content), "".join(thinking), chat.model, chat.provider_name, chat.context)

    async def embed(self, texts: list[str], model: str | None = None) -> list[list[float]]:
        provider = await self.provider()
        if not hasattr(provider, "embed"):
            raise LLMError(f"Provider '{provider.name}' has no embedding endpoint", provider=provider.name,
                           host=provider.host)
        return await provider.embed(texts, model or self.embeddings.model)


def get_llm(config: dict | None = None) -> LLMService:
    return LLMService(config if config is not None else get_config())
