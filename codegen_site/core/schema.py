"""What the OpenAPI schema says beyond each view's own annotations.

The views document their own errors; `document_edge_answers` adds those that
come from the layers in front of them, for every view alike: the JSON parser
(400 on a malformed or too deeply nested body) and the upload limit (413)
wherever a body is accepted, the API token (401) wherever it applies when set,
and the rate limit (429) wherever a throttle applies. `event_stream` describes a
server-sent events answer."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse

from codegen_site.core.access import OPEN_PREFIXES

ERROR_SCHEMA = {"$ref": "#/components/schemas/Error"}
EDGE_ANSWERS = {
    "400": "Malformed JSON, or nested too deeply",
    "401": "API token missing, wrong or revoked (when CODEGEN_API_TOKEN is set or security.users is on)",
    "413": "Request body too large",
    "429": "Rate limit reached",
}


def event_stream(events: list[str], description: str) -> OpenApiResponse:
    """A `text/event-stream` answer: the schema is that of one event (as SSE
    readers, schemathesis among them, check a stream event by event)."""
    return OpenApiResponse(description=description, response={
        "type": "object",
        "required": ["event", "data"],
        "properties": {"event": {"type": "string", "enum": events},
                       "data": {"type": "string", "description": "JSON"}},
    })


def _error_response(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}}


def document_edge_answers(result, generator, request, public):
    """drf-spectacular POSTPROCESSING_HOOKS entry."""
    for path, _regex, method, callback in generator.endpoints:
        operation = result["paths"].get(path, {}).get(method.lower())
        if operation is None:
            continue
        # The token is optional (none in the single-user mode): a declared requirement would say
        # every call needs one. Where it applies, the 401 below says so.
        operation.pop("security", None)
        codes = []
        if "requestBody" in operation:
            codes += ["400", "413"]
        if not path.startswith(OPEN_PREFIXES):
            codes.append("401")
        if getattr(callback.cls, "throttle_classes", ()):
            codes.append("429")
        for code in codes:
            operation["responses"].setdefault(code, _error_response(EDGE_ANSWERS[code]))
    result.get("components", {}).pop("securitySchemes", None)
    return result


class BodyRequiredSchema(AutoSchema):
    """For a view whose request body is given as a plain JSON schema, which the
    generator marks optional: the body is required."""

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation and "requestBody" in operation:
            operation["requestBody"]["required"] = True
        return operation
