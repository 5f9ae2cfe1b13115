"""The application settings saved in the database: what PATCH /config writes, shared by every
server and worker process on every host (codegen_site.core.config puts them between the
shipped defaults and the environment).

A save merges its patch into the one row under that row's write lock, so two PATCHes at the
same instant (on two hosts) each keep the other's keys, and records the change with its
author. Each process reads the row every monitor.poll_seconds (one read by primary key, in
codegen_site.core.monitor's thread) and applies it when its version moved; the request path
reads none of it. GET /health shows the version a process applies."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from codegen_site.core import config
from codegen_site.core.models import SavedSettings, SettingsChange

logger = logging.getLogger(__name__)

ROW = 1


def _merge(values: dict, patch: dict) -> dict:
    merged = dict(values)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _ensure_row() -> None:
    if SavedSettings.objects.filter(pk=ROW).exists():
        return
    try:
        with transaction.atomic():
            SavedSettings.objects.create(pk=ROW)
    except IntegrityError:  # another process made it first
        pass


def save(patch: dict, author: str = "", user=None) -> int:
    """Merge a validated patch into the saved settings and record the change; the new version,
    in effect in this process on return (and in the others within a poll)."""
    _ensure_row()
    with transaction.atomic():
        row = SavedSettings.objects.select_for_update().get(pk=ROW)
        row.values = _merge(row.values, patch)
        row.version += 1
        row.save(update_fields=["values", "version", "updated_at"])
        SettingsChange.objects.create(version=row.version, patch=patch, author=author, user=user)
        version, values = row.version, row.values
    # Read under the row's lock: the newest there is, even where a reset left this process ahead.
    config.apply_saved(version, values, force=True)
    return version


# A version below the one in effect, as last read: a read that raced this process's own save
# sees it once; a database reset or restored (the row gone or older) shows it read after read.
_lower_read: int | None = None


def refresh() -> int:
    """Read the saved version and, when it differs from the one in effect here, the values (a
    lower one only when two reads in a row agree); the version read. Raises what the database
    raises (the monitor reports it)."""
    global _lower_read
    row = SavedSettings.objects.filter(pk=ROW).values("version", "values").first()
    version, values = (row["version"], row["values"]) if row else (0, {})
    current = config.saved_version()
    if version < current and _lower_read != version:
        _lower_read = version
        return version
    _lower_read = None
    if version != current and config.apply_saved(version, values, force=True):
        logger.info("Settings version %s applied", version)
    return version


def history(limit: int = 20) -> list[SettingsChange]:
    return list(SettingsChange.objects.all()[:limit])
