"""Rate limits keyed by client address (the API has no user accounts).

The address is the socket's peer. X-Forwarded-For is anyone's to write: it names the
client only when the deployment says reverse proxies sit in front of the server
(security.trusted_proxies = N), and then only the Nth address from its right, the one
the outermost trusted proxy saw. DRF's own get_ident reads the header when no proxy
count is set, so a made-up header was a fresh budget."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from codegen_site.core.sections import section


@dataclass(frozen=True)
class ProxySettings:
    trusted_proxies: int  # [security]


def client_address(request) -> str:
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = section(ProxySettings, "security").trusted_proxies
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if proxies <= 0 or not forwarded:
        return remote
    addresses = [address.strip() for address in forwarded.split(",")]
    # Fewer entries than proxies: the leftmost is still one a trusted proxy wrote.
    return addresses[-min(proxies, len(addresses))]


class ApiRateThrottle(SimpleRateThrottle):
    scope = "api"

    def get_rate(self):
        # Read at call time so settings overrides (and tests) take effect.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_ident(self, request):
        return client_address(request)

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LLMRateThrottle(ApiRateThrottle):
    """Stricter limit for endpoints that run the LLM."""

    scope = "llm"
