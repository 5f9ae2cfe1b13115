"""Which workspace files the code index reads: the workspace layer's files under a path (its
hidden names, .gitignore rules, skipped tool directories and virtualenvs), of the kinds [rag]
names — source and documentation by default (`index_suffixes`; a file without a suffix, such as
Makefile or README, counts as one), never translation catalogues, data or lock files
(`skip_suffixes`, `skip_names`) — minus binaries by suffix, empty files and files over the size
limit; a file whose bytes are not text is dropped once read (`is_text`).

Why a list of kinds and not "every text file": a web framework's installed package holds 1,226
translation catalogues (.po) beside 885 Python files; embedded, they outnumbered the code and
came back for questions about it."""

from __future__ import annotations

from pathlib import Path

from codegen_site.core import workspace
from rag.config import RagSection, rag_settings

BINARY_SUFFIXES = frozenset({
    ".pyc", ".pyo", ".so", ".dll", ".dylib", ".exe", ".bin", ".o", ".a", ".zip", ".gz", ".tgz", ".bz2", ".xz",
    ".7z", ".tar", ".whl", ".jar", ".png", ".jpg", ".jpeg", ".gif", ".ico", ".webp", ".bmp", ".pdf", ".mo",
    ".woff", ".woff2", ".ttf", ".otf", ".eot", ".mp3", ".mp4", ".wav", ".sqlite3", ".db", ".onnx", ".gguf",
    ".npy", ".pkl", ".parquet", ".lock",
})
SNIFF_BYTES = 8192


class FileKinds:
    """The name test of the walk, from the [rag] lists (matched case-insensitively): a name is skipped
    when it is in `skip_names` or ends with one of `skip_suffixes` (so `.min.js` works), kept when
    `index_suffixes` is empty or names its suffix, or when it has no suffix at all."""

    def __init__(self, configured: RagSection):
        self.wanted = frozenset(suffix.lower() for suffix in configured.index_suffixes)
        self.skipped = tuple(suffix.lower() for suffix in configured.skip_suffixes)
        self.skipped_names = frozenset(name.lower() for name in configured.skip_names)

    def __call__(self, name: str) -> bool:
        lowered = name.lower()
        if lowered in self.skipped_names or (self.skipped and lowered.endswith(self.skipped)):
            return False
        dot = lowered.rfind(".")
        if dot <= 0:  # Makefile, README, .gitignore
            return True
        suffix = lowered[dot:]
        if suffix in BINARY_SUFFIXES:
            return False
        return not self.wanted or suffix in self.wanted


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
    return [entry for entry in workspace.files(target, include=FileKinds(rag_settings()))
            if entry.size is not None and 0 < entry.size <= max_bytes]
