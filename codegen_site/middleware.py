"""Optional bearer-token guard for the API (CODEGEN_API_TOKEN)."""

from __future__ import annotations

import hmac

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.utils.module_loading import import_string

from codegen_site.core.errors import json_error
from codegen_site.routes import browser_paths

# Health checks, the admin (own login), static files and the UI shell stay open.
OPEN_PREFIXES = ("/health", "/admin", "/static/")
OPEN_EXACT = ("/",)


def _refused(request):
    token = settings.API_TOKEN
    if not token:
        return None
    path = request.path
    if path in OPEN_EXACT or path.startswith(OPEN_PREFIXES):
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, supplied = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(supplied.strip().encode(), token.encode()):
        return None
    response = json_error("Authentication required: send 'Authorization: Bearer <token>'", 401)
    response["WWW-Authenticate"] = 'Bearer realm="codegen-ai"'
    return response


class ApiTokenMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        return _refused(request) or self.get_response(request)

    async def __acall__(self, request):
        return _refused(request) or await self.get_response(request)


class BrowserOnlyMiddleware:
    """Runs Django's session / auth / CSRF / messages middleware (settings.BROWSER_MIDDLEWARE)
    only for pages a browser uses: the routes marked `browser(...)` in urls.py (the
    admin and the UI). API requests skip them.

    Those middlewares run their hooks through sync_to_async, a thread hop each
    way per middleware; the JSON API needs none of them (it is token-guarded, not
    cookie-based), and on a streaming endpoint the hops were most of the time
    to first byte."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)
        handler = get_response
        for path in reversed(settings.BROWSER_MIDDLEWARE):
            handler = import_string(path)(handler)
        self.browser_handler = handler

    async def __call__(self, request):
        if request.path in browser_paths():
            return await self.browser_handler(request)
        return await self.get_response(request)
