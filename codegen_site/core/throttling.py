"""Rate limits keyed by client address (the API has no user accounts).

The address is the socket's peer. X-Forwarded-For is anyone's to write: it names the
client only when the deployment says reverse proxies sit in front of the server
(security.trusted_proxies = N), and then only the Nth address from its right, the one
the outermost trusted proxy saw. DRF's own get_ident reads the header when no proxy
count is set, so a made-up header was a fresh budget."""

from __future__ import annotations

import bisect
import uuid
from array import array
from dataclasses import dataclass

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
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


# One step in Redis for a sliding window: drop the requests older than the window, count the
# rest and, under the limit, add this one. DRF's own throttle reads the history and writes it
# back in two calls, so processes answering at the same instant each counted one request where
# there were several (bursts overshot their limit). The clock is Redis's, one for every host.
SLIDING_WINDOW = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now_ms, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return -1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return window - (now_ms - tonumber(oldest[2]))
"""


def _redis_client(backend, key: str):
    """The Redis client of a Django Redis cache for `key` (its full, prefixed form)."""
    return backend._cache.get_client(key, write=True)


class ApiRateThrottle(SimpleRateThrottle):
    """A sliding window of `rate` per client address: in Redis, one atomic script (shared by every
    server process and host); in any other cache, the window's request times as one packed array
    (the times in order, oldest first), which the cache stores as bytes rather than the list of
    floats DRF keeps, whose pickling cost more than the rest of a small request."""

    scope = "api"
    _waits: float | None = None

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        backend = caches["default"]
        if not isinstance(backend, RedisCache):
            return self._allow_from_cache(backend, key)
        full_key = backend.make_and_validate_key(key)
        script = _redis_client(backend, full_key).register_script(SLIDING_WINDOW)
        waits = script(keys=[full_key], args=[int(self.duration * 1000), self.num_requests, uuid.uuid4().hex])
        if int(waits) < 0:
            return True
        self._waits = max(int(waits), 0) / 1000
        return False

    def _allow_from_cache(self, backend, key: str) -> bool:
        now = self.timer()
        times = array("d", backend.get(key, b""))
        del times[:bisect.bisect_right(times, now - self.duration)]
        if len(times) >= self.num_requests:
            self._waits = max(self.duration - (now - times[0]), 0.0)
            return False
        times.append(now)
        backend.set(key, times.tobytes(), self.duration)
        return True

    def wait(self):
        return self._waits

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
