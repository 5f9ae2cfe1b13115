"""OpenAPI post-processing: the answers an operation gives before its view runs.

The views document their own errors; these come from the layers in front of
them, for every view alike: the JSON parser (400 on a malformed or too deeply
nested body) and the upload limit (413) wherever a body is accepted, and the
rate limit (429) wherever a throttle applies."""

from __future__ import annotations

BODY_METHODS = ("post", "put", "patch")
ERROR_SCHEMA = {"$ref": "#/components/schemas/Error"}
EDGE_ANSWERS = {
    "400": "Malformed JSON, or nested too deeply",
    "413": "Request body too large",
    "429": "Rate limit reached",
}


def _error_response(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}}


def document_edge_answers(result, generator, request, public):
    """drf-spectacular POSTPROCESSING_HOOKS entry."""
    for path, _regex, method, callback in generator.endpoints:
        operation = result["paths"].get(path, {}).get(method.lower())
        if operation is None:
            continue
        codes = []
        if "requestBody" in operation:
            codes += ["400", "413"]
        if getattr(callback.cls, "throttle_classes", ()):
            codes.append("429")
        for code in codes:
            operation["responses"].setdefault(code, _error_response(EDGE_ANSWERS[code]))
    return result
