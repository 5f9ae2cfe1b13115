"""Several model servers per provider, and how many requests each is sent at once.

A provider's servers (`servers()`): its own address (ollama.host, openai_compatible.base_url)
and the entries of llm.endpoints naming that provider. Each server takes at most a number of
requests per model at once (its cap):

- the setting (the entry's model_max_concurrent[model], its max_concurrent, else
  llm.max_concurrent) when it is above 0, held under llm.max_concurrent_ceiling;
- with 0, the server's own: the parallelism it reports (llama.cpp's /props total_slots), else
  what it accepts: the cap starts at the ceiling, drops below the load at which the server
  refused a request as busy (Ollama's 503 "server busy", a 429), and climbs back by one after
  a cap's worth of answered requests.

A request goes to the least busy server that is up and has room (in-flight ÷ cap, then its
whole load); when none has room it waits its turn in one first-come queue (llm.max_waiting
places, llm.queue_timeout seconds), and a freed slot goes to the first waiter it suits. A
server that refused a connection is skipped for llm.endpoint_retry_seconds (and marked up or
down by every health probe); a provider with one server always tries it, as before there were
several. None up: 503; queue full or the wait over: 429.

The state is the process's (one Dispatcher in codegen_site.llm.resources), shared by every
event loop: counts change under a lock, and a waiter is woken on its own loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from codegen_site.llm.config import LLMSection
from codegen_site.llm.errors import LLMBusy, LLMError, LLMUnavailable

# A request refused as busy this many times in a row is answered 429 rather than queued again.
MAX_REFUSALS = 5


@dataclass(frozen=True)
class Endpoint:
    """One model server of a provider, as the settings give it."""

    url: str
    max_concurrent: int                              # per model; 0: the server's own
    models: tuple[str, ...] = ()                     # empty: any model
    model_max_concurrent: dict[str, int] = field(default_factory=dict, hash=False, compare=False)

    def serves(self, model: str) -> bool:
        return not self.models or model in self.models

    def cap(self, model: str) -> int:
        return self.model_max_concurrent.get(model, self.max_concurrent)


def servers(provider: str, address: str, llm: LLMSection) -> tuple[Endpoint, ...]:
    """The provider's model servers: its own address first (an llm.endpoints entry with the same
    URL sets its caps), then the other entries naming the provider."""
    address = address.rstrip("/")
    entries = {entry.url.rstrip("/"): entry for entry in llm.endpoints if entry.provider == provider}

    def endpoint(url: str) -> Endpoint:
        entry = entries.get(url)
        if entry is None:
            return Endpoint(url, llm.max_concurrent)
        return Endpoint(url, llm.max_concurrent if entry.max_concurrent is None else entry.max_concurrent,
                        tuple(entry.models), dict(entry.model_max_concurrent))

    return (endpoint(address), *(endpoint(url) for url in entries if url != address))


class ServerState:
    """What is known of one server: its load per model, its learnt caps, whether it is up."""

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self.total = 0
        self.learnt: dict[str, int] = {}
        self.answered: dict[str, int] = {}
        self.down_until = 0.0
        self.why = ""
        self.reported: int | None = None
        self.asked = False  # whether the server answered (or failed) the parallelism lookup
        self.lookup: asyncio.Future | None = None

    def forget(self) -> None:
        self.learnt.clear()
        self.answered.clear()
        self.down_until = 0.0
        self.reported = None
        self.asked = False
        self.lookup = None


@dataclass
class Waiter:
    provider: object
    model: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future


class Slot:
    """A request's place on one server; released when the request ends."""

    def __init__(self, dispatcher: "Dispatcher", key: tuple[str, str], endpoint: Endpoint, state: ServerState,
                 model: str, lone: bool):
        self.dispatcher = dispatcher
        self.key = key
        self.endpoint = endpoint
        self.state = state
        self.model = model
        self.lone = lone  # the provider's only server
        self.released = False

    def release(self) -> None:
        self.dispatcher._release(self)

    def down(self, why: str, seconds: float) -> None:
        self.dispatcher.mark(self.key, up=False, why=why, seconds=seconds)

    def refused(self) -> None:
        """The server said it is busy: a cap that follows the server drops below this load."""
        with self.dispatcher._lock:
            if self.endpoint.cap(self.model) <= 0 and self.state.reported is None:
                self.state.learnt[self.model] = max(1, self.state.in_flight.get(self.model, 1) - 1)
                self.state.answered[self.model] = 0

    def answered(self, ceiling: int) -> None:
        """An answer: a learnt cap climbs back by one after a cap's worth of them."""
        with self.dispatcher._lock:
            learnt = self.state.learnt.get(self.model)
            if learnt is None or learnt >= ceiling:
                return
            count = self.state.answered.get(self.model, 0) + 1
            if count >= learnt:
                self.state.learnt[self.model] = learnt + 1
                count = 0
            self.state.answered[self.model] = count


