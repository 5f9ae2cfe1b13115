"""The browser UI: server-rendered page shells whose scripts (static/) call the
JSON API from the same origin.

Every page needs a Django login when CODEGEN_API_TOKEN is set or multi-user mode is on
(security.users); the API then accepts the page's calls by their session
(codegen_site.middleware). In multi-user mode the Tokens page makes and revokes the
logged-in user's personal API tokens."""

from __future__ import annotations

import functools

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.views import LoginView, LogoutView, redirect_to_login
from django.shortcuts import redirect, render
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator

from codegen_site.core import users, workspace
from codegen_site.core.config import LOG_LEVELS, PROVIDERS
from codegen_site.llm import get_llm

# (url name, label) of the pages in the navigation, in order.
PAGES = (
    ("index", "Home"),
    ("ui-chat", "Chat"),
    ("ui-workflow", "Workflow"),
    ("ui-improve", "Improve"),
    ("ui-changes", "Changes"),
    ("ui-search", "Code search"),
    ("ui-files", "Files"),
    ("ui-settings", "Settings"),
)


def login_needed() -> bool:
    return bool(settings.API_TOKEN or users.users_mode())


def login_required_with_token(view):
    """Send a visitor without a session to the login page, when a token guards the API (or
    multi-user mode is on). Without a token the API is open, and so is the UI."""

    @functools.wraps(view)
    async def guarded(request, *args, **kwargs):
        if login_needed() and not (await request.auser()).is_authenticated:
            return redirect_to_login(request.get_full_path(), login_url=reverse("login"))
        return await view(request, *args, **kwargs)

    return guarded


def page_context(request, current: str, **extra) -> dict:
    pages = PAGES + (("ui-tokens", "Tokens"),) if users.users_mode() else PAGES
    return {"pages": pages, "current": current, "login_needed": login_needed(), **extra}


def page(template: str, current: str, **extra):
    """A view rendering one page shell of the UI."""

    @login_required_with_token
    async def view(request):
        return render(request, template, page_context(request, current, **extra))

    view.__name__ = current.replace("-", "_")
    return view


HTTP_METHODS = ("get", "post", "put", "patch", "delete")


@functools.cache
def endpoints() -> list[tuple[str, str, str]]:
    """(methods, path, summary) of every API path, from the OpenAPI schema /api/docs shows."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    rows = []
    for path, operations in schema["paths"].items():
        methods = [method for method in operations if method in HTTP_METHODS]
        summary = operations[methods[0]].get("summary", "") if methods else ""
        rows.append((", ".join(method.upper() for method in methods), path, summary))
    return rows


@login_required_with_token
async def index(request):
    """The landing page, a first-run path: the workspace in use and how to change it, Index and
    Analyse with their state, @codebase; then the pages and the endpoint list."""
    health = await get_llm().health()
    # Built once per process, off the event loop (it inspects every view).
    listing = await sync_to_async(endpoints, thread_sensitive=False)()
    # The same folder GET /config reports as workspace.root.
    return render(request, "index.html", page_context(request, "index", health=health, endpoints=listing,
                                                      workspace_root=str(workspace.root())))


chat = page("ui/chat.html", "ui-chat")
workflow = page("ui/workflow.html", "ui-workflow")
improve = page("ui/improve.html", "ui-improve")
changes = page("ui/changes.html", "ui-changes")
search = page("ui/search.html", "ui-search")
files = page("ui/files.html", "ui-files")
# The form's choices come from the config module, which the serializers check against.
config = page("ui/settings.html", "ui-settings",
              choices={"llm.provider": PROVIDERS, "embeddings.provider": PROVIDERS,
                       "logging.level": LOG_LEVELS})

def _token_page(request) -> dict:
    """What the Tokens page shows, after the form's action: create (the new token, shown this
    once) or revoke (one of the user's own tokens)."""
    from codegen_site.core.models import ApiToken

    context = {"users_mode": users.users_mode(), "tokens": [], "role": None}
    if not context["users_mode"]:
        return context
    user = request.user
    if request.method == "POST" and request.POST.get("action") == "create":
        row, token = users.issue_token(user, request.POST.get("name", ""))
        context.update(new_token=token, new_token_name=row.name)
    elif request.method == "POST" and request.POST.get("action") == "revoke":
        token_id = request.POST.get("token", "")
        row = ApiToken.objects.filter(user=user, pk=token_id).first() if token_id.isdigit() else None
        if row is not None:
            users.revoke_token(row)
        context["redirect"] = True
    context["tokens"] = list(ApiToken.objects.filter(user=user))
    context["role"] = users.role_of(user)
    return context


@login_required_with_token
async def tokens(request):
    """The logged-in user's personal API tokens: create (shown once), list, revoke."""
    await request.auser()  # loaded here: the page's work runs on a worker thread
    context = await sync_to_async(_token_page)(request)
    if context.pop("redirect", False):
        return redirect("ui-tokens")
    return render(request, "ui/tokens.html", page_context(request, "ui-tokens", **context))


login = LoginView.as_view(template_name="ui/login.html", redirect_authenticated_user=True,
                                     next_page="/", extra_context={"pages": (), "current": "login"})
logout = LogoutView.as_view(next_page="login")
