"""The API's JSON parser: DRF's, with a limit on how deeply the body may nest.

Python's json module recurses once per level and fails with RecursionError (a
500) past the interpreter's limit; the code that handles the parsed body
recurses too (copying, validating, error messages). A bound well below both
turns deep bodies into a 400."""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from codegen_site.core.config import get_config


def nesting_depth_exceeds(value, limit: int) -> bool:
    """Whether lists/objects nest more than `limit` levels (the outermost is level 1).
    Walked with an explicit stack, so the check itself cannot overflow."""
    pending = [(value, 1)] if isinstance(value, (dict, list)) else []
    while pending:
        node, depth = pending.pop()
        if depth > limit:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                pending.append((child, depth + 1))
    return False


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = get_config()["security"]["max_json_depth"]
        # DRF's own error for a body it cannot parse (a 400), as for malformed JSON.
        too_deep = ParseError(f"JSON parse error - nested deeper than {limit} levels")
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise too_deep from None
        if nesting_depth_exceeds(data, limit):
            raise too_deep
        return data
