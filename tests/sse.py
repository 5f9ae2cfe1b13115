"""Reading server-sent events back in tests."""

from __future__ import annotations

import json
from typing import Any


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """Split an SSE body into (event, data) pairs, as an EventSource reads them."""
    events = []
    # Lines end at CRLF, LF or CR only (the SSE spec), not at every break str.splitlines knows.
    for block in text.replace("\r\n", "\n").replace("\r", "\n").split("\n\n"):
        event, data_lines = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data_lines.append(line[5:].lstrip())
        if data_lines:
            raw = "\n".join(data_lines)
            try:
                events.append((event, json.loads(raw)))
            except ValueError:
                events.append((event, raw))
    return events
