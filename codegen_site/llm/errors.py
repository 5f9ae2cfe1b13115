"""LLM errors carry the HTTP status the API should answer with."""

from __future__ import annotations

from codegen_site.core.errors import ServiceError


class LLMError(ServiceError):
    status_code = 502
    default_detail = "LLM error"

    def __init__(self, detail: str, *, provider: str = "", host: str = ""):
        super().__init__(detail)
        self.provider = provider
        self.host = host


class LLMUnavailable(LLMError):
    """Nothing answers at the provider's address (or it timed out)."""

    status_code = 503


class LLMModelNotFound(LLMError):
    """The provider answered but does not have the requested model."""

    status_code = 502


class LLMUpstreamError(LLMError):
    """The provider answered with an error or broke off mid-response."""

    status_code = 502
