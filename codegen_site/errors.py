"""One error shape everywhere: {"detail": "..."} with a fitting status."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from codegen_site.llm.errors import LLMError

logger = logging.getLogger(__name__)


class ServiceBusy(Exception):
    """Too much work already queued (maps to 429)."""


def _flatten(detail) -> str:
    if isinstance(detail, dict):
        parts = []
        for field, value in detail.items():
            text = _flatten(value)
            parts.append(text if field in ("non_field_errors", "detail") else f"{field}: {text}")
        return "; ".join(parts)
    if isinstance(detail, (list, tuple)):
        return "; ".join(_flatten(item) for item in detail)
    return str(detail)


def drf_exception_handler(exc, context):
    if isinstance(exc, LLMError):
        return Response({"detail": exc.detail}, status=exc.status_code)
    if isinstance(exc, ServiceBusy):
        return Response({"detail": str(exc) or "Too many requests"}, status=status.HTTP_429_TOO_MANY_REQUESTS)
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": f"Request body too large (limit {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes)"},
                        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, SuspiciousOperation):
        return Response({"detail": f"Bad request: {exc}"}, status=status.HTTP_400_BAD_REQUEST)
    response = exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled error in %s", context.get("view"))
        return Response({"detail": "Internal server error"}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": _flatten(exc.detail), "errors": exc.detail}
    elif not (isinstance(response.data, dict) and set(response.data) == {"detail"}):
        response.data = {"detail": _flatten(response.data)}
    return response


def json_error(detail: str, status_code: int) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status_code)


def handler404(request, exception=None):
    return json_error("Not found", 404)


def handler500(request):
    return json_error("Internal server error", 500)


def handler400(request, exception=None):
    return json_error("Bad request", 400)


def handler403(request, exception=None):
    return json_error("Forbidden", 403)
