"""The backup store: content-addressed blobs under DATA_DIR/backups/<sha256[:2]>/<sha256>.

Identical content is stored once and no two versions can collide. `Backup.stored_path` (and
the API's `backup_path`) is a blob's location relative to the data dir. Writers hold a shared
lock on the store while they add a blob and its row; pruning holds it exclusively, so it never
removes a blob a writer is about to reference."""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from django.conf import settings

from codegen_site.core.errors import Conflict, NotFound
from files_app.models import Backup

STORE_NAME = "backups"
CHUNK_BYTES = 1 << 20
# Names of files being written (in the store and beside a workspace file): a leftover is litter.
TEMP_PREFIX = ".codegen-"
TEMP_SUFFIX = ".tmp"


def temp_name() -> str:
    return f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"


def store_root() -> Path:
    return Path(settings.DATA_DIR) / STORE_NAME


def stored_path_for(sha256: str) -> str:
    """Where content with this hash lives, relative to the data dir."""
    return f"{STORE_NAME}/{sha256[:2]}/{sha256}"


def blob_file(backup: Backup) -> Path:
    return Path(settings.DATA_DIR) / backup.stored_path


@contextmanager
def store_lock(exclusive: bool) -> Iterator[None]:
    """Shared for writers adding blobs, exclusive for pruning; across threads and processes."""
    lock = store_root() / ".lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:  # the store's first use
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def store_blob(source_fd: int) -> tuple[str, int]:
    """Copy an open file into the store; (sha256, size). Existing content is not copied twice.
    The caller holds `store_lock(exclusive=False)` until the blob's row exists."""
    incoming = store_root() / temp_name()
    digest = hashlib.sha256()
    size = 0
    out = os.open(incoming, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            while chunk := os.read(source_fd, CHUNK_BYTES):
                digest.update(chunk)
                write_all(out, chunk)
                size += len(chunk)
            sha256 = digest.hexdigest()
            final = Path(settings.DATA_DIR) / stored_path_for(sha256)
            if final.exists():
                return sha256, size
            os.fsync(out)
        finally:
            os.close(out)
        final.parent.mkdir(exist_ok=True)
        os.replace(incoming, final)
        fsync_dir(final.parent)
        return sha256, size
    finally:
        with suppress(FileNotFoundError):
            os.unlink(incoming)


def read_blob(backup: Backup) -> bytes:
    """A backup's bytes: NotFound when pruned, Conflict when they no longer match the checksum."""
    try:
        data = blob_file(backup).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"Backup {backup.id} has no content in the store (was it pruned?)") from None
    if hashlib.sha256(data).hexdigest() != backup.sha256:
        raise Conflict(f"Backup {backup.id} content does not match its checksum")
    return data


def stored_files() -> Iterator[Path]:
    """Blobs and leftover temp files in the store (not the lock file)."""
    directory = store_root()
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.name.startswith(TEMP_PREFIX):
            yield entry
        elif entry.is_dir() and len(entry.name) == 2:
            yield from (blob for blob in entry.iterdir() if blob.is_file())
