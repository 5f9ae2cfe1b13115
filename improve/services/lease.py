"""The lease protocol between the queue's rows and its workers.

- a worker claims a task with a conditional UPDATE (pending → running), so two messages for
  one task (a re-enqueue, a broker redelivery) never run it twice at once;
- the claim carries a lease the worker renews on a heartbeat (a thread with its own
  connection) and with every step it reports;
- a task whose lease ran out (its worker was killed) goes back to pending until it has been
  tried improve_queue.max_attempts times, then fails with the reason: `recover_expired`, run
  by every worker before a task, by `start`, by the cluster's schedule every minute, and in
  each server process by the `LeaseSweeper` every heartbeat, so no task stays running for ever
  and a killed worker's task is retried within about a lease;
- `reconcile` adds what a dead worker cluster leaves behind: a pending task whose broker message
  is gone (taken ahead of time by the cluster, or lost with Redis) is sent again once it has
  waited a lease, and an ImprovementRun its killed attempt left `running` ends `interrupted`.
  Its last round is kept in the cache for GET /improve/queue/status."""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import uuid
from contextlib import contextmanager
from datetime import timedelta

from django.core.cache import cache
from django.db import close_old_connections, connection
from django.db.models import F
from django.utils import timezone

from improve import selectors
from improve.config import queue_settings
from improve.models import ImprovementRun, ImprovementTask
from improve.services.broker import enqueue, waiting_task_ids

logger = logging.getLogger(__name__)

Status = ImprovementTask.Status
RUN_RUNNING = ImprovementRun.Status.RUNNING
RUN_INTERRUPTED = ImprovementRun.Status.INTERRUPTED
# Where a task's progress stands when its run reaches each step (kept monotonic).
STEP_PROGRESS = {"claimed": 0.02, "read": 0.05, "generate": 0.2, "validate": 0.5, "retry": 0.6, "write": 0.9}


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _lease_end():
    return timezone.now() + timedelta(seconds=queue_settings().lease_seconds)


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
    done = threading.Event()
    interval = queue_settings().heartbeat_seconds

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


def send(task_id) -> bool:
    """Enqueue a message for the task; False (logged) when the broker is away: the row stays
    pending and the reconciliation sends it again once the broker answers."""
    try:
        enqueue(task_id)
    except Exception as exc:  # Redis away: nothing is lost, the row is the truth
        logger.warning("Task %s: could not reach the queue's broker (%s); it will be sent again", task_id, exc)
        return False
    return True


def _interrupt_run(task: ImprovementTask, reason: str) -> int:
    """End the run the task's dead attempt left running: the one it reported, or, killed before it
    reported one, the run of its file it made after its claim."""
    runs = ImprovementRun.objects.filter(status=RUN_RUNNING)
    if task.run_id is not None:
        runs = runs.filter(pk=task.run_id)
    elif task.started_at is not None:
        runs = runs.filter(file_path=task.file_path, created_at__gte=task.started_at)
    else:
        return 0
    return runs.update(status=RUN_INTERRUPTED, error=reason, finished_at=timezone.now())


def recover_expired(interrupted: list[int] | None = None) -> int:
    """Running tasks whose lease ran out: back to pending (enqueued when accepting) or failed;
    the run their attempt left running ends interrupted (counted into `interrupted`, when given)."""
    interrupted = [] if interrupted is None else interrupted
    max_attempts = queue_settings().max_attempts
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
                interrupted.append(_interrupt_run(task, reason))
                logger.warning("Task %s: %s; back to pending", task.pk, reason)
                if selectors.accepting():
                    send(task.pk)
        elif expired.update(status=Status.FAILED, step="done", lease_until=None, finished_at=now, updated_at=now,
                            error=f"{reason}; gave up after {task.attempts} attempt(s) (improve_queue.max_attempts)"):
            recovered += 1
            interrupted.append(_interrupt_run(task, reason))
            logger.warning("Task %s: %s; failed", task.pk, reason)
    return recovered


def resend_lost() -> int:
    """Pending tasks without a message in the broker, waiting for a lease or longer: sent again
    (each by one process: the row's updated_at is moved on by the one that sends). A message
    still held by a live cluster may so get a twin, which finds the task taken and does nothing."""
    if not selectors.accepting():
        return 0
    now = timezone.now()
    before = now - timedelta(seconds=queue_settings().lease_seconds)
    stale = list(ImprovementTask.objects.filter(status=Status.PENDING, updated_at__lt=before)
                 .values_list("pk", "updated_at"))
    if not stale:
        return 0
    waiting = waiting_task_ids()
    resent = 0
    for task_id, updated_at in stale:
        if str(task_id) in waiting:
            continue
        if ImprovementTask.objects.filter(pk=task_id, status=Status.PENDING, updated_at=updated_at).update(
                updated_at=now):
            if send(task_id):
                resent += 1
                logger.warning("Task %s: pending without a message in the broker; sent again", task_id)
    return resent


def interrupt_dead_runs() -> int:
    """Runs left `running` that no attempt can still be at: older than the longest a task may run
    (improve_queue.task_timeout) and held by no running task (POST /improve/run on a server that
    was killed, an attempt whose task went on without it)."""
    before = timezone.now() - timedelta(seconds=queue_settings().task_timeout)
    held = ImprovementTask.objects.filter(status=Status.RUNNING, run__isnull=False).values("run_id")
    dead = ImprovementRun.objects.filter(status=RUN_RUNNING, created_at__lt=before).exclude(pk__in=held)
    return dead.update(status=RUN_INTERRUPTED, finished_at=timezone.now(),
                       error="interrupted: its process stopped before the run ended")


def reconcile() -> dict:
    """One round: expired leases recovered, lost messages sent again, dead runs interrupted.
    What it did is kept (in the cache, shared by the processes when it is Redis) for the status."""
    interrupted: list[int] = []
    done = {"at": timezone.now().isoformat(), "recovered": recover_expired(interrupted), "resent": resend_lost()}
    done["interrupted"] = sum(interrupted) + interrupt_dead_runs()
    try:
        cache.set(selectors.RECONCILED_KEY, done, timeout=None)
    except Exception:  # the cache may be away; the round itself is done
        logger.warning("Could not record the queue's reconciliation in the cache")
    return done


class LeaseSweeper:
    """A server process's periodic step: `reconcile` every heartbeat_seconds, in a thread
    with its own connection, from `start()` (improve.resources.start_with_server) to `close()`."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping.clear()
            self._thread = threading.Thread(target=self._sweep, name="improve-lease-sweeper", daemon=True)
            self._thread.start()

    def _sweep(self) -> None:
        try:
            while not self._stopping.wait(queue_settings().heartbeat_seconds):
                try:
                    close_old_connections()
                    reconcile()
                except Exception as exc:  # the database or Redis may be away; the next round tries again
                    logger.warning("The queue's reconciliation failed: %s", exc)
                    connection.close()
        finally:
            connection.close()

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        self._stopping.set()
        if thread is not None:
            thread.join(timeout=timeout)


@functools.cache
def lease_sweeper() -> LeaseSweeper:
    """This process's sweeper (the object is made on first call; its thread by `start`)."""
    return LeaseSweeper()
