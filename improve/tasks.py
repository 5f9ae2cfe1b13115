"""django-q2 entry points (run inside `manage.py qcluster` workers)."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync, sync_to_async
from django.db import close_old_connections

from improve import queue
from improve.improvement import improvement_events, written_before

logger = logging.getLogger(__name__)


def process_task(task_id: str) -> str:
    """Run one queued improvement if this worker can claim it; the row records everything."""
    close_old_connections()
    queue.recover_expired()
    if not queue.accepting():
        return "queue stopped: task left pending"
    worker = queue.worker_id()
    task = queue.claim(task_id, worker)
    if task is None:
        return "not pending (taken, finished or cancelled)"
    options = task.options or {}
    if task.run is not None and (done := written_before(task.run)) is not None:
        queue.finish(task.pk, worker, result=done, error="")
        return "completed (the file was written before the previous worker stopped)"
    with queue.heartbeat(task.pk, worker):
        result, error = None, ""
        try:
            result = async_to_sync(_run)(task, worker, options)
            if not result["success"]:
                error = result["error"] or "The improvement did not pass validation"
        except Exception as exc:  # the task fails with the reason instead of the worker
            logger.exception("Task %s failed", task.pk)
            error = str(getattr(exc, "detail", "") or exc) or type(exc).__name__
        if not queue.finish(task.pk, worker, result=result, error=error):
            logger.warning("Task %s: the lease was lost before the result was stored", task.pk)
    return error or "completed"


async def _run(task, worker: str, options: dict) -> dict:
    report = sync_to_async(queue.report_step)
    result = None
    async for name, data in improvement_events(task.file_path, task.issue, auto_write=options.get("auto_write", True),
                                               max_retries=options.get("max_retries")):
        if name == "step":
            await report(task.pk, worker, data["step"], data.get("run_id"))
        elif name == "done":
            result = data
    return result


def recover_expired() -> int:
    """Scheduled every minute (see queue._ensure_recovery_schedule)."""
    close_old_connections()
    return queue.recover_expired()
