"""Each process's watch over the services it shares with the others, in one thread: every
monitor.poll_seconds it reads the saved settings' version (codegen_site.core.config_store: the
database probe, and how a PATCH on another host arrives here), and pings the shared cache and
the queue's Redis when there are such. What it saw is kept in memory for GET /health, which so
answers without touching the database or the cache; a part that stops answering shows as down
until a later round finds it back."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from codegen_site.core import config
from codegen_site.core.sections import section

logger = logging.getLogger(__name__)

LOCAL_CACHES = ("django.core.cache.backends.locmem.LocMemCache", "django.core.cache.backends.dummy.DummyCache")


@dataclass(frozen=True)
class MonitorSettings:
    poll_seconds: float  # [monitor]; 0 turns the thread off


def _probe_database() -> None:
    from codegen_site.core import config_store

    try:
        config_store.refresh()
    finally:
        # Each round connects anew: a broken connection is never reused, and none is open between
        # rounds for a forked queue worker to inherit (its copy would close the parent's session).
        if not connection.in_atomic_block:
            connection.close()


def _probe_cache() -> None:
    from django.core.cache import cache

    cache.get("codegen:monitor")


def _probe_broker(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no answer'}"[:300]


class Monitor:
    def __init__(self) -> None:
        self._down: dict[str, str] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.rounds = 0

    def probes(self) -> dict:
        found = {"database": _probe_database}
        if settings.CACHES["default"]["BACKEND"] not in LOCAL_CACHES:
            found["cache"] = _probe_cache
        broker = config.get_config().get("improve_queue", {}).get("redis_url")
        if broker:
            found["queue broker"] = lambda: _probe_broker(broker)
        return found

    def check(self) -> dict[str, str]:
        """One round of probes; the parts down, each with what it answered."""
        down = {}
        for name, probe in self.probes().items():
            try:
                probe()
            except Exception as exc:  # any failure is "down", with its reason for /health
                down[name] = _short(exc)
        with self._lock:
            for name in set(down) - set(self._down):
                logger.warning("%s is not answering: %s", name, down[name])
            for name in set(self._down) - set(down):
                logger.warning("%s answers again", name)
            self._down = down
            self.rounds += 1
        return down

    def forget(self) -> None:
        """Back to nothing seen down (a test that took a part away)."""
        with self._lock:
            self._down = {}

    def down(self) -> dict[str, str]:
        with self._lock:
            return dict(self._down)

    def start(self) -> None:
        """The probing thread, when monitor.poll_seconds is above 0; the first round runs at once."""
        if not getattr(settings, "PROCESS_MONITOR", True) or section(MonitorSettings, "monitor").poll_seconds <= 0:
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="core-monitor", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                started = time.monotonic()
                try:
                    self.check()
                except Exception:  # never let the thread die: /health would freeze on its last answer
                    logger.exception("Monitor round failed")
                interval = section(MonitorSettings, "monitor").poll_seconds or 1.0
                self._stopping.wait(max(0.0, interval - (time.monotonic() - started)))
        finally:
            connection.close()

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        self._stopping.set()
        if thread is not None:
            thread.join(timeout=timeout)


_monitor = Monitor()


def monitor() -> Monitor:
    return _monitor


def start_in_this_process() -> None:
    """What config.watch_with runs once per process (a forked worker included): a fresh monitor
    (a forked child has the parent's object but not its thread)."""
    global _monitor
    _monitor = Monitor()
    _monitor.start()
