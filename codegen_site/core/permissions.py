"""The one table of which role each API call needs in multi-user mode (codegen_site.core.users);
the middleware (codegen_site.middleware) checks it before any view runs, streams included.

By default a read (GET, HEAD, OPTIONS) needs a reader and a call with effects a developer; the
table names the calls that differ, by URL name and method ("*" for every method)."""

from __future__ import annotations

from django.urls import Resolver404, resolve

from codegen_site.core.users import ADMIN, DEVELOPER, READER

READ_METHODS = ("GET", "HEAD", "OPTIONS")

RULES: dict[str, dict[str, str]] = {
    # A reader chats, keeps its own conversations and searches.
    "chat": {"*": READER},
    "chat-stream": {"*": READER},
    "conversations": {"*": READER},
    "conversation": {"*": READER},
    "rag-search": {"*": READER},
    # Settings and the queue's control are an admin's.
    "config": {"PATCH": ADMIN, "PUT": ADMIN},
    "improve-queue-start": {"POST": ADMIN},
    "improve-queue-stop": {"POST": ADMIN},
    "improve-queue-clear": {"POST": ADMIN},
}


def url_name(path: str) -> str | None:
    try:
        return resolve(path).url_name
    except Resolver404:
        return None


def required_role(path: str, method: str) -> str:
    rule = RULES.get(url_name(path) or "", {})
    default = READER if method in READ_METHODS else DEVELOPER
    return rule.get(method, rule.get("*", default))
