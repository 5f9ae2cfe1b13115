"""The files an index run reads: under a path, minus what .gitignore files (at the path, above it up to the
workspace root, and below it) exclude, version-control and tool directories, virtualenvs, node_modules,
the product's own data (workspace.is_off_limits), binaries and files over the size limit."""

from __future__ import annotations

import os
from pathlib import Path

from codegen_site.core import workspace
from codegen_site.core.ignore import GitIgnores

SKIPPED_DIRS = {".git", ".hg", ".svn", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".nox",
                ".mypy_cache", ".pytest_cache", ".ruff_cache", ".idea", ".vscode", "site-packages",
                ".eggs"}
BINARY_SUFFIXES = {".pyc", ".pyo", ".so", ".dll", ".dylib", ".exe", ".bin", ".o", ".a", ".zip", ".gz", ".tgz",
                   ".bz2", ".xz", ".7z", ".tar", ".whl", ".jar", ".png", ".jpg", ".jpeg", ".gif", ".ico",
                   ".webp", ".bmp", ".pdf", ".mo", ".woff", ".woff2", ".ttf", ".otf", ".eot", ".mp3", ".mp4",
                   ".wav", ".sqlite3", ".db", ".onnx", ".gguf", ".npy", ".pkl", ".parquet", ".lock"}
SNIFF_BYTES = 8192


def is_text(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError:
        return False
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sniffed block is still text.
        return exc.start >= len(head) - 4
    return True


def files_under(target: Path, max_bytes: int) -> list[Path]:
    """Indexable files under `target` (a resolved directory or file inside the workspace), sorted."""
    blocked = workspace.off_limits()

    def wanted(path: Path, ignores: GitIgnores) -> bool:
        if path.suffix.lower() in BINARY_SUFFIXES or ignores.ignored(str(path), False):
            return False
        try:
            size = path.stat().st_size
        except OSError:
            return False
        return 0 < size <= max_bytes and is_text(path)

    if target.is_file():
        ignores = GitIgnores.above(target.parent).entering(str(target.parent))
        return [target] if wanted(target, ignores) and not workspace.is_off_limits(target) else []

    found: list[Path] = []
    rules = {str(target): GitIgnores.above(target)}  # each directory's, set by its parent
    for directory, dirnames, filenames in os.walk(target, followlinks=False):
        here = Path(directory)
        ignores = rules.pop(directory).entering(directory)
        kept = []
        for name in dirnames:
            child = here / name
            if (name in SKIPPED_DIRS or child.is_symlink() or (child / "pyvenv.cfg").exists()
                    or any(child == path or path in child.parents for path in blocked)
                    or ignores.ignored(str(child), True)):
                continue
            kept.append(name)
            rules[str(child)] = ignores
        dirnames[:] = sorted(kept)
        for name in filenames:
            path = here / name
            if not path.is_symlink() and wanted(path, ignores):
                found.append(path)
    return sorted(found)
