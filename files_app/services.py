"""Files in the workspace, written so that no earlier version is ever lost.

The one place where the product touches a user's files; the /files views and the
improve app both call these functions:

- `write_file(path, content, create_backup=True, reason="write")` backs up the current
  content, then replaces the file atomically (temp file in the same directory, fsync,
  rename; mode kept). Writers of one directory take turns (flock on the directory),
  across threads and processes, so concurrent writes each back up the version they replace.
- `read_file(path)` returns UTF-8 text; binary or oversize files are refused.
- `list_backups(path=None)`, `get_backup(id)`, `find_backup(backup_path)`.
- `restore(backup_id=... | backup_path=..., original_path=None)` backs up the current
  content (reason "restore") first, so a restore can itself be undone.
- `diff_backup(backup_id)` a unified diff of a backup against the current file.
- `tree(path, depth)` names, sizes and kinds; honours .gitignore; hides off-limits entries.
- `prune_backups(keep_last, keep_days)` retention; `backup_totals()` for the admin.

Every client path goes through codegen_site.core.workspace: `resolve` checks it and the
IO itself walks from the root with O_NOFOLLOW, so a symlink swapped in after the check
makes the call fail (400) instead of leading out of the workspace.

Backup bytes live in a content-addressed store, DATA_DIR/backups/<sha256[:2]>/<sha256>:
identical content is stored once and no two versions can collide. `Backup.stored_path`
(and the API's `backup_path`) is that location relative to the data dir. Writers hold
a shared lock on the store while they add a blob and its row; pruning holds it
exclusively, so it never removes a blob a writer is about to reference."""

from __future__ import annotations

import difflib
import errno
import fcntl
import hashlib
import logging
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Count, F, Max, Sum, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from codegen_site.core import workspace
from codegen_site.core.config import get_config
from codegen_site.core.errors import (
    BadInput,
    Conflict,
    NotFound,
    PathNotFound,
    PathOutsideWorkspace,
    PayloadTooLarge,
    ServiceError,
)
from files_app.models import PATH_MAX_LENGTH, Backup

logger = logging.getLogger(__name__)

STORE_NAME = "backups"
CHUNK_BYTES = 1 << 20
TEMP_PREFIX = ".codegen-"
TEMP_SUFFIX = ".tmp"


def files_config() -> dict:
    return get_config()["files"]


# --- results ----------------------------------------------------------------------

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


@dataclass(frozen=True)
class ReadResult:
    path: Path
    relative_path: str
    content: str
    size: int


@dataclass(frozen=True)
class RestoreResult:
    path: Path
    relative_path: str
    restored_from: Backup      # the version now in the file
    backup: Backup | None      # the content the restore replaced (undo by restoring it)
    created: bool

    @property
    def backup_path(self) -> str | None:
        return self.backup.stored_path if self.backup else None


@dataclass(frozen=True)
class DiffResult:
    backup: Backup
    relative_path: str
    diff: str
    changed: bool
    current_exists: bool


@dataclass
class PruneResult:
    deleted_backups: int = 0
    deleted_blobs: int = 0
    freed_bytes: int = 0
    kept_backups: int = 0
    dry_run: bool = False


@dataclass
class TreeListing:
    root: dict
    truncated: bool = False
    entries: int = 0


# --- the backup store ---------------------------------------------------------------

def store_root() -> Path:
    return Path(settings.DATA_DIR) / STORE_NAME


def stored_path_for(sha256: str) -> str:
    """Where content with this hash lives, relative to the data dir."""
    return f"{STORE_NAME}/{sha256[:2]}/{sha256}"


def blob_file(backup: Backup) -> Path:
    return Path(settings.DATA_DIR) / backup.stored_path


@contextmanager
def _store_lock(exclusive: bool) -> Iterator[None]:
    directory = store_root()
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _store_blob(source_fd: int) -> tuple[str, int]:
    """Copy an open file into the store; (sha256, size). Existing content is not copied twice."""
    directory = store_root()
    incoming = directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"
    digest = hashlib.sha256()
    size = 0
    out = os.open(incoming, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            while chunk := os.read(source_fd, CHUNK_BYTES):
                digest.update(chunk)
                _write_all(out, chunk)
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
        _fsync_dir(final.parent)
        return sha256, size
    finally:
        with suppress(FileNotFoundError):
            os.unlink(incoming)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_blob(backup: Backup) -> bytes:
    try:
        data = blob_file(backup).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"Backup {backup.id} has no content in the store (was it pruned?)") from None
    if hashlib.sha256(data).hexdigest() != backup.sha256:
        raise Conflict(f"Backup {backup.id} content does not match its checksum")
    return data


# --- writing ------------------------------------------------------------------------

