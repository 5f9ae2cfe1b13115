"""Background index runs on the queue (django-q2): handed over when the request commits, run by a worker."""

from __future__ import annotations

from dataclasses import asdict

from django.db import transaction

from rag.models import IndexRun
from rag.selectors import get_run
from rag.services import index_path


def queue_index(run: IndexRun) -> None:
    """Queue a recorded run once the request's transaction commits (a worker never sees it unsaved)."""
    from django_q.tasks import async_task

    transaction.on_commit(lambda: async_task("rag.tasks.run_index", run.pk, task_name=f"rag-index-{run.pk}"))


def run_index(run_id: int) -> dict:
    """Index the path of a queued run; its progress and outcome are on the run row (/rag/status).
    The queue keeps the returned figures as the task's result."""
    run = get_run(run_id)
    return asdict(index_path(run.path, run=run))
