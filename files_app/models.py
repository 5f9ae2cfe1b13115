"""The backup index. The bytes live in a content-addressed store under the data dir
(files_app.services.store); a row says which file a version belonged to and when."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

# Longest workspace-relative path accepted; keeps the path index within every database's key size.
PATH_MAX_LENGTH = 1024


class Backup(models.Model):
    class Reason(models.TextChoices):
        WRITE = "write"
        IMPROVE = "improve"
        RESTORE = "restore"

    # Workspace-relative and '/'-separated, as the API shows it.
    path = models.CharField(max_length=PATH_MAX_LENGTH)  # indexed by backup_path_newest
    # Relative to the data dir: backups/<sha256[:2]>/<sha256>. Shared by every row with the same content.
    stored_path = models.CharField(max_length=255, db_index=True)
    sha256 = models.CharField(max_length=64, db_index=True)
    size = models.BigIntegerField()
    reason = models.CharField(max_length=16, choices=Reason.choices, default=Reason.WRITE)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        # The id breaks ties between versions taken within the same clock tick.
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["path", "-created_at"], name="backup_path_newest")]

    def __str__(self) -> str:
        return f"{self.path} @ {self.created_at:%Y-%m-%d %H:%M:%S} ({self.reason})"
