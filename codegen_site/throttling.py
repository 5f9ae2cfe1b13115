"""Rate limits keyed by client address. Plain (non-DRF) async views use the same
classes through `check_throttles`, so SSE endpoints are limited like the rest."""

from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle


class ApiRateThrottle(SimpleRateThrottle):
    scope = "api"

    def get_rate(self):
        # Read at call time so settings overrides (and tests) take effect.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LLMRateThrottle(ApiRateThrottle):
    """Stricter limit for endpoints that run the LLM."""

    scope = "llm"


def check_throttles(request, throttle_classes=(ApiRateThrottle, LLMRateThrottle)) -> float | None:
    """Return None when allowed, else the suggested wait in seconds."""
    waits = []
    for throttle_class in throttle_classes:
        throttle = throttle_class()
        if not throttle.allow_request(request, None):
            waits.append(throttle.wait() or 1.0)
    return max(waits) if waits else None
