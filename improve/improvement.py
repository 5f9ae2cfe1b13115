"""One improvement of one file, proven before it is written (POST /improve/run, /improve/apply).

read → ask the LLM for the whole new file → validate in the sandbox → on failure send the
validation output back and retry (up to max_retries) → write through the files service
(backup reason "improve"), or keep the proposal for a later apply.

Validation runs only in the sandbox: the new module must import (a syntax error shows
there too), and every workspace test file covering it (test_<module>.py, or one that
imports the module) runs with the current file and with the new one, each time against a
copy of the workspace modules the file and the test import (improve/workspace_copy.py).
A test that passed before and fails after refuses the change; nothing is written and the
output names the test.

`improvement_events()` is one async generator of (event, data) for both endpoints, like
the workflow's: the SSE view frames each event, the JSON view keeps the `done` payload."""

from __future__ import annotations

import asyncio
import hashlib
import re
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

from asgiref.sync import sync_to_async
from django.utils import timezone

from codegen_site.core import workspace
from codegen_site.core.config import get_config
from codegen_site.core.errors import BadInput, Conflict, NotFound
from codegen_site.llm import get_llm
from codegen_site.sandbox import SandboxResult, arun_python, strip_code_fences
from files_app import services as files
from files_app.models import Backup
from improve import workspace_copy
from improve.models import ImprovementRun
from improve.workspace_copy import WorkspaceCopy

Event = tuple[str, dict]

SYSTEM_PROMPT = (
    "You improve one Python file of a project. Fix the issue you are given without changing what the "
    "file's functions and classes do for their callers: existing tests must keep passing. Reply with the "
    "complete new content of the file in a single ```python block and nothing else."
)
_REPORT_LINE = re.compile(r"^(FAILED|ERROR) (\S+)", re.M)


def run_settings() -> dict:
    return get_config()["improve_run"]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- covering tests ------------------------------------------------------------------

