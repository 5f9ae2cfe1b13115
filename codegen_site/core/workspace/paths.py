"""Client paths to workspace paths: every path resolves inside one root, and what is off limits
(the product's own state wherever it lies, hidden names at any depth) is refused by name before
anything is opened.

`resolve` follows symlinks (realpath), so a link that leads out is refused. A check alone is
not enough: a directory could be swapped for a link between the check and the open, so the IO
itself goes through `descriptors`, which walks from the root one component at a time without
following links."""

from __future__ import annotations

import errno
import functools
import os
import sys
from pathlib import Path

from django.conf import settings
from django.db import connections

from codegen_site.core.errors import BadInput, PathNotAllowed, PathNotFound, PathOutsideWorkspace, ServiceError
from codegen_site.core.workspace.policy import is_hidden_name

# Suffixes SQLite adds next to a database file.
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


@functools.lru_cache(maxsize=256)
def real(path: str) -> Path:
    # Every request resolves the same few configured paths; realpath costs a syscall per component.
    return Path(os.path.realpath(path))


def root() -> Path:
    return real(os.fspath(settings.WORKSPACE_ROOT))


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
    base = real(base_dir)
    paths = [real(data_dir), base / "config", base / ".env"]
    paths += [real(name + suffix) for name in databases for suffix in SQLITE_COMPANIONS]
    if config_dir:
        paths.append(real(config_dir))
    return tuple(paths)


def off_limits() -> tuple[Path, ...]:
    """Absolute paths no client may read or write, wherever they sit: the data dir, the
    database files (wherever DATABASE_URL puts them), the project's config/ and .env,
    and the writable config dir."""
    return _off_limits(os.fspath(settings.BASE_DIR), os.fspath(settings.DATA_DIR),
                       os.environ.get("CODEGEN_CONFIG_DIR", ""), _database_names())


@functools.lru_cache(maxsize=16)
def _protected(base_dir: str, data_dir: str, workspace: Path, search_path: tuple[str, ...]) -> tuple[Path, ...]:
    paths = {real(base_dir), real(sys.prefix), real(sys.base_prefix), real(data_dir)}
    # A sys.path folder inside the workspace: a module written there shadows one the server imports.
    # (A folder above the workspace only ever gains the workspace's own name as a package.)
    paths.update(folder for folder in (real(entry) for entry in search_path if entry)
                 if inside(folder, workspace) and os.path.isdir(folder))
    return tuple(sorted(paths))


def protected_roots() -> tuple[Path, ...]:
    """Directories whose files a server process imports or runs: the server's own code, its
    interpreter's prefix (the venv), its data, and sys.path folders inside the workspace. A
    client may not write inside them, even where the workspace contains them."""
    return _protected(os.fspath(settings.BASE_DIR), os.fspath(settings.DATA_DIR), root(),
                      tuple(sys.path)) + off_limits()


def inside(path: Path, parent: Path) -> bool:
    """path is parent or lies below it (both absolute and normalised)."""
    text, prefix = str(path), str(parent)
    return text == prefix or text.startswith(prefix.rstrip("/") + "/")


@functools.lru_cache(maxsize=64)
def _prefixes(paths: tuple[Path, ...]) -> tuple[tuple[str, str], ...]:
    # `inside` as plain text tests: every request checks its path against all of them, twice.
    return tuple((str(path), str(path).rstrip("/") + "/") for path in paths)


def is_off_limits(path: Path) -> bool:
    """True for the product's own state and for hidden names at any depth under the root."""
    text = str(path)
    if any(text == exact or text.startswith(below) for exact, below in _prefixes(off_limits())):
        return True
    ((_, below_root),) = _prefixes((root(),))
    if not text.startswith(below_root):
        return False  # the root itself, or outside it
    return any(is_hidden_name(part) for part in text[len(below_root):].split("/"))


def check_writable(path: Path) -> None:
    """Refuse a write that a server process could later import or run (its own code, venv, data,
    a sys.path folder), even where the workspace holds them."""
    for protected in protected_roots():
        if inside(path, protected):
            raise PathNotAllowed(f"Path is off limits (the server's own code or data): {relative(path)}")


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
    if inside(lexical, workspace) and is_off_limits(lexical):
        raise PathNotAllowed(f"Path is off limits (the product's own data or a secret): {text}")
    try:
        resolved = Path(os.path.realpath(candidate))
    except OSError as exc:
        # A link removed or replaced while realpath was following it.
        if exc.errno == errno.ENOENT:
            raise PathNotFound(f"Path not found (it changed while being resolved): {text}") from None
        raise BadInput(f"Path cannot be resolved: {text}: {exc.strerror}") from None
    if not inside(resolved, workspace):
        raise PathOutsideWorkspace(f"Path is outside the workspace: {text}")
    if is_off_limits(resolved):
        raise PathNotAllowed(f"Path is off limits (the product's own data or a secret): {text}")
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


def parts(path: Path) -> tuple[str, ...]:
    """The components of a resolved path below the root."""
    try:
        return path.relative_to(root()).parts
    except ValueError:
        raise PathOutsideWorkspace(f"Path is outside the workspace: {path}") from None
