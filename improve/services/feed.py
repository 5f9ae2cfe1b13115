"""The queue's live feed for the UI (GET /improve/queue/events): a poll of the task rows every
improve_queue.events_poll_seconds that yields what changed. It only reads (improve.selectors);
the API frames each event through the output serializers."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from django.utils import timezone

from codegen_site.core.db import db_async
from improve import selectors
from improve.config import queue_settings


def _changes(seen: dict, since) -> tuple[list, dict]:
    return selectors.changed_tasks(seen, since), selectors.queue_summary()


async def queue_events() -> AsyncIterator[tuple[str, object]]:
    """(event, data): `status` (the summary) first and after every change, `task` (an
    ImprovementTask) for each changed task."""
    seen: dict = {}
    since = None
    first = True
    while True:
        changed, summary = await db_async(_changes)(seen, since)
        for task in changed:
            seen[task.pk] = task.updated_at
            since = max(since, task.updated_at) if since else task.updated_at
            yield "task", task
        if first or changed:
            yield "status", summary
        if since is None:
            since = timezone.now()
        first = False
        await asyncio.sleep(queue_settings().events_poll_seconds)
