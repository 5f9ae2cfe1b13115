"""Helpers shared by the sandbox tests: concurrent runs and looking for processes on the host."""

from __future__ import annotations

import contextlib
import os
import threading

from codegen_site import sandbox
from codegen_site.sandbox import SandboxResult, run_python
from tests.polling import wait_for


def run_concurrently(codes: dict[str, str], timeout: float = 20) -> dict[str, SandboxResult]:
    """Start every code at once (two run slots) and return their results by name."""
    results: dict[str, SandboxResult] = {}
    with sandbox.override_limits(max_concurrent=len(codes)):
        threads = [threading.Thread(target=lambda name=name, code=code: results.__setitem__(
            name, run_python(code, timeout=timeout))) for name, code in codes.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout + 10)
    return results


def host_processes_with(marker: str) -> list[int]:
    """Host pids of live (not zombie) processes whose command line holds `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if marker.encode() not in handle.read():
                    continue
            with open(f"/proc/{entry}/stat") as handle:
                if handle.read().split(")")[-1].split()[0] != "Z":
                    found.append(int(entry))
        except OSError:
            continue
    return found


def wait_until_gone(marker: str, seconds: float = 3) -> list[int]:
    """The processes holding `marker` still alive after up to `seconds`."""
    with contextlib.suppress(AssertionError):
        wait_for(lambda: not host_processes_with(marker), seconds, f"the processes holding {marker} to end", 0.05)
    return host_processes_with(marker)
