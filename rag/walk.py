"""The files an index run reads: under a path, minus what .gitignore files (at the path, above it up to the
workspace root, and below it) exclude, version-control and tool directories, virtualenvs, node_modules,
the product's own data (workspace.is_off_limits), binaries and files over the size limit."""

from __future__ import annotations

import os
from pathlib import Path

import pathspec

from codegen_site.core import workspace

SKIPPED_DIRS = {".git", ".hg", ".svn", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".nox",
                ".mypy_cache", ".pytest_cache", ".ruff_cache", ".idea", ".vscode", "site-packages",
                ".eggs"}
BINARY_SUFFIXES = {".pyc", ".pyo", ".so", ".dll", ".dylib", ".exe", ".bin", ".o", ".a", ".zip", ".gz", ".tgz",
                   ".bz2", ".xz", ".7z", ".tar", ".whl", ".jar", ".png", ".jpg", ".jpeg", ".gif", ".ico",
                   ".webp", ".bmp", ".pdf", ".mo", ".woff", ".woff2", ".ttf", ".otf", ".eot", ".mp3", ".mp4",
                   ".wav", ".sqlite3", ".db", ".onnx", ".gguf", ".npy", ".pkl", ".parquet", ".lock"}
SNIFF_BYTES = 8192


def _load_ignore(directory: Path) -> pathspec.PathSpec | None:
    ignore = directory / ".gitignore"
    try:
        text = ignore.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return pathspec.GitIgnoreSpec.from_lines(text.splitlines())


def _ignored(path: Path, is_dir: bool, specs: list[tuple[Path, pathspec.PathSpec]]) -> bool:
    for base, spec in specs:
        try:
            relative = path.relative_to(base).as_posix()
        except ValueError:
            continue
        if spec.match_file(relative + "/" if is_dir else relative):
            return True
    return False


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
    root = workspace.root()
    blocked = workspace.off_limits()
    specs: list[tuple[Path, pathspec.PathSpec]] = []
    # .gitignore files above the target, up to the workspace root, apply to it too.
    ancestors = [target.parent] if target.is_file() else [target]
    ancestors += list(ancestors[0].parents)
    for directory in reversed(ancestors):
        if directory == root or root in directory.parents:
            spec = _load_ignore(directory) if directory != ancestors[0] or target.is_file() else None
            if spec:
                specs.append((directory, spec))

    def wanted(path: Path) -> bool:
        if path.suffix.lower() in BINARY_SUFFIXES or _ignored(path, False, specs):
            return False
        try:
            size = path.stat().st_size
        except OSError:
            return False
        return 0 < size <= max_bytes and is_text(path)

    if target.is_file():
        return [target] if wanted(target) and not workspace.is_off_limits(target) else []

    found: list[Path] = []
    for directory, dirnames, filenames in os.walk(target, followlinks=False):
        here = Path(directory)
        spec = _load_ignore(here)
        if spec:
            specs.append((here, spec))
        kept = []
        for name in dirnames:
            child = here / name
            if (name in SKIPPED_DIRS or child.is_symlink() or (child / "pyvenv.cfg").exists()
                    or any(child == path or path in child.parents for path in blocked)
                    or _ignored(child, True, specs)):
                continue
            kept.append(name)
        dirnames[:] = sorted(kept)
        for name in filenames:
            path = here / name
            if not path.is_symlink() and wanted(path):
                found.append(path)
    return sorted(found)
