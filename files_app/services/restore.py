"""Putting a backup back, and comparing one with the file it came from.

A restore backs up the content it replaces (reason "restore") first, so a restore can itself
be undone by restoring that backup."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

from codegen_site.core.errors import BadInput
from files_app.config import files_settings
from files_app.models import Backup
from files_app.selectors import decode_text, existing_bytes, find_backup, get_backup, workspace_file
from files_app.services.store import read_blob
from files_app.services.writes import write_bytes


@dataclass(frozen=True)
class RestoreResult:
    path: Path                 # absolute
    relative_path: str
    restored_from: Backup      # the version now in the file
    backup: Backup | None      # the content the restore replaced (undo by restoring it)
    created: bool

    @property
    def backup_path(self) -> str | None:
        return self.backup.stored_path if self.backup else None

    @property
    def backup_id(self) -> int | None:
        return self.backup.id if self.backup else None


@dataclass(frozen=True)
class DiffResult:
    backup: Backup
    relative_path: str
    diff: str
    changed: bool
    current_exists: bool


def restore(*, backup_id: int | None = None, backup_path: str | None = None,
            original_path: str | os.PathLike | None = None) -> RestoreResult:
    """Put a backup's content back into its file (or into `original_path`).

    The content the restore replaces is backed up first with reason "restore", so
    restoring that backup undoes the restore. NotFound (404) for an unknown backup,
    Conflict (409) when the stored bytes no longer match their checksum."""
    if backup_id is not None:
        backup = get_backup(backup_id)
    elif backup_path:
        backup = find_backup(backup_path)
    else:
        raise BadInput("Give backup_id or backup_path")
    target = workspace_file(original_path if original_path not in (None, "") else backup.path)
    data = read_blob(backup)
    written = write_bytes(target, data, create_backup=True, reason=Backup.Reason.RESTORE)
    return RestoreResult(path=written.path, relative_path=written.relative_path, restored_from=backup,
                         backup=written.backup, created=written.created)


def unified_diff(old: str, new: str, path: str, *, new_exists: bool = True) -> str:
    """A unified diff of two versions of `path` (a/ to b/), marking a last line without a newline."""
    lines = []
    for line in difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                     fromfile=f"a/{path}", tofile=f"b/{path}" if new_exists else "/dev/null"):
        lines.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(lines)


def diff_backup(backup_id: int) -> DiffResult:
    """A unified diff from a backup (a/) to the file's current content (b/)."""
    backup = get_backup(backup_id)
    old = decode_text(read_blob(backup), f"backup {backup.id}")
    current = existing_bytes(workspace_file(backup.path), files_settings().max_file_bytes)
    new = "" if current is None else decode_text(current, backup.path)
    diff = unified_diff(old, new, backup.path, new_exists=current is not None)
    return DiffResult(backup=backup, relative_path=backup.path, diff=diff, changed=old != new,
                      current_exists=current is not None)
