"""LLM errors carry the HTTP status the API should answer with."""

from __future__ import annotations

from codegen_site.core.errors import ServiceError


class LLMError(ServiceError, status_code=502, detail="LLM error"):
    def __init__(self, detail: str, *, provider: str = "", host: str = ""):
        super().__init__(detail)
        self.provider = provider
        self.host = host


class LLMUnavailable(LLMError, status_code=503):
    """Nothing answers at the provider's address (or it timed out)."""


class LLMUnreachable(LLMUnavailable):
    """No connection could be made: the server is down (another of the provider's may be up)."""


class LLMBusy(LLMError, status_code=429):
    """Every server of the provider is at its cap and the wait for room is over (or full)."""


class LLMServerBusy(LLMError, status_code=429):
    """A model server refused a request as busy (Ollama's 503 "server busy", a 429): tried again
    when there is room."""


class LLMModelNotFound(LLMError):
    """The provider answered but does not have the requested model."""


class LLMUpstreamError(LLMError):
    """The provider answered with an error or broke off mid-response."""


class ContextTooLarge(LLMError, status_code=413):
    """A prompt that cannot fit the model's context window even with every message that may be left out
    left out; the detail says by how many tokens."""

    def __init__(self, detail: str, *, window: int = 0, prompt_tokens: int = 0, answer_tokens: int = 0,
                 over: int = 0, provider: str = "", host: str = ""):
        super().__init__(detail, provider=provider, host=host)
        self.window = window
        self.prompt_tokens = prompt_tokens
        self.answer_tokens = answer_tokens
        self.over = over
