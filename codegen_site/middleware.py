"""The project's own middleware: the checks every request passes (Host, Origin,
optional bearer token, which a logged-in browser UI session stands in for) and the
split between API and browser pages. In multi-user mode (security.users) the token
is a user's own, and the user's role, the audit log and ownership follow from it
(codegen_site.core.users, permissions, audit).

The body limit and the token check are also made by the server itself
(codegen_site.server) from a request's head, before its body is read: both ask
`head_refusal` here, so the two can never disagree."""

from __future__ import annotations

import hmac
import ipaddress
from importlib import import_module
from urllib.parse import urlsplit

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.http import is_same_domain
from django.utils.module_loading import import_string

from codegen_site.core import audit, users
from codegen_site.core.access import OPEN_PREFIXES
from codegen_site.core.db import db_async
from codegen_site.core.errors import error_body, json_error
from codegen_site.core.permissions import required_role
from codegen_site.routes import browser_paths

SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
DEFAULT_PORTS = {"http": "80", "https": "443"}


def _own_origins(request, host: str) -> set[str]:
    """The origins of this server: the one its Host names and, for a connection that came
    in on a loopback address, the loopback names at the port it came in on (a page from
    http://localhost:PORT calling http://127.0.0.1:PORT is this server calling itself).
    Never a fixed port: another server on localhost:8000 is another origin."""
    scheme = request.scheme
    origins = {f"{scheme}://{host}"}
    try:
        address = ipaddress.ip_address(request.META.get("SERVER_NAME", ""))
    except ValueError:  # not served from a socket address (the test client's "testserver")
        return origins
    address = getattr(address, "ipv4_mapped", None) or address  # a dual-stack socket's ::ffff:127.0.0.1
    if address.is_loopback:
        port = str(request.META.get("SERVER_PORT", ""))
        suffix = "" if port == DEFAULT_PORTS.get(scheme) else f":{port}"
        origins.update(f"{scheme}://{name}{suffix}" for name in LOOPBACK_NAMES)
    return origins


def _origin_trusted(origin: str, own_origins: set[str]) -> bool:
    """One of the server's own origins, or one in CSRF_TRUSTED_ORIGINS (with Django's
    `https://*.example.com` subdomain form)."""
    if origin in own_origins or origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    parts = urlsplit(origin)
    return any(
        "*" in trusted and parts.scheme == urlsplit(trusted).scheme
        and is_same_domain(parts.netloc, urlsplit(trusted).netloc.lstrip("*"))
        for trusted in settings.CSRF_TRUSTED_ORIGINS
    )


def edge_refusal(request):
    """A refusal for a request this server must not answer, else None.

    The Host must be one of ALLOWED_HOSTS on every path: a DNS-rebinding page
    reaches 127.0.0.1 under its own name, and this is where it stops. A call a
    page of another origin makes with fetch / XHR / EventSource carries that
    Origin and is refused on every method: GET /chat/stream has effects too,
    and with no CORS headers here a foreign page could not read an answer
    anyway. What a foreign page loads without an Origin (an <img>, <script> or
    <iframe> pointing here) is told apart by the browser's Sec-Fetch headers and
    refused too; a person following a link (a top-level navigation) is not.
    Clients that send neither header (curl, scripts) pass."""
    try:
        host = request.get_host()
    except DisallowedHost:
        return json_error("Bad request: this server does not answer to that Host header", 400)
    meta = request.META
    origin = meta.get("HTTP_ORIGIN")
    if origin is not None:
        if not _origin_trusted(origin, _own_origins(request, host)):
            return json_error("Forbidden: a cross-origin request (Origin not trusted)", 403)
    elif meta.get("HTTP_SEC_FETCH_SITE") == "cross-site" and (
            meta.get("HTTP_SEC_FETCH_MODE") != "navigate" or meta.get("HTTP_SEC_FETCH_DEST") != "document"):
        return json_error("Forbidden: a cross-site request made by another page", 403)
    return None


