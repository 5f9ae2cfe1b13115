"""The core's tables: the application settings saved by PATCH /config (shared by every server
and worker process on every host) with the record of each change, and named locks that hold
across processes."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class SavedSettings(models.Model):
    """One row (pk 1): the settings PATCH /config saved, over config/default.toml and under the
    environment. `version` grows by one with every save; each process compares it with the one
    it applies (codegen_site.core.config_store)."""

    values = models.JSONField(default=dict)
    version = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "saved settings"

    def __str__(self) -> str:
        return f"settings version {self.version}"


class SettingsChange(models.Model):
    """One PATCH /config: what it changed, the version it made and who made it."""

    version = models.PositiveBigIntegerField(db_index=True)
    patch = models.JSONField()
    # "local" for the single-user mode; the user's name once requests carry one.
    author = models.CharField(max_length=150, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"version {self.version} by {self.author or 'unknown'}"


class NamedLock(models.Model):
    """A row per lock name; holding the lock is holding this row's write lock for the length of
    a transaction (codegen_site.core.locks)."""

    name = models.CharField(max_length=200, primary_key=True)

    def __str__(self) -> str:
        return self.name
