"""The processes that run a large analysis's checks, one pool per server process.

`AnalysisWorkers` owns the pool: started on first use (or with the server, when
improve.workers_at_start says so: `start_if_configured`), replaced when a worker died or the configured size
changed, closed by `close()` (improve.resources.shutdown). `run_checks` spreads files over it
in batches of about equal bytes; a worker that dies costs no results: the files of the lost
batches are analysed again one at a time, so only a file that crashes alone is reported."""

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


def run_checks(pending: list, limits: CheckLimits, settings: AnalysisSettings) -> int:
    """Analyse these SourceFiles (in worker processes when there are enough); returns the workers used."""
    workers = min(worker_count(settings), len(pending))
    if workers <= 1 or len(pending) < settings.parallel_min_files:
        for item in pending:
            item.result = checks.analyse_source(item.source, limits)
        return 1
    by_key = {}
    for item in pending:
        by_key.setdefault(item.checks_key, []).append(item)
    unique = [(key, items[0].source) for key, items in by_key.items()]
    batches = _batches(unique, workers, settings.batch_files)
    owner = analysis_workers()
    pool = owner.pool(worker_count(settings))
    try:
        futures = [(batch, pool.submit(checks.analyse_batch, batch, limits)) for batch in batches]
    except BrokenProcessPool:
        # A worker died since the last analysis (killed, out of memory): start afresh.
        owner.discard(pool)
        pool = owner.pool(worker_count(settings))
        futures = [(batch, pool.submit(checks.analyse_batch, batch, limits)) for batch in batches]
    lost = []
    for batch, future in futures:
        try:
            results = future.result()
        except BrokenProcessPool:
            lost.extend(batch)
            continue
        for key, result in results:
            for item in by_key[key]:
                item.result = result
    if lost:
        # A worker died (a file crashed it, or it was killed): every batch still in the pool is
        # lost with it. Those files go again one at a time, so only a file that crashes alone
        # is reported as such.
        logger.warning("An analysis worker died; %d files are analysed again one by one", len(lost))
        owner.discard(pool)
        for key, result in _one_by_one(lost, limits):
            for item in by_key[key]:
                item.result = result
    return workers


def _batches(unique: list[tuple[str, bytes]], workers: int, most_files: int) -> list[list[tuple[str, bytes]]]:
    """Largest files first, in batches of about equal bytes (several per worker): the work
    left when the first worker runs out is a few small files, so both finish together."""
    unique = sorted(unique, key=lambda pair: len(pair[1]), reverse=True)
    share = max(1, math.ceil(sum(len(source) for _, source in unique) / (workers * 8)))
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
