"""Shared by the bench scripts that compare this checkout with an earlier commit in one run:
the commit's tree exported (`git archive`) to a temp dir, and a server started from either
tree, as `make run` starts it, on the same venv.

    with exported("HEAD~3") as old_root:
        with Server(old_root, workdir) as old, Server(ROOT, workdir2) as new:
            ...
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


@contextmanager
def exported(ref: str | None) -> Iterator[Path]:
    """The tree of commit `ref` in a temp dir (removed on exit); None: this checkout as it is,
    uncommitted changes included."""
    if ref is None:
        yield ROOT
        return
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        archive = Path(tmp) / "tree.tar"
        subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), ref], check=True)
        tree = Path(tmp) / "tree"
        with tarfile.open(archive) as tar:
            tar.extractall(tree, filter="data")
        archive.unlink()
        yield tree


def describe(ref: str | None) -> str:
    """`ref` as a short commit id and subject, for the figures' heading."""
    if ref is None:
        return "the working tree"
    return subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s", ref], capture_output=True,
                          text=True, check=True).stdout.strip()[:90]


def tree_env(tree: Path, **extra: str) -> dict[str, str]:
    """The environment that runs `tree`'s code: its directory first on sys.path (ahead of the
    checkout the venv may point at), bytecode cached as on a developer's machine."""
    env = {**os.environ, "PYTHONPATH": str(tree), **extra}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("CODEGEN_API_TOKEN", None)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """codegen_site.server from `tree` with its own data dir, config dir and workspace under
    `workdir`, a rate limit no bench reaches (per second, so the throttle keeps a second of
    history, as it keeps at most its limit in use), no analysis workers at start."""

    def __init__(self, tree: Path, workdir: Path, **env: str):
        self.tree, self.workdir = tree, workdir
        self.workspace = workdir / "workspace"
        for name in ("data", "config", "workspace"):
            (workdir / name).mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = tree_env(tree, DJANGO_SETTINGS_MODULE="codegen_site.settings",
                            CODEGEN_DATA_DIR=str(workdir / "data"), CODEGEN_CONFIG_DIR=str(workdir / "config"),
                            CODEGEN_WORKSPACE_ROOT=str(self.workspace),
                            CODEGEN_SECURITY__RATE_ANON="1000000/second", CODEGEN_LOGGING__LEVEL="WARNING",
                            CODEGEN_IMPROVE__WORKERS_AT_START="false", PYTHONUNBUFFERED="1", **env)
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        self.log = (self.workdir / "server.log").open("wb")
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=self.tree, env=self.env, check=True,
                       stdout=self.log, stderr=subprocess.STDOUT)
        self.process = subprocess.Popen(
            [PYTHON, "-P", "-m", "codegen_site.server", "-b", "127.0.0.1", "-p", str(self.port)],
            cwd=self.tree, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server from {self.tree} exited:\n{(self.workdir / 'server.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"the server from {self.tree} did not listen within 90 s")

    def __exit__(self, *exc_info) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
