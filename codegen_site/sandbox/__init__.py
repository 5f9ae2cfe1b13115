"""Run untrusted Python (optionally with pytest tests) in an isolated, resource-limited child.

See runner.py for the server side, verdict.py for how a run with tests is judged, and _zygote.py
(with _rootfs.py, _seccomp.py, _witness.py) for the warm process that forks the runs.
"""

from codegen_site.sandbox.runner import (
    SandboxBusy,
    SandboxResult,
    SandboxUnavailable,
    arun_python,
    isolation_mode,
    override_limits,
    run_cgroup,
    run_python,
    shutdown,
    strip_code_fences,
    warmup,
)

__all__ = [
    "SandboxBusy", "SandboxResult", "SandboxUnavailable", "arun_python", "isolation_mode",
    "override_limits", "run_cgroup", "run_python", "shutdown", "strip_code_fences", "warmup",
]
