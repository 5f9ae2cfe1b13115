"""Atomic writes of workspace files, each backing up the version it replaces.

The new content goes to a temp file in the same directory, is fsynced and renamed over the
old one (mode and, as root, owner kept), and the directory is fsynced, so a failure at any
step leaves the old file as it was and a write that returned survives a crash. Meanwhile a
second thread copies the version it replaces into the backup store (fsynced, renamed into
place, its directory fsynced); the backup's row is written once both are on disk, before the
rename. Writers of one directory take turns (flock on the directory), across threads and
processes, so concurrent writes each back up the version they replace. The IO walks from the
workspace root with O_NOFOLLOW (codegen_site.core.workspace): a symlink swapped in after the
path check makes the call fail (400) instead of leading out of the workspace."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import threading
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from codegen_site.core import workspace
from codegen_site.core.errors import BadInput, PathOutsideWorkspace, PayloadTooLarge, ServiceError
from files_app.config import files_settings
from files_app.models import Backup
from files_app.selectors import workspace_file
from files_app.services.store import store_blob, store_lock, stored_path_for, temp_name, write_all

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteResult:
    path: Path                 # absolute
    relative_path: str         # as the API shows it
    created: bool              # the file did not exist before
    size: int
    backup: Backup | None      # the version this write replaced, when one was taken

    @property
    def backup_path(self) -> str | None:
        return self.backup.stored_path if self.backup else None


def _existing(dir_fd: int, name: str, shown: str) -> os.stat_result | None:
    """The current file's stat (not following links), None when absent; refuses non-files."""
    try:
        current = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(current.st_mode):
        # resolve() followed every link, so a link here appeared after the check.
        raise PathOutsideWorkspace(f"Path changed to a symbolic link while in use: {shown}")
    if stat.S_ISDIR(current.st_mode):
        raise BadInput(f"Path is a directory: {shown}")
    if not stat.S_ISREG(current.st_mode):
        raise BadInput(f"Path is not a regular file: {shown}")
    return current


class _Copy(threading.Thread):
    """The backup's copy into the store (its own fsyncs), on a thread of its own while the
    caller writes and fsyncs the new content: the two wait on the disk at once, not in turn."""

    def __init__(self, fd: int):
        super().__init__(name="files-backup-copy", daemon=True)
        self.fd = fd
        self.stored: tuple[str, int] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.stored = store_blob(self.fd)
        except BaseException as exc:  # handed to the caller by `result`
            self.error = exc

    def result(self) -> tuple[str, int]:
        self.join()
        if self.error is not None:
            raise self.error
        return self.stored


def _open_current(dir_fd: int, name: str, shown: str) -> int:
    fd = workspace.open_file(dir_fd, name, os.O_RDONLY, shown=shown)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BadInput(f"Path is not a regular file: {shown}")
    return fd


def _write_temp(dir_fd: int, temp: str, data: bytes, current: os.stat_result | None, shown: str) -> None:
    """The new content in `temp` beside the file, with the old file's mode (and owner, as root), fsynced."""
    fd = workspace.open_file(dir_fd, temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666, shown=shown)
    try:
        if current is not None:
            os.fchmod(fd, stat.S_IMODE(current.st_mode))
            if os.geteuid() == 0:
                os.fchown(fd, current.st_uid, current.st_gid)
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(dir_fd: int, name: str, data: bytes, current: os.stat_result | None, shown: str,
             backup_of: int | None, reason: str) -> Backup | None:
    """Atomically make `name` hold `data`, first backing up the open file `backup_of` (when
    given): a failure at any step leaves the old file as it was. The backup's row is written
    once its blob is durable, and before the rename, so no state on disk has the new content
    without the old one stored."""
    temp = temp_name()
    backup = None
    try:
        if backup_of is None:
            _write_temp(dir_fd, temp, data, current, shown)
        else:
            # Writers share the store lock until the blob's row exists (pruning takes it exclusively).
            with store_lock(exclusive=False):
                copy = _Copy(backup_of)
                copy.start()
                try:
                    _write_temp(dir_fd, temp, data, current, shown)
                finally:
                    # The backup is recorded even when the new content failed: it is the file's current content.
                    sha256, size = copy.result()
                    backup = Backup.objects.create(path=shown, stored_path=stored_path_for(sha256), sha256=sha256,
                                                   size=size, reason=reason)
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)  # the rename itself survives a crash
    return backup


def write_bytes(target: Path, data: bytes, *, create_backup: bool, reason: str) -> WriteResult:
    """Make a checked workspace file (`workspace_file`) hold `data`, backing up what it held."""
    shown = workspace.relative(target)
    try:
        with workspace.open_dir_for_write(target.parent) as dir_fd:
            fcntl.flock(dir_fd, fcntl.LOCK_EX)  # released when the fd closes
            current = _existing(dir_fd, target.name, shown)
            backup_of = _open_current(dir_fd, target.name, shown) if current is not None and create_backup else None
            try:
                backup = _replace(dir_fd, target.name, data, current, shown, backup_of, reason)
            finally:
                if backup_of is not None:
                    os.close(backup_of)
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            raise BadInput(f"Path is a directory: {shown}") from exc
        if exc.errno == errno.ENAMETOOLONG:
            raise BadInput(f"File name is too long: {shown}") from exc
        logger.exception("Writing %s failed", shown)
        raise ServiceError(f"Could not write {shown}: {exc.strerror or exc}") from exc
    return WriteResult(path=target, relative_path=shown, created=current is None, size=len(data), backup=backup)


def write_file(client_path: str | os.PathLike, content: str | bytes, *, create_backup: bool = True,
               reason: str = Backup.Reason.WRITE) -> WriteResult:
    """Write a workspace file atomically, backing up what it held first.

    `content` is text (stored as UTF-8) or bytes. Parent directories are created.
    `reason` labels the backup: "write", "improve" (the improve app) or "restore".
    Raises PayloadTooLarge (413) beyond files.max_file_bytes, PathOutsideWorkspace /
    PathNotAllowed / BadInput (400) for a path that may not be written, ServiceError
    (500, with the OS error) when the disk refuses; the old content is then intact."""
    try:
        data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    except UnicodeEncodeError:
        raise BadInput("Content is not valid Unicode text (a lone surrogate?)") from None
    limit = files_settings().max_file_bytes
    if len(data) > limit:
        raise PayloadTooLarge(f"Content is {len(data)} bytes; the limit is {limit} bytes (files.max_file_bytes)")
    if reason not in Backup.Reason.values:
        raise BadInput(f"Unknown backup reason {reason!r}")
    return write_bytes(workspace_file(client_path), data, create_backup=create_backup, reason=reason)
