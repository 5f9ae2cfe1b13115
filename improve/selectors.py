"""The improve app's reads: stored analyses and the queue's state. Nothing here writes a row,
enqueues a task or starts a process (GET /improve/queue/status and the live feed only look)."""

from __future__ import annotations

import uuid

from django.db.models import Count

from codegen_site.core.errors import NotFound
from codegen_site.core.users import visible
from improve.config import analysis_settings, queue_settings
from improve.models import AnalysisReport, ImprovementTask, ProjectChange, QueueState
from improve.services.cluster import cluster_info

Status = ImprovementTask.Status

# --- stored analyses ------------------------------------------------------------------------


def list_reports(limit: int, offset: int):
    return visible(AnalysisReport.objects).defer("issues", "suggestions")[offset:offset + limit]


def get_report(report_id: int) -> AnalysisReport:
    report = visible(AnalysisReport.objects).filter(pk=report_id).first()
    if report is None:
        raise NotFound("Report not found")
    return report


def report_page(report_id: int, *, offset: int, limit: int, kind: str | None = None,
                severity: str | None = None) -> dict:
    """One stored analysis with a page of its issues, filtered by type and severity, and how
    many issues match the filters on all pages."""
    report = get_report(report_id)
    issues = [issue for issue in report.issues if (kind is None or issue["type"] == kind)
              and (severity is None or issue["severity"] == severity)]
    summary = {name: getattr(report, name) for name in (
        "id", "path", "options", "totals", "issue_count", "severity_counts", "stats", "duration", "created_at",
        "suggestions", "llm")}
    return {**summary, "issues": issues[offset:offset + limit], "matching_issues": len(issues),
            "offset": offset, "limit": limit}


def report_page_size() -> int:
    return analysis_settings().report_page_size


# --- the queue ------------------------------------------------------------------------------


def accepting() -> bool:
    return QueueState.objects.filter(pk=1, accepting=True).exists()


def has_unfinished_tasks() -> bool:
    return ImprovementTask.objects.filter(status__in=(Status.PENDING, Status.RUNNING)).exists()


def _tasks():
    """The queued tasks the acting user sees: its own in multi-user mode, all for an admin."""
    return visible(ImprovementTask.objects)


def get_task(task_id) -> ImprovementTask:
    try:
        return _tasks().get(pk=uuid.UUID(str(task_id)))
    except (ImprovementTask.DoesNotExist, ValueError):
        raise NotFound(f"No queued task {task_id}") from None


def queue_summary() -> dict:
    """The queue's counts, its running task and its workers (what the live feed's `status` shows);
    the counts and the running task are of the tasks the acting user sees."""
    counts = dict(_tasks().values_list("status").annotate(n=Count("pk")).order_by())
    current = _tasks().filter(status=Status.RUNNING).order_by("started_at").first()
    return {
        "running": accepting(),
        "total_tasks": sum(counts.values()),
        "completed": counts.get(Status.COMPLETED, 0),
        "failed": counts.get(Status.FAILED, 0),
        "pending": counts.get(Status.PENDING, 0),
        "in_progress": counts.get(Status.RUNNING, 0),
        "cancelled": counts.get(Status.CANCELLED, 0),
        "current_task": current,
        "workers": cluster_info(),
    }


def queue_status() -> dict:
    """GET /improve/queue/status: the summary, the newest tasks and the last reconciliation."""
    newest = list(_tasks().order_by("-created_at")[:queue_settings().status_task_limit])
    return {**queue_summary(), "tasks": newest, "reconciliation": last_reconciliation()}


# Where services.lease.reconcile keeps what its last round did (the cache: shared by every
# process when it is Redis).
RECONCILED_KEY = "improve:queue:reconciled"


def last_reconciliation() -> dict | None:
    from django.core.cache import cache

    try:
        return cache.get(RECONCILED_KEY)
    except Exception:  # the cache away: the status still answers, without it
        return None


def changed_tasks(seen: dict, since) -> list[ImprovementTask]:
    """The acting user's tasks updated since `since` (unfinished ones when None) that `seen` (pk → updated_at) has
    not shown at that version, oldest change first."""
    rows = _tasks().order_by("updated_at")
    rows = rows.filter(updated_at__gte=since) if since else rows.exclude(status__in=ImprovementTask.FINISHED)
    return [task for task in rows if seen.get(task.pk) != task.updated_at]


# --- project changes --------------------------------------------------------------------------


def list_changes(limit: int, offset: int):
    """Project changes, newest first, without their files' texts, diffs or evidence."""
    return visible(ProjectChange.objects).defer("diff", "evidence").order_by("-created_at")[offset:offset + limit]
