"""The rule-based part of an analysis: find the files, reuse cached per-file results, run
the checks of the rest in worker processes and ruff once over them, then add the
cross-file duplication pass and the totals.

A file's check result is cached under (checks version, content hash) and its lint
result under (lint version, path + content hash); the versions cover every setting
that changes a result, so an unchanged tree re-runs nothing and one edited file
costs one file."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from codegen_site.core import workspace
from codegen_site.core.errors import BadInput, PayloadTooLarge, ServiceBusy, ServiceError
from improve.analysis import lint
from improve.analysis.checks import CheckLimits
from improve.analysis.duplication import duplicate_blocks
from improve.analysis.thresholds import Thresholds
from improve.analysis.workers import CheckRun, analysis_workers, worker_count
from improve.config import AnalysisSettings, analysis_settings
from improve.models import FileAnalysis

# Bump when the checks change what they report, so old cache entries stop matching.
CHECKS_REVISION = 2
SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}
# Keys per query when reading the cache (under SQLite's variable limit).
CACHE_CHUNK = 500
# Files read per step: each step's cache misses go to the checks before the next is read.
READ_STEP = 64


# Memory-backed scratch space (Linux); used when it has room for the copies twice over.
MEMORY_SCRATCH = Path("/dev/shm")


def scratch_root(needed: int = 0) -> Path:
    """Where the linter's copies are staged, in a private folder (mkdtemp: mode 0700) no client
    can reach: memory when it has room, as creating and removing hundreds of files on a disk
    (its journal) costs more than ruff's run; else the product's data dir."""
    try:
        space = os.statvfs(MEMORY_SCRATCH)
        if MEMORY_SCRATCH.is_dir() and os.access(MEMORY_SCRATCH, os.W_OK | os.X_OK) \
                and space.f_bavail * space.f_frsize >= 2 * needed:
            return MEMORY_SCRATCH
    except OSError:
        pass
    path = Path(settings.DATA_DIR) / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_limits(analysis: AnalysisSettings, maintainability: bool) -> CheckLimits:
    thresholds = {field.name: getattr(analysis, field.name) for field in dataclasses.fields(Thresholds)}
    return CheckLimits(**thresholds, maintainability=maintainability)


def _digest(*parts: bytes | str, size: int = 16) -> str:
    digest = hashlib.blake2b(digest_size=size)
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()


@lru_cache(maxsize=1)
def _radon_version() -> str:
    return importlib.metadata.version("radon")


def checks_version(limits: CheckLimits) -> str:
    return _digest(str(CHECKS_REVISION), sys.version, _radon_version(),
                   json.dumps(dataclasses.asdict(limits), sort_keys=True), size=8)[:15]


def lint_version(analysis: AnalysisSettings) -> str:
    return _digest(lint.ruff_version(), json.dumps(lint.command(analysis)[1:]), size=8)[:15]


class RunningAnalyses:
    """How many analyses this process runs now; `admit` refuses one past the limit (429)."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    @contextmanager
    def admit(self, limit: int):
        with self._lock:
            if self._count >= limit:
                raise ServiceBusy(f"{self._count} analyses are running already; try again when they finish")
            self._count += 1
        try:
            yield
        finally:
            with self._lock:
                self._count -= 1


running_analyses = RunningAnalyses()


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


def _read(files: list[SourceFile], reader: workspace.Reader, max_bytes: int) -> None:
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
    if connection.vendor == "sqlite":
        # One query with the keys as one JSON parameter: the ORM's preparation of an IN list
        # cost more than SQLite's lookups.
        quote = connection.ops.quote_name
        sql = (f"SELECT {quote('key')}, {quote('result')} FROM {quote(FileAnalysis._meta.db_table)} "
               f"WHERE {quote('key')} IN (SELECT value FROM json_each(%s))")
        with connection.cursor() as cursor:
            cursor.execute(sql, [json.dumps(keys)])
            return {key: json.loads(result) for key, result in cursor.fetchall()}
    found: dict[str, dict] = {}
    for start in range(0, len(keys), CACHE_CHUNK):
        chunk = keys[start:start + CACHE_CHUNK]
        found.update(FileAnalysis.objects.filter(key__in=chunk).values_list("key", "result"))
    return found


def _store(entries: dict[str, object]) -> None:
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


def _evict(max_entries: int) -> None:
    """The oldest cache rows past `max_entries` go."""
    excess = FileAnalysis.objects.count() - max_entries
    if excess > 0:
        oldest = FileAnalysis.objects.order_by("created_at").values_list("key", flat=True)[:excess]
        FileAnalysis.objects.filter(key__in=list(oldest)).delete()


def _source_files(client_path: str, analysis: AnalysisSettings) -> tuple[str, list[SourceFile]]:
    """(the target as the API shows it, its Python files), or a 400/404/413."""
    target = workspace.resolve(client_path, must_exist=True)
    if target.is_file() and target.suffix != ".py":
        raise BadInput(f"Not a Python file: {client_path}")
    found = workspace.files(target, include=_is_python, limit=analysis.max_files)
    if len(found) > analysis.max_files:
        raise PayloadTooLarge(f"More than {analysis.max_files} Python files under {client_path}; "
                              "analyse a smaller directory")
    return workspace.relative(target), [SourceFile(entry.path, entry.size) for entry in found]


def _is_python(name: str) -> bool:
    return name.endswith(".py")


