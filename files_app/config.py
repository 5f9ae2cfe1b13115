"""The [files] settings as one typed section (codegen_site.core.sections): converted once per
config version, so no code here casts a raw config value."""

from __future__ import annotations

from dataclasses import dataclass

from codegen_site.core.sections import section


@dataclass(frozen=True)
class FilesSection:
    max_file_bytes: int        # largest file written (413 beyond) or read (400 beyond)
    backup_keep_last: int      # retention: newest backups kept per file (0: rule off)
    backup_keep_days: float    # retention: backups younger than this are kept (0: rule off)
    tree_depth: int            # /files/tree levels when the client gives none
    tree_max_depth: int        # the deepest /files/tree a client may ask for
    tree_max_entries: int      # entries listed before the tree is cut short


def files_settings() -> FilesSection:
    return section(FilesSection, "files")
