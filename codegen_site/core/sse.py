"""Server-sent events: `event: NAME\\ndata: JSON\\n\\n` frames over an async generator.

Under ASGI, Django cancels the response's async iterator when the client
disconnects; generators that own an upstream LLM stream close it in their
`finally`/`async with`, which cancels the upstream request."""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from typing import Any, AsyncIterator

from django.http import StreamingHttpResponse

from codegen_site.core.errors import error_body

# JSON leaves these unescaped when ensure_ascii is off, but Python's
# str.splitlines (and line readers built on it, httpx's among them) breaks lines
# at them, cutting a data field in two. Escaped, they are the same JSON.
_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def _json(data: Any) -> str:
    # A token is a str: encode_basestring is what json.dumps(..., ensure_ascii=False)
    # calls for one, without building an encoder per call.
    payload = (encode_basestring(data) if type(data) is str
               else json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    return payload if payload.isascii() else payload.translate(_LINE_BREAKS)


def sse_frame(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {_json(data)}\n\n".encode()


def sse_error_frame(exc: BaseException, **extra: Any) -> bytes:
    """The `error` event of every stream: the same body as the JSON error, plus its status."""
    status, body = error_body(exc)
    return sse_frame("error", {**body, "status": status, **extra})


def sse_text_frames(items) -> bytes:
    """Frames for many (event, text) items at once, one encode for all: a batch
    of tokens from the LLM layer (anything with .kind and .text)."""
    return "".join([f"event: {item.kind}\ndata: {_json(item.text)}\n\n" for item in items]).encode()


def sse_response(frames: AsyncIterator[bytes], status: int = 200) -> StreamingHttpResponse:
    response = StreamingHttpResponse(frames, content_type="text/event-stream; charset=utf-8", status=status)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # keep reverse proxies from buffering the stream
    return response
