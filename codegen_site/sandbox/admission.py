"""How many runs at once: at most max_concurrent run, up to max_waiting wait, beyond that 429.

The limits are read at every call, so a config change applies without a restart."""

from __future__ import annotations

import concurrent.futures
import threading

from codegen_site.core.errors import ServiceBusy
from codegen_site.sandbox import settings


class SandboxBusy(ServiceBusy):
    """All run slots are busy and the wait queue is full."""


class Limiter:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.active = 0
        self.waiting = 0

    def admit(self) -> None:
        """Reserve a place (active or waiting) or raise SandboxBusy; never blocks."""
        limits = settings.current()
        with self._cond:
            if self.active + self.waiting >= limits.max_concurrent + limits.max_waiting:
                raise SandboxBusy(f"Sandbox busy, try again shortly ({self.active} running, {self.waiting} waiting)")
            self.waiting += 1

    def acquire(self) -> None:
        """Turn an admitted reservation into an active slot, waiting for one if needed."""
        with self._cond:
            while self.active >= settings.current().max_concurrent:
                self._cond.wait(0.5)
            self.waiting -= 1
            self.active += 1

    def cancel(self) -> None:
        with self._cond:
            self.waiting -= 1
            self._cond.notify()

    def release(self) -> None:
        with self._cond:
            self.active -= 1
            self._cond.notify()


limiter = Limiter()

_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def executor() -> concurrent.futures.ThreadPoolExecutor:
    """The threads async runs wait in: one for every admitted run, so queued runs never starve
    the event loop's default pool (sized when first used)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            limits = settings.current()
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=max(4, limits.max_concurrent + limits.max_waiting), thread_name_prefix="sandbox")
        return _executor
