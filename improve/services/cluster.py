"""The queue's workers: one `manage.py qcluster` beside the server (improve_queue.start_cluster,
the default: "managed"), or clusters that run on their own ("external", the scaled set-up).

`ManagedCluster` is the process a server started: a pid file and a lock under DATA_DIR keep it
to one per data dir (a second server finds the first one's cluster by its pid); the process
that started it stops it at exit, or when `close()` is called (improve.resources.shutdown); a
server killed outright takes it along too (codegen_site.core.lifeline: the cluster watches the
pid of the server that started it). django-q2 lets running tasks finish when it is stopped."""

from __future__ import annotations

import atexit
import fcntl
import functools
import logging
import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from codegen_site.core import lifeline, workspace
from improve.config import queue_settings

logger = logging.getLogger(__name__)

MANAGED, EXTERNAL = "managed", "external"
MODES = (MANAGED, EXTERNAL)
BROKERS = ("orm", "redis")


def _pid_file() -> Path:
    return Path(settings.DATA_DIR) / "qcluster.pid"


@contextmanager
def _data_dir_lock():
    path = Path(settings.DATA_DIR) / "qcluster.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


class ManagedCluster:
    """The qcluster this server process runs for its data dir: explicit start and close."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._stops_at_exit = False

    def pid(self) -> int | None:
        """The pid of the data dir's running qcluster (started here or by another server), or None."""
        try:
            pid = int(_pid_file().read_text().strip())
        except (OSError, ValueError):
            return None
        process = self._process
        if process is not None and process.pid == pid:
            return pid if process.poll() is None else None  # our own child (maybe not yet exec'd)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"qcluster" in cmdline else None

    def start(self) -> int:
        """The pid of the one qcluster for this data dir, started now if none runs."""
        with self._lock, _data_dir_lock():
            pid = self.pid()
            if pid:
                return pid
            log = (Path(settings.DATA_DIR) / "qcluster.log").open("ab")
            process = subprocess.Popen([sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "qcluster"],
                                       cwd=workspace.run_dir(), env=lifeline.child_env(dict(os.environ)), stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            log.close()
            _pid_file().write_text(str(process.pid))
            if not self._stops_at_exit:
                atexit.register(self.close)
                self._stops_at_exit = True
            self._process = process
            logger.info("Started qcluster (pid %s)", process.pid)
            return process.pid

    def close(self, timeout: float = 30.0) -> None:
        """Stop the qcluster this process started (nothing when it started none)."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        _pid_file().unlink(missing_ok=True)


@functools.cache
def managed_cluster() -> ManagedCluster:
    """This process's cluster handle (the object is made on first call; the process by `start`)."""
    return ManagedCluster()


def cluster_info() -> dict:
    """How the queue's workers run: mode, broker, and the managed cluster's pid."""
    queue = queue_settings()
    managed = queue.start_cluster
    return {"mode": MANAGED if managed else EXTERNAL, "broker": "redis" if queue.redis_url else "orm",
            "cluster_pid": managed_cluster().pid() if managed else None}
