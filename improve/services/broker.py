"""What the queue hands to django-q2. The broker message only says "look at task X" (the
ImprovementTask row is the truth), so a duplicate message is harmless; and one schedule runs
the lease recovery in the cluster every minute, for the set-up where no server sweeps."""

from __future__ import annotations

PROCESS_TASK = "improve.tasks.process_task"
RECOVER_TASK = "improve.tasks.recover_expired"
RECOVERY_SCHEDULE = "improve-recover-expired"


def enqueue(task_id) -> None:
    from django_q.tasks import async_task

    async_task(PROCESS_TASK, str(task_id), task_name=f"improve-{task_id}", group="improve")


def ensure_recovery_schedule() -> None:
    """A django-q2 schedule runs improve.tasks.recover_expired every minute in the cluster, so a
    killed worker's task is retried even when no server process sweeps expired leases."""
    from django_q.models import Schedule

    Schedule.objects.get_or_create(name=RECOVERY_SCHEDULE, defaults={
        "func": RECOVER_TASK, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1})
