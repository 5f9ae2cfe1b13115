"""The workspace: every client path resolves inside one root, and the product's own
state inside it (data dir, database, secret key, config, .venv, .git, .env) stays out of reach.

`resolve` is the check every app makes before touching a client path. It follows
symlinks at every depth (realpath), so a link that leads out is refused. A check is
not enough on its own: a directory could be swapped for a symlink between the check
and the open. Code that reads or writes a client's file therefore does the IO through
`open_dir` / `open_file`, which walk from the root one component at a time with
O_NOFOLLOW (openat), so a link that appears after the check makes the call fail
instead of leading out."""

from __future__ import annotations

import errno
import functools
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connections

from codegen_site.core.errors import BadInput, PathNotAllowed, PathNotFound, PathOutsideWorkspace, ServiceError

# Names that are off limits at any depth under the root: tooling state and secrets.
OFF_LIMITS_NAMES = (".git", ".venv", ".env")
# Suffixes SQLite adds next to a database file.
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@functools.lru_cache(maxsize=64)
def _real(path: str) -> Path:
    # Every request resolves the same few configured paths; realpath costs a syscall per component.
    return Path(os.path.realpath(path))


def root() -> Path:
    return _real(os.fspath(settings.WORKSPACE_ROOT))


def _database_names() -> tuple[str, ...]:
    names = []
    for alias in connections:
        database = connections.settings[alias]
        name = str(database.get("NAME") or "")
        if "sqlite" in database.get("ENGINE", "") and name and not name.startswith(":memory:") \
                and not name.startswith("file:"):
            names.append(name)
    return tuple(names)


@functools.lru_cache(maxsize=64)
def _off_limits(base_dir: str, data_dir: str, config_dir: str, databases: tuple[str, ...]) -> tuple[Path, ...]:
    base = _real(base_dir)
    paths = [_real(data_dir), base / "config", base / ".env"]
    paths += [_real(name + suffix) for name in databases for suffix in SQLITE_COMPANIONS]
    if config_dir:
        paths.append(_real(config_dir))
    return tuple(paths)


def off_limits() -> tuple[Path, ...]:
    """Absolute paths no client may read or write, wherever they sit: the data dir, the
    database files (wherever DATABASE_URL puts them), the project's config/ and .env,
    and the writable config dir."""
    return _off_limits(os.fspath(settings.BASE_DIR), os.fspath(settings.DATA_DIR),
                       os.environ.get("CODEGEN_CONFIG_DIR", ""), _database_names())


def _inside(path: Path, parent: Path) -> bool:
    """path is parent or lies below it (both absolute and normalised)."""
    text, prefix = str(path), str(parent)
    return text == prefix or text.startswith(prefix.rstrip("/") + "/")


def is_off_limits_name(name: str) -> bool:
    """True for a file or directory name that is never shown or touched (.git, .venv, .env, .env.local)."""
    return name in OFF_LIMITS_NAMES or name.startswith(".env.")


def is_off_limits(path: Path) -> bool:
    """True for the product's own state and for .git / .venv / .env at any depth under the root."""
    if any(_inside(path, blocked) for blocked in off_limits()):
        return True
    try:
        relative_path = path.relative_to(root())
    except ValueError:
        return False
    return any(is_off_limits_name(part) for part in relative_path.parts)


def resolve(client_path: str | os.PathLike, *, must_exist: bool = False) -> Path:
    """The absolute, symlink-free path for a client path, or a 400/404 ServiceError.

    Relative paths are taken from the workspace root; absolute ones must lie inside it."""
    text = os.fspath(client_path)
    if "\x00" in text:
        raise PathOutsideWorkspace("Path contains a NUL byte")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise BadInput("Path is not valid Unicode text") from None
    workspace = root()
    candidate = Path(text)
    if not candidate.is_absolute():
        candidate = workspace / candidate
    # Named as the product's own state (e.g. .venv/bin/python, a link out): off limits, whatever it points at.
    lexical = Path(os.path.normpath(candidate))
    if _inside(lexical, workspace) and is_off_limits(lexical):
        raise PathNotAllowed(f"Path is off limits (the product's own data): {text}")
    try:
        resolved = Path(os.path.realpath(candidate))
    except OSError as exc:
        # A link removed or replaced while realpath was following it.
        if exc.errno == errno.ENOENT:
            raise PathNotFound(f"Path not found (it changed while being resolved): {text}") from None
        raise BadInput(f"Path cannot be resolved: {text}: {exc.strerror}") from None
    if not _inside(resolved, workspace):
        raise PathOutsideWorkspace(f"Path is outside the workspace: {text}")
    if is_off_limits(resolved):
        raise PathNotAllowed(f"Path is off limits (the product's own data): {text}")
    if must_exist:
        try:
            os.lstat(resolved)
        except FileNotFoundError:
            raise PathNotFound(f"Path not found: {text}") from None
        except NotADirectoryError:
            raise PathNotFound(f"Path not found (a parent is a file): {text}") from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise BadInput(f"Path is too long: {text}") from None
            raise ServiceError(f"Could not look up {text}: {exc.strerror}") from None
    return resolved


