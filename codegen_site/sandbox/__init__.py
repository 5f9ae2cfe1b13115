"""Run untrusted Python (optionally with pytest tests) in an isolated, resource-limited child.

See runner.py for the server side (with admission.py, settings.py, capture.py), result.py for
what a run answers (with each test's outcome), verdict.py for how a run is judged, and
_zygote.py (with _rootfs.py, _seccomp.py, _cgroup.py, _witness.py, _wire.py) for the warm
process that forks the runs.
"""

from codegen_site.sandbox.admission import SandboxBusy
from codegen_site.sandbox.result import SandboxResult, TestOutcome
from codegen_site.sandbox.runner import (
    SandboxUnavailable,
    arun_python,
    isolation_mode,
    run_cgroup,
    run_python,
    shutdown,
    strip_code_fences,
    warmup,
)
from codegen_site.sandbox.settings import override_limits
from codegen_site.sandbox.verdict import is_fixture

__all__ = [
    "SandboxBusy", "SandboxResult", "SandboxUnavailable", "arun_python", "is_fixture", "isolation_mode",
    "override_limits", "run_cgroup", "run_python", "shutdown", "strip_code_fences", "TestOutcome", "warmup",
]
