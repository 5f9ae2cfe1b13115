"""Server processes stand outside the workspace: a module a client wrote there is never found
by an import of the server or of a process it starts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from django.conf import settings

from codegen_site.core.workspace.paths import inside, real, root


def run_dir() -> Path:
    """The working directory of server processes: in the data dir, which no client can reach."""
    path = Path(settings.DATA_DIR) / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def leave_workspace() -> Path:
    """Move this process (and so every process it starts) to a working directory no client can
    write, and drop sys.path entries that a client could fill: '' (the working directory) and
    any folder inside the workspace that is not one of the server's own.

    Called first by the server (codegen_site.server); the processes it starts inherit the
    working directory (the queue cluster is started in run_dir() too). A module a client wrote
    (`threading.py`) is then never found by an import, here or in a `python -c` child
    (multiprocessing's workers start with the working directory first on their path).
    Returns the new working directory."""
    directory = run_dir()
    os.chdir(directory)
    workspace = root()
    own = (real(os.fspath(settings.BASE_DIR)), real(sys.prefix), real(sys.base_prefix))
    kept = []
    for entry in sys.path:
        if not entry:
            continue
        folder = real(entry)
        if inside(folder, workspace) and not any(inside(folder, path) for path in own):
            continue
        kept.append(entry)
    sys.path[:] = kept
    return directory
