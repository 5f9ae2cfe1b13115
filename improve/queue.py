"""The improvement queue: ImprovementTask rows processed by django-q2 workers.

The row is the truth, the broker message only says "look at task X":
- a worker claims a task with a conditional UPDATE (pending → running), so two
  messages for one task (a re-enqueue, a broker redelivery) never run it twice at once;
- the claim carries a lease the worker renews on a heartbeat; a task whose lease ran
  out (its worker was killed) goes back to pending until it has been tried
  `max_attempts` times, then fails with the reason; `recover_expired` does this and is
  called by the queue endpoints, by every worker before a task and by a django-q2
  schedule, so no task stays `running` for ever;
- `start`/`stop` set one flag row (QueueState) that workers read before claiming: a
  message for a task while the queue is stopped leaves the task pending, and `start`
  enqueues every pending task again. Pending rows survive any restart.

With `improve_queue.start_cluster` (the default) `start` also makes sure one
`manage.py qcluster` runs beside the server: a pid file and a lock under DATA_DIR keep
it to one per data dir; the process that started it stops it when it exits."""

from __future__ import annotations

import asyncio
import atexit
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone

from codegen_site.core import workspace
from codegen_site.core.config import get_config
from codegen_site.core.db import db_async
from codegen_site.core.errors import NotFound
from improve.models import ImprovementTask, QueueState

logger = logging.getLogger(__name__)

Status = ImprovementTask.Status
FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
PROCESS_TASK = "improve.tasks.process_task"
RECOVER_TASK = "improve.tasks.recover_expired"
# Where a task's progress stands when its run reaches each step (kept monotonic).
STEP_PROGRESS = {"claimed": 0.02, "read": 0.05, "generate": 0.2, "validate": 0.5, "retry": 0.6, "write": 0.9}


def queue_settings() -> dict:
    return get_config()["improve_queue"]


# --- the accepting flag ----------------------------------------------------------------

def accepting() -> bool:
    return QueueState.objects.filter(pk=1, accepting=True).exists()


def _set_accepting(value: bool) -> None:
    QueueState.objects.update_or_create(pk=1, defaults={"accepting": value})


# --- adding and listing ----------------------------------------------------------------

def task_payload(task: ImprovementTask) -> dict:
    return {
        "task_id": str(task.pk), "file_path": task.file_path, "issue": task.issue, "options": task.options,
        "status": task.status, "step": task.step, "progress": round(task.progress, 3), "attempts": task.attempts,
        "result": task.result, "error": task.error or None,
        "created_at": task.created_at, "started_at": task.started_at, "finished_at": task.finished_at,
        "updated_at": task.updated_at,
    }


def enqueue(task_id) -> None:
    from django_q.tasks import async_task

    async_task(PROCESS_TASK, str(task_id), task_name=f"improve-{task_id}", group="improve")


def add_task(file_path: str, issue: dict, options: dict) -> ImprovementTask:
    """A pending task; 400/404 now for a path the run would refuse anyway."""
    target = workspace.resolve(file_path, must_exist=True)
    task = ImprovementTask.objects.create(file_path=workspace.relative(target), issue=issue, options=options)
    if accepting():
        transaction.on_commit(lambda: enqueue(task.pk))
        ensure_workers()
    return task


def get_task(task_id) -> ImprovementTask:
    try:
        return ImprovementTask.objects.get(pk=uuid.UUID(str(task_id)))
    except (ImprovementTask.DoesNotExist, ValueError):
        raise NotFound(f"No queued task {task_id}") from None


def queue_status() -> dict:
    recover_expired()
    counts = dict(ImprovementTask.objects.values_list("status").annotate(n=Count("pk")).order_by())
    current = ImprovementTask.objects.filter(status=Status.RUNNING).order_by("started_at").first()
    limit = int(queue_settings()["status_task_limit"])
    tasks = ImprovementTask.objects.order_by("-created_at")[:limit]
    return {
        "running": accepting(),
        "total_tasks": sum(counts.values()),
        "completed": counts.get(Status.COMPLETED, 0),
        "failed": counts.get(Status.FAILED, 0),
        "pending": counts.get(Status.PENDING, 0),
        "in_progress": counts.get(Status.RUNNING, 0),
        "cancelled": counts.get(Status.CANCELLED, 0),
        "current_task": task_payload(current) if current else None,
        "tasks": [task_payload(task) for task in tasks],
        "workers": cluster_info(),
    }


