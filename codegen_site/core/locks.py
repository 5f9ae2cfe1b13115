"""Named locks that hold across processes and hosts: a row per name in the project database,
held by its write lock for the length of the caller's transaction.

    with transaction.atomic():
        hold("rag-index")          # waits while another process holds it
        ...check, then record...   # no other process is between the check and the record

On PostgreSQL the row is locked FOR UPDATE; on SQLite a transaction that writes already holds the
database's one write lock (the project opens them IMMEDIATE), and the row's update takes it."""

from __future__ import annotations

from django.db import IntegrityError, connection, transaction

from codegen_site.core.models import NamedLock


def hold(name: str) -> None:
    """Take the lock `name` until the current transaction ends (inside transaction.atomic)."""
    if not connection.in_atomic_block:
        raise RuntimeError("locks.hold needs a transaction: call it inside transaction.atomic()")
    if not NamedLock.objects.filter(name=name).exists():
        try:
            with transaction.atomic():  # a savepoint: a process that made the row first is no error
                NamedLock.objects.create(name=name)
        except IntegrityError:
            pass
    # An UPDATE, not only a SELECT ... FOR UPDATE: SQLite ignores FOR UPDATE, and a write is
    # what takes its lock in a transaction that has not written yet.
    NamedLock.objects.filter(name=name).update(name=name)
