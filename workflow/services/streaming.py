"""SSE framing of workflow events: errors become an `error` event instead of a broken stream."""

from __future__ import annotations

import logging
import uuid
from contextlib import aclosing
from typing import AsyncIterator

from codegen_site.errors import ServiceBusy
from codegen_site.llm import LLMError
from codegen_site.sse import sse_frame
from workflow.services.pipeline import workflow_events

logger = logging.getLogger(__name__)


async def workflow_sse(task: str, session_id: uuid.UUID | None = None) -> AsyncIterator[bytes]:
    async with aclosing(workflow_events(task, session_id)) as events:
        try:
            async for name, data in events:
                yield sse_frame(name, data)
        except LLMError as exc:
            yield sse_frame("error", {"detail": exc.detail, "status": exc.status_code})
        except ServiceBusy as exc:
            yield sse_frame("error", {"detail": str(exc), "status": 429})
        except Exception:
            logger.exception("Workflow stream failed")
            yield sse_frame("error", {"detail": "Internal server error", "status": 500})
