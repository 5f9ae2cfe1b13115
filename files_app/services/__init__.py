"""Files in the workspace, written so that no earlier version is ever lost.

The one place where the product changes a user's files; the /files views and the improve app
call these functions, which reach the files only through codegen_site.core.workspace:

- writes: `write_file(path, content, create_backup=True, reason="write")` backs up the current
  content, then replaces the file atomically;
- restore: `restore(backup_id=... | backup_path=..., original_path=None)` (undoable),
  `diff_backup(backup_id)` and `unified_diff(old, new, path)`;
- retention: `prune_backups(keep_last, keep_days)`;
- tree: `tree(path, depth)`, a directory listing;
- store: the content-addressed blobs the backups point at.

`read_file` is a read (files_app.selectors); it is named here as well because the improve app
reads and writes a file through this one module."""

from files_app.selectors import ReadResult, read_file
from files_app.services.restore import DiffResult, RestoreResult, diff_backup, restore, unified_diff
from files_app.services.retention import PruneResult, prune_backups
from files_app.services.tree import TreeListing, tree
from files_app.services.writes import WriteResult, write_file

__all__ = [
    "DiffResult", "PruneResult", "ReadResult", "RestoreResult", "TreeListing", "WriteResult", "diff_backup",
    "prune_backups", "read_file", "restore", "tree", "unified_diff", "write_file",
]
