"""Which files an analysis reads: Python files under a path, minus what .gitignore files,
tool directories and the product's own state (workspace.is_off_limits) rule out.

Symlinks are never followed: one could lead out of the workspace after the path check."""

from __future__ import annotations

import os
from pathlib import Path

from codegen_site.core import workspace
from codegen_site.core.ignore import GitIgnores

SKIPPED_DIRECTORIES = frozenset({".git", ".venv", "venv", "node_modules", "__pycache__", ".mypy_cache",
                                 ".pytest_cache", ".ruff_cache", ".tox"})


def python_files(target: Path, limit: int) -> list[str]:
    """Python files under `target` (a resolved file or directory), sorted; at most `limit` + 1
    so the caller can tell the limit was passed.

    A directory is checked against workspace.is_off_limits only when it holds Python files
    (an off-limits directory's descendants are off limits too, so each is refused in turn);
    the check is costly, and most directories of a real tree (locales, assets) hold none."""
    if target.is_file():
        return [str(target)]
    found: list[str] = []
    pending = [(str(target), GitIgnores.above(target))]
    while pending:
        directory, ignores = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        if any(entry.name == ".gitignore" for entry in entries):
            ignores = ignores.entering(directory)
        sources = []
        for entry in entries:
            if entry.is_symlink():
                continue
            if entry.is_dir():
                if entry.name not in SKIPPED_DIRECTORIES and not ignores.ignored(entry.path, True):
                    pending.append((entry.path, ignores))
            elif entry.name.endswith(".py") and entry.is_file() and not ignores.ignored(entry.path, False):
                sources.append(entry.path)
        if sources and not workspace.is_off_limits(Path(directory)):
            found.extend(sources)
            if len(found) > limit:
                break
    return sorted(found)
