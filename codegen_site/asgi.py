import asyncio
import io
import json
import logging
import os
import sys

import django
from django.core.exceptions import SuspiciousOperation
from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.http import Http404, HttpResponse
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.mediatypes import media_type_matches

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codegen_site.settings")
django.setup(set_prefix=False)

logger = logging.getLogger(__name__)

# These read settings or the app registry when imported.
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from codegen_site.core.errors import json_error  # noqa: E402
from codegen_site.llm import llm_resources  # noqa: E402
from codegen_site.middleware import edge_refusal  # noqa: E402
from codegen_site.routes import async_paths  # noqa: E402
from codegen_site.views import health_answer  # noqa: E402


class CodegenASGIHandler(ASGIHandler):
    """Django's ASGI handler, without a thread per request on the async views.

    Django gives every request its own thread for sync work (ThreadSensitiveContext),
    alive until the response ends: a thread started and stopped per request, and for
    a stream that lasts minutes a parked thread per open stream. The async views
    (codegen_site.routes.async_paths: every API view that awaits, the streams among
    them) do their database work on pooled threads (codegen_site.core.db) and their
    remaining sync calls (request signals, the session check) are quick, so they
    share one thread instead. Sync views keep Django's thread per request."""

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] in async_paths():
            await self.handle(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def accepts_json(scope) -> bool:
    """Whether the API's negotiation would answer this request with JSON: no Accept, or one with a
    media range JSON matches (DRF's matching, weights aside), and no `format` query parameter (DRF's
    override, which Django is left to judge)."""
    if b"format=" in scope["query_string"]:
        return False
    for name, value in scope["headers"]:
        if name == b"accept":
            return any(media_type_matches(JSONRenderer.media_type, part.strip())
                       for part in value.decode("latin-1").split(","))
    return True


class HealthFromMemory:
    """GET /health answered in front of Django's handler, which costs many times the answer.

    The body is HealthView's (codegen_site.views.health_answer: the LLM layer's last probe,
    the monitor's last round, the settings version), behind the same Host and Origin checks
    (edge_refusal); /health needs no token (codegen_site.core.access) and has no rate limit.
    Every other request to /health (another method, an Accept that JSON does not satisfy, a
    `format` override) goes to Django, which answers it as it answers any path."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if not (scope["type"] == "http" and scope["path"] == "/health" and scope["method"] == "GET"
                and accepts_json(scope)):
            return await self.application(scope, receive, send)
        request = ASGIRequest(scope, io.BytesIO())
        response = edge_refusal(request)
        if response is None:
            try:
                body = json.dumps(await health_answer(), ensure_ascii=False, separators=(",", ":"))
            except Exception:
                # Django answers instead, with its error handling (a JSON 500 at worst).
                logger.exception("GET /health in front of Django failed; Django answers it")
                return await self.application(scope, receive, send)
            response = HttpResponse(body, content_type="application/json")
            response["Allow"] = "GET, HEAD, OPTIONS"
        await django_application.send_response(response, send)


class StaticFilesHandler(ASGIStaticFilesHandler):
    """/static/ served by the app itself (a local service has no web server in
    front of it), behind the same Host/Origin checks as every other path, with
    JSON errors: Django's handler answers a path that leaves the static
    directories (`/static/../../settings.py`) with a 500 page."""

    async def get_response_async(self, request):
        refusal = edge_refusal(request)
        if refusal is not None:
            return refusal
        if request.method not in ("GET", "HEAD"):
            response = json_error(f'Method "{request.method}" not allowed.', 405)
            response["Allow"] = "GET, HEAD"
            return response
        return await super().get_response_async(request)

    def serve(self, request):
        try:
            return super().serve(request)
        except (Http404, SuspiciousOperation, OSError, ValueError):
            return json_error("Not found", 404)


def answer_overlong_requests() -> None:
    """Under daphne, answer a request line or header line longer than Twisted's
    limit with 414 / 431 instead of dropping the connection without a word
    (Twisted's LineReceiver default). Twisted has no setting for this; its
    documented hook is overriding lineLengthExceeded."""
    http = sys.modules.get("twisted.web.http")
    if http is None:  # not running under daphne
        return

    def line_length_exceeded(channel, line):
        # The channel counts a request's header bytes from its first line on:
        # none counted yet means the first line is the long one.
        if channel._receivedHeaderSize == 0:
            status, what = b"414 URI Too Long", b"request line"
        else:
            status, what = b"431 Request Header Fields Too Large", b"header line"
        body = b'{"detail": "The %s is longer than %d bytes"}' % (what, channel.MAX_LENGTH)
        channel.transport.write(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                                b"Connection: close\r\n\r\n%s" % (status, len(body), body))
        channel.loseConnection()

    http.HTTPChannel.lineLengthExceeded = line_length_exceeded


django_application = CodegenASGIHandler()
answer_overlong_requests()
application = HealthFromMemory(StaticFilesHandler(django_application))

# Each layer's process-wide resources: started with the server, closed in one place as it stops.
import improve.resources  # noqa: E402
import rag.store  # noqa: E402
from codegen_site import sandbox  # noqa: E402


def close_blocking_resources() -> None:
    # improve first: its workers use the other layers. One that fails leaves the others to close.
    for close in (improve.resources.shutdown, rag.store.close, sandbox.shutdown):
        try:
            close()
        except Exception:
            logger.exception("Could not close %s at shutdown", close.__module__)


async def close_resources() -> None:
    """What the process keeps for its life (worker processes and threads, the sandbox runner,
    index clients, connection pools, in-process models), closed as the server stops, on its loop.
    The closes that wait for threads or processes run on a thread of their own."""
    await asyncio.to_thread(close_blocking_resources)
    try:
        await llm_resources().aclose()
    except Exception:
        logger.exception("Could not close the LLM layer's resources at shutdown")
    logger.info("Resources closed: improve workers, code index clients, sandbox runner, LLM connections and models")


def close_resources_at_shutdown() -> None:
    """Under daphne: `close_resources` runs as Twisted's reactor shuts down, while its asyncio
    loop still runs. Registered once the reactor runs, so that it comes after daphne's own
    shutdown trigger, which ends the requests still open."""
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None:  # not running under daphne
        return
    from twisted.internet.defer import Deferred

    def close() -> Deferred:
        return Deferred.fromFuture(asyncio.ensure_future(close_resources()))

    reactor.callWhenRunning(reactor.addSystemEventTrigger, "before", "shutdown", close)


# The improvement queue gets its workers back after a restart, the lease sweeper starts, and the
# analysis workers when improve.workers_at_start says so.
improve.resources.start_with_server()
close_resources_at_shutdown()
