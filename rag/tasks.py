"""Queue entry point for background index runs (django-q2 `async_task`)."""

from __future__ import annotations

from rag import services
from rag.models import IndexRun


def run_index(run_id: int) -> dict:
    """Index the path of a queued run; its progress and outcome are on the run row (/rag/status)."""
    run = IndexRun.objects.get(pk=run_id)
    return services.index_path(run.path, run=run)
