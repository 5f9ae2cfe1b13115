"""Everything the LLM layer keeps for the life of the process, owned by one object
(`llm_resources()`), made at first use and closed in one place:

- connection pools, one set per event loop: an httpx.AsyncClient or aiohttp.ClientSession is
  bound to the loop it first ran on, and asyncio.run or async_to_sync give a call a loop of its
  own. httpx clients make the calls with a whole JSON answer; aiohttp sessions read token streams
  (aiohttp's HTTP parser is C, where httpx's is Python, and a model sends one HTTP chunk per token);
- what the availability probes said (`probes`), the context length each model server gave for
  a model (`windows`, by provider, address and model), and what each server's models can do
  (`model_details`, for llm.models_cache_seconds);
- each model server's load, cap and health (`dispatcher`, codegen_site.llm.endpoints);
- the models run in-process (llama.cpp's, the ONNX embedding model) and the one thread llama.cpp
  runs on.

A loop's pools close as the loop ends: asyncio.run, async_to_sync and test runners close a loop's
async generators first, and a suspended one here then closes its pools while the loop can still
run their clean-up. The server closes what is left at shutdown with `aclose()` (codegen_site.asgi);
a test starts from nothing with `reset()`."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncGenerator, Callable, Hashable, TypeVar

import aiohttp
import httpx

from codegen_site.core.config import on_reload
from codegen_site.llm.config import LLMSection
from codegen_site.llm.endpoints import Dispatcher

T = TypeVar("T")

# Bytes a token stream buffers ahead of its consumer before reading pauses.
STREAM_BUFFER = 2**16


class LoopPools:
    """One event loop's connection pools, keyed by the settings they were made with."""

    def __init__(self) -> None:
        self.clients: dict[tuple, httpx.AsyncClient] = {}
        self.sessions: dict[tuple, aiohttp.ClientSession] = {}
        self.closer = self._close_with_the_loop()

    async def _close_with_the_loop(self) -> AsyncGenerator[None, None]:
        """Started once on the loop and left suspended at its yield: the loop closes it as it
        ends (or `aclose()` does), which closes the pools."""
        try:
            yield
        finally:
            for session in list(self.sessions.values()):
                await session.close()
            for client in list(self.clients.values()):
                await client.aclose()

    @property
    def closed(self) -> bool:
        return all(session.closed for session in self.sessions.values()) and all(
            client.is_closed for client in self.clients.values())

    def client(self, timeout: float, connect_timeout: float, llm: LLMSection) -> httpx.AsyncClient:
        key = (timeout, connect_timeout, llm.max_connections, llm.max_keepalive_connections)
        client = self.clients.get(key)
        if client is None or client.is_closed:
            client = self.clients[key] = httpx.AsyncClient(
                timeout=httpx.Timeout(timeout, connect=connect_timeout),
                limits=httpx.Limits(max_connections=llm.max_connections,
                                    max_keepalive_connections=llm.max_keepalive_connections),
                # Local model servers: never route them through a proxy from the environment.
                trust_env=False,
            )
        return client

    def session(self, timeout: float, connect_timeout: float, llm: LLMSection) -> aiohttp.ClientSession:
        key = (timeout, connect_timeout, llm.max_connections)
        session = self.sessions.get(key)
        if session is None or session.closed:
            session = self.sessions[key] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=llm.max_connections, limit_per_host=0),
                # connect: waiting for a pooled connection and opening one; sock_read: between bytes.
                timeout=aiohttp.ClientTimeout(total=None, connect=timeout + connect_timeout,
                                              sock_connect=connect_timeout, sock_read=timeout),
                trust_env=False,
                read_bufsize=STREAM_BUFFER,
            )
        return session


