"""Reads: a workspace file as text, and the backup index (lists, lookups, totals).

Every client path goes through codegen_site.core.workspace (`workspace_file` checks it);
nothing here writes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db.models import Count, Max, QuerySet, Sum

from codegen_site.core import workspace
from codegen_site.core.errors import BadInput, NotFound, PathNotFound
from files_app.config import files_settings
from files_app.models import PATH_MAX_LENGTH, Backup


@dataclass(frozen=True)
class ReadResult:
    path: Path                 # absolute
    relative_path: str         # as the API shows it
    content: str
    size: int


def workspace_file(client_path: str | os.PathLike) -> Path:
    """The workspace file a client path names (resolved; it need not exist). The workspace's
    400s for paths out of reach; BadInput for the root itself and for an over-long path."""
    target = workspace.resolve(client_path)
    if target == workspace.root():
        raise BadInput("Path names the workspace root, not a file")
    if len(workspace.relative(target)) > PATH_MAX_LENGTH:
        raise BadInput(f"Path is longer than {PATH_MAX_LENGTH} characters")
    return target


def existing_bytes(target: Path, limit: int) -> bytes | None:
    """A workspace file's bytes (None when it does not exist); the workspace's refusals otherwise."""
    try:
        return workspace.read_bytes(target, limit)
    except PathNotFound:
        return None


def decode_text(data: bytes, shown: str) -> str:
    """UTF-8 text, or BadInput naming `shown` for binary content."""
    if b"\x00" in data:
        raise BadInput(f"File is binary, not text: {shown}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"File is not UTF-8 text (binary?): {shown}") from None


def read_file(client_path: str | os.PathLike) -> ReadResult:
    """A workspace file as UTF-8 text.

    Raises PathNotFound (404) when missing, BadInput (400) for a directory, a binary
    file or one over files.max_file_bytes, and the workspace's 400s for paths out of reach."""
    target = workspace_file(client_path)
    shown = workspace.relative(target)
    data = existing_bytes(target, files_settings().max_file_bytes)
    if data is None:
        raise PathNotFound(f"Path not found: {shown}")
    return ReadResult(path=target, relative_path=shown, content=decode_text(data, shown), size=len(data))


def list_backups(client_path: str | os.PathLike | None = None) -> QuerySet[Backup]:
    """Backups newest first, all or those of one file."""
    rows = Backup.objects.all()
    if client_path not in (None, ""):
        rows = rows.filter(path=workspace.relative(workspace_file(client_path)))
    return rows.order_by("-created_at", "-id")


def get_backup(backup_id: int) -> Backup:
    try:
        return Backup.objects.get(pk=backup_id)
    except (Backup.DoesNotExist, ValueError, TypeError, OverflowError):
        raise NotFound(f"Backup {backup_id} not found") from None


def find_backup(backup_path: str) -> Backup:
    """The newest backup stored at `backup_path` (relative to the data dir, or absolute inside it)."""
    text = str(backup_path).strip()
    candidate = Path(text)
    if candidate.is_absolute():
        try:
            text = candidate.relative_to(Path(settings.DATA_DIR)).as_posix()
        except ValueError:
            raise NotFound(f"No backup stored at {backup_path}") from None
    backup = Backup.objects.filter(stored_path=text).order_by("-created_at", "-id").first()
    if backup is None:
        raise NotFound(f"No backup stored at {backup_path}")
    return backup


def backup_totals() -> dict:
    """Row count and bytes as versions, and the distinct content actually stored."""
    rows = Backup.objects.aggregate(backups=Count("id"), version_bytes=Sum("size"), files=Count("path", distinct=True))
    stored = Backup.objects.values("sha256").annotate(blob_size=Max("size")).aggregate(
        blobs=Count("sha256"), stored_bytes=Sum("blob_size"))
    return {"backups": rows["backups"], "files": rows["files"], "version_bytes": rows["version_bytes"] or 0,
            "blobs": stored["blobs"], "stored_bytes": stored["stored_bytes"] or 0}
