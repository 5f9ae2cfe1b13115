"""Database calls from async code on reused worker threads.

Django's default (`sync_to_async` thread-sensitive) runs each request's ORM
calls on a thread made for that request, with a new database connection that is
closed when the request ends: a cost paid before the first byte of a stream. Hot
paths use `db_async` instead: a pooled worker thread that keeps its connection
between calls, replaced when an error left it unusable."""

from __future__ import annotations

import functools

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection


def _with_usable_connection(func):
    @functools.wraps(func)
    def run(*args, **kwargs):
        if connection.connection is not None and connection.errors_occurred:
            if not connection.is_usable():
                connection.close()
            connection.errors_occurred = False
        return func(*args, **kwargs)

    return run


def db_async(func):
    pooled = sync_to_async(_with_usable_connection(func), thread_sensitive=False)
    # In-process tests roll back one connection per test, so there the work
    # stays on Django's request thread (settings.DB_ASYNC_POOLED = False).
    shared = sync_to_async(func)

    @functools.wraps(func)
    async def call(*args, **kwargs):
        return await (pooled if settings.DB_ASYNC_POOLED else shared)(*args, **kwargs)

    return call
