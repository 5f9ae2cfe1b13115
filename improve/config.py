"""The improve app's settings, typed: one frozen dataclass per config section it reads
([improve], [improve_run], [improve_queue], [improve_change] in config/default.toml), built by
codegen_site.core.sections once per config version. Code in this app reads these and never
converts a raw config value itself.

Only the standard library, core.sections and the checks' thresholds are imported here, so the project's settings
module can read QueueSettings before the apps are loaded."""

from __future__ import annotations

from dataclasses import dataclass

from codegen_site.core.sections import section
from improve.analysis.thresholds import Thresholds


@dataclass(frozen=True)
class AnalysisSettings(Thresholds):
    """[improve]: POST /improve/analyze and the stored reports (the checks' thresholds come
    from Thresholds)."""

    duplicate_large_lines: int
    ruff_select: tuple[str, ...]
    ruff_ignore: tuple[str, ...]
    ruff_line_length: int
    ruff_timeout: float
    workers: int
    parallel_min_files: int
    workers_at_start: bool
    batch_files: int
    max_concurrent: int
    max_files: int
    max_file_bytes: int
    cache_max_entries: int
    llm_max_files: int
    llm_file_chars: int
    llm_total_chars: int
    llm_answer_tokens: int
    report_page_size: int


@dataclass(frozen=True)
class RunSettings:
    """[improve_run]: POST /improve/run and a queued task's run."""

    max_retries: int
    max_retries_limit: int
    validation_timeout: float
    feedback_chars: int
    max_covering_tests: int
    copy_max_files: int
    copy_max_bytes: int
    max_tokens: int


@dataclass(frozen=True)
class QueueSettings:
    """[improve_queue]: the django-q2 queue, its leases and its live feed."""

    redis_url: str
    cluster_name: str
    start_cluster: bool
    task_timeout: int
    workers: int
    poll_seconds: float
    lease_seconds: float
    heartbeat_seconds: float
    max_attempts: int
    status_task_limit: int
    events_poll_seconds: float


@dataclass(frozen=True)
class ChangeSettings:
    """[improve_change]: POST /improve/change, a change to several files from one instruction."""

    max_repairs: int
    max_repairs_limit: int
    context_tokens: int
    repair_share: float
    symbol_map_max_files: int
    whole_file_max_lines: int
    max_files: int
    near_match_ratio: float
    max_tokens: int
    git_timeout: float
    ruff_timeout: float


def analysis_settings() -> AnalysisSettings:
    return section(AnalysisSettings, "improve")


def run_settings() -> RunSettings:
    return section(RunSettings, "improve_run")


def queue_settings() -> QueueSettings:
    return section(QueueSettings, "improve_queue")


def change_settings() -> ChangeSettings:
    return section(ChangeSettings, "improve_change")