def _limit() -> int:
    return int(files_config()["max_file_bytes"])


def _target(client_path: str | os.PathLike) -> Path:
    target = workspace.resolve(client_path)
    if target == workspace.root():
        raise BadInput("Path names the workspace root, not a file")
    if len(workspace.relative(target)) > PATH_MAX_LENGTH:
        raise BadInput(f"Path is longer than {PATH_MAX_LENGTH} characters")
    return target


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


def _backup_current(dir_fd: int, name: str, shown: str, reason: str) -> Backup:
    fd = workspace.open_file(dir_fd, name, os.O_RDONLY, shown=shown)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BadInput(f"Path is not a regular file: {shown}")
        with _store_lock(exclusive=False):
            sha256, size = _store_blob(fd)
            return Backup.objects.create(path=shown, stored_path=stored_path_for(sha256), sha256=sha256,
                                         size=size, reason=reason)
    finally:
        os.close(fd)


def _replace(dir_fd: int, name: str, data: bytes, current: os.stat_result | None, shown: str) -> None:
    """Atomically make `name` hold `data`: a failure at any step leaves the old file as it was."""
    temp = f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"
    fd = workspace.open_file(dir_fd, temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666, shown=shown)
    try:
        try:
            if current is not None:
                os.fchmod(fd, stat.S_IMODE(current.st_mode))
                if os.geteuid() == 0:
                    os.fchown(fd, current.st_uid, current.st_gid)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)  # the rename itself survives a crash


def _write(target: Path, data: bytes, *, create_backup: bool, reason: str) -> WriteResult:
    shown = workspace.relative(target)
    try:
        with workspace.open_dir_for_write(target.parent) as dir_fd:
            fcntl.flock(dir_fd, fcntl.LOCK_EX)  # released when the fd closes
            current = _existing(dir_fd, target.name, shown)
            backup = None
            if current is not None and create_backup:
                backup = _backup_current(dir_fd, target.name, shown, reason)
            _replace(dir_fd, target.name, data, current, shown)
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
    limit = _limit()
    if len(data) > limit:
        raise PayloadTooLarge(f"Content is {len(data)} bytes; the limit is {limit} bytes (files.max_file_bytes)")
    if reason not in Backup.Reason.values:
        raise BadInput(f"Unknown backup reason {reason!r}")
    return _write(_target(client_path), data, create_backup=create_backup, reason=reason)


# --- reading ------------------------------------------------------------------------

def _read_bytes(target: Path, limit: int) -> bytes | None:
    """A workspace file's bytes (None when it does not exist); the workspace's refusals otherwise."""
    try:
        return workspace.read_bytes(target, limit)
    except PathNotFound:
        return None


def _decode(data: bytes, shown: str) -> str:
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
    target = _target(client_path)
    shown = workspace.relative(target)
    data = _read_bytes(target, _limit())
    if data is None:
        raise PathNotFound(f"Path not found: {shown}")
    return ReadResult(path=target, relative_path=shown, content=_decode(data, shown), size=len(data))


# --- backups ------------------------------------------------------------------------

def list_backups(client_path: str | os.PathLike | None = None):
    """Backups newest first (a QuerySet), all or those of one file."""
    rows = Backup.objects.all()
    if client_path not in (None, ""):
        rows = rows.filter(path=workspace.relative(_target(client_path)))
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
    target = _target(original_path if original_path not in (None, "") else backup.path)
    data = _read_blob(backup)
    written = _write(target, data, create_backup=True, reason=Backup.Reason.RESTORE)
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
    old = _decode(_read_blob(backup), f"backup {backup.id}")
    target = _target(backup.path)
    current = _read_bytes(target, _limit())
    new = "" if current is None else _decode(current, backup.path)
    diff = unified_diff(old, new, backup.path, new_exists=current is not None)
    return DiffResult(backup=backup, relative_path=backup.path, diff=diff, changed=old != new,
                      current_exists=current is not None)


# --- retention ----------------------------------------------------------------------

