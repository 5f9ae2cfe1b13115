"""What the HTTP providers share: pooled connections (codegen_site.llm.resources), errors mapped
to LLMUnavailable (503) or LLMModelNotFound / LLMUpstreamError (502), whole-JSON calls through
httpx, and token streams read through aiohttp in batches. A subclass gives the wire format."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import aiohttp
import httpx

from codegen_site.llm.config import LLMSection
from codegen_site.llm.errors import LLMError, LLMModelNotFound, LLMUnavailable, LLMUpstreamError
from codegen_site.llm.providers.base import Messages, Provider
from codegen_site.llm.resources import llm_resources
from codegen_site.llm.thinking import Delta, ThinkSplitter

# How long a finished stream's remaining bytes are awaited to keep its connection.
DRAIN_SECONDS = 0.5
# At most this many bytes make one batch: the first batch is kept small (about
# 40 Ollama chunks) so the first tokens go on at once, later ones take more at a
# time, which costs a fast stream fewer writes.
FIRST_BATCH_BYTES = 4096
BATCH_BYTES = 2**16


def error_text(body: bytes) -> str:
    """The message of an error body: a JSON error's own words, else the text (cut at 500)."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        payload = json.loads(text)
    except ValueError:
        return text[:500]
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)[:500]
    return str(error or payload.get("detail") or text)[:500]


