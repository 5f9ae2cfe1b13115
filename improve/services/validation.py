"""Proving a proposal in the sandbox, before and after: the new module must import (a syntax
error shows there too), and every workspace test file covering it runs with the current file
and with the new one, each time against a copy of the workspace modules the file and the test
import (improve/services/workspace_copy.py). A test that passed before and fails after refuses
the change; the output names the test."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from codegen_site.core import workspace
from codegen_site.sandbox import SandboxResult, arun_python
from improve.config import run_settings
from improve.services import workspace_copy
from improve.services.coverage import covering_tests
from improve.services.workspace_copy import WorkspaceCopy


def import_check(shown: str) -> str:
    """A test importing the module the way a project would: by its dotted name (by path when it has none)."""
    parts = Path(shown).with_suffix("").parts
    parts = parts[:-1] if parts and parts[-1] == "__init__" else parts
    if parts and all(part.isidentifier() for part in parts):
        return ("import importlib\n\n\ndef test_module_imports():\n"
                f"    assert importlib.import_module({'.'.join(parts)!r}) is not None\n")
    return ("import importlib.util\nimport os\n\n\ndef test_module_imports():\n"
            f"    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), {shown!r})\n"
            "    spec = importlib.util.spec_from_file_location('module_under_test', path)\n"
            "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n")


@dataclass(frozen=True)
class CoveringRun:
    """One covering test file as a validation runs it: its workspace path, its text, its copy."""

    shown: str
    text: str
    copy: WorkspaceCopy


@dataclass
class Plan:
    """What validating one file runs: the import check and each covering test, each with its workspace copy."""

    import_test: str
    import_copy: WorkspaceCopy
    tests: list[CoveringRun]


def plan_validation(target: Path) -> Plan:
    limits = run_settings()
    copy_limits = {"max_files": limits.copy_max_files, "max_bytes": limits.copy_max_bytes}
    shown = workspace.relative(target)
    return Plan(import_check(shown), workspace_copy.build(target, None, **copy_limits),
                [CoveringRun(test.shown, test.text, workspace_copy.build(target, test.path, **copy_limits))
                 for test in covering_tests(target)])


async def run_in_sandbox(copy: WorkspaceCopy, module_text: str, test_text: str) -> SandboxResult:
    """The one call into the sandbox: a workspace copy holding `module_text`, one pytest file beside it."""
    return await arun_python(copy.writer(module_text), test_text, timeout=run_settings().validation_timeout)


def _printed(result: SandboxResult) -> str:
    """What the run printed, its error after it: the detail a refused proposal shows."""
    return ((result.output or "") + (f"\n{result.error}" if result.error else "")).strip()


@dataclass
class TestRun:
    """One pytest run of a covering test file, from the sandbox's per-test outcomes."""

    failing: set[str]
    collection_error: bool
    passed: int
    failed: int
    output: str

    @classmethod
    def of(cls, result: SandboxResult, test_path: str) -> "TestRun":
        """`test_path` names the file in the failing tests' ids (the sandbox ran it as test_solution.py).
        A run without outcomes that did not succeed (it timed out, or ended before pytest reported)
        did not run its tests: a collection error, as a file pytest could not collect is."""
        failing = {test.name.replace("test_solution.py", test_path, 1) for test in result.tests if test.failed}
        collection_error = result.timed_out or any(test.collection_error for test in result.tests) or \
            (not result.success and not result.tests)
        passed = sum(test.outcome == "passed" for test in result.tests)
        return cls(failing, collection_error, passed, len(failing), _printed(result))

    def summary(self) -> str:
        if self.collection_error:
            return "did not run (collection error or timeout)"
        return f"{self.passed} passed, {self.failed} failed"


@dataclass
class Validation:
    passed: bool
    output: str
    broken_tests: list[str] = field(default_factory=list)


class Validator:
    """Validates proposals for one file; the current file's test results are measured once."""

    def __init__(self, shown: str, original: str, plan: Plan):
        self.shown = shown
        self.original = original
        self.plan = plan
        self._before: dict[str, TestRun] = {}

    async def _before_run(self, test: CoveringRun) -> TestRun:
        if test.shown not in self._before:
            result = await run_in_sandbox(test.copy, self.original, test.text)
            self._before[test.shown] = TestRun.of(result, test.shown)
        return self._before[test.shown]

    async def validate(self, proposal: str) -> Validation:
        if proposal.strip() == self.original.strip():
            return Validation(False, "The proposal is the current file unchanged; nothing was improved.")
        imported = await run_in_sandbox(self.plan.import_copy, proposal, self.plan.import_test)
        if not imported.success:
            return Validation(False, f"Import check failed: the new {self.shown} does not compile or import.\n"
                                     f"{_printed(imported)}")
        lines = ["Syntax check passed; the module imports."]
        if not self.plan.tests:
            lines.append(f"No covering tests found for {self.shown} (no test_{Path(self.shown).stem}.py and no "
                         f"test file importing it).")
            return Validation(True, "\n".join(lines))
        broken: list[str] = []
        details: list[str] = []
        for test in self.plan.tests:
            before = await self._before_run(test)
            after = TestRun.of(await run_in_sandbox(test.copy, proposal, test.text), test.shown)
            if after.collection_error and not before.collection_error and before.passed:
                newly = [f"{test.shown} (every test: {after.summary()})"]
            else:
                newly = sorted(after.failing - before.failing)
            broken += newly
            lines.append(f"{test.shown}: before {before.summary()}; after {after.summary()}"
                         + (f"; broken: {', '.join(newly)}" if newly else ""))
            if test.copy.skipped:
                lines.append(f"  not copied into the run: {', '.join(test.copy.skipped)}")
            if newly:
                details.append(after.output)
        if broken:
            lines.append("Refused: the change turns passing tests red.")
            lines += details
        return Validation(not broken, "\n".join(lines), broken)
