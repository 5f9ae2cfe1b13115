"""The rule-based part of an analysis: find the files, reuse cached per-file results, run
the checks of the rest in worker processes and ruff once over them, then add the
cross-file duplication pass and the totals.

A file's check result is cached under (checks version, content hash) and its lint
result under (lint version, path + content hash); the versions cover every setting
that changes a result, so an unchanged tree re-runs nothing and one edited file
costs one file."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import version as package_version
from pathlib import Path

from django.conf import settings as django_settings
from django.db import connection, transaction
from django.utils import timezone

from codegen_site.core import workspace
from codegen_site.core.config import get_config
from codegen_site.core.errors import BadInput, PayloadTooLarge, ServiceBusy, ServiceError
from improve.analysis import checks, lint
from improve.analysis.duplication import duplicate_blocks
from improve.models import FileAnalysis

logger = logging.getLogger(__name__)

# Bump when the checks change what they report, so old cache entries stop matching.
CHECKS_REVISION = 2
SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}
# Keys per query when reading the cache (under SQLite's variable limit).
CACHE_CHUNK = 500

_pool: ProcessPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()
_running = 0
_running_lock = threading.Lock()


def analysis_settings() -> dict:
    return get_config()["improve"]


def scratch_root() -> Path:
    """Where the linter's copies are staged: the product's data dir, which no client can reach."""
    path = Path(django_settings.DATA_DIR) / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_limits(settings: dict, maintainability: bool) -> dict:
    keys = ("complexity_medium", "complexity_high", "complexity_critical", "max_function_lines",
            "max_parameters", "max_class_methods", "duplicate_min_lines", "maintainability_min")
    return {**{key: settings[key] for key in keys}, "maintainability": maintainability}


def _digest(*parts: bytes | str, size: int = 16) -> str:
    digest = hashlib.blake2b(digest_size=size)
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()


@lru_cache(maxsize=1)
def _radon_version() -> str:
    return package_version("radon")


def checks_version(limits: dict) -> str:
    return _digest(str(CHECKS_REVISION), sys.version, _radon_version(), json.dumps(limits, sort_keys=True),
                   size=8)[:15]


def lint_version(settings: dict) -> str:
    return _digest(lint.ruff_version(), json.dumps(lint.command(settings)[1:]), size=8)[:15]


def worker_count(settings: dict) -> int:
    return settings["workers"] or os.cpu_count() or 1


def _context() -> multiprocessing.context.BaseContext:
    """Workers are spawned, not forked: the server has threads (and an event loop) a fork
    would copy mid-state. A spawned worker imports the parent's main module unless that is
    a package's __main__, so the server runs as `python -m daphne`: started through the
    daphne script, every worker would import the server's whole command line stack first."""
    return multiprocessing.get_context("spawn")


def worker_pool(size: int) -> ProcessPoolExecutor:
    """One pool per server process, started on first use."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size != size:
            if _pool is not None:
                _pool.shutdown(wait=False, cancel_futures=True)
            _pool = ProcessPoolExecutor(max_workers=size, mp_context=_context())
            _pool_size = size
        return _pool


def start_with_server() -> None:
    """At server start (improve.workers_at_start): the workers start now, so the first
    analysis finds them running instead of waiting for them."""
    settings = analysis_settings()
    if settings["workers_at_start"] and worker_count(settings) > 1:
        _start_workers(settings)


def _start_workers(settings: dict) -> None:
    """Have the workers start (import radon) while this process reads files and the cache."""
    size = worker_count(settings)
    if _pool is not None and _pool_size == size:
        return
    pool = worker_pool(size)
    for _ in range(size):
        pool.submit(checks.ready)


def stop_workers() -> None:
    """Stop the worker processes (they start again on the next large analysis)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True)


def _drop_pool(broken: ProcessPoolExecutor) -> None:
    global _pool
    with _pool_lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False, cancel_futures=True)


@dataclass
class SourceFile:
    relative: str
    size: int
    source: bytes | None = None
    # [line, type, severity, message, suggestion] when the file could not be read
    error: list | None = None
    checks_key: str = ""
    lint_key: str = ""
    result: dict = field(default_factory=dict)
    lint_issues: list = field(default_factory=list)


@dataclass
class RuleRun:
    """Everything the rule-based pass found, before the LLM (if asked) and storage."""

    path: str
    files: list[SourceFile]
    totals: dict
    issues: list[dict]
    stats: dict


def _read(files: list[SourceFile], max_bytes: int) -> None:
    with workspace.Reader(max_bytes) as reader:
        for item in files:
            if item.size > max_bytes:
                item.error = [1, "refactor", "medium",
                              f"File is {item.size} bytes, above the analysis limit of {max_bytes}",
                              "Split the file; generated or data files belong outside the analysed tree"]
                continue
            try:
                item.source = reader.read(item.relative)
            except ServiceError as exc:
                item.error = [1, "bug", "critical", f"Cannot read file: {exc.detail}",
                              "Make the file a readable regular file below the analysis limit and run the "
                              "analysis again"]