class ProbeCache:
    """Whether a provider (name, address) answered its last probe, reused while fresh. Callers
    that ask while a probe runs wait for it rather than start their own: a burst of probes can
    time itself out."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str, str], tuple[float, bool]] = {}
        self._in_flight: dict[tuple[str, str], asyncio.Future] = {}

    def clear(self) -> None:
        self._answers.clear()

    async def available(self, provider, max_age: float) -> bool:
        key = (provider.name, provider.host)
        answer = self._answers.get(key)
        if answer and time.monotonic() - answer[0] < max_age:
            return answer[1]
        in_flight = self._in_flight.get(key)
        # A future belongs to its event loop (async_to_sync may run each call on a new one).
        if in_flight is None or in_flight.get_loop() is not asyncio.get_running_loop():
            in_flight = self._in_flight[key] = asyncio.ensure_future(self._probe(provider, key))
        # Shielded: a caller that goes away does not cancel the others' probe.
        return await asyncio.shield(in_flight)

    async def _probe(self, provider, key: tuple[str, str]) -> bool:
        try:
            available = await provider.probe()
            self._answers[key] = (time.monotonic(), available)
            return available
        finally:
            if self._in_flight.get(key) is asyncio.current_task():
                del self._in_flight[key]


class LLMResources:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[asyncio.AbstractEventLoop, LoopPools] = {}
        self._models: dict[str, tuple[Hashable, Any]] = {}
        self._loading = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._llama_thread: ThreadPoolExecutor | None = None
        self.probes = ProbeCache()
        # (provider, address, model) -> the model's context length as its server gave it (None: it gave none).
        self.windows: dict[tuple[str, str, str], int | None] = {}
        # (provider, address) -> (when, the models with what they can do), reused for a few seconds.
        self.model_details: dict[tuple[str, str], tuple[float, list]] = {}
        # Every provider's servers: their loads, caps and health (codegen_site.llm.endpoints).
        self.dispatcher = Dispatcher()
        # A changed config may name other addresses or models: what was learnt about the old ones goes.
        on_reload(lambda previous, current: self.forget())

    def forget(self) -> None:
        """Forget what the servers said (probes, context lengths, model lists); they are asked again."""
        self.probes.clear()
        self.windows.clear()
        self.model_details.clear()
        self.dispatcher.forget()

    # --- connection pools ----------------------------------------------------------
    async def pools(self) -> LoopPools:
        """The running loop's pools (made, and tied to the loop's end, at its first call)."""
        loop = asyncio.get_running_loop()
        pools = self._pools.get(loop)
        if pools is None:
            pools = LoopPools()
            with self._lock:
                for ended in [other for other in self._pools if other.is_closed()]:
                    del self._pools[ended]  # closed by their closer as the loop ended
                self._pools[loop] = pools
            await anext(pools.closer)  # registers it with the loop
        return pools

    def pools_of(self, loop: asyncio.AbstractEventLoop) -> LoopPools | None:
        return self._pools.get(loop)

    def loops(self) -> list[asyncio.AbstractEventLoop]:
        """The loops that have pools here (an ended one until the next new loop sweeps it)."""
        return list(self._pools)

    async def close_loop_pools(self) -> None:
        """Close the running loop's pools now, before the loop ends."""
        with self._lock:
            pools = self._pools.pop(asyncio.get_running_loop(), None)
        if pools is not None:
            await pools.closer.aclose()

    # --- models run in-process ------------------------------------------------------
    def model(self, name: str, source: Hashable, load: Callable[[], T]) -> T:
        """The model `name`, loaded by `load()` at its first use and again when `source` (what it
        is loaded from) changes; one load at a time, so each happens once."""
        with self._loading:
            loaded = self._models.get(name)
            if loaded is None or loaded[0] != source:
                loaded = self._models[name] = (source, load())
            return loaded[1]

    def loaded(self, name: str) -> tuple[Hashable, Any] | None:
        """(source, model) of the model `name` if it is loaded, without waiting for a load under way."""
        return self._models.get(name)

    def lock(self, name: str) -> threading.Lock:
        """The process's one lock called `name` (what serialises a model's runs)."""
        with self._lock:
            return self._locks.setdefault(name, threading.Lock())

    def llama_thread(self) -> ThreadPoolExecutor:
        """The one thread llama.cpp generates on: it serialises the calls (a llama.cpp context is
        not thread-safe) and keeps them off the event loop."""
        with self._lock:
            if self._llama_thread is None:
                self._llama_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedded-llm")
            return self._llama_thread

    # --- shutdown --------------------------------------------------------------------
    async def aclose(self) -> None:
        """Server shutdown, on its loop: that loop's pools, the model thread, the models. Pools of
        other loops close as those loops end."""
        await self.close_loop_pools()
        self._release()

    def close(self) -> None:
        """With no loop running in this thread (a script's end, a test's reset): the pools of
        every idle loop are closed on it, then the model thread and the models go."""
        with self._lock:
            pools, self._pools = self._pools, {}
        for loop, loop_pools in pools.items():
            if not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(loop_pools.closer.aclose())
        self._release()

    def reset(self) -> None:
        """For tests: everything closed and forgotten; the next use starts anew."""
        self.close()
        self.forget()

    def _release(self) -> None:
        with self._lock:
            thread, self._llama_thread = self._llama_thread, None
            self._models.clear()
        if thread is not None:
            thread.shutdown(wait=False, cancel_futures=True)
        self.probes.clear()


_resources = LLMResources()


def llm_resources() -> LLMResources:
    """The process's one LLMResources."""
    return _resources
