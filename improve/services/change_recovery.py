"""A queued change whose worker died: what the retried task finds (improve.tasks).

The task is claimed by one worker at a time (services.lease), so a change is made once; this
covers the one gap left, a worker that stops after it made the change and before it stored the
task's result. The ProjectChange rows carry their task's id."""

from __future__ import annotations

from codegen_site.core import workspace
from improve.models import ProjectChange
from improve.services.change_apply import apply_change
from improve.services.change_git import open_repo

State = ProjectChange.State


def made_by(task_id, *, auto_apply: bool) -> ProjectChange | None:
    """The proven change an earlier attempt of the task made (applied now when the task asked
    for it and that had not happened); None when there is none and the change is to be made.
    A change the earlier attempt left running is failed, and its branch removed if it was made."""
    earlier = ProjectChange.objects.filter(task_id=task_id).order_by("-created_at").first()
    if earlier is None:
        return None
    if earlier.state == State.RUNNING:
        repo = open_repo(workspace.root()) if earlier.git else None
        if repo is not None:
            made = repo.ref(f"codegen/{earlier.pk}")
            if made:
                repo.delete_branch(f"codegen/{earlier.pk}", made)
        ProjectChange.objects.filter(pk=earlier.pk, state=State.RUNNING).update(
            state=State.FAILED, error="The worker making this change stopped; the task made it again")
        return None
    if earlier.state == State.PROPOSED and auto_apply:
        return apply_change(earlier.pk)
    # a refused or failed change is made again (an admin's requeue asks for that)
    return earlier if earlier.state in (State.PROPOSED, State.APPLIED, State.UNDONE) else None