def prune_backups(keep_last: int | None = None, keep_days: float | None = None, *,
                  dry_run: bool = False) -> PruneResult:
    """Delete backups outside the retention rules, then blobs no row references.

    A backup is kept while it is among the newest `keep_last` of its file or younger
    than `keep_days` (defaults from [files]; 0 turns a rule off, both 0 keep all)."""
    config = files_config()
    keep_last = int(config["backup_keep_last"] if keep_last is None else keep_last)
    keep_days = float(config["backup_keep_days"] if keep_days is None else keep_days)
    result = PruneResult(dry_run=dry_run)
    with _store_lock(exclusive=True):
        doomed: set[int] = set()
        if keep_last > 0 or keep_days > 0:
            candidates = Backup.objects.all()
            if keep_last > 0:
                # The age test stays out of this query: a WHERE on created_at would be
                # applied before the ranking and change which rows count as newest.
                candidates = candidates.annotate(rank=Window(
                    RowNumber(), partition_by=[F("path")], order_by=[F("created_at").desc(), F("id").desc()],
                )).filter(rank__gt=keep_last)
            cutoff = timezone.now() - timedelta(days=keep_days)
            doomed = {backup_id for backup_id, created_at in candidates.values_list("id", "created_at")
                      if keep_days <= 0 or created_at < cutoff}
        if doomed and not dry_run:
            ordered = sorted(doomed)
            for start in range(0, len(ordered), 500):
                Backup.objects.filter(id__in=ordered[start:start + 500]).delete()
        result.deleted_backups = len(doomed)
        # A blob stays while any remaining row (of any file) still points at it.
        referenced = set()
        for backup_id, sha256 in Backup.objects.values_list("id", "sha256").iterator():
            if backup_id not in doomed:
                referenced.add(sha256)
                result.kept_backups += 1
        for blob in _store_files():
            if blob.name in referenced:
                continue
            size = blob.stat().st_size
            if not dry_run:
                blob.unlink()
            result.deleted_blobs += 1
            result.freed_bytes += size
    return result


def _store_files() -> Iterator[Path]:
    """Blobs and leftover temp files in the store (not the lock file)."""
    directory = store_root()
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.name.startswith(TEMP_PREFIX):
            yield entry
        elif entry.is_dir() and len(entry.name) == 2:
            yield from (blob for blob in entry.iterdir() if blob.is_file())


def backup_totals() -> dict:
    """Row count and bytes as versions, and the distinct content actually stored."""
    rows = Backup.objects.aggregate(backups=Count("id"), version_bytes=Sum("size"), files=Count("path", distinct=True))
    stored = Backup.objects.values("sha256").annotate(blob_size=Max("size")).aggregate(
        blobs=Count("sha256"), stored_bytes=Sum("blob_size"))
    return {"backups": rows["backups"], "files": rows["files"], "version_bytes": rows["version_bytes"] or 0,
            "blobs": stored["blobs"], "stored_bytes": stored["stored_bytes"] or 0}


# --- the tree -----------------------------------------------------------------------

def tree(client_path: str | os.PathLike = ".", depth: int | None = None) -> dict:
    """A directory's entries, `depth` levels down: {name, path, kind, size, children?}.

    Kinds: file, dir, symlink (shown, never followed), other. Entries a .gitignore
    ignores, .git / .venv / .env and the product's own files are left out. At most
    files.tree_max_entries entries; `truncated` says when the listing was cut."""
    config = files_config()
    depth = int(config["tree_depth"] if depth is None else depth)
    if not 1 <= depth <= int(config["tree_max_depth"]):
        raise BadInput(f"depth must be between 1 and {config['tree_max_depth']}")
    target = workspace.resolve(client_path, must_exist=True)
    listing = TreeListing(root={"name": target.name, "path": workspace.relative(target),
                                "kind": "dir", "size": None, "children": []})
    # Ancestors' .gitignore files apply too, as in git.
    dir_fd, ignores = workspace.open_with_ignores(target)
    try:
        _list_dir(dir_fd, workspace.relative(target), ignores, depth, listing, listing.root["children"])
    finally:
        os.close(dir_fd)
    return {**listing.root, "truncated": listing.truncated, "entries": listing.entries}


def _shown_name(name: str) -> str:
    """A file name as JSON can carry it: bytes that are not UTF-8 become U+FFFD."""
    if name.isascii():
        return name
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _list_dir(dir_fd: int, shown: str, ignores: workspace.GitIgnores, depth: int, listing: TreeListing,
              into: list) -> None:
    limit = int(files_config()["tree_max_entries"])
    directory = () if shown == "." else tuple(shown.split("/"))
    for entry in workspace.entries(dir_fd, directory, ignores):
        if listing.entries >= limit:
            listing.truncated = True
            return
        node = {"name": _shown_name(entry.name), "path": _shown_name(entry.path), "kind": entry.kind,
                "size": entry.size}
        into.append(node)
        listing.entries += 1
        if entry.kind == "dir" and depth > 1:
            node["children"] = []
            try:
                child_fd = workspace.open_child_dir(dir_fd, entry.name, shown=node["path"])
            except ServiceError:
                continue  # replaced or unreadable since the listing: shown without children
            try:
                _list_dir(child_fd, entry.path, ignores.entering(child_fd, (*directory, entry.name)), depth - 1,
                          listing, node["children"])
            finally:
                os.close(child_fd)
