"""The workspace's git repository, used without ever touching the user's work tree, index or branch
until a change is applied — and then only the changed paths.

Commits are made with plumbing on a private index file in the data dir (`read-tree`,
`hash-object -w --no-filters --stdin`, `update-index --cacheinfo`, `write-tree`, `commit-tree`,
`update-ref` with the old value, so a ref that moved meanwhile is never overwritten). Plumbing
runs no hooks, no clean/smudge/process filters (`--no-filters`, and no command here reads or
writes the work tree), no pager, no external diff. Every call is a fixed argument list with:

- GIT_CONFIG_NOSYSTEM=1 and GIT_CONFIG_GLOBAL=/dev/null (only the repository's own config is read),
- `-c core.hooksPath=/dev/null -c core.fsmonitor=false -c diff.external= -c commit.gpgSign=false
  -c gc.auto=0 -c maintenance.auto=false -c core.pager=cat`, and `--no-pager`,
- GIT_CEILING_DIRECTORIES above the workspace: a repository around the workspace is not used,
- a fixed author and committer, so no user.name lookup can fail.

The repository's `.git/config` may name commands (core.pager, core.sshCommand, filters,
diff.external, gpg.program...): none of the subcommands used here starts one, and the settings
above switch off those that could."""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from codegen_site.core.errors import Conflict, ServiceError
from improve.config import change_settings

ZERO = "0" * 40
SAFE = ["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "diff.external=",
        "-c", "commit.gpgSign=false", "-c", "tag.gpgSign=false", "-c", "gc.auto=0",
        "-c", "maintenance.auto=false", "-c", "core.pager=cat", "-c", "core.untrackedCache=false"]
IDENTITY = {"GIT_AUTHOR_NAME": "CodeGen AI", "GIT_AUTHOR_EMAIL": "codegen@localhost",
            "GIT_COMMITTER_NAME": "CodeGen AI", "GIT_COMMITTER_EMAIL": "codegen@localhost"}


class GitFailed(ServiceError):
    pass


def _environment(root: Path, index: str | None) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update(IDENTITY, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null", GIT_TERMINAL_PROMPT="0",
               GIT_OPTIONAL_LOCKS="0", GIT_CEILING_DIRECTORIES=str(root.parent), LC_ALL="C")
    if index is not None:
        env["GIT_INDEX_FILE"] = index
    return env


@dataclass(frozen=True)
class Repo:
    """The repository whose top level is the workspace root."""

    root: Path

    def run(self, *args: str, stdin: bytes | None = None, index: str | None = None, check: bool = True) -> str:
        completed = subprocess.run(["git", "--no-pager", *SAFE, "-C", str(self.root), *args], input=stdin,
                                   capture_output=True, env=_environment(self.root, index),
                                   timeout=change_settings().git_timeout, check=False)
        if check and completed.returncode != 0:
            raise GitFailed(f"git {args[0]} failed: {completed.stderr.decode(errors='replace').strip()[:500]}")
        return completed.stdout.decode("utf-8", errors="surrogateescape").strip() if completed.returncode == 0 \
            else ""

    def ok(self, *args: str) -> bool:
        completed = subprocess.run(["git", "--no-pager", *SAFE, "-C", str(self.root), *args], capture_output=True,
                                   env=_environment(self.root, None), timeout=change_settings().git_timeout,
                                   check=False)
        return completed.returncode == 0

    # --- reads -------------------------------------------------------------------------------

    def head(self) -> str:
        return self.run("rev-parse", "--verify", "-q", "HEAD^{commit}", check=False)

    def branch(self) -> str:
        """The checked-out branch's short name ('' when HEAD is detached)."""
        return self.run("symbolic-ref", "-q", "--short", "HEAD", check=False)

    def ref(self, name: str) -> str:
        return self.run("rev-parse", "--verify", "-q", f"refs/heads/{name}^{{commit}}", check=False)

    def blob(self, commit: str, path: str) -> tuple[str, str] | None:
        """(mode, sha) of `path` in `commit`, None when absent."""
        line = self.run("ls-tree", "-z", commit, "--", path).rstrip("\0")
        if not line:
            return None
        meta, _, _ = line.partition("\t")
        mode, _, sha = meta.split(" ")
        return mode, sha

    def staged(self, path: str) -> tuple[str, str] | None:
        """(mode, sha) of `path` in the user's index, None when not there."""
        line = self.run("ls-files", "-s", "-z", "--", path).split("\0")[0]
        if not line:
            return None
        mode, sha, _ = line.split(" ", 2)
        return mode, sha

    def hash_text(self, text: str, *, write: bool) -> str:
        return self.run("hash-object", *(["-w"] if write else []), "--no-filters", "--stdin",
                        stdin=text.encode("utf-8"))

    def touched_since(self, since: str, until: str, paths: list[str]) -> bool:
        return bool(self.run("rev-list", "-n", "1", f"{since}..{until}", "--", *paths))

    # --- writes (objects and refs only; never the work tree) ------------------------------------

    def commit(self, parent: str, changes: dict[str, tuple[str, str] | None], message: str) -> str:
        """A commit on `parent` whose tree is the parent's with `changes` (path → (mode, blob sha), or
        None to remove it), built on a private index so the user's index is not read or written."""
        with tempfile.TemporaryDirectory(dir=settings.DATA_DIR, prefix="git-index-") as scratch:
            index = str(Path(scratch) / "index")
            self.run("read-tree", parent, index=index)
            for path, entry in changes.items():
                if entry is None:
                    self.run("update-index", "--force-remove", "--", path, index=index)
                else:
                    self.run("update-index", "--add", "--cacheinfo", f"{entry[0]},{entry[1]},{path}", index=index)
            tree = self.run("write-tree", index=index)
        return self.run("commit-tree", "--no-gpg-sign", tree, "-p", parent, "-m", message)

    def create_branch(self, name: str, commit: str) -> None:
        if not self.ok("check-ref-format", f"refs/heads/{name}"):
            raise GitFailed(f"{name} is not a valid branch name")
        self.run("update-ref", "-m", "codegen: proposal", f"refs/heads/{name}", commit, ZERO)

    def move_branch(self, name: str, new: str, old: str) -> None:
        """Move the branch from `old` to `new`; 409 when it is no longer at `old`."""
        if not self.ok("update-ref", "-m", "codegen", f"refs/heads/{name}", new, old):
            raise Conflict(f"The branch {name} moved while the change was being applied; nothing was moved")

    def delete_branch(self, name: str, commit: str) -> None:
        self.ok("update-ref", "-d", f"refs/heads/{name}", commit)

    def stage(self, entries: dict[str, tuple[str, str] | None]) -> None:
        """The user's index entries for exactly these paths set to these blobs (no file is read)."""
        for path, entry in entries.items():
            if entry is None:
                self.run("update-index", "--force-remove", "--", path)
            else:
                self.run("update-index", "--add", "--cacheinfo", f"{entry[0]},{entry[1]},{path}")


def open_repo(root: Path) -> Repo | None:
    """The repository when the workspace root is the top level of one with a commit, else None."""
    repo = Repo(root)
    try:
        top = repo.run("rev-parse", "--show-toplevel", check=False)
        if not top or Path(top).resolve() != root.resolve() or not repo.head():
            return None
    except (OSError, subprocess.TimeoutExpired):
        return None
    return repo
