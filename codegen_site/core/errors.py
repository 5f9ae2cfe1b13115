"""One error vocabulary and one error shape: {"detail": "..."} with a fitting status.

Every domain error is a `ServiceError` (DRF's APIException style: `status_code`,
`default_detail`). `error_body` turns any exception into (status, body); the DRF
handler, the plain-Django handlers and every SSE `error` event use it."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


class ServiceError(exceptions.APIException):
    """Base of the project's own errors. A subclass names its status and default
    detail in its class line: `class Gone(ServiceError, status_code=410, detail="Gone")`."""

    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR
    default_detail = "Internal server error"

    def __init_subclass__(cls, status_code: int | None = None, detail: str | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if status_code is not None:
            cls.status_code = status_code
        if detail is not None:
            cls.default_detail = detail


class BadInput(ServiceError, status_code=status.HTTP_400_BAD_REQUEST, detail="Bad request"):
    pass


class NotFound(ServiceError, status_code=status.HTTP_404_NOT_FOUND, detail="Not found"):
    pass


class Conflict(ServiceError, status_code=status.HTTP_409_CONFLICT, detail="The object changed since it was read"):
    pass


class PayloadTooLarge(ServiceError, status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail="Too large"):
    pass


class ServiceBusy(ServiceError, status_code=status.HTTP_429_TOO_MANY_REQUESTS,
                  detail="Too many requests, try again shortly"):
    """Too much work already queued."""


class ServiceUnavailable(ServiceError, status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                         detail="A service this request needs is not answering"):
    """A service the request needs (the sandbox runner, a configured Chroma server) does not answer."""


class PathOutsideWorkspace(BadInput, detail="Path is outside the workspace"):
    """A client path that leaves the workspace root (.., absolute, symlink)."""


class PathNotAllowed(BadInput, detail="Path is off limits"):
    """A path inside the workspace that belongs to the product itself (data dir, config, .venv, .git)."""


class PathNotFound(NotFound, detail="Path not found"):
    pass


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


def outage_detail(exc: BaseException) -> str | None:
    """What to tell a client when `exc` says a shared service is away (the database, the Redis
    the cache or the queue uses): a 503 it may retry, not a 500. None for any other error."""
    from django.db import InterfaceError, OperationalError

    if isinstance(exc, (OperationalError, InterfaceError)):  # not an IntegrityError or a bad query
        return f"The database is not answering; try again shortly ({type(exc).__name__})"
    module = type(exc).__module__ or ""
    if module.startswith("redis") and type(exc).__name__ in ("ConnectionError", "TimeoutError", "BusyLoadingError"):
        return f"Redis is not answering; try again shortly ({type(exc).__name__})"
    return None


def error_body(exc: BaseException) -> tuple[int, dict]:
    """(HTTP status, {"detail": ...}) for any exception; unknown ones are a logged 500."""
    # Django's own 404 and 403, as DRF's handler takes them (DRF raises Http404 itself, e.g. for a
    # ?format= no renderer has).
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if (outage := outage_detail(exc)) is not None:
        logger.warning("503: %s", exc)
        return 503, {"detail": outage}
    if isinstance(exc, RequestDataTooBig):
        return 413, {"detail": f"Request body too large (limit {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes)"}
    if isinstance(exc, SuspiciousOperation):
        return 400, {"detail": f"Bad request: {exc}"}
    if isinstance(exc, exceptions.ValidationError):
        return exc.status_code, {"detail": _flatten(exc.detail), "errors": exc.detail}
    if isinstance(exc, exceptions.APIException):
        return exc.status_code, {"detail": _flatten(exc.detail)}
    logger.error("Unhandled error", exc_info=exc)
    return 500, {"detail": "Internal server error"}


def drf_exception_handler(exc, context):
    if isinstance(exc, (exceptions.APIException, RequestDataTooBig, SuspiciousOperation, Http404, PermissionDenied)):
        response = exception_handler(exc, context)  # keeps DRF's headers (Retry-After, WWW-Authenticate)
        status_code, body = error_body(exc)
        if response is None:
            return Response(body, status=status_code)
        response.data = body
        return response
    status_code, body = error_body(exc)
    return Response(body, status=status_code)


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
