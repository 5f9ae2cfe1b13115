"""Which files an analysis reads: Python files under a path, minus what .gitignore files,
tool directories and the product's own state (workspace.is_off_limits) rule out.

Symlinks are never followed: one could lead out of the workspace after the path check."""

from __future__ import annotations

import os
from pathlib import Path

import pathspec

from codegen_site.core import workspace

SKIPPED_DIRECTORIES = frozenset({".git", ".venv", "venv", "node_modules", "__pycache__", ".mypy_cache",
                                 ".pytest_cache", ".ruff_cache", ".tox"})


class _Ignores:
    """The .gitignore rules in force in one directory: (directory, spec) pairs, outermost first."""

    def __init__(self, specs: tuple[tuple[str, pathspec.PathSpec], ...] = ()):
        self.specs = specs

    def entering(self, directory: str) -> _Ignores:
        spec = _read_gitignore(directory)
        return _Ignores(self.specs + ((directory, spec),)) if spec else self

    def ignored(self, path: str, is_dir: bool) -> bool:
        # As git does: the deepest .gitignore with a matching rule (a "!" one included) decides.
        for base, spec in reversed(self.specs):
            relative = os.path.relpath(path, base).replace(os.sep, "/")
            verdict = spec.check_file(relative + "/" if is_dir else relative).include
            if verdict is not None:
                return verdict
        return False


def _read_gitignore(directory: str) -> pathspec.PathSpec | None:
    try:
        with open(os.path.join(directory, ".gitignore"), encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    return spec if len(spec) else None


def _inherited(target_dir: Path) -> _Ignores:
    """The .gitignore files from the workspace root down to the target's parent (the walk reads the target's own)."""
    ignores = _Ignores()
    root = workspace.root()
    parts = target_dir.relative_to(root).parts
    for depth in range(len(parts)):
        ignores = ignores.entering(str(root.joinpath(*parts[:depth])))
    return ignores


def python_files(target: Path, limit: int) -> list[str]:
    """Python files under `target` (a resolved file or directory), sorted; at most `limit` + 1
    so the caller can tell the limit was passed.

    A directory is checked against workspace.is_off_limits only when it holds Python files
    (an off-limits directory's descendants are off limits too, so each is refused in turn);
    the check is costly, and most directories of a real tree (locales, assets) hold none."""
    if target.is_file():
        return [str(target)]
    found: list[str] = []
    pending = [(str(target), _inherited(target))]
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
