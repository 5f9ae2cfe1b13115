"""Which workspace files the code index reads: the workspace layer's files under a path (its
hidden names, .gitignore rules, skipped tool directories and virtualenvs), minus binaries by
suffix, empty files and files over the size limit; a file whose bytes are not text is dropped
once read (`is_text`)."""

from __future__ import annotations

from pathlib import Path

from codegen_site.core import workspace

BINARY_SUFFIXES = frozenset({
    ".pyc", ".pyo", ".so", ".dll", ".dylib", ".exe", ".bin", ".o", ".a", ".zip", ".gz", ".tgz", ".bz2", ".xz",
    ".7z", ".tar", ".whl", ".jar", ".png", ".jpg", ".jpeg", ".gif", ".ico", ".webp", ".bmp", ".pdf", ".mo",
    ".woff", ".woff2", ".ttf", ".otf", ".eot", ".mp3", ".mp4", ".wav", ".sqlite3", ".db", ".onnx", ".gguf",
    ".npy", ".pkl", ".parquet", ".lock",
})
SNIFF_BYTES = 8192


def _wanted_name(name: str) -> bool:
    dot = name.rfind(".")
    return dot < 0 or name[dot:].lower() not in BINARY_SUFFIXES


def is_text(data: bytes) -> bool:
    head = data[:SNIFF_BYTES]
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sniffed block is still text.
        return len(data) > SNIFF_BYTES and exc.start >= len(head) - 4
    return True


def files_under(target: Path, max_bytes: int) -> list[workspace.Entry]:
    """Indexable files under `target` (a resolved directory or file inside the workspace), sorted."""
    return [entry for entry in workspace.files(target, include=_wanted_name)
            if entry.size is not None and 0 < entry.size <= max_bytes]