def start() -> dict:
    """Let workers take tasks: every pending task is (re-)enqueued; a duplicate message is harmless."""
    _set_accepting(True)
    recover_expired()
    _ensure_recovery_schedule()
    pending = list(ImprovementTask.objects.filter(status=Status.PENDING).values_list("pk", flat=True))
    for task_id in pending:
        enqueue(task_id)
    ensure_workers()
    return {"running": True, "enqueued": len(pending), "workers": cluster_info()}


def stop() -> dict:
    """No new task starts; a running one finishes (its worker is not interrupted)."""
    _set_accepting(False)
    return {"running": False, "in_progress": ImprovementTask.objects.filter(status=Status.RUNNING).count()}


def clear() -> int:
    deleted, _ = ImprovementTask.objects.filter(status__in=FINISHED).delete()
    return deleted


def requeue(queryset) -> int:
    """Admin action: failed / cancelled / completed tasks back to pending (attempts start again)."""
    ids = list(queryset.filter(status__in=FINISHED).values_list("pk", flat=True))
    ImprovementTask.objects.filter(pk__in=ids).update(
        status=Status.PENDING, attempts=0, step="", progress=0.0, error="", result=None, worker="",
        lease_until=None, started_at=None, finished_at=None, updated_at=timezone.now())
    if ids and accepting():
        for task_id in ids:
            enqueue(task_id)
    return len(ids)


def cancel(queryset) -> int:
    """Admin action: pending tasks are cancelled; a running one is left to finish."""
    return queryset.filter(status=Status.PENDING).update(status=Status.CANCELLED, finished_at=timezone.now(),
                                                         updated_at=timezone.now())


# --- the worker side: claim, lease, progress, finish -----------------------------------

def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _lease_end():
    return timezone.now() + timedelta(seconds=float(queue_settings()["lease_seconds"]))


def claim(task_id, worker: str) -> ImprovementTask | None:
    """The task, now running under `worker`, or None when another worker has it or it is not pending."""
    now = timezone.now()
    claimed = ImprovementTask.objects.filter(pk=task_id, status=Status.PENDING).update(
        status=Status.RUNNING, worker=worker, lease_until=_lease_end(), attempts=F("attempts") + 1,
        started_at=now, finished_at=None, step="claimed", progress=STEP_PROGRESS["claimed"], error="",
        updated_at=now)
    return ImprovementTask.objects.get(pk=task_id) if claimed else None


def _held(task_id, worker: str):
    return ImprovementTask.objects.filter(pk=task_id, status=Status.RUNNING, worker=worker)


def renew_lease(task_id, worker: str) -> bool:
    return bool(_held(task_id, worker).update(lease_until=_lease_end()))


def report_step(task_id, worker: str, step: str, run_id=None) -> None:
    progress = STEP_PROGRESS.get(step)
    fields = {"step": step, "lease_until": _lease_end(), "updated_at": timezone.now()}
    if run_id:
        fields["run_id"] = run_id
    held = _held(task_id, worker)
    if progress is not None:
        held.filter(progress__lt=progress).update(progress=progress)
    held.update(**fields)


def finish(task_id, worker: str, *, result: dict | None, error: str) -> bool:
    now = timezone.now()
    return bool(_held(task_id, worker).update(
        status=Status.FAILED if error else Status.COMPLETED, result=result, error=error, step="done",
        run_id=(result or {}).get("run_id"),
        progress=1.0, lease_until=None, finished_at=now, updated_at=now))


@contextmanager
def heartbeat(task_id, worker: str):
    """Renew the lease every heartbeat_seconds while the body runs (a thread with its own connection)."""
    from django.db import connection

    done = threading.Event()
    interval = float(queue_settings()["heartbeat_seconds"])

    def beat():
        try:
            while not done.wait(interval):
                if not renew_lease(task_id, worker):
                    logger.warning("Task %s: lease lost by %s", task_id, worker)
                    return
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"lease-{task_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=interval + 5)


