"""POST /improve/apply: a proposal kept by auto_write=false, written as a one-file ProjectChange so it is
applied and undone as any project change is (services.change_apply, POST /improve/change/{id}/undo):

- a git workspace (its root the repository's top level, a branch checked out, the file holding no
  uncommitted or staged edits): the proposal becomes a commit on its own branch `codegen/<id>` from HEAD,
  fast-forwarded onto the user's branch with the file written (backup reason "improve"); undo moves the
  branch back (or reverts), 409 when later work changed the file;
- otherwise the file is written with a backup as before, and the change's evidence says why it is not a
  commit (`git_reason`): no repository, a detached HEAD, or the user's own edits in that file, which a
  commit would carry away with the improvement. Undo restores the backup.

The run is claimed with a conditional UPDATE first, so two concurrent applies cannot both write. Undoing
the change puts the run back to `proposed` (the file again holds what the proposal was made from)."""

from __future__ import annotations

from codegen_site.core import workspace
from codegen_site.core.errors import Conflict, NotFound, ServiceError
from codegen_site.core.users import visible
from files_app.models import Backup
from files_app.services import read_file
from improve.models import ImprovementRun, ProjectChange
from improve.services.apply import sha256_text
from improve.services.change import commit_on_branch
from improve.services.change_apply import apply_change, clean_in_git
from improve.services.change_git import open_repo

Status = ImprovementRun.Status


def _instruction(run: ImprovementRun) -> str:
    issue = run.issue or {}
    where = f" (line {issue['line']})" if issue.get("line") else ""
    return f"Improve {run.file_path}{where}: {issue.get('message') or 'the reported issue'}"


def _git_or_reason(item: dict):
    """(the repository to commit in, None) or (None, why the write is not a commit)."""
    repo = open_repo(workspace.root())
    if repo is None:
        return None, "The workspace is not the top level of a git repository with a commit; written with a backup"
    if not repo.branch():
        return None, "HEAD is detached; written with a backup, not committed"
    try:
        clean_in_git(repo, repo.head(), [item])
    except Conflict as exc:
        return None, f"{exc.detail}. A commit would carry that work away, so the file was written with a backup " \
                     "and not committed"
    return repo, ""


def _as_change(run: ImprovementRun) -> ProjectChange:
    """The run's proposal as a proposed ProjectChange (on its own branch when it can be a commit)."""
    original = read_file(run.file_path).content
    item = {"path": run.file_path, "status": "modified", "format": "whole", "original": original,
            "original_sha256": run.original_sha256, "proposed": run.proposed_content,
            "proposed_sha256": sha256_text(run.proposed_content), "diff": run.diff}
    repo, reason = _git_or_reason(item)
    attempts = [{"number": attempt["number"], "applied": True, "passed": attempt["passed"],
                 "output": attempt["validation_output"], "broken_tests": attempt["broken_tests"]}
                for attempt in run.attempts]
    # the run's owner owns the change it is applied as (an admin applying it does not take it over)
    change = ProjectChange(owner_id=run.owner_id, instruction=_instruction(run), paths=[run.file_path],
                           state=ProjectChange.State.PROPOSED,
                           files=[item], diff=run.diff, model=run.model, git=repo is not None,
                           max_repairs=run.max_retries, finished_at=run.finished_at,
                           evidence={"improvement_run": str(run.pk), "attempts": attempts,
                                     "validation_output": run.validation_output, "git_reason": reason})
    if repo is not None:
        commit_on_branch(repo, change)
    change.save()
    return change


def _discard(change: ProjectChange | None) -> None:
    """A change that could not be applied: its branch and row removed, as if never made."""
    if change is None:
        return
    if change.branch:
        repo = open_repo(workspace.root())
        if repo is not None:
            repo.delete_branch(change.branch, change.commit)
    ProjectChange.objects.filter(pk=change.pk, state=ProjectChange.State.PROPOSED).delete()


def apply_proposal(run_id) -> ImprovementRun:
    """Write a proposal kept by auto_write=false; 409 when the file changed since or it was applied."""
    try:
        run = visible(ImprovementRun.objects).get(pk=run_id)
    except ImprovementRun.DoesNotExist:
        raise NotFound(f"No improvement run {run_id}") from None
    if run.status == Status.APPLIED:
        raise Conflict("This proposal was applied already")
    if run.status != Status.PROPOSED:
        raise Conflict(f"This run has no validated proposal to apply (status {run.status})")
    if sha256_text(read_file(run.file_path).content) != run.original_sha256:
        raise Conflict(f"{run.file_path} changed since the proposal was made; run the improvement again")
    if not ImprovementRun.objects.filter(pk=run.pk, status=Status.PROPOSED).update(status=Status.APPLIED):
        raise Conflict("This proposal was applied already")
    change = None
    try:
        change = _as_change(run)
        change = apply_change(change.pk)
    except BaseException:
        ImprovementRun.objects.filter(pk=run.pk).update(status=Status.PROPOSED)
        try:
            _discard(change)
        except ServiceError:
            pass  # the apply's own error is the one to answer with
        raise
    backup_id = change.backups[0]["backup_id"] if change.backups else None
    backup = Backup.objects.filter(pk=backup_id).first() if backup_id is not None else None
    run.backup_path = backup.stored_path if backup else ""
    run.status, run.change = Status.APPLIED, change
    run.save(update_fields=["backup_path", "status", "change"])
    return run

