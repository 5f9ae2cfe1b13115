"""The audit log (multi-user mode): who wrote or restored a file, applied or undid a change, ran
code, changed a setting or controlled the queue, when, and with which arguments. The middleware
(codegen_site.middleware) records every such call once its answer is known, in one place rather
than in each view; the admin shows the entries read-only."""

from __future__ import annotations

import json

from codegen_site.core.permissions import url_name

# (URL name, method) → action recorded.
AUDITED: dict[tuple[str, str], str] = {
    ("files-write", "POST"): "file write",
    ("files-restore", "POST"): "file restore",
    ("improve-apply", "POST"): "improvement apply",
    ("improve-run", "POST"): "improvement run",
    ("improve-change-apply", "POST"): "change apply",
    ("improve-change-undo", "POST"): "change undo",
    ("code-run", "POST"): "code run",
    ("workflow", "POST"): "workflow run",
    ("config", "PATCH"): "settings change",
    ("improve-queue-start", "POST"): "queue start",
    ("improve-queue-stop", "POST"): "queue stop",
    ("improve-queue-clear", "POST"): "queue clear",
}
# Longer text arguments (a file's content, code) are recorded by their length only.
LONGEST_KEPT = 300


def action_of(path: str, method: str) -> str | None:
    return AUDITED.get((url_name(path) or "", method))


def _summary(value):
    if isinstance(value, str) and len(value) > LONGEST_KEPT:
        return f"<{len(value)} characters>"
    if isinstance(value, list):
        return [_summary(item) for item in value[:50]]
    if isinstance(value, dict):
        return {key: _summary(item) for key, item in list(value.items())[:50]}
    return value


def arguments(body: bytes) -> dict:
    """The call's JSON arguments as recorded (long texts by their length); {} for any other body."""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return {}
    return _summary(data) if isinstance(data, dict) else {}


def record(principal, action: str, method: str, path: str, status: int, detail: dict) -> None:
    from codegen_site.core.models import AuditEntry

    user = principal.user if principal is not None else None
    AuditEntry.objects.create(user=user, actor=user.get_username() if user is not None else "local",
                              action=action, method=method, path=path[:500], status=status, detail=detail)
