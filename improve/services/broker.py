"""What the queue hands to django-q2. The broker message only says "look at task X" (the
ImprovementTask row is the truth), so a duplicate message is harmless; and one schedule runs
the queue's reconciliation in the cluster every minute, for the set-up where no server sweeps.

`waiting_task_ids` reads which tasks have a message in the broker: a pending task without one
(its message was taken by a worker cluster that died, or Redis lost it) is sent again by the
reconciliation (services.queue.reconcile)."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

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


def _payloads(broker) -> list:
    from django_q.brokers.orm import ORM
    from django_q.brokers.redis_broker import Redis

    if isinstance(broker, Redis):
        return broker.connection.lrange(broker.list_key, 0, -1)
    if isinstance(broker, ORM):
        # Every row counts, locked ones too: django-q2 hands a locked message out again once
        # its lock runs out (a cluster that took it and died).
        return list(broker.get_connection().filter(key=broker.list_key).values_list("payload", flat=True))
    raise TypeError(f"cannot list the messages of a {type(broker).__name__} broker")


def waiting_task_ids() -> set[str]:
    """The ids of the tasks that have a message waiting in the broker (not yet taken by a
    worker cluster). Raises when the broker cannot be read (Redis away)."""
    from django_q.brokers import get_broker
    from django_q.signing import BadSignature, SignedPackage

    found = set()
    for payload in _payloads(get_broker()):
        try:
            message = SignedPackage.loads(payload)
        except BadSignature:  # another site's message on a shared broker
            continue
        if message.get("func") == PROCESS_TASK and message.get("args"):
            found.add(str(message["args"][0]))
    return found
