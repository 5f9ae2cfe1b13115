"""Base class for async API views."""

from __future__ import annotations

from inspect import iscoroutinefunction

from adrf.views import APIView
from asgiref.sync import sync_to_async
from rest_framework import views


class AsyncAPIView(APIView):
    """adrf's async APIView, with the pre-handler checks run inline.

    adrf runs `initial()` (authentication, permissions, throttles) through
    sync_to_async because those may touch the database. Here they never do:
    authentication takes the user the middleware found (codegen_site.core.users), no
    permissions (roles are the middleware's), throttle counters in the cache.
    Skipping the thread hop shortens every async request, time to first
    byte of a stream included (bench/sse_relay.py)."""

    # The project's throttles are synchronous cache counters; adrf's version
    # always enters async_to_sync, which cannot run inside the event loop.
    check_throttles = views.APIView.check_throttles

    def perform_content_negotiation(self, request, force=False):
        # A view that streams (`streams = True`) builds its
        # text/event-stream body itself; EventSource asks for exactly that Accept,
        # which the JSON renderer alone would answer with 406. Errors before the
        # stream starts are JSON.
        return super().perform_content_negotiation(request, force=force or getattr(self, "streams", False))

    async def async_dispatch(self, request, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            self.initial(request, *args, **kwargs)
            handler = getattr(self, request.method.lower(), None) if request.method.lower() in \
                self.http_method_names else None
            handler = handler or self.http_method_not_allowed
            if iscoroutinefunction(handler):
                response = await handler(request, *args, **kwargs)
            else:
                response = await sync_to_async(handler)(request, *args, **kwargs)
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response