def recover_expired() -> int:
    """Running tasks whose lease ran out: back to pending (enqueued when accepting) or failed."""
    max_attempts = int(queue_settings()["max_attempts"])
    now = timezone.now()
    recovered = 0
    for task in ImprovementTask.objects.filter(status=Status.RUNNING, lease_until__lt=now):
        expired = ImprovementTask.objects.filter(pk=task.pk, status=Status.RUNNING, worker=task.worker,
                                                 lease_until=task.lease_until)
        reason = f"worker {task.worker} stopped renewing its lease during attempt {task.attempts}"
        if task.attempts < max_attempts:
            if expired.update(status=Status.PENDING, step="", worker="", lease_until=None,
                              error=f"{reason}; retrying", updated_at=now):
                recovered += 1
                logger.warning("Task %s: %s; back to pending", task.pk, reason)
                if accepting():
                    enqueue(task.pk)
        elif expired.update(status=Status.FAILED, step="done", lease_until=None, finished_at=now, updated_at=now,
                            error=f"{reason}; gave up after {task.attempts} attempt(s) (improve_queue.max_attempts)"):
            recovered += 1
            logger.warning("Task %s: %s; failed", task.pk, reason)
    return recovered


def _ensure_recovery_schedule() -> None:
    """A django-q2 schedule runs recover_expired every minute in the cluster, so a killed
    worker's task is retried even when nobody polls the queue."""
    from django_q.models import Schedule

    Schedule.objects.get_or_create(name="improve-recover-expired", defaults={
        "func": RECOVER_TASK, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1})


# --- the cluster process (start_cluster = true) ----------------------------------------

_started_here: subprocess.Popen | None = None
_started_lock = threading.Lock()


def _pid_file() -> Path:
    return Path(settings.DATA_DIR) / "qcluster.pid"


def _alive_cluster_pid() -> int | None:
    try:
        pid = int(_pid_file().read_text().strip())
    except (OSError, ValueError):
        return None
    if _started_here is not None and _started_here.pid == pid:
        return pid if _started_here.poll() is None else None  # our own child (maybe not yet exec'd)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"qcluster" in cmdline else None


@contextmanager
def _cluster_lock():
    path = Path(settings.DATA_DIR) / "qcluster.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def cluster_info() -> dict:
    managed = bool(queue_settings()["start_cluster"])
    return {"mode": "managed" if managed else "external",
            "broker": "redis" if queue_settings()["redis_url"] else "orm",
            "cluster_pid": _alive_cluster_pid() if managed else None}


def ensure_workers() -> int | None:
    """With start_cluster: the pid of the one qcluster for this data dir, started if none runs."""
    global _started_here
    if not queue_settings()["start_cluster"]:
        return None
    with _started_lock, _cluster_lock():
        pid = _alive_cluster_pid()
        if pid:
            return pid
        log = (Path(settings.DATA_DIR) / "qcluster.log").open("ab")
        process = subprocess.Popen([sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "qcluster"],
                                   cwd=workspace.run_dir(), env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        _pid_file().write_text(str(process.pid))
        if _started_here is None:
            atexit.register(stop_cluster)
        _started_here = process
        logger.info("Started qcluster (pid %s)", process.pid)
        return process.pid


def stop_cluster(timeout: float = 30.0) -> None:
    """Stop the qcluster this process started (at exit): django-q2 lets running tasks finish."""
    process = _started_here
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    _pid_file().unlink(missing_ok=True)


def resume_if_started() -> None:
    """At server start: a queue that was started before a restart gets its workers back."""
    try:
        if queue_settings()["start_cluster"] and accepting() and \
                ImprovementTask.objects.filter(status__in=(Status.PENDING, Status.RUNNING)).exists():
            start()
    except Exception:  # the database may not be migrated yet
        logger.exception("Could not resume the improvement queue")


# --- the SSE feed for the UI -------------------------------------------------------------

def _changes(seen: dict, since):
    """Tasks updated since `since` that `seen` has not shown at that version, and the summary."""
    recover_expired()
    rows = ImprovementTask.objects.order_by("updated_at")
    rows = rows.filter(updated_at__gte=since) if since else rows.exclude(status__in=FINISHED)
    changed = [task for task in rows if seen.get(task.pk) != task.updated_at]
    summary = queue_status()
    summary.pop("tasks")
    return changed, summary


def _as_json(data: dict) -> dict:
    """Datetimes as ISO text, as the JSON endpoints show them."""
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


async def queue_events():
    """(event, data): `status` first and after every change, `task` for each changed task."""
    poll = float(queue_settings()["events_poll_seconds"])
    seen: dict = {}
    since = None
    first = True
    while True:
        changed, summary = await db_async(_changes)(seen, since)
        for task in changed:
            seen[task.pk] = task.updated_at
            since = max(since, task.updated_at) if since else task.updated_at
            yield "task", _as_json(task_payload(task))
        if first or changed:
            yield "status", _as_json(summary)
        if since is None:
            since = timezone.now()
        first = False
        await asyncio.sleep(poll)