def _load_cached(keys: list[str]) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for start in range(0, len(keys), CACHE_CHUNK):
        chunk = keys[start:start + CACHE_CHUNK]
        found.update(FileAnalysis.objects.filter(key__in=chunk).values_list("key", "result"))
    return found


def _store(entries: dict[str, object], max_entries: int) -> None:
    """New cache rows in one executemany: the ORM's per-field preparation of a cold run's
    rows took longer than the rest of the work after the checks together."""
    if not entries:
        return
    quote = connection.ops.quote_name
    created = connection.ops.adapt_datetimefield_value(timezone.now())
    sql = (f"INSERT INTO {quote(FileAnalysis._meta.db_table)} ({quote('key')}, {quote('result')}, "
           f"{quote('created_at')}) VALUES (%s, %s, %s) ON CONFLICT ({quote('key')}) DO NOTHING")
    rows = [(key, json.dumps(result, separators=(",", ":")), created) for key, result in entries.items()]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, rows)
    excess = FileAnalysis.objects.count() - max_entries
    if excess > 0:
        oldest = FileAnalysis.objects.order_by("created_at").values_list("key", flat=True)[:excess]
        FileAnalysis.objects.filter(key__in=list(oldest)).delete()


def _run_checks(pending: list[SourceFile], limits: dict, settings: dict) -> int:
    """Analyse these files (in worker processes when there are enough); returns the workers used."""
    workers = min(worker_count(settings), len(pending))
    if workers <= 1 or len(pending) < settings["parallel_min_files"]:
        for item in pending:
            item.result = checks.analyse_source(item.source, limits)
        return 1
    by_key = {}
    for item in pending:
        by_key.setdefault(item.checks_key, []).append(item)
    unique = [(key, items[0].source) for key, items in by_key.items()]
    batches = _batches(unique, workers, settings["batch_files"])
    pool = worker_pool(worker_count(settings))
    try:
        futures = [(batch, pool.submit(checks.analyse_batch, batch, limits)) for batch in batches]
    except BrokenProcessPool:
        # A worker died since the last analysis (killed, out of memory): start afresh.
        _drop_pool(pool)
        pool = worker_pool(worker_count(settings))
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
        _drop_pool(pool)
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


def _one_by_one(batch: list[tuple[str, bytes]], limits: dict) -> list[tuple[str, dict]]:
    results, single = [], None
    for key, source in batch:
        single = single or ProcessPoolExecutor(max_workers=1, mp_context=_context())
        try:
            results.extend(single.submit(checks.analyse_batch, [(key, source)], limits).result())
        except BrokenProcessPool:
            single.shutdown(wait=False)
            single = None
            results.append((key, checks.failed_result(source, "Analysing this file crashed its worker process")))
    if single:
        single.shutdown(wait=False)
    return results


def _source_files(client_path: str, settings: dict) -> tuple[str, list[SourceFile]]:
    """(the target as the API shows it, its Python files), or a 400/404/413."""
    target = workspace.resolve(client_path, must_exist=True)
    if target.is_file() and target.suffix != ".py":
        raise BadInput(f"Not a Python file: {client_path}")
    found = workspace.files(target, include=_is_python, limit=settings["max_files"])
    if len(found) > settings["max_files"]:
        raise PayloadTooLarge(f"More than {settings['max_files']} Python files under {client_path}; "
                              "analyse a smaller directory")
    return workspace.relative(target), [SourceFile(entry.path, entry.size) for entry in found]


def _is_python(name: str) -> bool:
    return name.endswith(".py")


class _Lint:
    """ruff over the files whose lint result is not cached, running while the checks do.

    ruff reads copies of the bytes this analysis read (in a scratch folder of the data dir),
    never the workspace files by name: what it reports is about the files that were checked."""

    def __init__(self, readable: list[SourceFile], cached: dict, settings: dict):
        self.settings = settings
        self.pending = [item for item in readable if item.lint_key not in cached]
        for item in readable:
            if item.lint_key in cached:
                item.lint_issues = cached[item.lint_key]
        self.state, self.processes, self.scratch = "ok", [], None
        try:
            if self.pending:
                self.scratch = Path(tempfile.mkdtemp(prefix="lint-", dir=scratch_root())).resolve()
                self.processes = lint.start([self._stage(item) for item in self.pending], settings)
        except lint.LinterFailed as exc:
            self.state = f"failed: {exc}"

    def _stage(self, item: SourceFile) -> str:
        path = self.scratch / item.relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(item.source)
        return str(path)

    def finish(self) -> dict[str, list]:
        """Cache entries of the files linted now (none when ruff failed)."""
        try:
            if not self.processes:
                return {}
            try:
                by_file = lint.collect(self.processes, self.settings["ruff_timeout"])
            except lint.LinterFailed as exc:
                self.state = f"failed: {exc}"
                return {}
        finally:
            if self.scratch is not None:
                shutil.rmtree(self.scratch, ignore_errors=True)
        for item in self.pending:
            item.lint_issues = by_file.get(str(self.scratch / item.relative), [])
        return {item.lint_key: item.lint_issues for item in self.pending}

    @property
    def linted(self) -> int:
        return len(self.pending) if self.state == "ok" else 0


