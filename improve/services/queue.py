"""The improvement queue's writes: ImprovementTask rows processed by django-q2 workers.

The row is the truth, the broker message only says "look at task X" (services.broker); a
worker takes a task under a lease (services.lease). `start`/`stop` set one flag row
(QueueState) that workers read before claiming: a message for a task while the queue is
stopped leaves the task pending, and `start` enqueues every pending task again. Pending rows
survive any restart, and a pending task whose message was lost (with a killed worker cluster
or a flushed Redis) is sent again by the reconciliation (services.lease.reconcile), every
heartbeat in each server and every minute in the cluster. With improve_queue.start_cluster (the default) adding to a started queue
and `start` also make sure the managed qcluster runs (services.cluster)."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from codegen_site.core import workspace
from improve import selectors
from improve.config import queue_settings
from improve.models import ImprovementTask, QueueState
from improve.services.broker import ensure_recovery_schedule
from improve.services.cluster import cluster_info, managed_cluster
from improve.services.lease import recover_expired, send

logger = logging.getLogger(__name__)

Status = ImprovementTask.Status


def _set_accepting(value: bool) -> None:
    QueueState.objects.update_or_create(pk=1, defaults={"accepting": value})


def ensure_workers() -> int | None:
    """With start_cluster: the pid of the one qcluster for this data dir, started if none runs."""
    if not queue_settings().start_cluster:
        return None
    return managed_cluster().start()


def add_task(file_path: str, issue: dict, options: dict) -> ImprovementTask:
    """A pending task; 400/404 now for a path the run would refuse anyway. In multi-user mode it
    belongs to the acting user (codegen_site.core.users.set_owner), and so will its run."""
    target = workspace.resolve(file_path, must_exist=True)
    task = ImprovementTask.objects.create(file_path=workspace.relative(target), issue=issue, options=options)
    if selectors.accepting():
        transaction.on_commit(lambda: send(task.pk))
        ensure_workers()
    return task


def add_change_task(instruction: str, paths: list[str], options: dict) -> ImprovementTask:
    """A pending project change (improve.services.change); the task's options say so with kind "change"."""
    named = [workspace.relative(workspace.resolve(path)) for path in paths]
    task = ImprovementTask.objects.create(file_path=", ".join(named), issue={"message": instruction[:500]},
                                          options={**options, "kind": "change", "instruction": instruction,
                                                   "paths": named})
    if selectors.accepting():
        transaction.on_commit(lambda: send(task.pk))
        ensure_workers()
    return task


def start() -> dict:
    """Let workers take tasks: expired leases are recovered and every pending task is
    (re-)enqueued; a duplicate message is harmless."""
    _set_accepting(True)
    recover_expired()
    ensure_recovery_schedule()
    pending = list(ImprovementTask.objects.filter(status=Status.PENDING).values_list("pk", flat=True))
    for task_id in pending:
        send(task_id)
    ensure_workers()
    return {"running": True, "enqueued": len(pending), "workers": cluster_info()}


def stop() -> dict:
    """No new task starts; a running one finishes (its worker is not interrupted)."""
    _set_accepting(False)
    return {"running": False, "in_progress": ImprovementTask.objects.filter(status=Status.RUNNING).count()}


def clear() -> int:
    deleted, _ = ImprovementTask.objects.filter(status__in=ImprovementTask.FINISHED).delete()
    return deleted


def requeue(queryset) -> int:
    """Admin action: failed / cancelled / completed tasks back to pending (attempts start again)."""
    ids = list(queryset.filter(status__in=ImprovementTask.FINISHED).values_list("pk", flat=True))
    ImprovementTask.objects.filter(pk__in=ids).update(
        status=Status.PENDING, attempts=0, step="", progress=0.0, error="", result=None, worker="",
        lease_until=None, started_at=None, finished_at=None, updated_at=timezone.now())
    if ids and selectors.accepting():
        for task_id in ids:
            send(task_id)
    return len(ids)


def cancel(queryset) -> int:
    """Admin action: pending tasks are cancelled; a running one is left to finish."""
    return queryset.filter(status=Status.PENDING).update(status=Status.CANCELLED, finished_at=timezone.now(),
                                                         updated_at=timezone.now())


def resume_if_started() -> None:
    """At server start: a queue that was started before a restart gets its workers back."""
    try:
        if queue_settings().start_cluster and selectors.accepting() and selectors.has_unfinished_tasks():
            start()
    except Exception:  # the database may not be migrated yet
        logger.exception("Could not resume the improvement queue")