def relative(path: Path) -> str:
    """A resolved path as the API shows it: relative to the workspace root, '/'-separated."""
    rel = path.relative_to(root())
    return rel.as_posix() if rel.parts else "."


# --- IO that cannot be led out by a symlink swapped in after `resolve` ---------------

def _parts(path: Path) -> tuple[str, ...]:
    """The components of a resolved path below the root."""
    try:
        return path.relative_to(root()).parts
    except ValueError:
        raise PathOutsideWorkspace(f"Path is outside the workspace: {path}") from None


def _walk_error(exc: OSError, dir_fd: int, name: str, shown: str, *, creating: bool = False) -> ServiceError:
    """The ServiceError for a failed openat of `name` while walking to `shown`.

    A file where a directory should be is "not found" when reading and bad input when creating."""
    if exc.errno == errno.ENOENT:
        return PathNotFound(f"Path not found: {shown}")
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        try:
            is_link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except OSError:
            is_link = False
        if is_link or exc.errno == errno.ELOOP:
            return PathOutsideWorkspace(f"Path changed to a symbolic link while in use: {shown}")
        if not creating:
            return PathNotFound(f"Path not found (a parent is a file): {shown}")
        return BadInput(f"A parent of the path is not a directory: {shown}")
    if exc.errno == errno.ENAMETOOLONG:
        return BadInput(f"Path is too long: {shown}")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PathNotAllowed(f"Permission denied: {shown}")
    return ServiceError(f"Could not open {shown}: {exc.strerror}")


@contextmanager
def open_dir(path: Path, *, create: bool = False) -> Iterator[int]:
    """A directory fd for a resolved path, reached from the root without following links.

    With create=True missing directories are made on the way. The fd is closed on exit."""
    shown = relative(path) if _inside(path, root()) else str(path)
    fd = os.open(root(), _DIR_FLAGS)
    try:
        for name in _parts(path):
            if is_off_limits_name(name):
                raise PathNotAllowed(f"Path is off limits (the product's own data): {shown}")
            try:
                next_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise PathNotFound(f"Path not found: {shown}") from None
                try:
                    os.mkdir(name, dir_fd=fd)
                except FileExistsError:
                    pass  # made by a concurrent writer
                except OSError as exc:
                    raise _walk_error(exc, fd, name, shown, creating=True) from exc
                try:
                    next_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    raise _walk_error(exc, fd, name, shown, creating=True) from exc
            except OSError as exc:
                raise _walk_error(exc, fd, name, shown, creating=create) from exc
            os.close(fd)
            fd = next_fd
        yield fd
    finally:
        os.close(fd)


def open_file(dir_fd: int, name: str, flags: int = os.O_RDONLY, mode: int = 0o666, *, shown: str = "") -> int:
    """openat(dir_fd, name) that refuses a symbolic link as the last component.

    Non-blocking open so a FIFO planted in the workspace cannot hang the server;
    callers check the kind with os.fstat."""
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode, dir_fd=dir_fd)
    except OSError as exc:
        raise _walk_error(exc, dir_fd, name, shown or name) from exc


def open_child_dir(dir_fd: int, name: str, *, shown: str = "") -> int:
    """openat(dir_fd, name) of a directory that refuses a symbolic link."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _walk_error(exc, dir_fd, name, shown or name) from exc


# --- Server processes stand outside the workspace ---------------------------------------

def protected_roots() -> tuple[Path, ...]:
    """Directories whose files a server process imports or runs: the server's own code, its
    interpreter's prefix (the venv), its data and config, and every directory on sys.path.
    A client may not write inside them even when the workspace contains them."""
    import sys

    paths = {_real(os.fspath(settings.BASE_DIR)), _real(sys.prefix), _real(sys.base_prefix),
             _real(os.fspath(settings.DATA_DIR))}
    paths.update(off_limits())
    for entry in sys.path:
        if entry and os.path.isdir(entry):
            paths.add(_real(entry))
    return tuple(sorted(paths))


def leave_workspace() -> Path:
    """Move this process (and so every process it starts) to a working directory no client can
    write, and drop sys.path entries that a client could fill: '' (the working directory) and
    any folder inside the workspace that is not one of the server's own.

    Called first by every long-running server process (the ASGI server, the queue cluster):
    a module a client wrote (`threading.py`) is then never found by an import, here or in a
    `python -c` child (multiprocessing's workers start with the working directory first on
    their path). Returns the new working directory."""
    import sys

    run_dir = Path(settings.DATA_DIR) / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    os.chdir(run_dir)
    workspace = root()
    own = (_real(os.fspath(settings.BASE_DIR)), _real(sys.prefix), _real(sys.base_prefix))
    kept = []
    for entry in sys.path:
        if not entry:
            continue
        real = _real(entry)
        if _inside(real, workspace) and not any(_inside(real, path) for path in own):
            continue
        kept.append(entry)
    sys.path[:] = kept
    return run_dir
