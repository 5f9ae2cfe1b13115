"""SSE framing of workflow events: errors become an `error` event instead of a broken stream."""

from __future__ import annotations

import uuid
from contextlib import aclosing
from typing import AsyncIterator

from codegen_site.core.sse import sse_error_frame, sse_frame
from workflow.services.pipeline import workflow_events


async def workflow_sse(task: str, session_id: uuid.UUID | None = None) -> AsyncIterator[bytes]:
    async with aclosing(workflow_events(task, session_id)) as events:
        try:
            async for name, data in events:
                yield sse_frame(name, data)
        except Exception as exc:
            yield sse_error_frame(exc)
