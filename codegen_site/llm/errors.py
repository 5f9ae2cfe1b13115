"""LLM errors carry the HTTP status the API should answer with."""

from __future__ import annotations


class LLMError(Exception):
    status_code = 502

    def __init__(self, detail: str, *, provider: str = "", host: str = ""):
        super().__init__(detail)
        self.detail = detail
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