def _assign_keys(readable: list[SourceFile], limits: dict, settings: dict, include_linter: bool) -> list[str]:
    checks_prefix = "c" + checks_version(limits)
    for item in readable:
        item.checks_key = checks_prefix + _digest(item.source)
    if not include_linter:
        return [item.checks_key for item in readable]
    lint_prefix = "l" + lint_version(settings)
    for item in readable:
        item.lint_key = lint_prefix + _digest(item.relative, item.source)
    return [item.checks_key for item in readable] + [item.lint_key for item in readable]


def _stats(files: list[SourceFile], readable: list[SourceFile], pending: list[SourceFile], workers: int,
           linter: _Lint | None) -> dict:
    stats = {"files": len(files), "analysed": len(pending), "cached": len(readable) - len(pending),
             "linted": 0, "lint_cached": 0, "unreadable": len(files) - len(readable), "workers": workers,
             "linter": "off"}
    if linter:
        stats.update(linted=linter.linted, lint_cached=len(readable) - len(linter.pending), linter=linter.state)
    return stats


def run_rules(client_path: str, *, include_linter: bool, maintainability: bool) -> RuleRun:
    """The rule-based analysis of a client path; at most improve.max_concurrent at once (429 beyond)."""
    global _running
    settings = analysis_settings()
    with _running_lock:
        if _running >= settings["max_concurrent"]:
            raise ServiceBusy(f"{_running} analyses are running already; try again when they finish")
        _running += 1
    try:
        return _run_rules(client_path, settings, include_linter=include_linter, maintainability=maintainability)
    finally:
        with _running_lock:
            _running -= 1


def _run_rules(client_path: str, settings: dict, *, include_linter: bool, maintainability: bool) -> RuleRun:
    base, files = _source_files(client_path, settings)
    if len(files) >= settings["parallel_min_files"] and worker_count(settings) > 1:
        _start_workers(settings)
    _read(files, settings["max_file_bytes"])
    readable = [item for item in files if item.source is not None]

    limits = check_limits(settings, maintainability)
    cached = _load_cached(_assign_keys(readable, limits, settings, include_linter))
    linter = _Lint(readable, cached, settings) if include_linter else None
    pending = [item for item in readable if item.checks_key not in cached]
    for item in readable:
        item.result = cached.get(item.checks_key, item.result)
    workers = _run_checks(pending, limits, settings) if pending else 0
    new_entries = {item.checks_key: item.result for item in pending if not item.result.get("failed")}
    if linter:
        new_entries.update(linter.finish())
    _store(new_entries, settings["cache_max_entries"])
    return RuleRun(path=base, files=files, totals=_totals(files), issues=_issues(files, settings),
                   stats=_stats(files, readable, pending, workers, linter))


def _totals(files: list[SourceFile]) -> dict:
    functions = sum(item.result.get("functions", 0) for item in files)
    complexity = sum(item.result.get("complexity_sum", 0) for item in files)
    return {
        "total_files": len(files),
        "total_lines": sum(item.result.get("lines", 0) for item in files),
        "total_functions": functions,
        "total_classes": sum(item.result.get("classes", 0) for item in files),
        "avg_complexity": round(complexity / functions, 2) if functions else 0.0,
    }


def _issues(files: list[SourceFile], settings: dict) -> list[dict]:
    window = settings["duplicate_min_lines"]
    duplicates = duplicate_blocks([(item.relative, item.result["dup"]) for item in files if item.result],
                                  window, settings["duplicate_large_lines"])
    issues = []
    for item in files:
        found_lists = (item.result["issues"], item.lint_issues, duplicates.get(item.relative, ())) if item.result \
            else ([item.error],)
        for found in found_lists:
            issues.extend({"file": item.relative, "line": line, "type": kind, "severity": severity,
                           "message": message, "suggestion": suggestion}
                          for line, kind, severity, message, suggestion in found)
    issues.sort(key=lambda issue: (SEVERITY_RANK[issue["severity"]], issue["file"], issue["line"]))
    return issues
