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
    # The acting user's name; "local" in the single-user mode.
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


class ApiToken(models.Model):
    """A user's personal API token (multi-user mode, security.users). Only the token's sha256 is
    kept: the token itself is shown once, when it is made (codegen_site.core.users)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    # The token's first characters, to tell tokens apart in lists; never enough to use it.
    prefix = models.CharField(max_length=12, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) of {self.user}"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class AuditEntry(models.Model):
    """Who did what, and when: file writes and restores, applies and undos, code runs, setting
    changes and queue control (codegen_site.core.audit)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    # The user's name then ("local" in the single-user mode): kept when the user is deleted.
    actor = models.CharField(max_length=150)
    action = models.CharField(max_length=60, db_index=True)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    status = models.PositiveSmallIntegerField()
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.created_at:%Y-%m-%d %H:%M:%S}"
