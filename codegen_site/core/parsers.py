"""The API's JSON parser: DRF's, refusing what Python's json module lets through
but nothing after it can handle.

- Nesting deeper than `security.max_json_depth`: the json module recurses once
  per level and fails with RecursionError (a 500) past the interpreter's limit,
  and the code that handles the parsed body recurses too (copying, validating,
  error messages).
- A lone surrogate (`"\\ud800"`): valid JSON syntax, but not text; it cannot be
  encoded as UTF-8 for the database, a file or a log (I-JSON, RFC 7493, refuses
  it for that reason)."""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from codegen_site.core.config import get_config


def _has_lone_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def json_refusal(value, depth_limit: int) -> str | None:
    """Why a parsed JSON value is refused, or None. Walked with an explicit stack,
    so the check itself cannot overflow; the outermost list/object is level 1."""
    if isinstance(value, str):
        return "a string holds a lone surrogate" if _has_lone_surrogate(value) else None
    pending = [(value, 1)] if isinstance(value, (dict, list)) else []
    while pending:
        node, depth = pending.pop()
        if depth > depth_limit:
            return f"nested deeper than {depth_limit} levels"
        children = node.values() if isinstance(node, dict) else node
        if isinstance(node, dict) and any(_has_lone_surrogate(key) for key in node):
            return "a key holds a lone surrogate"
        for child in children:
            if isinstance(child, (dict, list)):
                pending.append((child, depth + 1))
            elif isinstance(child, str) and _has_lone_surrogate(child):
                return "a string holds a lone surrogate"
    return None


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = get_config()["security"]["max_json_depth"]
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            reason = f"nested deeper than {limit} levels"
        else:
            reason = json_refusal(data, limit)
        if reason is None:
            return data
        # DRF's own error for a body it cannot use (a 400), as for malformed JSON.
        raise ParseError(f"JSON parse error - {reason}")