class _Lint:
    """ruff over the files whose lint result is not cached, running while the checks do.

    ruff reads copies of the bytes this analysis read (in a private scratch folder, `scratch_root`),
    never the workspace files by name: what it reports is about the files that were checked."""

    def __init__(self, readable: list[SourceFile], cached: dict, analysis: AnalysisSettings):
        self.analysis = analysis
        self.pending = [item for item in readable if item.lint_key not in cached]
        for item in readable:
            if item.lint_key in cached:
                item.lint_issues = cached[item.lint_key]
        self.state, self.processes, self.scratch = "ok", [], None
        try:
            if self.pending:
                needed = sum(len(item.source) for item in self.pending)
                self.scratch = Path(tempfile.mkdtemp(prefix="lint-", dir=scratch_root(needed))).resolve()
                self.processes = lint.start(self._stage(), analysis)
        except OSError as exc:
            self.state = f"failed: the copies for ruff could not be written: {exc}"
        except lint.LinterFailed as exc:
            self.state = f"failed: {exc}"

    def _stage(self) -> list[str]:
        """The copies' paths, each written once (O_EXCL: nothing was there) in folders made once."""
        made, paths = set(), []
        root = str(self.scratch)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        for item in self.pending:
            folder, _, _ = item.relative.rpartition("/")
            if folder not in made:
                os.makedirs(os.path.join(root, folder), mode=0o700, exist_ok=True)
                made.add(folder)
            path = os.path.join(root, item.relative)
            fd = os.open(path, flags, 0o600)
            try:
                view = memoryview(item.source)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            paths.append(path)
        return paths

    def finish(self) -> dict[str, list]:
        """Cache entries of the files linted now (none when ruff failed)."""
        try:
            if not self.processes:
                return {}
            try:
                by_file = lint.collect(self.processes, self.analysis.ruff_timeout)
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


def _assign_keys(readable: list[SourceFile], checks_prefix: str, lint_prefix: str | None) -> list[str]:
    """The files' cache keys (lint keys only with a lint prefix), as one list to look up."""
    keys = []
    for item in readable:
        content = _digest(item.source)
        item.checks_key = checks_prefix + content
        keys.append(item.checks_key)
        if lint_prefix is not None:
            item.lint_key = lint_prefix + _digest(item.relative, content)
            keys.append(item.lint_key)
    return keys


def _read_and_look_up(files: list[SourceFile], limits: CheckLimits, analysis: AnalysisSettings,
                      include_linter: bool, checker: CheckRun) -> tuple[list, list, dict]:
    """(readable files, files whose checks were not cached, cached results by key): the files are
    read a step at a time, and each step's cache misses go to the checks at once."""
    checks_prefix = "c" + checks_version(limits)
    lint_prefix = "l" + lint_version(analysis) if include_linter else None
    readable, pending, cached = [], [], {}
    with workspace.Reader(analysis.max_file_bytes) as reader:
        for start in range(0, len(files), READ_STEP):
            step = files[start:start + READ_STEP]
            _read(step, reader, analysis.max_file_bytes)
            ready = [item for item in step if item.source is not None]
            found = _load_cached(_assign_keys(ready, checks_prefix, lint_prefix))
            missing = []
            for item in ready:
                if item.checks_key in found:
                    item.result = found[item.checks_key]
                else:
                    missing.append(item)
            checker.add(missing)
            readable += ready
            pending += missing
            cached.update(found)
    return readable, pending, cached


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
    analysis = analysis_settings()
    with running_analyses.admit(analysis.max_concurrent), _collector_paused():
        return _run_rules(client_path, analysis, include_linter=include_linter, maintainability=maintainability)


@contextmanager
def _collector_paused():
    """The cyclic collector waits while a run makes its many short-lived objects (no cycles
    among them): a full collection met on the way rescans the whole server's heap."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _run_rules(client_path: str, analysis: AnalysisSettings, *, include_linter: bool, maintainability: bool) -> RuleRun:
    base, files = _source_files(client_path, analysis)
    if len(files) >= analysis.parallel_min_files and worker_count(analysis) > 1:
        analysis_workers().start(worker_count(analysis))
    limits = check_limits(analysis, maintainability)
    checker = CheckRun(limits, analysis, sum(item.size for item in files if item.size <= analysis.max_file_bytes))
    readable, pending, cached = _read_and_look_up(files, limits, analysis, include_linter, checker)
    # The checks are under way (in the workers; a small analysis's are run on a thread here),
    # the linter's copies are written meanwhile, and ruff's findings (it usually ends first)
    # are read and stored while the checks go on.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="analysis-checks") as side:
        checked = side.submit(checker.finish)
        linter = _Lint(readable, cached, analysis) if include_linter else None
        if linter:
            _store(linter.finish())
        workers = checked.result()
    duplicates = _duplicates(files, analysis)
    _store({item.checks_key: item.result for item in pending if not item.result.get("failed")})
    _evict(analysis.cache_max_entries)
    return RuleRun(path=base, files=files, totals=_totals(files), issues=_issues(files, duplicates),
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


def _duplicates(files: list[SourceFile], analysis: AnalysisSettings) -> dict[str, list]:
    return duplicate_blocks([(item.relative, item.result["dup"]) for item in files if item.result],
                            analysis.duplicate_min_lines, analysis.duplicate_large_lines)


def _issues(files: list[SourceFile], duplicates: dict[str, list]) -> list[dict]:
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
