"""Proof for a change to several files, in the sandbox, on a copy of the workspace.

- every changed module must import in the sandbox, with the other changed files beside it;
- the tests covering the changed modules — and the modules importing them — plus the changed test
  files run before (the files as they are) and after (the change in place); a test green before
  and red after, or a new test that does not pass, refuses the change;
- ruff (a static reader: no user code runs) over the changed files: a syntax error or an undefined
  name the file did not have before refuses the change.

The result carries each test's outcome before and after. Copies are built by
services.workspace_copy, the sandbox is called through services.validation.run_in_sandbox, as for
a one-file improvement."""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from codegen_site.core import workspace
from codegen_site.sandbox import SandboxResult
from improve.analysis.lint import ruff_binary
from improve.config import change_settings, run_settings
from improve.services import workspace_copy
from improve.services.change_context import SymbolMap, read_text
from improve.services.coverage import covering_tests, is_test_file, module_names
from improve.services.validation import TestRun, _printed, import_check, run_in_sandbox
from improve.services.workspace_copy import SANDBOX_NAMES, WorkspaceCopy

RUFF_RULES = "E9,F63,F7,F82"


@dataclass
class ChangeProof:
    passed: bool
    output: str
    broken_tests: list[str] = field(default_factory=list)
    tests: list[dict] = field(default_factory=list)   # [{file, before: [...], after: [...], broken}]
    ruff: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"passed": self.passed, "output": self.output, "broken_tests": self.broken_tests,
                "tests": self.tests, "ruff": self.ruff}


def _outcomes(result: SandboxResult | None, test_path: str) -> list[dict]:
    if result is None:
        return []
    return [{"name": test.name.replace("test_solution.py", test_path, 1), "outcome": test.outcome,
             "message": test.message} for test in result.tests]


def _is_module(path: str) -> bool:
    return path.endswith(".py") and not is_test_file(Path(path).name)


def tests_to_run(changed: list[str], project: SymbolMap) -> list[str]:
    """Changed test files, then the tests covering each changed module and each module importing it."""
    found = [path for path in changed if path.endswith(".py") and is_test_file(Path(path).name)]
    limit = run_settings().max_covering_tests
    for path in [path for path in changed if _is_module(path)]:
        reached = [path] + [other for other in project.importers(path) if _is_module(other)]
        for module in reached:
            found += [test.shown for test in covering_tests(workspace.root() / module)[:limit]]
    return list(dict.fromkeys(found))


def _with_changes(copy: WorkspaceCopy, changes: dict[str, str], test_dir: str) -> WorkspaceCopy:
    texts = dict(copy.texts)
    for path, text in changes.items():
        if not path.endswith(".py") or Path(path).name in SANDBOX_NAMES:
            continue
        keys = {path}
        if test_dir and path.startswith(test_dir + "/"):
            keys.add(path[len(test_dir) + 1:])
        for key in keys:
            if key in texts or key == path:
                texts[key] = text
    return WorkspaceCopy(texts, [key for key in copy.module_paths], list(copy.skipped))


def _build(target: str, test: str | None) -> WorkspaceCopy:
    limits = run_settings()
    root = workspace.root()
    return workspace_copy.build(root / target, root / test if test else None, max_files=limits.copy_max_files,
                                max_bytes=limits.copy_max_bytes)


async def _ruff(path: str, text: str) -> list[dict]:
    def run() -> list[dict]:
        completed = subprocess.run([ruff_binary(), "check", "--isolated", "--select", RUFF_RULES, "--output-format",
                                    "json", "--stdin-filename", path, "-"], input=text.encode("utf-8"),
                                   capture_output=True, timeout=change_settings().ruff_timeout, check=False,
                                   cwd=workspace.run_dir())
        try:
            return [{"path": path, "code": item.get("code") or "E999", "message": item.get("message", ""),
                     "line": (item.get("location") or {}).get("row")} for item in json.loads(completed.stdout or b"[]")]
        except ValueError:
            return []

    return await asyncio.to_thread(run)


async def prove(originals: dict[str, str | None], changes: dict[str, str], project: SymbolMap) -> ChangeProof:
    """`originals`: path → current text (None for a new file); `changes`: path → new text."""
    lines: list[str] = []
    ruff: list[dict] = []
    for path, text in changes.items():
        if not path.endswith(".py"):
            continue
        before = {(item["code"], item["message"]) for item in await _ruff(path, originals.get(path) or "")}
        new = [item for item in await _ruff(path, text) if (item["code"], item["message"]) not in before]
        ruff += new
    if ruff:
        listed = "\n".join(f"{item['path']}:{item['line']}: {item['code']} {item['message']}" for item in ruff)
        return ChangeProof(False, f"ruff finds new errors in the changed files:\n{listed}", ruff=ruff)
    lines.append(f"ruff ({RUFF_RULES}): no new errors in {len(changes)} changed file(s).")
    for path in [path for path in changes if _is_module(path)]:
        copy = _with_changes(_build(path, None), changes, "")
        imported = await run_in_sandbox(copy, changes[path], import_check(path))
        if not imported.success:
            return ChangeProof(False, f"Import check failed: the new {path} does not compile or import.\n"
                                      f"{_printed(imported)}")
    lines.append("Every changed module imports.")
    modules = [path for path in changes if _is_module(path)]
    tests = tests_to_run(list(changes), project)
    if not tests:
        lines.append("No tests cover the changed files.")
    broken: list[str] = []
    details: list[str] = []
    evidence: list[dict] = []
    for test in tests:
        target = next((path for path in modules if project.modules.get(test) is None
                       or project.modules[test].imports & set(module_names(path))), modules[0] if modules else test)
        copy = _build(target, test)
        test_dir = str(Path(test).parent) if str(Path(test).parent) != "." else ""
        before_text = originals.get(test) if test in changes else read_text(test)
        before_result = None
        if before_text is not None:
            before_result = await run_in_sandbox(copy, originals.get(target) or "", before_text)
        before = TestRun.of(before_result, test) if before_result else TestRun(set(), False, 0, 0, "")
        after_result = await run_in_sandbox(_with_changes(copy, changes, test_dir), changes.get(target, "")
                                            or originals.get(target) or "", changes.get(test) or before_text or "")
        after = TestRun.of(after_result, test)
        if after.collection_error and (before_result is None or (not before.collection_error and before.passed)):
            newly = [f"{test} (every test: {after.summary()})"]
        else:
            newly = sorted(after.failing - before.failing)
        broken += newly
        evidence.append({"file": test, "before": _outcomes(before_result, test), "after": _outcomes(after_result, test),
                         "broken": newly})
        lines.append(f"{test}: before {before.summary() if before_result else 'did not exist'}; after "
                     f"{after.summary()}" + (f"; broken: {', '.join(newly)}" if newly else ""))
        if newly:
            details.append(after.output)
    if broken:
        lines.append("Refused: the change turns passing tests red (or its new tests do not pass).")
        lines += details
    return ChangeProof(not broken, "\n".join(lines), broken, evidence, ruff)