def module_names(shown: str) -> list[str]:
    """Names a test may import the file by: its dotted path from the root and its bare name."""
    parts = list(Path(shown).with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    if not parts:
        return []
    dotted = ".".join(parts)
    return [dotted] if len(parts) == 1 else [dotted, parts[-1]]


def _import_pattern(names: list[str]) -> re.Pattern:
    """Lines importing one of `names`: `import name`, `from name import ...`, `from parent import stem`."""
    alternatives = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    forms = [rf"from[ \t]+(?:{alternatives})[ \t]+import\b", rf"import[ \t]+(?:{alternatives})(?![\w.])"]
    parent, _, stem = names[0].rpartition(".")
    if parent:
        forms.append(rf"from[ \t]+{re.escape(parent)}[ \t]+import[ \t(]+(?:[^\n]*[ ,(])?{re.escape(stem)}\b")
    return re.compile(rf"^[ \t]*(?:{'|'.join(forms)})", re.M)


def is_test_file(name: str) -> bool:
    """pytest's default test file names: test_*.py and *_test.py."""
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def covering_tests(target: Path) -> list[tuple[str, Path, str]]:
    """(workspace path, path, text) of the test files covering `target`, test_<module>.py first."""
    shown = workspace.relative(target)
    names = module_names(shown)
    if not names:
        return []
    pattern = _import_pattern(names)
    own_name = f"test_{target.stem}.py"
    matches = []
    for entry in workspace.files(workspace.root(), include=is_test_file):
        if entry.path == shown:
            continue
        try:
            text = files.read_file(entry.path).content
        except (BadInput, NotFound):
            continue  # binary, too large, or gone since the walk
        if entry.name == own_name or pattern.search(text):
            matches.append((entry.name != own_name, entry.path, workspace.root() / entry.path, text))
    matches.sort(key=lambda match: match[:2])
    return [(shown, path, text) for _, shown, path, text in matches[: int(run_settings()["max_covering_tests"])]]


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


@dataclass
class Plan:
    """What validating one file runs: the import check and each covering test, each with its workspace copy."""

    import_test: str
    import_copy: WorkspaceCopy
    tests: list[tuple[str, str, WorkspaceCopy]]


def plan_validation(target: Path) -> Plan:
    settings = run_settings()
    limits = {"max_files": int(settings["copy_max_files"]), "max_bytes": int(settings["copy_max_bytes"])}
    shown = workspace.relative(target)
    return Plan(import_check(shown), workspace_copy.build(target, None, **limits),
                [(test_shown, text, workspace_copy.build(target, path, **limits))
                 for test_shown, path, text in covering_tests(target)])


# --- sandbox runs ----------------------------------------------------------------------

async def run_in_sandbox(copy: WorkspaceCopy, module_text: str, test_text: str) -> SandboxResult:
    """The one call into the sandbox: a workspace copy holding `module_text`, one pytest file beside it."""
    return await arun_python(copy.writer(module_text), test_text, timeout=float(run_settings()["validation_timeout"]))


@dataclass
class TestRun:
    failing: set[str]
    collection_error: bool
    passed: int
    failed: int
    output: str

    @classmethod
    def of(cls, result: SandboxResult, test_path: str) -> "TestRun":
        output = (result.output or "") + (f"\n{result.error}" if result.error else "")
        failing = set()
        collection_error = False
        for kind, node in _REPORT_LINE.findall(output):
            if kind == "ERROR" and "::" not in node:
                collection_error = True
            failing.add(node.replace("test_solution.py", test_path, 1))
        if result.timed_out:
            collection_error = True
        if not result.success and not failing and not result.tests_passed:
            collection_error = True
        return cls(failing, collection_error, result.tests_passed, result.tests_failed, output.strip())

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

    async def _before_run(self, path: str, text: str, copy: WorkspaceCopy) -> TestRun:
        if path not in self._before:
            self._before[path] = TestRun.of(await run_in_sandbox(copy, self.original, text), path)
        return self._before[path]

    async def validate(self, proposal: str) -> Validation:
        if proposal.strip() == self.original.strip():
            return Validation(False, "The proposal is the current file unchanged; nothing was improved.")
        imported = await run_in_sandbox(self.plan.import_copy, proposal, self.plan.import_test)
        if not imported.success:
            detail = TestRun.of(imported, "import check").output
            return Validation(False, f"Import check failed: the new {self.shown} does not compile or import.\n"
                                     f"{detail}")
        lines = ["Syntax check passed; the module imports."]
        if not self.plan.tests:
            lines.append(f"No covering tests found for {self.shown} (no test_{Path(self.shown).stem}.py and no "
                         f"test file importing it).")
            return Validation(True, "\n".join(lines))
        broken: list[str] = []
        details: list[str] = []
        for path, text, copy in self.plan.tests:
            before = await self._before_run(path, text, copy)
            after = TestRun.of(await run_in_sandbox(copy, proposal, text), path)
            if after.collection_error and not before.collection_error and before.passed:
                newly = [f"{path} (every test: {after.summary()})"]
            else:
                newly = sorted(after.failing - before.failing)
            broken += newly
            lines.append(f"{path}: before {before.summary()}; after {after.summary()}"
                         + (f"; broken: {', '.join(newly)}" if newly else ""))
            if copy.skipped:
                lines.append(f"  not copied into the run: {', '.join(copy.skipped)}")
            if newly:
                details.append(after.output)
        if broken:
            lines.append("Refused: the change turns passing tests red.")
            lines += details
        return Validation(not broken, "\n".join(lines), broken)


# --- the run ---------------------------------------------------------------------------

def _prompt(shown: str, issue: dict, original: str, previous: tuple[str, str] | None) -> list[dict]:
    where = f" (line {issue['line']})" if issue.get("line") else ""
    text = (f"File: {shown}\nIssue{where}: [{issue.get('severity', 'medium')}/{issue.get('issue_type', 'general')}] "
            f"{issue.get('message', '')}\n\nCurrent content:\n```python\n{original}```\n")
    if previous:
        proposal, output = previous
        limit = int(run_settings()["feedback_chars"])
        text += (f"\nYour previous version failed validation:\n```python\n{proposal}```\n"
                 f"Validation output:\n{output[-limit:]}\n\nReturn a corrected complete file.")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]


def extract_code(reply: str) -> str:
    code = strip_code_fences(reply or "")
    return code if code.endswith("\n") or not code else code + "\n"


def result_payload(run: ImprovementRun) -> dict:
    written = run.status == ImprovementRun.Status.APPLIED
    return {
        "success": run.status in (ImprovementRun.Status.APPLIED, ImprovementRun.Status.PROPOSED),
        "file_path": run.file_path,
        "backup_path": run.backup_path or None,
        "validation_output": run.validation_output,
        "error": run.error or None,
        "retries": run.retries,
        "run_id": str(run.pk),
        "status": run.status,
        "written": written,
        "diff": run.diff,
        "proposed_content": None if written or not run.proposed_content else run.proposed_content,
        "attempts": len(run.attempts),
    }


async def _write(run: ImprovementRun, shown: str, content: str) -> None:
    """Write the proposal unless the file changed since it was read (then 409)."""
    def write_if_unchanged():
        current = files.read_file(shown).content
        if sha256_text(current) != run.original_sha256:
            raise Conflict(f"{shown} changed since the improvement read it; nothing was written")
        return files.write_file(shown, content, reason=Backup.Reason.IMPROVE)

    written = await sync_to_async(write_if_unchanged)()
    run.backup_path = written.backup_path or ""
    run.status = ImprovementRun.Status.APPLIED


