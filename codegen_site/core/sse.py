"""Server-sent events: the one place where streams become bytes.

Every stream in the project is an async generator of `(event, data)`;
`sse_stream` frames it as `event: NAME\\ndata: JSON\\n\\n`, ends it with an
`error` event when it raises, and `sse_response` sends it. Under ASGI, Django
cancels the response's async iterator when the client disconnects; `sse_stream`
then closes the event generator, whose `finally`/`async with` blocks close any
upstream LLM stream, which cancels the upstream request."""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing
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


def error_event(exc: BaseException, **extra: Any) -> tuple[str, dict]:
    """The `error` event of every stream: the same body as the JSON error, plus its
    status. A stream that handles an error itself yields this to add context."""
    status, body = error_body(exc)
    return "error", {**body, "status": status, **extra}


def sse_error_frame(exc: BaseException, **extra: Any) -> bytes:
    return sse_frame(*error_event(exc, **extra))


# An event whose data is a batch of tokens from the LLM layer (anything with
# .kind and .text): each token is still its own SSE event, named by its kind,
# and the batch is framed in one encode and sent in one write.
TOKENS = "tokens"


def sse_text_frames(items) -> bytes:
    return "".join([f"event: {item.kind}\ndata: {_json(item.text)}\n\n" for item in items]).encode()


async def _let_server_write() -> None:
    """Give the event loop two turns. Daphne (Twisted) writes a response chunk to
    the socket only when the loop next polls it for writing, and reading the next
    batch from a full buffer never returns to the loop: without this, a fast
    stream's first chunk waited until the next batch had been parsed too."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def sse_stream(events: AsyncIterator[tuple[str, Any]]) -> AsyncIterator[bytes]:
    """The response body for a generator of (event, data): one chunk per event
    (a TOKENS batch is one chunk too); an exception becomes the last event,
    `error`. Closing this closes the event generator."""
    try:
        async with aclosing(events) as source:
            async for event, data in source:
                yield sse_text_frames(data) if event == TOKENS else sse_frame(event, data)
                await _let_server_write()
    except Exception as exc:
        yield sse_error_frame(exc)


def sse_response(frames: AsyncIterator[bytes], status: int = 200) -> StreamingHttpResponse:
    response = StreamingHttpResponse(frames, content_type="text/event-stream; charset=utf-8", status=status)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # keep reverse proxies from buffering the stream
    return response
