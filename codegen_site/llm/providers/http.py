"""What the HTTP providers share: pooled connections (codegen_site.llm.resources), errors mapped
to LLMUnavailable (503) or LLMModelNotFound / LLMUpstreamError (502), whole-JSON calls through
httpx, and token streams read through aiohttp in batches. A subclass gives the wire format."""

from __future__ import annotations

import asyncio
import copy
import json
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import aiohttp
import httpx

from codegen_site.llm.config import LLMSection
from codegen_site.llm.endpoints import MAX_REFUSALS, Endpoint, Slot, busy, servers
from codegen_site.llm.errors import (
    LLMError,
    LLMModelNotFound,
    LLMServerBusy,
    LLMUnavailable,
    LLMUnreachable,
    LLMUpstreamError,
)
from codegen_site.llm.providers.base import Messages, ModelInfo, Provider
from codegen_site.llm.resources import llm_resources
from codegen_site.llm.thinking import Delta, ThinkSplitter

# How long a finished stream's remaining bytes are awaited to keep its connection.
DRAIN_SECONDS = 0.5
# At most this many bytes make one batch: the first batch is kept small (about
# 40 Ollama chunks) so the first tokens go on at once, later ones take more at a
# time, which costs a fast stream fewer writes.
FIRST_BATCH_BYTES = 4096
BATCH_BYTES = 2**16

