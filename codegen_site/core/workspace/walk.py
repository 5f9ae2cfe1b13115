"""Listing and walking the workspace: what a directory shows (the tree) and which files lie
under a path (the code index, the analysis, the improvement's test discovery).

One set of rules for all of them: hidden names (policy) and the product's own state are never
listed; symbolic links are listed as links and never followed; what .gitignore files rule out
is left out as git decides it (the deepest file with a matching rule wins, "!" rules
included). Every directory is opened from its parent's descriptor with O_NOFOLLOW, and a file
found here is read later through descriptors.Reader, which opens it the same way and checks
the opened file: a file swapped for a link during the walk is refused, never followed."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pathspec

from codegen_site.core.errors import BadInput, ServiceError
from codegen_site.core.workspace.descriptors import open_child_dir, open_dir, open_file
from codegen_site.core.workspace.paths import inside, off_limits, parts, root
from codegen_site.core.workspace.policy import SKIPPED_DIRS, is_hidden_name

GITIGNORE = ".gitignore"
GITIGNORE_MAX_BYTES = 1 << 20
_KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink"}


@dataclass(frozen=True)
class Entry:
    """One listed entry: its workspace path ('/'-separated), kind (file, dir, symlink, other)
    and size (files only, from lstat)."""

    path: str
    name: str
    kind: str
    size: int | None


def _read_gitignore(dir_fd: int) -> pathspec.GitIgnoreSpec | None:
    try:
        fd = open_file(dir_fd, GITIGNORE, os.O_RDONLY)
    except ServiceError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > GITIGNORE_MAX_BYTES:
            return None
        text = os.read(fd, GITIGNORE_MAX_BYTES).decode("utf-8", errors="replace")
    finally:
        os.close(fd)
    spec = pathspec.GitIgnoreSpec.from_lines(text.splitlines())
    return spec if len(spec) else None


class GitIgnores:
    """The .gitignore rules in force in one directory: (directory parts, spec), outermost first."""

    def __init__(self, specs: tuple[tuple[tuple[str, ...], pathspec.GitIgnoreSpec], ...] = ()):
        self.specs = specs

    def entering(self, dir_fd: int, directory: tuple[str, ...]) -> GitIgnores:
        """The rules below `directory` (opened as dir_fd), its own .gitignore added."""
        spec = _read_gitignore(dir_fd)
        return GitIgnores(self.specs + ((directory, spec),)) if spec is not None else self

    def ignored(self, path: tuple[str, ...], is_dir: bool) -> bool:
        for base, spec in reversed(self.specs):
            below = "/".join(path[len(base):]) + ("/" if is_dir else "")
            verdict = spec.check_file(below).include
            if verdict is not None:
                return verdict
        return False


def _blocked() -> frozenset[tuple[str, ...]]:
    """The product's own paths that lie inside the workspace, as parts below the root."""
    workspace = root()
    return frozenset(path.relative_to(workspace).parts for path in off_limits()
                     if inside(path, workspace) and path != workspace)


def open_with_ignores(target: Path) -> tuple[int, GitIgnores]:
    """A descriptor of the resolved directory `target` and the .gitignore rules in force inside
    it (its ancestors' and its own), reached from the root without following links.
    The caller closes the descriptor."""
    below = parts(target)
    ignores = GitIgnores()
    with open_dir(root()) as fd:
        current = os.dup(fd)
    try:
        for depth in range(len(below) + 1):
            ignores = ignores.entering(current, below[:depth])
            if depth < len(below):
                child = open_file(current, below[depth], os.O_RDONLY, shown="/".join(below))
                os.close(current)
                current = child
                if not stat.S_ISDIR(os.fstat(current).st_mode):
                    raise BadInput(f"Path is not a directory: {'/'.join(below)}")
    except BaseException:
        os.close(current)
        raise
    return current, ignores


def _visible(items: list[os.DirEntry], directory: tuple[str, ...], ignores: GitIgnores,
             blocked: frozenset[tuple[str, ...]], include: Callable[[str], bool] | None) -> list[Entry]:
    shown = []
    for item in items:
        name = item.name
        child = (*directory, name)
        if is_hidden_name(name) or child in blocked:
            continue
        try:
            if item.is_symlink():
                kind, size = "symlink", None
            elif item.is_dir(follow_symlinks=False):
                kind, size = "dir", None
            elif item.is_file(follow_symlinks=False):
                if include is not None and not include(name):
                    continue
                # The size from lstat, the kind from the same call: a file swapped for a link
                # since readdir is shown as the link it now is.
                info = item.stat(follow_symlinks=False)
                kind = _KINDS.get(stat.S_IFMT(info.st_mode), "other")
                size = info.st_size if kind == "file" else None
            else:
                kind, size = "other", None
        except OSError:
            continue  # removed since the listing
        if ignores.ignored(child, kind == "dir"):
            continue
        shown.append(Entry("/".join(child), name, kind, size))
    return shown


def entries(dir_fd: int, directory: tuple[str, ...], ignores: GitIgnores) -> list[Entry]:
    """What one directory (opened as dir_fd, at `directory` below the root, with the .gitignore
    rules in force inside it) shows: directories first, each group by name."""
    with os.scandir(dir_fd) as found:
        shown = _visible(list(found), directory, ignores, _blocked(), None)
    shown.sort(key=lambda entry: (entry.kind != "dir", entry.name))
    return shown


def files(target: Path, include: Callable[[str], bool] | None = None, limit: int | None = None) -> list[Entry]:
    """The regular files under the resolved path `target` whose names `include` accepts,
    sorted by path; at most `limit` + 1 so a caller can tell the limit was passed.

    Tool, cache and dependency directories (policy.SKIPPED_DIRS) and virtualenvs are not
    entered."""
    below = parts(target)
    blocked = _blocked()
    if not os.path.isdir(target):  # a file named by the caller: kept when it is a visible regular file
        if not below:
            return []
        with open_dir(target.parent) as parent_fd, os.scandir(parent_fd) as listing:
            named = [item for item in listing if item.name == below[-1]]
            kept = _visible(named, below[:-1], GitIgnores(), blocked, include)
        return [entry for entry in kept if entry.kind == "file"]
    found: list[Entry] = []
    top_fd, ignores = open_with_ignores(target)
    pending = [(top_fd, below, ignores)]
    try:
        while pending:
            dir_fd, directory, ignores = pending.pop()
            try:
                with os.scandir(dir_fd) as listing:
                    items = list(listing)
                if directory != below:  # the target's own rules came with open_with_ignores
                    names = {item.name for item in items}
                    if "pyvenv.cfg" in names:
                        continue  # a virtualenv
                    if GITIGNORE in names:
                        ignores = ignores.entering(dir_fd, directory)
                for entry in _visible(items, directory, ignores, blocked, include):
                    if entry.kind == "file":
                        found.append(entry)
                    elif entry.kind == "dir" and entry.name not in SKIPPED_DIRS:
                        try:
                            child_fd = open_child_dir(dir_fd, entry.name, shown=entry.path)
                        except ServiceError:
                            continue  # replaced by a link or removed since the listing
                        pending.append((child_fd, (*directory, entry.name), ignores))
            finally:
                os.close(dir_fd)
            if limit is not None and len(found) > limit:
                break
    finally:
        for dir_fd, _, _ in pending:
            os.close(dir_fd)
    found.sort(key=lambda entry: entry.path)
    return found
