"""Backup retention: which versions go, and the stored content no remaining backup uses.

A backup is kept while it is among the newest `keep_last` of its file or younger than
`keep_days` (defaults from [files]; 0 turns a rule off, both 0 keep all). Pruning holds the
store's lock exclusively, so it never removes a blob a writer is about to reference."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from files_app.config import files_settings
from files_app.models import Backup
from files_app.services.store import store_lock, stored_files

DELETE_BATCH = 500


@dataclass
class PruneResult:
    deleted_backups: int = 0
    deleted_blobs: int = 0
    freed_bytes: int = 0
    kept_backups: int = 0
    dry_run: bool = False


def _doomed_backups(keep_last: int, keep_days: float) -> set[int]:
    """Ids of the backups outside both rules."""
    if keep_last <= 0 and keep_days <= 0:
        return set()
    candidates = Backup.objects.all()
    if keep_last > 0:
        # The age test stays out of this query: a WHERE on created_at would be
        # applied before the ranking and change which rows count as newest.
        candidates = candidates.annotate(rank=Window(
            RowNumber(), partition_by=[F("path")], order_by=[F("created_at").desc(), F("id").desc()],
        )).filter(rank__gt=keep_last)
    cutoff = timezone.now() - timedelta(days=keep_days)
    return {backup_id for backup_id, created_at in candidates.values_list("id", "created_at")
            if keep_days <= 0 or created_at < cutoff}


def prune_backups(keep_last: int | None = None, keep_days: float | None = None, *,
                  dry_run: bool = False) -> PruneResult:
    """Delete backups outside the retention rules, then blobs no row references."""
    configured = files_settings()
    keep_last = configured.backup_keep_last if keep_last is None else keep_last
    keep_days = configured.backup_keep_days if keep_days is None else keep_days
    result = PruneResult(dry_run=dry_run)
    with store_lock(exclusive=True):
        doomed = _doomed_backups(keep_last, keep_days)
        if doomed and not dry_run:
            ordered = sorted(doomed)
            for start in range(0, len(ordered), DELETE_BATCH):
                Backup.objects.filter(id__in=ordered[start:start + DELETE_BATCH]).delete()
        result.deleted_backups = len(doomed)
        # A blob stays while any remaining row (of any file) still points at it.
        referenced = set()
        for backup_id, sha256 in Backup.objects.values_list("id", "sha256").iterator():
            if backup_id not in doomed:
                referenced.add(sha256)
                result.kept_backups += 1
        for blob in stored_files():
            if blob.name in referenced:
                continue
            size = blob.stat().st_size
            if not dry_run:
                blob.unlink()
            result.deleted_blobs += 1
            result.freed_bytes += size
    return result
