"""Processes that must not outlive the server that started them (the analysis's workers, the
managed queue cluster), even when the server is SIGKILLed and runs no clean-up of its own.

A parent-death signal (PR_SET_PDEATHSIG) is tied to the *thread* that started the child, and
the server starts children from pooled threads that may end before it does; so each such child
watches its parent's pid in a thread of its own instead, and ends itself (and its process
group, when it leads one) within a poll of the parent's death. Only the standard library here:
the analysis's workers import this before anything else."""

from __future__ import annotations

import os
import signal
import threading
import time

# The pid a process started with this in its environment lives and dies with.
ENV = "CODEGEN_DIE_WITH"
POLL_SECONDS = 0.5
GRACE_SECONDS = 10.0


def _alive(parent_pid: int) -> bool:
    # A child whose parent died is given another (init or a subreaper): the parent's pid may be
    # taken again by then, its being our parent may not.
    return os.getppid() == parent_pid


def child_env(environ: dict[str, str]) -> dict[str, str]:
    """`environ` for a child that ends with this process (read by `watch_from_environment`)."""
    return {**environ, ENV: str(os.getpid())}


def _end_self(graceful: bool) -> None:
    group = os.getpgrp()
    leader = group == os.getpid()
    if graceful:
        if leader:
            os.killpg(group, signal.SIGTERM)
        else:
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(GRACE_SECONDS)
    if leader:
        os.killpg(group, signal.SIGKILL)
    os._exit(1)


def watch(parent_pid: int, graceful: bool = False) -> None:
    """End this process when `parent_pid` is gone: SIGTERM first when `graceful` (its own
    handlers stop it cleanly), then SIGKILL (to its whole group when it leads one)."""

    def run() -> None:
        while _alive(parent_pid):
            time.sleep(POLL_SECONDS)
        _end_self(graceful)

    threading.Thread(target=run, name="lifeline", daemon=True).start()


def watch_parent() -> None:
    """For a pool worker's initializer: end with the process that started it."""
    watch(os.getppid())


def watch_from_environment(graceful: bool = True) -> None:
    """In a process started with `child_env`: end with the process named there (once per process)."""
    pid = os.environ.get(ENV)
    if pid and pid.isdigit() and int(pid) != os.getpid():
        os.environ.pop(ENV)  # not for the processes this one starts in turn
        watch(int(pid), graceful)
