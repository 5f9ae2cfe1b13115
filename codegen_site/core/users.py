"""Users, roles and personal API tokens (multi-user mode, `security.users`).

A token is `cg_` and 43 URL-safe characters (256 random bits); only its sha256 is stored
(ApiToken.digest), so a stolen database gives no usable token. Each process keeps what a
digest resolved to for TOKEN_CACHE_SECONDS, found or not: the server can refuse an unknown
token from a request's head without the database, and a revoked token stops working on
every process within that time (at once on the process that revoked it).

Roles, lowest first: reader (chat, search, read files, list models), developer (+ workflow,
code runs, improvements and project changes, file writes, indexing), admin (settings, queue
control, users). A user's role is the highest of its groups named after a role; a superuser
is an admin; a user in none of them is a reader."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension

READER, DEVELOPER, ADMIN = "reader", "developer", "admin"
ROLES = (READER, DEVELOPER, ADMIN)
TOKEN_PREFIX = "cg_"
TOKEN_CACHE_SECONDS = 5.0
# Digests remembered at most; past it the memory starts again (unknown tokens sent in bulk
# cost a query each, never unbounded memory).
TOKEN_CACHE_ENTRIES = 10_000


def users_mode() -> bool:
    return bool(getattr(settings, "USERS", False))


def role_rank(role: str) -> int:
    return ROLES.index(role)


@dataclass(frozen=True)
class Principal:
    """Who makes a request in multi-user mode: the user (a User row, as loaded) and its role."""

    user: object
    role: str

    @property
    def user_id(self) -> int:
        return self.user.pk

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    def has_role(self, role: str) -> bool:
        return role_rank(self.role) >= role_rank(role)


def role_of(user) -> str:
    """The user's role: superuser → admin, else the highest role its groups are named after."""
    if user.is_superuser:
        return ADMIN
    names = set(user.groups.values_list("name", flat=True))
    return max((role for role in ROLES if role in names), key=role_rank, default=READER)


def principal_for_user(user) -> Principal | None:
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    return Principal(user, role_of(user))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    scheme, _, supplied = authorization.partition(" ")
    supplied = supplied.strip()
    return supplied if scheme.lower() == "bearer" and supplied else None


_cache: dict[str, tuple[Principal | None, float]] = {}
_cache_lock = threading.Lock()


def cached(token: str) -> tuple[bool, Principal | None]:
    """(known, principal) from this process's memory alone: known False when the token's
    digest was not looked up in the last TOKEN_CACHE_SECONDS."""
    with _cache_lock:
        entry = _cache.get(digest(token))
    if entry is None or entry[1] < time.monotonic():
        return False, None
    return True, entry[0]


def _remember(key: str, principal: Principal | None) -> None:
    with _cache_lock:
        if len(_cache) >= TOKEN_CACHE_ENTRIES:
            _cache.clear()
        _cache[key] = (principal, time.monotonic() + TOKEN_CACHE_SECONDS)


def forget_cached() -> None:
    with _cache_lock:
        _cache.clear()


def principal_for_token(token: str) -> Principal | None:
    """The user a token belongs to (the database, then memory for TOKEN_CACHE_SECONDS); None for
    an unknown or revoked token or an inactive user. Marks the token used (at most once per
    process per TOKEN_CACHE_SECONDS: a write per request would cost more than the request)."""
    from codegen_site.core.models import ApiToken

    known, principal = cached(token)
    if known:
        return principal
    key = digest(token)
    row = (ApiToken.objects.select_related("user").filter(digest=key, revoked_at__isnull=True).first()
           if token.startswith(TOKEN_PREFIX) else None)
    principal = principal_for_user(row.user) if row is not None else None
    if principal is not None:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=timezone.now())
    _remember(key, principal)
    return principal


def issue_token(user, name: str):
    """A new token for `user`: (the ApiToken row, the token itself — shown once, never stored)."""
    from codegen_site.core.models import ApiToken

    row = ApiToken(user=user, name=name.strip()[:100] or "token")
    token = fill_new_token(row)
    row.save()
    return row, token


def fill_new_token(row) -> str:
    """Give an unsaved ApiToken a new token's digest and prefix; the token is returned, not kept."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row.digest, row.prefix = digest(token), token[:10]
    return token


def revoke_token(row) -> None:
    """Revoke a token: refused at once here, on other processes within TOKEN_CACHE_SECONDS."""
    if row.revoked_at is None:
        row.revoked_at = timezone.now()
        row.save(update_fields=["revoked_at"])
    with _cache_lock:
        _cache.pop(row.digest, None)


# The user the current request acts for (multi-user mode), set by the middleware for each API
# call; database work the request hands to other threads (core.db) carries it along. Rows with
# an owner are created owned by it and read through `visible`.
acting: ContextVar[Principal | None] = ContextVar("acting", default=None)


def acting_principal() -> Principal | None:
    return acting.get() if users_mode() else None


def visible(queryset):
    """The rows of an owned model the acting user may see: its own, or all for an admin and
    outside multi-user mode (the single-user mode, queue workers, management commands)."""
    principal = acting_principal()
    if principal is None or principal.is_admin:
        return queryset
    return queryset.filter(owner_id=principal.user_id)


def set_owner(sender, instance, raw=False, **kwargs) -> None:
    """pre_save for the models with an `owner`: a new row belongs to the acting user."""
    if raw or not instance._state.adding or instance.owner_id is not None:
        return
    principal = acting_principal()
    if principal is not None:
        instance.owner_id = principal.user_id


def connect_owners() -> None:
    """Give every installed model with an `owner` field its owner when created (set_owner)."""
    from django.apps import apps
    from django.db.models.signals import pre_save

    for model in apps.get_models():
        if any(field.name == "owner" for field in model._meta.concrete_fields):
            pre_save.connect(set_owner, sender=model, dispatch_uid=f"owner:{model._meta.label}")


def principal_of(request) -> Principal | None:
    """The user making a call in multi-user mode (set by the middleware), else None."""
    return getattr(getattr(request, "_request", request), "principal", None)


class PrincipalAuthentication:
    """DRF's view of the user the middleware identified (multi-user mode): request.user in a
    view is that user. Reads no database; without one (local mode) the user stays None."""

    def authenticate(self, request):
        principal = principal_of(request)
        return (principal.user, None) if principal is not None else None

    def authenticate_header(self, request):
        return 'Bearer realm="codegen-ai"'


class PrincipalAuthenticationScheme(OpenApiAuthenticationExtension):
    """The schema's word for it: a bearer token (a personal one in multi-user mode, else the
    optional CODEGEN_API_TOKEN)."""

    target_class = PrincipalAuthentication
    name = "bearer"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer"}
