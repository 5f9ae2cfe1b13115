"""Server-sent events: `event: NAME\\ndata: JSON\\n\\n` frames over an async generator.

Under ASGI, Django cancels the response's async iterator when the client
disconnects; generators that own an upstream LLM stream close it in their
`finally`/`async with`, which cancels the upstream request."""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from typing import Any, AsyncIterator

from django.http import StreamingHttpResponse


def sse_frame(event: str, data: Any) -> bytes:
    # A token is a str: encode_basestring is what json.dumps(..., ensure_ascii=False)
    # calls for one, without building an encoder per call.
    payload = (encode_basestring(data) if type(data) is str
               else json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    return f"event: {event}\ndata: {payload}\n\n".encode()


def sse_response(frames: AsyncIterator[bytes], status: int = 200) -> StreamingHttpResponse:
    response = StreamingHttpResponse(frames, content_type="text/event-stream; charset=utf-8", status=status)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # keep reverse proxies from buffering the stream
    return response


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """Split an SSE body into (event, data) pairs; used by tests, benches and the UI's server-side checks."""
    events = []
    for block in text.split("\n\n"):
        event, data_lines = "message", []
        for line in block.splitlines():
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
