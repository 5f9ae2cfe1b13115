"""The [sandbox] section, typed, with every limit held under its ceiling ([sandbox.ceilings]).

Built once per config version (codegen_site.core.sections); `override_limits` lays values
over it in this process (tests, benchmarks), converted the same way and held under the
same ceilings. The zygote gets its part as JSON, already typed."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any

from codegen_site.core.config import get_config, within_ceilings
from codegen_site.core.sections import build, section

# fixed when the runner starts (a change starts a new runner); the rest is read per run
ZYGOTE_KEYS = ("uid_base", "uid_count", "uid_slots", "force_audit_hook")
RUN_KEYS = ("cpu_seconds", "memory_mb", "max_processes", "max_file_mb", "max_open_files", "disk_mb", "per_run_netns")


@dataclass(frozen=True)
class SandboxCeilings:
    """The most each limit may be; set by the deployment only. A ceiling is any positive number."""
    max_concurrent: float
    max_waiting: float
    cpu_seconds: float
    memory_mb: float
    max_processes: float
    max_file_mb: float
    max_open_files: float
    max_output_bytes: float
    disk_mb: float
    timeout_seconds: float  # of any one run's wall clock


@dataclass(frozen=True)
class SandboxSettings:
    max_concurrent: int
    max_waiting: int
    cpu_seconds: int
    memory_mb: int
    max_processes: int
    max_file_mb: int
    max_open_files: int
    max_output_bytes: int
    kill_output_bytes: int
    disk_mb: int
    uid_base: int
    uid_count: int
    uid_slots: int
    per_run_netns: bool
    socket_families: tuple[str, ...]
    force_audit_hook: bool
    ceilings: SandboxCeilings

    def zygote_settings(self) -> dict:
        return {key: getattr(self, key) for key in ZYGOTE_KEYS}

    def run_limits(self) -> dict:
        """What the zygote applies to one run (the socket families go as numbers, see runner.py)."""
        return {key: getattr(self, key) for key in RUN_KEYS}


_overrides: dict[str, Any] = {}
_held: tuple[SandboxSettings, SandboxSettings] | None = None  # (as configured, held under the ceilings)


def _under_ceilings(configured: SandboxSettings) -> SandboxSettings:
    ceilings = {item.name: getattr(configured.ceilings, item.name) for item in dataclasses.fields(SandboxCeilings)}
    values = {name: getattr(configured, name) for name in ceilings if hasattr(configured, name)}
    lowered = within_ceilings(values, ceilings)
    return dataclasses.replace(configured, **lowered) if lowered else configured


def current() -> SandboxSettings:
    """The [sandbox] settings in effect: the config's, with override_limits() laid over them,
    every limit held under its ceiling (the same object until the config changes)."""
    global _held
    config = get_config()
    if _overrides:
        return _under_ceilings(build(SandboxSettings, {**config["sandbox"], **_overrides}, "sandbox"))
    configured = section(SandboxSettings, "sandbox", config=config)
    held = _held
    if held is None or held[0] is not configured:
        held = _held = (configured, _under_ceilings(configured))
    return held[1]


@contextlib.contextmanager
def override_limits(**values: Any):
    """Temporarily override [sandbox] settings in this process (tests, benchmarks)."""
    old = dict(_overrides)
    _overrides.update(values)
    try:
        yield
    finally:
        _overrides.clear()
        _overrides.update(old)