T = TypeVar("T")


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
    """Shared HTTP plumbing: error mapping, timeouts, streaming lines; the provider's servers
    (codegen_site.llm.endpoints): each model request takes a slot on the least busy one, a list
    or a probe asks every one. `host` is the provider's own address, or the one server of a
    copy made by `at(url)`."""

    name = "http"
    label = "LLM server"
    # Whether a server of this kind may say how many requests it runs at once (`parallelism`).
    reports_parallelism = False

    def __init__(self, base_url: str, timeout: float, connect_timeout: float, llm: LLMSection):
        self.host = base_url.rstrip("/")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.llm = llm
        self.probe_timeout = llm.probe_timeout
        self.endpoints: tuple[Endpoint, ...] = servers(self.name, self.host, llm)

    def at(self, url: str) -> "HTTPProvider":
        """This provider on one of its servers only."""
        one = copy.copy(self)
        one.host = url
        one.endpoints = tuple(endpoint for endpoint in self.endpoints if endpoint.url == url) or (
            Endpoint(url, self.llm.max_concurrent),)
        return one

    async def parallelism(self) -> int | None:
        """The requests the server says it runs at once; None when it does not say."""
        return None

    # --- the servers -------------------------------------------------------------------
    async def on_a_server(self, model: str, call: Callable[["HTTPProvider"], Awaitable[T]]) -> T:
        """`call` on the least busy server with room for `model`, holding a slot while it runs: a
        server that refuses the connection is marked down and the next one tried; one that answers
        busy is tried again when there is room."""
        dispatcher = llm_resources().dispatcher
        refusals = 0
        while True:
            slot = await dispatcher.acquire(self, model, first=refusals > 0)
            try:
                result = await call(self.at(slot.endpoint.url))
            except LLMUnreachable as exc:
                if not self._next_server(slot, exc):
                    raise
                continue
            except LLMServerBusy as exc:
                refusals = self._refused(slot, model, refusals, exc)
                continue
            finally:
                slot.release()
            slot.answered(self.llm.max_concurrent_ceiling)
            return result

    def _next_server(self, slot: Slot, exc: LLMError) -> bool:
        """Mark the slot's server down; whether another may be tried."""
        slot.down(exc.detail, self.llm.endpoint_retry_seconds)
        return not slot.lone

    def _refused(self, slot: Slot, model: str, refusals: int, exc: LLMError) -> int:
        slot.refused()
        if refusals + 1 >= MAX_REFUSALS:
            raise busy(self, model, f"the server refused it {MAX_REFUSALS} times ({exc.detail})") from exc
        return refusals + 1

    async def _each_server(self, call: Callable[["HTTPProvider"], Awaitable[T]]) -> list[T]:
        """`call` on every server that is up, at once; what the ones that answered gave (the first
        error when none did)."""
        up = llm_resources().dispatcher.up(self)
        results = await asyncio.gather(*(call(self.at(endpoint.url)) for endpoint in up), return_exceptions=True)
        answers = [result for result in results if not isinstance(result, BaseException)]
        if not answers:
            raise next(result for result in results if isinstance(result, BaseException))
        return answers

    async def list_models(self, timeout: float | None = None) -> list[str]:
        """The models of every server that answers (the provider's address alone: its list)."""
        if len(self.endpoints) == 1:
            return await self.listed(timeout)
        lists = await self._each_server(lambda one: one.listed(timeout))
        return list(dict.fromkeys(name for names in lists for name in names))

    async def model_details(self) -> list[ModelInfo]:
        if len(self.endpoints) == 1:
            return await self.described()
        lists = await self._each_server(lambda one: one.described())
        found: dict[str, ModelInfo] = {}
        for models in lists:
            for model in models:
                if found.get(model.name) is None or found[model.name].capabilities is None:
                    found[model.name] = model
        return list(found.values())

    async def probe(self) -> bool:
        """Whether any server answers; with several, each one's answer marks it up or down."""
        if len(self.endpoints) == 1:
            return await self.probe_here()
        dispatcher = llm_resources().dispatcher
        answers = await asyncio.gather(*(self.at(endpoint.url).probe_here() for endpoint in self.endpoints))
        for endpoint, answered in zip(self.endpoints, answers, strict=True):
            dispatcher.mark((self.name, endpoint.url), up=answered, why="no answer to the health probe",
                            seconds=self.llm.endpoint_retry_seconds)
        return any(answers)

    async def embed(self, texts: list[str], model: str) -> list[list[float]]:
        return await self.on_a_server(model, lambda one: one.embed_here(texts, model))

    # Provided by each wire format.
    async def listed(self, timeout: float | None = None) -> list[str]:  # pragma: no cover - abstract
        """This server's model names."""
        raise NotImplementedError

    async def described(self) -> list[ModelInfo]:
        """This server's models with what it says they can do."""
        return [ModelInfo(name) for name in await self.listed()]

    async def embed_here(self, texts: list[str], model: str) -> list[list[float]]:  # pragma: no cover - abstract
        raise NotImplementedError

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
        if status == 429 or (status == 503 and "busy" in lowered):
            return self.error(LLMServerBusy, f"{self.label} at {self.host} is busy ({status}: {message})")
        return self.error(LLMUpstreamError,
                          f"{self.label} at {self.host} answered {status}: {message or 'no details'}")

    def _transport_error(self, exc: Exception) -> LLMError:
        if isinstance(exc, (httpx.InvalidURL, aiohttp.InvalidURL)):
            return self.error(LLMUnavailable, f"{self.label} address {self.host!r} is not a valid URL ({exc})")
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, aiohttp.ClientConnectorError,
                            aiohttp.ConnectionTimeoutError)):
            return self.error(LLMUnreachable,
                              f"{self.label} is not reachable at {self.host} ({exc.__class__.__name__})")
        if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
            return self.error(LLMUnavailable, f"{self.label} at {self.host} did not answer within {self.timeout:g} s")
        return self.error(LLMUpstreamError,
                          f"{self.label} at {self.host} broke off the response ({exc.__class__.__name__}: {exc})")

    async def _json(self, method: str, path: str, *, json_body: Any = None, model: str | None = None,
                    timeout: float | None = None, base: str | None = None) -> Any:
        """A whole-JSON call to `path` under the address (or under `base`, another root on the server)."""
        kwargs: dict[str, Any] = {"json": json_body, "headers": self.headers()}
        if timeout:
            kwargs["timeout"] = httpx.Timeout(timeout, connect=min(self.connect_timeout, timeout))
        try:
            response = await (await self.client()).request(method, (base or self.host) + path, **kwargs)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL: an address set with a stray character
            raise self._transport_error(exc) from exc
        if response.status_code >= 400:
            raise self._status_error(response.status_code, response.content, model)
        try:
            return response.json()
        except ValueError as exc:
            raise self.error(LLMUpstreamError, f"{self.label} at {self.host} sent invalid JSON") from exc

    async def probe_here(self) -> bool:
        try:
            await self.listed(timeout=self.probe_timeout)
            return True
        except LLMError:
            return False

    async def _post_json(self, path: str, body: dict | None, model: str | None = None, *, method: str = "POST",
                         base: str | None = None) -> Any:
        """A whole-JSON call on the streams' own pooled connections: a lookup made before a stream
        (a model's context length, a server's parallelism) leaves its connection for the stream to reuse."""
        session = (await llm_resources().pools()).session(self.timeout, self.connect_timeout, self.llm)
        try:
            async with session.request(method, (base or self.host) + path, json=body,
                                       headers=self.headers()) as response:
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
        """The stream from the least busy server with room (as `on_a_server`, until a first
        delta: a server that fails after it cannot be swapped)."""
        dispatcher = llm_resources().dispatcher
        refusals = 0
        while True:
            slot = await dispatcher.acquire(self, model, first=refusals > 0)
            sent = False
            try:
                async for batch in self.at(slot.endpoint.url).stream_here(messages, model, options):
                    sent = True
                    yield batch
            except LLMUnreachable as exc:
                if sent or not self._next_server(slot, exc):
                    raise
                continue
            except LLMServerBusy as exc:
                if sent:
                    raise
                refusals = self._refused(slot, model, refusals, exc)
                continue
            finally:
                slot.release()
            slot.answered(self.llm.max_concurrent_ceiling)
            return

    async def stream_here(self, messages: Messages, model: str,
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
