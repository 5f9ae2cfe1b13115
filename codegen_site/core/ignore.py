"""What .gitignore files rule out, decided as git does: the deepest .gitignore with a
matching rule (a "!" rule included) wins. Every walk over the workspace uses it
(project analysis, code search)."""

from __future__ import annotations

import os
from pathlib import Path

import pathspec

from codegen_site.core import workspace


def _read_gitignore(directory: str) -> pathspec.PathSpec | None:
    try:
        with open(os.path.join(directory, ".gitignore"), encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    return spec if len(spec) else None


class GitIgnores:
    """The .gitignore rules in force in one directory: (directory, spec) pairs, outermost first."""

    def __init__(self, specs: tuple[tuple[str, pathspec.PathSpec], ...] = ()):
        self.specs = specs

    @classmethod
    def above(cls, directory: Path) -> GitIgnores:
        """The rules of the .gitignore files from the workspace root down to `directory`'s parent
        (a walk of `directory` reads its own on entering it)."""
        ignores = cls()
        root = workspace.root()
        parts = directory.relative_to(root).parts
        for depth in range(len(parts)):
            ignores = ignores.entering(str(root.joinpath(*parts[:depth])))
        return ignores

    def entering(self, directory: str) -> GitIgnores:
        spec = _read_gitignore(directory)
        return GitIgnores(self.specs + ((directory, spec),)) if spec else self

    def ignored(self, path: str, is_dir: bool) -> bool:
        for base, spec in reversed(self.specs):
            relative = os.path.relpath(path, base).replace(os.sep, "/")
            verdict = spec.check_file(relative + "/" if is_dir else relative).include
            if verdict is not None:
                return verdict
        return False
