"""The workspace: every client path resolves inside one root, and the product's own
state inside it (data dir, config, .venv, .git) stays out of reach.

`resolve` is the check every app makes before touching a client path. It follows
symlinks at every depth (realpath), so a link that leads out is refused. Code that
then opens the file should still open it with `open_nofollow` (or the files
service), which refuses a link swapped in between the check and the use."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

from codegen_site.core.errors import PathNotAllowed, PathNotFound, PathOutsideWorkspace

# Directories inside the workspace that belong to the product or to tooling.
OFF_LIMITS_NAMES = (".git", ".venv")


def root() -> Path:
    return Path(settings.WORKSPACE_ROOT).resolve()


def off_limits() -> list[Path]:
    """Absolute paths no client may read or write, wherever they sit."""
    base = Path(settings.BASE_DIR).resolve()
    paths = [Path(settings.DATA_DIR).resolve(), base / "config", base / ".env"]
    config_dir = os.environ.get("CODEGEN_CONFIG_DIR")
    if config_dir:
        paths.append(Path(config_dir).resolve())
    return paths


def _inside(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def is_off_limits(path: Path) -> bool:
    """True for the product's own state and for .git / .venv directories at any depth under the root."""
    if any(_inside(path, blocked) for blocked in off_limits()):
        return True
    try:
        relative = path.relative_to(root())
    except ValueError:
        return False
    return any(part in OFF_LIMITS_NAMES for part in relative.parts)


def resolve(client_path: str | os.PathLike, *, must_exist: bool = False) -> Path:
    """The absolute, symlink-free path for a client path, or a 400/404 ServiceError.

    Relative paths are taken from the workspace root; absolute ones must lie inside it."""
    text = os.fspath(client_path)
    if "\x00" in text:
        raise PathOutsideWorkspace("Path contains a NUL byte")
    workspace = root()
    candidate = Path(text)
    if not candidate.is_absolute():
        candidate = workspace / candidate
    resolved = Path(os.path.realpath(candidate))
    if not _inside(resolved, workspace):
        raise PathOutsideWorkspace(f"Path is outside the workspace: {text}")
    if is_off_limits(resolved):
        raise PathNotAllowed(f"Path is off limits (the product's own data): {text}")
    if must_exist and not resolved.exists():
        raise PathNotFound(f"Path not found: {text}")
    return resolved


def relative(path: Path) -> str:
    """A resolved path as the API shows it: relative to the workspace root, '/'-separated."""
    rel = path.relative_to(root())
    return rel.as_posix() if rel.parts else "."