async def improvement_events(file_path: str, issue: dict, *, auto_write: bool = True,
                             max_retries: int | None = None) -> AsyncIterator[Event]:
    """Events: step (read, generate, validate, retry, write), validation, then done (the result)."""
    settings = run_settings()
    max_retries = int(settings["max_retries"] if max_retries is None else max_retries)
    target = workspace.resolve(file_path, must_exist=True)
    shown = workspace.relative(target)
    yield "step", {"step": "read", "file_path": shown}
    original = (await sync_to_async(files.read_file)(shown)).content
    plan = await sync_to_async(plan_validation)(target)
    run = await ImprovementRun.objects.acreate(file_path=shown, issue=issue, auto_write=auto_write,
                                               max_retries=max_retries, original_sha256=sha256_text(original))
    validator = Validator(shown, original, plan)
    llm = get_llm()
    previous = None
    try:
        for number in range(1, max_retries + 2):
            if number > 1:
                yield "step", {"step": "retry", "attempt": number, "max_attempts": max_retries + 1}
            yield "step", {"step": "generate", "attempt": number, "run_id": str(run.pk)}
            answer = await llm.complete(_prompt(shown, issue, original, previous), tier="medium",
                                        max_tokens=int(settings["max_tokens"]) or None)
            run.model = answer.model
            proposal = extract_code(answer.content)
            yield "step", {"step": "validate", "attempt": number}
            if proposal.strip():
                check = await validator.validate(proposal)
            else:
                check = Validation(False, "The model returned no code.")
            run.attempts = [*run.attempts, {"number": number, "content": proposal, "passed": check.passed,
                                            "validation_output": check.output, "broken_tests": check.broken_tests}]
            run.retries, run.validation_output = number - 1, check.output
            yield "validation", {"attempt": number, "passed": check.passed, "output": check.output,
                                 "broken_tests": check.broken_tests}
            if check.passed:
                run.proposed_content, run.diff = proposal, files.unified_diff(original, proposal, shown)
                await run.asave()  # kept before the write, so a retry can tell the write happened
                break
            previous = (proposal, check.output)
        else:
            broken = run.attempts[-1]["broken_tests"]
            run.status = ImprovementRun.Status.FAILED
            run.error = (f"Refused: the change breaks passing tests: {', '.join(broken)}" if broken
                         else f"Validation failed after {len(run.attempts)} attempt(s)")
        if run.status == ImprovementRun.Status.RUNNING:
            if auto_write:
                yield "step", {"step": "write"}
                await _write(run, shown, run.proposed_content)
            else:
                run.status = ImprovementRun.Status.PROPOSED
    except BaseException as exc:
        run.status = ImprovementRun.Status.FAILED
        run.error = run.error or str(getattr(exc, "detail", "") or exc) or type(exc).__name__
        raise
    finally:
        run.finished_at = timezone.now()
        await asyncio.shield(run.asave())
    yield "done", result_payload(run)


async def run_improvement(file_path: str, issue: dict, **options) -> dict:
    async with aclosing(improvement_events(file_path, issue, **options)) as events:
        async for name, data in events:
            if name == "done":
                return data
    raise RuntimeError("the improvement ended without a result")


def written_before(run: ImprovementRun) -> dict | None:
    """The result of a run whose proposal reached the file although its process stopped
    before saying so (a queue worker killed mid-write); None when it did not."""
    if run.status == ImprovementRun.Status.APPLIED:
        return result_payload(run)
    if not (run.auto_write and run.proposed_content):
        return None
    try:
        current = files.read_file(run.file_path).content
    except (BadInput, NotFound):
        return None
    if sha256_text(current) != sha256_text(run.proposed_content) or \
            sha256_text(current) == run.original_sha256:
        return None
    backup = Backup.objects.filter(path=run.file_path, reason=Backup.Reason.IMPROVE,
                                   sha256=run.original_sha256).first()
    run.status, run.error = ImprovementRun.Status.APPLIED, ""
    run.backup_path = backup.stored_path if backup else ""
    run.save(update_fields=["status", "error", "backup_path"])
    return result_payload(run)


def apply_proposal(run_id) -> dict:
    """Write a proposal kept by auto_write=false; 409 when the file changed since or it was applied."""
    try:
        run = ImprovementRun.objects.get(pk=run_id)
    except ImprovementRun.DoesNotExist:
        raise NotFound(f"No improvement run {run_id}") from None
    if run.status == ImprovementRun.Status.APPLIED:
        raise Conflict("This proposal was applied already")
    if run.status != ImprovementRun.Status.PROPOSED:
        raise Conflict(f"This run has no validated proposal to apply (status {run.status})")
    current = files.read_file(run.file_path).content
    if sha256_text(current) != run.original_sha256:
        raise Conflict(f"{run.file_path} changed since the proposal was made; run the improvement again")
    # Claimed with a conditional UPDATE so two concurrent applies cannot both write.
    proposed = ImprovementRun.objects.filter(pk=run.pk, status=ImprovementRun.Status.PROPOSED)
    if not proposed.update(status=ImprovementRun.Status.APPLIED):
        raise Conflict("This proposal was applied already")
    try:
        written = files.write_file(run.file_path, run.proposed_content, reason=Backup.Reason.IMPROVE)
    except BaseException:
        ImprovementRun.objects.filter(pk=run.pk).update(status=ImprovementRun.Status.PROPOSED)
        raise
    run.backup_path = written.backup_path or ""
    run.status = ImprovementRun.Status.APPLIED
    run.save(update_fields=["backup_path", "status"])
    return result_payload(run)
