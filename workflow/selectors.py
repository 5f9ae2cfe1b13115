"""Reads of stored workflow runs."""

from __future__ import annotations

import uuid

from codegen_site.core.users import visible
from workflow.models import WorkflowRun


def previous_code(session_id: uuid.UUID, exclude_pk: int, limit: int) -> str:
    """The code of the session's latest other run that wrote some, cut to `limit` characters (in
    multi-user mode only the user's own runs: another's session id brings none of its code)."""
    previous = (visible(WorkflowRun.objects).filter(session_id=session_id).exclude(pk=exclude_pk).exclude(code="")
                .order_by("-created_at", "-id").only("code").first())
    if previous is None:
        return ""
    return previous.code if len(previous.code) <= limit else previous.code[:limit] + "\n# ... (truncated)\n"
