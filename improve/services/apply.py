"""Writing a validated proposal into the user's file, through the files service (backup reason
"improve"), and never over a change made since the improvement read the file:

- `write_if_unchanged`: the run's own write (auto_write), 409 when the file changed meanwhile;
- POST /improve/apply (a proposal kept by auto_write=false) is services.improvement_apply: a one-file
  ProjectChange, a commit in a git workspace;
- `written_before`: crash recovery for the queue. A worker killed between the write and its
  report leaves a run whose proposal is in the file; the retried task finds it and completes
  without asking the LLM again."""

from __future__ import annotations

import hashlib

from codegen_site.core.errors import BadInput, Conflict, NotFound
from files_app.models import Backup
from files_app.services import read_file, write_file
from improve.models import ImprovementRun

Status = ImprovementRun.Status


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_if_unchanged(run: ImprovementRun, shown: str, content: str) -> None:
    """Write the proposal unless the file changed since it was read (then 409); the run is
    marked applied with its backup (the caller saves it)."""
    current = read_file(shown).content
    if sha256_text(current) != run.original_sha256:
        raise Conflict(f"{shown} changed since the improvement read it; nothing was written")
    written = write_file(shown, content, reason=Backup.Reason.IMPROVE)
    run.backup_path = written.backup_path or ""
    run.status = Status.APPLIED


def written_before(run: ImprovementRun) -> ImprovementRun | None:
    """The run, now applied, when its proposal reached the file although its process stopped
    before saying so (a queue worker killed mid-write); None when it did not."""
    if run.status == Status.APPLIED:
        return run
    if not (run.auto_write and run.proposed_content):
        return None
    try:
        current = read_file(run.file_path).content
    except (BadInput, NotFound):
        return None
    if sha256_text(current) != sha256_text(run.proposed_content) or \
            sha256_text(current) == run.original_sha256:
        return None
    backup = Backup.objects.filter(path=run.file_path, reason=Backup.Reason.IMPROVE,
                                   sha256=run.original_sha256).first()
    run.status, run.error = Status.APPLIED, ""
    run.backup_path = backup.stored_path if backup else ""
    run.save(update_fields=["status", "error", "backup_path"])
    return run
