"""Which paths have async views and which are browser pages, read from the URL patterns.

An async view (the streams among them, `streams = True` on the class) runs without a
thread of its own per request (codegen_site.asgi); a route meant for browsers (the
landing page, the admin) is wrapped in `browser(...)` in urls.py. The ASGI handler and
the middleware take their path lists from here, so they always agree with the routes."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from asgiref.sync import iscoroutinefunction
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern


def browser(route: URLPattern | URLResolver) -> URLPattern | URLResolver:
    """Mark a route (and, for an include, everything under it) as a browser page."""
    route.browser = True
    return route


@dataclass(frozen=True)
class PathSet:
    exact: frozenset[str]
    prefixes: tuple[str, ...]

    def __contains__(self, path: str) -> bool:
        return path in self.exact or path.startswith(self.prefixes)


def _literal(route) -> tuple[str, bool]:
    """The fixed start of a route's pattern, and whether that is the whole of it."""
    text = str(route.pattern)
    if isinstance(route.pattern, RegexPattern):  # re_path, as in the admin's own routes
        text = text.removeprefix("^")
        fixed = re.match(r"[\w/-]*", text).group()
        return fixed, text in (fixed, fixed + "$")
    fixed = text.split("<", 1)[0]
    return fixed, fixed == text


def _collect(patterns, base: str, wanted, exact: set[str], prefixes: list[str]) -> None:
    for route in patterns:
        fixed, whole = _literal(route)
        if wanted(route):
            if whole and isinstance(route, URLPattern):
                exact.add(base + fixed)
            else:
                prefixes.append(base + fixed)
        elif isinstance(route, URLResolver):
            _collect(route.url_patterns, base + fixed, wanted, exact, prefixes)


def _paths(wanted) -> PathSet:
    exact: set[str] = set()
    prefixes: list[str] = []
    _collect(get_resolver().url_patterns, "/", wanted, exact, prefixes)
    return PathSet(frozenset(exact), tuple(prefixes))


def _async_view(route) -> bool:
    callback = getattr(route, "callback", None)
    return callback is not None and iscoroutinefunction(callback)


@functools.cache
def async_paths() -> PathSet:
    """Paths of the async views (the streams among them, views with `streams = True`)."""
    return _paths(_async_view)


@functools.cache
def browser_paths() -> PathSet:
    """Paths of the routes marked with `browser(...)`."""
    return _paths(lambda route: getattr(route, "browser", False))
