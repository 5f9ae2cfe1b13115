"""The one door to the user's files. Every app lists, walks, reads and writes the workspace
through this package and nothing else:

- paths: client path -> workspace path, what is off limits, what a write may not touch;
- policy: the hidden names (tooling state, secrets) and the directories walks skip;
- descriptors: openat-based IO that no symlink leads out, reads checked on the opened file;
- walk: a directory's listing and the files under a path, with .gitignore as git reads it;
- process: server processes kept outside the workspace (working directory, sys.path)."""

from codegen_site.core.errors import PathNotAllowed, PathNotFound, PathOutsideWorkspace
from codegen_site.core.workspace.descriptors import (
    CHUNK_BYTES,
    Reader,
    is_regular_file,
    open_child_dir,
    open_dir,
    open_dir_for_write,
    open_file,
    read_bytes,
    read_open,
)
from codegen_site.core.workspace.paths import (
    check_writable,
    is_off_limits,
    off_limits,
    protected_roots,
    relative,
    resolve,
    root,
)
from codegen_site.core.workspace.policy import SKIPPED_DIRS, is_hidden_name, looks_secret
from codegen_site.core.workspace.process import leave_workspace, run_dir
from codegen_site.core.workspace.walk import Entry, GitIgnores, entries, files, open_with_ignores

__all__ = [
    "CHUNK_BYTES", "SKIPPED_DIRS", "Entry", "GitIgnores", "PathNotAllowed", "PathNotFound", "PathOutsideWorkspace",
    "Reader", "check_writable", "entries", "files", "is_hidden_name", "is_off_limits", "is_regular_file",
    "leave_workspace", "looks_secret", "off_limits", "open_child_dir", "open_dir", "open_dir_for_write",
    "open_file", "open_with_ignores", "protected_roots", "read_bytes", "read_open", "relative", "resolve", "root", "run_dir",
]
