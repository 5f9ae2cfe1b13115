"""What the queue runs: django-q2 entry points, inside `manage.py qcluster` workers.

A task's stored `result` is the same JSON POST /improve/run answers
(improve.serializers.ImprovementRunResultSerializer)."""

from __future__ import annotations

import logging
from contextlib import contextmanager

from asgiref.sync import async_to_sync
from django.db import close_old_connections

from codegen_site.core import users
from codegen_site.core.db import db_async
from improve import selectors
from improve.models import ImprovementRun, ImprovementTask, ProjectChange
from improve.serializers import ImprovementRunResultSerializer, ProjectChangeSerializer
from improve.services import change_recovery, lease
from improve.services.apply import written_before
from improve.services.change import change_events
from improve.services.proposal import improvement_events

logger = logging.getLogger(__name__)


def process_task(task_id: str) -> str:
    """Run one queued improvement if this worker can claim it; the row records everything."""
    close_old_connections()
    lease.recover_expired()
    if not selectors.accepting():
        return "queue stopped: task left pending"
    worker = lease.worker_id()
    task = lease.claim(task_id, worker)
    if task is None:
        return "not pending (taken, finished or cancelled)"
    with acting_for(task):
        return _process(task, worker)


@contextmanager
def acting_for(task: ImprovementTask):
    """The worker acts for whoever queued the task: the run or change it makes is owned by that
    user (codegen_site.core.users.set_owner), as if that user had asked for it directly."""
    owner = task.owner
    reset = users.acting.set(users.Principal(owner, users.role_of(owner)) if owner is not None else None)
    try:
        yield
    finally:
        users.acting.reset(reset)


def _process(task: ImprovementTask, worker: str) -> str:
    if task.run is not None and (done := written_before(task.run)) is not None:
        lease.finish(task.pk, worker, result=ImprovementRunResultSerializer(done).data, error="")
        return "completed (the file was written before the previous worker stopped)"
    if (task.options or {}).get("kind") == "change":
        return _process_change(task, worker)
    with lease.heartbeat(task.pk, worker):
        result, error = None, ""
        try:
            run = async_to_sync(_run)(task, worker)
            result = ImprovementRunResultSerializer(run).data
            if not run.succeeded:
                error = run.error or "The improvement did not pass validation"
        except Exception as exc:  # the task fails with the reason instead of the worker
            logger.exception("Task %s failed", task.pk)
            error = str(getattr(exc, "detail", "") or exc) or type(exc).__name__
        if not lease.finish(task.pk, worker, result=result, error=error):
            logger.warning("Task %s: the lease was lost before the result was stored", task.pk)
    return error or "completed"


async def _run(task: ImprovementTask, worker: str) -> ImprovementRun | None:
    report = db_async(lease.report_step)
    options = task.options or {}
    run = None
    async for name, data in improvement_events(task.file_path, task.issue, auto_write=options.get("auto_write", True),
                                               max_retries=options.get("max_retries")):
        if name == "step":
            await report(task.pk, worker, data["step"], data.get("run_id"))
        elif name == "done":
            run = data
    return run


def _process_change(task: ImprovementTask, worker: str) -> str:
    """A queued project change: its stored result is the JSON POST /improve/change answers.
    A task retried after its worker died completes from the change that worker made, if it
    finished one (applying it when the task asked and that had not happened); a change left
    running is marked failed (its branch, if made, removed) and the change is made again."""
    earlier = change_recovery.made_by(task.pk, auto_apply=(task.options or {}).get("auto_apply", False))
    if earlier is not None:
        lease.finish(task.pk, worker, result=ProjectChangeSerializer(earlier).data, error="")
        return "completed (the change was made before the previous worker stopped)"
    with lease.heartbeat(task.pk, worker):
        result, error = None, ""
        try:
            change = async_to_sync(_run_change)(task, worker)
            result = ProjectChangeSerializer(change).data
            if change.state not in (ProjectChange.State.PROPOSED, ProjectChange.State.APPLIED):
                error = change.error or f"The change ended {change.state}"
        except Exception as exc:
            logger.exception("Task %s failed", task.pk)
            error = str(getattr(exc, "detail", "") or exc) or type(exc).__name__
        if not lease.finish(task.pk, worker, result=result, error=error):
            logger.warning("Task %s: the lease was lost before the result was stored", task.pk)
    return error or "completed"


async def _run_change(task: ImprovementTask, worker: str) -> ProjectChange | None:
    report = db_async(lease.report_step)
    options = task.options
    change = None
    async for name, data in change_events(options["instruction"], options.get("paths") or [],
                                          max_repairs=options.get("max_repairs"),
                                          auto_apply=options.get("auto_apply", False), task_id=task.pk):
        if name == "step":
            await report(task.pk, worker, data["step"], None)
        elif name == "done":
            change = data
    return change


def recover_expired() -> dict:
    """Scheduled every minute in the cluster (services.broker.ensure_recovery_schedule): the
    queue's reconciliation (services.lease.reconcile). The name stays: saved schedules call it."""
    close_old_connections()
    return lease.reconcile()