class HTTPProvider(Provider):
    """Shared HTTP plumbing: error mapping, timeouts, streaming lines."""

    name = "http"
    label = "LLM server"

    def __init__(self, base_url: str, timeout: float, connect_timeout: float, llm: LLMSection):
        self.host = base_url.rstrip("/")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.llm = llm
        self.probe_timeout = llm.probe_timeout

    async def client(self) -> httpx.AsyncClient:
        return (await llm_resources().pools()).client(self.timeout, self.connect_timeout, self.llm)

    def headers(self) -> dict[str, str]:
        return {}

    def _status_error(self, status: int, body: bytes, model: str | None) -> LLMError:
        message = error_text(body)
        lowered = message.lower()
        if model and (status == 404 or "not found" in lowered or "no such model" in lowered):
            return self.error(LLMModelNotFound,
                              f"Model '{model}' not found at {self.label} ({self.host}): {message}")
        return self.error(LLMUpstreamError,
                          f"{self.label} at {self.host} answered {status}: {message or 'no details'}")

    def _transport_error(self, exc: Exception) -> LLMError:
        if isinstance(exc, (httpx.InvalidURL, aiohttp.InvalidURL)):
            return self.error(LLMUnavailable, f"{self.label} address {self.host!r} is not a valid URL ({exc})")
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, aiohttp.ClientConnectorError,
                            aiohttp.ConnectionTimeoutError)):
            return self.error(LLMUnavailable,
                              f"{self.label} is not reachable at {self.host} ({exc.__class__.__name__})")
        if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
            return self.error(LLMUnavailable, f"{self.label} at {self.host} did not answer within {self.timeout:g} s")
        return self.error(LLMUpstreamError,
                          f"{self.label} at {self.host} broke off the response ({exc.__class__.__name__}: {exc})")

    async def _json(self, method: str, path: str, *, json_body: Any = None, model: str | None = None,
                    timeout: float | None = None) -> Any:
        kwargs: dict[str, Any] = {"json": json_body, "headers": self.headers()}
        if timeout:
            kwargs["timeout"] = httpx.Timeout(timeout, connect=min(self.connect_timeout, timeout))
        try:
            response = await (await self.client()).request(method, self.host + path, **kwargs)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL: an address set with a stray character
            raise self._transport_error(exc) from exc
        if response.status_code >= 400:
            raise self._status_error(response.status_code, response.content, model)
        try:
            return response.json()
        except ValueError as exc:
            raise self.error(LLMUpstreamError, f"{self.label} at {self.host} sent invalid JSON") from exc

    async def probe(self) -> bool:
        try:
            await self.list_models(timeout=self.probe_timeout)
            return True
        except LLMError:
            return False

    async def _post_json(self, path: str, body: dict, model: str | None = None) -> Any:
        """A whole-JSON POST on the streams' own pooled connections: a lookup made before a stream
        (a model's context length) leaves its connection for the stream to reuse."""
        session = (await llm_resources().pools()).session(self.timeout, self.connect_timeout, self.llm)
        try:
            async with session.post(self.host + path, json=body, headers=self.headers()) as response:
                data = await response.read()
                if response.status >= 400:
                    raise self._status_error(response.status, data, model)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._transport_error(exc) from exc
        try:
            return json.loads(data)
        except ValueError as exc:
            raise self.error(LLMUpstreamError, f"{self.label} at {self.host} sent invalid JSON") from exc

    def answer_tokens(self, options: dict) -> int:
        return options.get("max_tokens") or self.llm.max_tokens

    def _bad_stream(self, why: str) -> LLMUpstreamError:
        return self.error(LLMUpstreamError, f"{self.label} at {self.host} {why}")

    @asynccontextmanager
    async def _open_stream(self, path: str, body: dict, model: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST a streaming request; the response's body is read by the caller.
        Leaving the block before the end closes the connection (the upstream
        sees the hang-up and stops generating); after the end it is pooled."""
        session = (await llm_resources().pools()).session(self.timeout, self.connect_timeout, self.llm)
        try:
            async with session.post(self.host + path, json=body, headers=self.headers()) as response:
                if response.status >= 400:
                    raise self._status_error(response.status, await response.read(), model)
                yield response
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._transport_error(exc) from exc

    def _parse_lines(self, lines: list[bytes]) -> list:
        # One json.loads per batch instead of one per line.
        try:
            return json.loads(b"[" + b",".join(lines) + b"]")
        except ValueError:
            raise self._bad_stream("sent data that is not JSON") from None

    async def stream_batches(self, messages: Messages, model: str,
                             options: dict | None = None) -> AsyncIterator[list[Delta]]:
        """Deltas grouped as they arrived: each read takes every complete line
        buffered by then, so a fast model costs one trip through the layers
        above (parsing, the SSE relay, the server's write) per group of tokens,
        and a slow one still gets each token out at once. The wire format is
        the subclass's `chat_body` / `payloads` / `item_deltas`."""
        splitter = ThinkSplitter()
        finished = False
        body = self.chat_body(messages, model, options or {})
        async with self._open_stream(self.chat_path, body, model) as response:
            content = response.content
            tail = bytearray()  # a line not yet ended (grows in place, however long)
            at_end = False
            limit = FIRST_BATCH_BYTES
            while not (finished or at_end):
                data = await content.read(limit)
                limit = BATCH_BYTES
                if not data:
                    at_end = True
                    data = b"\n"  # ends a last line sent without its newline
                tail += data
                if b"\n" not in data:
                    continue
                lines = bytes(tail).split(b"\n")
                tail = bytearray(lines.pop())
                payloads, ended = self.payloads([line for line in lines if line.strip()])
                batch: list[Delta] = []
                for item in self._parse_lines(payloads) if payloads else []:
                    if not isinstance(item, dict):
                        raise self._bad_stream("sent data that is not a JSON object")
                    if item.get("error"):
                        raise self._bad_stream(f"reported an error mid-stream: {error_text(json.dumps(item).encode())}")
                    if self.item_deltas(item, splitter, batch):
                        ended = True
                        break
                if batch:
                    yield batch
                finished = ended
            if finished and not content.at_eof():
                # Read what is left of the body (normally only the end of the chunked
                # encoding) so the connection goes back to the pool, not closed.
                try:
                    async with asyncio.timeout(DRAIN_SECONDS):
                        while await content.readany():
                            pass
                except TimeoutError:
                    pass
        tail = splitter.flush()
        if tail:
            yield tail
        if not finished:
            raise self._bad_stream(f"closed the stream before {self.end_of_stream}")

    # Provided by each wire format.
    chat_path = ""
    end_of_stream = "the end"

    def chat_body(self, messages: Messages, model: str, options: dict) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def payloads(self, lines: list[bytes]) -> tuple[list[bytes], bool]:  # pragma: no cover - abstract
        """The JSON texts among the lines, and whether the end-of-stream marker was seen."""
        raise NotImplementedError

    def item_deltas(self, item: dict, splitter: ThinkSplitter, batch: list[Delta]) -> bool:  # pragma: no cover
        """Append the item's deltas to batch; True when the item ends the stream."""
        raise NotImplementedError
