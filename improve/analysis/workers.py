"""The processes that run a large analysis's checks, one pool per server process.

`AnalysisWorkers` owns the pool: started on first use (or with the server, when
improve.workers_at_start says so: `start_if_configured`), replaced when a worker died or the configured size
changed, closed by `close()` (improve.resources.shutdown). `CheckRun` spreads files over it
in batches of about equal bytes, sent while the files are still being read; a worker that
dies costs no results: the files of the lost batches are analysed again one at a time, so
only a file that crashes alone is reported."""

from __future__ import annotations

import functools
import logging
import math
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from codegen_site.core import lifeline
from improve.analysis import checks
from improve.analysis.checks import CheckLimits
from improve.config import AnalysisSettings, analysis_settings

logger = logging.getLogger(__name__)


def worker_count(settings: AnalysisSettings) -> int:
    return settings.workers or os.cpu_count() or 1


def _context() -> multiprocessing.context.BaseContext:
    """Workers are spawned, not forked: the server has threads (and an event loop) a fork
    would copy mid-state. A spawned worker imports the parent's main module first, so the
    server's (codegen_site.server, run with -m) imports only the standard library at its top."""
    return multiprocessing.get_context("spawn")


class AnalysisWorkers:
    """This process's pool of check workers: explicit start and close, replaced when broken."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._size = 0
        self._lock = threading.Lock()

    def pool(self, size: int) -> ProcessPoolExecutor:
        """The running pool of `size` workers, started now if there is none of that size."""
        with self._lock:
            if self._pool is None or self._size != size:
                if self._pool is not None:
                    self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = ProcessPoolExecutor(max_workers=size, mp_context=_context(),
                                                 initializer=lifeline.watch_parent)
                self._size = size
            return self._pool

    def start(self, size: int) -> None:
        """Have `size` workers start (import radon) while the caller goes on reading files and
        the cache; nothing to do when they run already."""
        with self._lock:
            if self._pool is not None and self._size == size:
                return
        pool = self.pool(size)
        for _ in range(size):
            pool.submit(checks.ready)

    def discard(self, broken: ProcessPoolExecutor) -> None:
        """Forget a pool one of whose workers died (the next use starts a new one)."""
        with self._lock:
            if self._pool is broken:
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)

    def pids(self) -> list[int]:
        """Process ids of the running workers (none before the pool starts)."""
        with self._lock:
            pool = self._pool
        return list(getattr(pool, "_processes", None) or ()) if pool is not None else []

    def close(self) -> None:
        """Stop the workers, waiting for their current batches; a later analysis starts them again."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


@functools.cache
def analysis_workers() -> AnalysisWorkers:
    """This process's workers (the object is made on first call; the processes when used)."""
    return AnalysisWorkers()


def start_if_configured() -> None:
    """At server start, with improve.workers_at_start: the workers start now, so the first
    analysis finds them running instead of waiting for them."""
    settings = analysis_settings()
    if settings.workers_at_start and worker_count(settings) > 1:
        analysis_workers().start(worker_count(settings))


class CheckRun:
    """The checks of one analysis's SourceFiles, handed in (`add`) as they are read: once there
    are improve.parallel_min_files of them (and more than one worker), they go to the worker
    processes in batches at once, so the workers start while the rest is still being read;
    `finish` sends what is left, or checks a small analysis's files here, and waits."""

    def __init__(self, limits: CheckLimits, settings: AnalysisSettings, total_bytes: int):
        self.limits, self.settings = limits, settings
        self.size = worker_count(settings)
        # batches of about equal bytes, several per worker: when the first worker runs out,
        # what is left is a few batches, so both finish together
        self.share = max(1, math.ceil(total_bytes / (self.size * 8)))
        self.count = 0
        self.by_key: dict[str, list] = {}
        self.waiting: list[tuple[str, bytes]] = []
        self.sent: list[tuple[list, object]] = []
        self.owner: AnalysisWorkers | None = None
        self.pool: ProcessPoolExecutor | None = None

    def add(self, items: list) -> None:
        """More SourceFiles to check (a file with the same content as one added before is not
        checked again: it gets that one's result)."""
        for item in items:
            same = self.by_key.get(item.checks_key)
            if same is None:
                self.by_key[item.checks_key] = [item]
                self.waiting.append((item.checks_key, item.source))
            else:
                same.append(item)
        self.count += len(items)
        if self.size > 1 and (self.pool is not None or self.count >= self.settings.parallel_min_files):
            self._send()

    def _send(self) -> None:
        if self.pool is None:
            self.owner = analysis_workers()
            self.pool = self.owner.pool(self.size)
        for batch in _batches(self.waiting, self.share, self.settings.batch_files):
            try:
                future = self.pool.submit(checks.analyse_batch, batch, self.limits)
            except BrokenProcessPool:
                # A worker died (killed, out of memory) since the last analysis or during this
                # one: a new pool takes the batches from here on; the lost ones go again in `finish`.
                self.owner.discard(self.pool)
                self.pool = self.owner.pool(self.size)
                future = self.pool.submit(checks.analyse_batch, batch, self.limits)
            self.sent.append((batch, future))
        self.waiting = []

    def finish(self) -> int:
        """Every added file has its result; returns the workers used (0: nothing to check)."""
        if not self.count:
            return 0
        if self.pool is None:
            for key, source in self.waiting:
                self._give(key, checks.analyse_source(source, self.limits))
            return 1
        self._send()
        lost = []
        for batch, future in self.sent:
            try:
                results = future.result()
            except BrokenProcessPool:
                lost.extend(batch)
                continue
            for key, result in results:
                self._give(key, result)
        if lost:
            # A worker died (a file crashed it, or it was killed): every batch still in the pool is
            # lost with it. Those files go again one at a time, so only a file that crashes alone
            # is reported as such.
            logger.warning("An analysis worker died; %d files are analysed again one by one", len(lost))
            self.owner.discard(self.pool)
            for key, result in _one_by_one(lost, self.limits):
                self._give(key, result)
        return min(self.size, self.count)

    def _give(self, key: str, result: dict) -> None:
        for item in self.by_key[key]:
            item.result = result


def _batches(unique: list[tuple[str, bytes]], share: int, most_files: int) -> list[list[tuple[str, bytes]]]:
    """Largest files first, in batches of about `share` bytes and at most `most_files` files."""
    unique = sorted(unique, key=lambda pair: len(pair[1]), reverse=True)
    batches, batch, size = [], [], 0
    for pair in unique:
        batch.append(pair)
        size += len(pair[1])
        if size >= share or len(batch) >= most_files:
            batches.append(batch)
            batch, size = [], 0
    if batch:
        batches.append(batch)
    return batches


def _one_by_one(batch: list[tuple[str, bytes]], limits: CheckLimits) -> list[tuple[str, dict]]:
    results, single = [], None
    for key, source in batch:
        single = single or ProcessPoolExecutor(max_workers=1, mp_context=_context(),
                                               initializer=lifeline.watch_parent)
        try:
            results.extend(single.submit(checks.analyse_batch, [(key, source)], limits).result())
        except BrokenProcessPool:
            single.shutdown(wait=False)
            single = None
            results.append((key, checks.failed_result(source, "Analysing this file crashed its worker process")))
    if single:
        single.shutdown(wait=False)
    return results