class Dispatcher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str], ServerState] = {}
        self._waiting: deque[Waiter] = deque()

    def forget(self) -> None:
        """Health marks, learnt caps and reported parallelism go (a changed config); loads stay."""
        with self._lock:
            for state in self._states.values():
                state.forget()

    def state(self, provider_name: str, url: str) -> ServerState:
        with self._lock:
            return self._states.setdefault((provider_name, url), ServerState())

    def mark(self, key: tuple[str, str], *, up: bool, why: str = "", seconds: float = 0.0) -> None:
        with self._lock:
            state = self._states.setdefault(key, ServerState())
            state.down_until = 0.0 if up else time.monotonic() + seconds
            state.why = why
            if up:
                self._dispatch()

    def up(self, provider) -> list[Endpoint]:
        """The provider's servers not marked down (all of them when every one is)."""
        now = time.monotonic()
        with self._lock:
            alive = [endpoint for endpoint in provider.endpoints
                     if self._states.get((provider.name, endpoint.url), ServerState()).down_until <= now]
        return alive or list(provider.endpoints)

    def preferred(self, provider, model: str | None = None) -> Endpoint:
        """The least busy server that is up, for a lookup that takes no slot."""
        with self._lock:
            found = self._pick(provider, model or "", ignore_caps=True)
        return found[0] if isinstance(found, tuple) else provider.endpoints[0]

    # --- taking and giving back slots --------------------------------------------------------
    def _cap(self, endpoint: Endpoint, state: ServerState, model: str, ceiling: int) -> int:
        configured = endpoint.cap(model)
        if configured > 0:
            return min(configured, ceiling)
        if state.reported:
            return min(state.reported, ceiling)
        return state.learnt.get(model, ceiling)

    def _pick(self, provider, model: str, ignore_caps: bool = False):
        """(endpoint, state) with room, None when every server that is up is full, or the list of
        down servers' (url, why) when none is up. Called under the lock."""
        now = time.monotonic()
        candidates = [endpoint for endpoint in provider.endpoints if endpoint.serves(model)] or list(provider.endpoints)
        states = [(endpoint, self._states.setdefault((provider.name, endpoint.url), ServerState()))
                  for endpoint in candidates]
        alive = [(endpoint, state) for endpoint, state in states if state.down_until <= now]
        if not alive:
            if len(provider.endpoints) > 1:
                return [(endpoint.url, state.why) for endpoint, state in states]
            alive = states  # a lone server is always tried
        ceiling = provider.llm.max_concurrent_ceiling
        best, best_rank = None, None
        for endpoint, state in alive:
            cap = self._cap(endpoint, state, model, ceiling)
            load = state.in_flight.get(model, 0)
            if load >= cap and not ignore_caps:
                continue
            rank = (load / cap, state.total)
            if best_rank is None or rank < best_rank:
                best, best_rank = (endpoint, state), rank
        return best

    def _take(self, provider, model: str, endpoint: Endpoint, state: ServerState) -> Slot:
        state.in_flight[model] = state.in_flight.get(model, 0) + 1
        state.total += 1
        return Slot(self, (provider.name, endpoint.url), endpoint, state, model, len(provider.endpoints) == 1)

    async def acquire(self, provider, model: str, *, first: bool = False) -> Slot:
        """A slot on the provider's least busy server for `model`, waiting for one in turn
        (`first`: at the head of the queue, for a request the server refused as busy)."""
        await self._ask_parallelism(provider)
        llm = provider.llm
        loop = asyncio.get_running_loop()
        with self._lock:
            if first or not self._waiting:
                found = self._pick(provider, model)
                if isinstance(found, tuple):
                    return self._take(provider, model, *found)
                if isinstance(found, list):
                    raise all_down(provider, found)
            if len(self._waiting) >= llm.max_waiting:
                raise busy(provider, model, f"{len(self._waiting)} requests already wait (llm.max_waiting)")
            waiter = Waiter(provider, model, loop, loop.create_future())
            (self._waiting.appendleft if first else self._waiting.append)(waiter)
            # The ones ahead may wait for other servers or models: this one may have room at once.
            self._dispatch()
        try:
            async with asyncio.timeout(llm.queue_timeout):
                return await waiter.future
        except TimeoutError:
            raise busy(provider, model, f"none had room within {llm.queue_timeout:g} s (llm.queue_timeout)") from None
        finally:
            with self._lock:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)

    def _release(self, slot: Slot) -> None:
        with self._lock:
            if slot.released:
                return
            slot.released = True
            slot.state.in_flight[slot.model] -= 1
            slot.state.total -= 1
            self._dispatch()

    def _dispatch(self) -> None:
        """Hand freed room to the waiters, first come first served; one whose servers are all
        down gets the 503. Called under the lock."""
        for waiter in list(self._waiting):
            found = self._pick(waiter.provider, waiter.model)
            if found is None:
                continue
            self._waiting.remove(waiter)
            outcome = (self._take(waiter.provider, waiter.model, *found) if isinstance(found, tuple)
                       else all_down(waiter.provider, found))
            try:
                waiter.loop.call_soon_threadsafe(_deliver, waiter.future, outcome)
            except RuntimeError:  # the waiter's loop has ended
                if isinstance(outcome, Slot):
                    outcome.state.in_flight[outcome.model] -= 1
                    outcome.state.total -= 1

    async def _ask_parallelism(self, provider) -> None:
        """A server whose cap follows it is asked once for the parallelism it reports; requests that
        come meanwhile wait for the answer (one of another event loop goes by the ceiling)."""
        if not provider.reports_parallelism:
            return
        loop = asyncio.get_running_loop()
        for endpoint in provider.endpoints:
            state = self.state(provider.name, endpoint.url)
            if endpoint.max_concurrent > 0 or state.asked:
                continue
            if state.lookup is None or (state.lookup.get_loop() is not loop and state.lookup.done()):
                state.lookup = asyncio.ensure_future(self._lookup(provider.at(endpoint.url), state))
            if state.lookup.get_loop() is loop:
                await asyncio.shield(state.lookup)

    async def _lookup(self, server, state: ServerState) -> None:
        try:
            reported = await server.parallelism()
        except LLMError:  # advice only: without it the cap follows what the server accepts
            reported = None
        with self._lock:
            state.reported = reported
            state.asked = True


def _deliver(future: asyncio.Future, outcome) -> None:
    if future.done():  # the waiter gave up meanwhile: the slot goes back
        if isinstance(outcome, Slot):
            outcome.release()
        return
    if isinstance(outcome, Slot):
        future.set_result(outcome)
    else:
        future.set_exception(outcome)


def all_down(provider, down: list[tuple[str, str]]) -> LLMUnavailable:
    listed = "; ".join(f"{url} ({why or 'down'})" for url, why in down)
    return provider.error(LLMUnavailable, f"{provider.label} is not reachable at any of its {len(down)} servers: "
                                          f"{listed}")


def busy(provider, model: str, why: str) -> LLMBusy:
    count = len(provider.endpoints)
    where = "its server" if count == 1 else f"each of its {count} servers"
    return provider.error(LLMBusy, f"{provider.label} has no room for another request to {model}: {where} is at "
                                   f"its cap and {why}. Try again shortly.")