def body_refusal(length: int | None):
    """A 413 for a body declared (Content-Length) or counted so far (chunked) over the
    limit, DATA_UPLOAD_MAX_MEMORY_SIZE (security.max_request_bytes); None within it."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is None or length is None or length <= limit:
        return None
    status, body = error_body(RequestDataTooBig())
    return json_error(body["detail"], status)


def needs_token(path: str) -> bool:
    return bool(settings.API_TOKEN or users.users_mode()) and not (
        path.startswith(OPEN_PREFIXES) or path in browser_paths())


def token_valid(authorization: str) -> bool:
    """`Bearer <token>` with the configured token, compared in constant time. In multi-user mode:
    a token not known to be unknown or revoked (this process's memory of the last few seconds;
    the middleware then asks the database)."""
    supplied = users.bearer(authorization)
    if users.users_mode():
        if supplied is None:
            return False
        known, principal = users.cached(supplied)
        return principal is not None or not known
    return supplied is not None and hmac.compare_digest(supplied.encode(), settings.API_TOKEN.encode())


def unauthenticated():
    response = json_error("Authentication required: send 'Authorization: Bearer <token>' or log in at /login",
                          401)
    response["WWW-Authenticate"] = 'Bearer realm="codegen-ai"'
    return response


def path_token_refusal(path: str, authorization: str):
    """A 401 for a call to `path` that needs the token and does not carry it; else None."""
    if not needs_token(path) or token_valid(authorization):
        return None
    return unauthenticated()


def token_refusal(request):
    """A 401 for an API call without the token; None when the call may go on."""
    return path_token_refusal(request.path, request.headers.get("Authorization", ""))


def has_session_cookie(cookie_names) -> bool:
    return settings.SESSION_COOKIE_NAME in cookie_names


def has_session(request) -> bool:
    return has_session_cookie(request.COOKIES)


def head_refusal(path: str, authorization: str, cookie_names, length: int | None):
    """What a request's head alone settles: a 413 for a declared body over the limit, a
    401 for a call without the token. The server asks this before it reads any of the
    body (codegen_site.server). A call with a session cookie goes on to the full check
    (ApiTokenMiddleware, which reads the session), its body still within the limit."""
    refusal = body_refusal(length)
    if refusal is None and not has_session_cookie(cookie_names):
        refusal = path_token_refusal(path, authorization)
    return refusal


def session_refusal(request, refusal):
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


class RefusingMiddleware:
    """Answers with `refusal(request)` when that gives a response, else passes the
    request on; inline in both modes (no thread hop: it runs on every request)."""

    sync_capable = True
    async_capable = True
    refusal = staticmethod(lambda request: None)

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        return self.refusal(request) or self.get_response(request)

    async def __acall__(self, request):
        return self.refusal(request) or await self.get_response(request)


class EdgeMiddleware(RefusingMiddleware):
    """Host and Origin checks (edge_refusal); first in MIDDLEWARE."""

    refusal = staticmethod(edge_refusal)


def identify(request):
    """Multi-user mode: (refusal, principal) for an API call, from its personal token or, without
    one, its UI session. Reads the database unless the token is in this process's memory."""
    token = users.bearer(request.headers.get("Authorization", ""))
    if token is not None:
        principal = users.principal_for_token(token)
        return (None if principal is not None else unauthenticated()), principal
    if not has_session(request):
        return unauthenticated(), None
    refusal = session_refusal(request, unauthenticated())
    return refusal, (users.principal_for_user(request.user) if refusal is None else None)


def role_refusal(request, principal):
    """A 403 naming the role the call needs when the user's is lower; else None. Marks the
    request with its user for the views (request.user, request.principal)."""
    request.user = principal.user
    request.principal = principal
    users.acting.set(principal)
    needed = required_role(request.path, request.method)
    if principal.has_role(needed):
        return None
    return json_error(f"Forbidden: this call needs the {needed} role; "
                      f"{principal.user.get_username()} has the {principal.role} role", 403)


def audit_arguments(request, action):
    """The arguments to record for an audited call, read before the view reads the body."""
    if action is None:
        return None
    try:
        return audit.arguments(request.body)
    except Exception:  # an unreadable body is the view's to refuse; the entry goes without it
        return {}


class ApiTokenMiddleware(RefusingMiddleware):
    """Optional bearer-token guard for the API (CODEGEN_API_TOKEN); the browser UI's
    own calls pass with a logged-in session instead (session_refusal).

    In multi-user mode (security.users): a personal token or a session names the user, the
    user's role is checked against the call (codegen_site.core.permissions), and calls with
    effects are recorded in the audit log (codegen_site.core.audit)."""

    refusal = staticmethod(token_refusal)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        users.acting.set(None)  # a thread serves one request after another
        if users.users_mode() and needs_token(request.path):
            refusal, principal = identify(request)
            refusal = refusal or role_refusal(request, principal)
            if refusal is not None:
                return refusal
            action = audit.action_of(request.path, request.method)
            arguments = audit_arguments(request, action)
            response = self.get_response(request)
            if action is not None:
                audit.record(principal, action, request.method, request.path, response.status_code, arguments)
            return response
        refusal = self.refusal(request)
        if refusal is not None and has_session(request):
            refusal = session_refusal(request, refusal)
        return refusal or self.get_response(request)

    async def __acall__(self, request):
        users.acting.set(None)
        if users.users_mode() and needs_token(request.path):
            return await self.users_call(request)
        refusal = self.refusal(request)
        if refusal is not None and has_session(request):
            refusal = await sync_to_async(session_refusal)(request, refusal)
        return refusal or await self.get_response(request)

    async def users_call(self, request):
        token = users.bearer(request.headers.get("Authorization", ""))
        known, principal = users.cached(token) if token is not None else (False, None)
        if known:  # no thread hop for a token this process resolved a moment ago
            refusal = None if principal is not None else unauthenticated()
        elif token is not None:
            refusal, principal = await db_async(identify)(request)
        else:  # a session: read on the request's own thread, as Django's auth does
            refusal, principal = await sync_to_async(identify)(request)
        refusal = refusal or role_refusal(request, principal)
        if refusal is not None:
            return refusal
        action = audit.action_of(request.path, request.method)
        arguments = audit_arguments(request, action)
        response = await self.get_response(request)
        if action is not None:
            await db_async(audit.record)(principal, action, request.method, request.path, response.status_code,
                                         arguments)
        return response


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
