import os

import django
from django.core.handlers.asgi import ASGIHandler

from codegen_site.routes import streaming_paths

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codegen_site.settings")


class CodegenASGIHandler(ASGIHandler):
    """Django's ASGI handler, without a thread per request on the streaming endpoints.

    Django gives every request its own thread for sync work (ThreadSensitiveContext),
    alive until the response ends: for a stream that lasts minutes it is a parked
    thread per open stream. The streaming endpoints (views with `streams = True`,
    see codegen_site.routes) do their database work on pooled threads
    (codegen_site.core.db) and their remaining sync calls (request signals) are
    quick, so they share one thread instead."""

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] in streaming_paths():
            await self.handle(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


django.setup(set_prefix=False)

django_application = CodegenASGIHandler()

# Serve /static/ (admin, API docs, UI assets) from the app itself: a local
# service has no separate web server in front of it.
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

application = ASGIStaticFilesHandler(django_application)

# A started improvement queue gets its workers back after a restart (improve/queue.py).
from improve.queue import resume_if_started  # noqa: E402

resume_if_started()
