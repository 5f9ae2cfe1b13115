"""The one entry point every app uses: `get_llm()`.

Resolves the configured provider (auto → Ollama when it answers, else the
embedded model), routes tasks to a model tier, falls back to the configured
fallback model when the chosen one is missing or fails before answering."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import AsyncIterator

from codegen_site.core.config import get_config, on_reload
from codegen_site.llm.errors import LLMError, LLMModelNotFound, LLMUpstreamError
from codegen_site.llm.providers import EmbeddedProvider, Messages, OllamaProvider, OpenAICompatibleProvider
from codegen_site.llm.router import classify_task
from codegen_site.llm.thinking import Delta

logger = logging.getLogger(__name__)

# (provider, address) -> (checked at, available)
_probe_cache: dict[tuple[str, str], tuple[float, bool]] = {}
# (provider, address) -> the probe under way: callers that arrive meanwhile wait
# for it rather than start their own (a burst of probes can time itself out).
_probes_in_flight: dict[tuple[str, str], asyncio.Future] = {}


def clear_probe_cache() -> None:
    _probe_cache.clear()


# Providers are built from the config on every get_llm(), so a changed config
# reaches the next request by itself; only what was learnt about the old
# addresses goes.
on_reload(lambda previous, current: clear_probe_cache())


@dataclass
class Completion:
    content: str
    thinking: str
    model: str
    provider: str


class ChatStream:
    """Async iterator of Delta; `.model` names the model actually answering."""

    def __init__(self, provider, candidates: list[str], messages: Messages, options: dict):
        self.provider = provider
        self.candidates = candidates
        self.messages = messages
        self.options = options
        self.model = candidates[0]

    @property
    def provider_name(self) -> str:
        return self.provider.name

    async def __aiter__(self) -> AsyncIterator[Delta]:
        async for batch in self.batches():
            for delta in batch:
                yield delta

    async def batches(self) -> AsyncIterator[list[Delta]]:
        """Deltas grouped as they arrived together; for relays that forward
        many tokens at once (one write per batch instead of per token)."""
        for index, model in enumerate(self.candidates):
            self.model = model
            answered = False
            try:
                async for batch in self.provider.stream_batches(self.messages, model, self.options):
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
    config: dict = field(default_factory=get_config)

    # --- providers ---------------------------------------------------------
    def _ollama(self) -> OllamaProvider:
        section = self.config["ollama"]
        return OllamaProvider(section["host"], section["timeout"], section["connect_timeout"],
                              self.config["llm"], self.config["llm"]["probe_timeout"])

    def _lm_studio(self) -> OpenAICompatibleProvider:
        section = self.config["openai_compatible"]
        return OpenAICompatibleProvider(section["base_url"], section["timeout"], section["connect_timeout"],
                                        self.config["llm"], self.config["llm"]["probe_timeout"],
                                        api_key=section["api_key"])

    def _embedded(self) -> EmbeddedProvider:
        return EmbeddedProvider(self.config["embedded"])

    @property
    def setting(self) -> str:
        return self.config["llm"]["provider"]

    async def _cached_probe(self, provider) -> bool:
        """The provider's availability: the last answer while it is fresh, else one
        probe shared by every caller that asks while it runs."""
        key = (provider.name, provider.host)
        cached = _probe_cache.get(key)
        if cached and time.monotonic() - cached[0] < float(self.config["llm"]["probe_cache_seconds"]):
            return cached[1]
        in_flight = _probes_in_flight.get(key)
        # A future belongs to its event loop (async_to_sync may run each call on a new one).
        if in_flight is None or in_flight.get_loop() is not asyncio.get_running_loop():
            in_flight = asyncio.ensure_future(self._probe(provider, key))
            _probes_in_flight[key] = in_flight
        # Shielded: a caller that goes away does not cancel the others' probe.
        return await asyncio.shield(in_flight)

    @staticmethod
    async def _probe(provider, key: tuple[str, str]) -> bool:
        try:
            available = await provider.probe()
            _probe_cache[key] = (time.monotonic(), available)
            return available
        finally:
            if _probes_in_flight.get(key) is asyncio.current_task():
                del _probes_in_flight[key]

    async def provider(self):
        setting = self.setting
        if setting == "ollama":
            return self._ollama()
        if setting == "lm_studio":
            return self._lm_studio()
        if setting == "embedded":
            return self._embedded()
        ollama = self._ollama()
        return ollama if await self._cached_probe(ollama) else self._embedded()

    async def health(self) -> dict:
        provider = await self.provider()
        return {"llm_provider": provider.name, "llm_available": await self._cached_probe(provider),
                "llm_host": provider.host}

    async def list_models(self) -> list[str]:
        provider = await self.provider()
        return await provider.list_models()

    # --- routing -----------------------------------------------------------
    def models_for(self, provider_name: str) -> dict[str, str]:
        models = self.config["models"]
        return {**models["defaults"], **models.get(provider_name, {})}

    def candidates(self, provider_name: str, *, model: str | None = None, task: str | None = None,
                   tier: str | None = None) -> list[str]:
        table = self.models_for(provider_name)
        chosen = model or table.get(tier or classify_task(task or ""), table.get("medium"))
        fallback = table.get("fallback")
        return [chosen] + ([fallback] if fallback and fallback != chosen else [])

    def options(self, **overrides) -> dict:
        llm = self.config["llm"]
        base = {"temperature": llm["temperature"], "max_tokens": llm["max_tokens"]}
        return {**base, **{k: v for k, v in overrides.items() if v is not None}}

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
        return Completion("".join(content), "".join(thinking), chat.model, chat.provider_name)

    async def embed(self, texts: list[str], model: str | None = None) -> list[list[float]]:
        provider = await self.provider()
        if not hasattr(provider, "embed"):
            raise LLMError(f"Provider '{provider.name}' has no embedding endpoint", provider=provider.name,
                           host=provider.host)
        return await provider.embed(texts, model or self.config["embeddings"]["model"])


def get_llm(config: dict | None = None) -> LLMService:
    return LLMService(config if config is not None else get_config())
