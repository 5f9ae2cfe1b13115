"""Optional bearer-token guard for the API (CODEGEN_API_TOKEN), which also lets in
the browser UI's own calls when they come with a logged-in Django session."""

from __future__ import annotations

import hmac
from importlib import import_module

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.module_loading import import_string

from codegen_site.core.errors import json_error
from codegen_site.routes import browser_paths

# Health checks and static files stay open; browser pages (the UI, the admin)
# ask for a login themselves.
OPEN_PREFIXES = ("/health", "/static/")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")


def _refused(request):
    """A 401 for an API call without the token; None when the call may go on."""
    token = settings.API_TOKEN
    if not token:
        return None
    path = request.path
    if path.startswith(OPEN_PREFIXES) or path in browser_paths():
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, supplied = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(supplied.strip().encode(), token.encode()):
        return None
    response = json_error("Authentication required: send 'Authorization: Bearer <token>' or log in at /login",
                          401)
    response["WWW-Authenticate"] = 'Bearer realm="codegen-ai"'
    return response


def _has_session(request) -> bool:
    return settings.SESSION_COOKIE_NAME in request.COOKIES


def _session_refusal(request, refusal):
    """None when the request comes from a logged-in UI session (and, for a method
    with effects, carries the CSRF token), else `refusal` or a 403.

    Reads the session and the user (the database), so it runs only for a call
    that has a session cookie and no token."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    request.session = store(request.COOKIES[settings.SESSION_COOKIE_NAME])
    request.user = get_user(request)  # checks the session against the user's password hash
    if not request.user.is_authenticated:
        return refusal
    if request.method in SAFE_METHODS:
        return None
    # A cookie is sent by the browser whoever asks: calls with effects prove they
    # come from the UI's pages with the CSRF token.
    csrf = CsrfViewMiddleware(lambda request: None)
    csrf.process_request(request)
    if csrf.process_view(request, None, (), {}) is not None:
        return json_error("CSRF check failed: send the csrftoken cookie's value in the X-CSRFToken header", 403)
    return None


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
        refusal = _refused(request)
        if refusal is not None and _has_session(request):
            refusal = _session_refusal(request, refusal)
        return refusal or self.get_response(request)

    async def __acall__(self, request):
        refusal = _refused(request)
        if refusal is not None and _has_session(request):
            refusal = await sync_to_async(_session_refusal)(request, refusal)
        return refusal or await self.get_response(request)


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
