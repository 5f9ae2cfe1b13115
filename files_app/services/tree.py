"""A directory's listing for /files/tree: names, sizes and kinds, `depth` levels down.

Kinds: file, dir, symlink (shown, never followed), other. The workspace layer's walk leaves
out what a .gitignore ignores (an ancestor's too, as in git), .git / .venv / .env and the
product's own files. At most files.tree_max_entries entries; `truncated` says when the
listing was cut."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from codegen_site.core import workspace
from codegen_site.core.errors import BadInput, ServiceError
from files_app.config import files_settings


@dataclass
class TreeListing:
    """The listed directory as a tree node (name, path, kind, size, children) and the listing's count."""

    name: str
    path: str
    kind: str = "dir"
    size: int | None = None
    children: list[dict] = field(default_factory=list)
    truncated: bool = False
    entries: int = 0


def tree(client_path: str | os.PathLike = ".", depth: int | None = None) -> TreeListing:
    """The entries of a workspace directory, `depth` levels down (default files.tree_depth)."""
    configured = files_settings()
    depth = configured.tree_depth if depth is None else depth
    if not 1 <= depth <= configured.tree_max_depth:
        raise BadInput(f"depth must be between 1 and {configured.tree_max_depth}")
    target = workspace.resolve(client_path, must_exist=True)
    shown = workspace.relative(target)
    listing = TreeListing(name=target.name, path=shown)
    # Ancestors' .gitignore files apply too, as in git.
    dir_fd, ignores = workspace.open_with_ignores(target)
    try:
        _list_dir(dir_fd, shown, ignores, depth, listing, listing.children, configured.tree_max_entries)
    finally:
        os.close(dir_fd)
    return listing


def _shown_name(name: str) -> str:
    """A file name as JSON can carry it: bytes that are not UTF-8 become U+FFFD."""
    if name.isascii():
        return name
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _list_dir(dir_fd: int, shown: str, ignores: workspace.GitIgnores, depth: int, listing: TreeListing,
              into: list, limit: int) -> None:
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
                          listing, node["children"], limit)
            finally:
                os.close(child_fd)
