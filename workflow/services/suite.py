"""The tests a run validates code against: where each came from, which model-written ones
are usable, the file they make, and what a sandbox run says about each of them.

A small model's test reply is often partly broken: one function cut off, another calling
a helper that does not exist, a fixture pytest does not know. Each test function is
checked on its own and dropped on its own, so one bad test never costs the good ones."""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass

from codegen_site.sandbox import SandboxResult, is_fixture
from workflow.services import prompts

# Where a test came from, most trusted first.
TASK = "task"  # the task's own examples and asserts
LLM = "llm"  # written by the model in the tests stage
SMOKE = "smoke"  # the function exists and runs; used only when nothing better exists

_FIXTURES = {"tmp_path", "tmp_path_factory", "capsys", "capfd", "caplog", "monkeypatch", "recwarn"}
_BUILTINS = set(dir(builtins))


@dataclass
class TestCase:
    __test__ = False  # not a pytest class

    name: str
    source: str
    origin: str

    def describe(self) -> dict:
        return {"name": self.name, "origin": self.origin}


@dataclass
class Suite:
    """The run's tests; `imports` are the module-level imports the model's tests need."""
    __test__ = False

    cases: list[TestCase]
    imports: list[str]

    def source(self, names: set[str] | None = None) -> str:
        chosen = [case for case in self.cases if names is None or case.name in names]
        header = ["import pytest", *[line for line in self.imports if line != "import pytest"]]
        return "\n".join(header) + "\n\n\n" + "\n\n".join(case.source.strip("\n") + "\n" for case in chosen)

    def names(self, origin: str | None = None) -> list[str]:
        return [case.name for case in self.cases if origin is None or case.origin == origin]

    def case(self, name: str) -> TestCase | None:
        return next((case for case in self.cases if case.name == name), None)


# ---------------------------------------------------------------- checking the model's tests

def _segments(code: str) -> list[str]:
    """Top-level blocks (a function with its decorators), so each can be parsed on its own."""
    lines = code.split("\n")
    starts, decorated = [], False
    for index, line in enumerate(lines):
        if line[:1] in ("", " ", "\t", ")", "]", "}", "#") or line.startswith(("else", "elif", "except", "finally")):
            continue
        if line.startswith("@"):
            if not decorated:
                starts.append(index)
            decorated = True
            continue
        if not decorated:
            starts.append(index)
        decorated = False
    bounds = starts + [len(lines)]
    return ["\n".join(lines[bounds[i]:bounds[i + 1]]).strip("\n") for i in range(len(starts))]


def _assigned_names(node: ast.AST) -> set[str]:
    names = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and isinstance(child.ctx, (ast.Store, ast.Del)):
            names.add(child.id)
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(child.name)
        elif isinstance(child, ast.arg):
            names.add(child.arg)
        elif isinstance(child, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in child.names)
        elif isinstance(child, ast.ExceptHandler) and child.name:
            names.add(child.name)
    return names


def _used_names(node: ast.AST) -> set[str]:
    return {child.id for child in ast.walk(node) if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Load)}


def _called_names(node: ast.AST) -> set[str]:
    called = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Call):
            func = child.func
            while isinstance(func, ast.Attribute):
                func = func.value
            if isinstance(func, ast.Name):
                called.add(func.id)
    return called


def _parametrized(node: ast.FunctionDef) -> set[str]:
    names = set()
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call) and "parametrize" in ast.unparse(decorator.func) and decorator.args:
            first = decorator.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.update(n.strip() for n in first.value.split(","))
    return names


def _checks_something(node: ast.AST) -> bool:
    return any(isinstance(child, ast.Assert) or (isinstance(child, ast.Attribute) and child.attr == "raises")
               for child in ast.walk(node))


@dataclass
class Checked:
    suite: Suite
    dropped: list[str]  # "test_x: why", for the run's record


def check_model_tests(reply_code: str, targets: set[str]) -> Checked:
    """Usable test functions from the model's tests, each checked on its own: it parses, pytest
    can collect it (a top-level test_* function whose fixtures exist), it calls a target
    (`targets`: the names the task fixes; empty = any name the tests do not define) and it
    checks something. Imports of the code under test are dropped: the sandbox provides it."""
    imports, fixtures, constants, functions, dropped = [], {}, {}, [], []
    for segment in _segments(reply_code):
        try:
            tree = ast.parse(segment)
        except (SyntaxError, ValueError):
            first = segment.split("\n")[0]
            if first.startswith(("def test", "async def test")):
                dropped.append(f"{first[4:].split('(')[0].strip()}: does not parse")
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                kept = _usable_import(node, targets)
                if kept:
                    imports.append(kept)
            elif isinstance(node, ast.FunctionDef) and is_fixture(node):
                fixtures[node.name] = node
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                functions.append(node)
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                try:
                    ast.literal_eval(node.value)
                    constants[node.targets[0].id] = node
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    pass
    module_names = {(line.split(" as ")[-1] if " as " in line else line.split()[-1]).split(".")[0]
                    for line in imports if line.startswith("import ")}
    for line in imports:
        if line.startswith("from "):
            module_names.update(part.split(" as ")[-1].strip()
                                for part in line.split(" import ", 1)[1].split(","))
    known = _BUILTINS | module_names | set(fixtures) | set(constants) | {"pytest"}
    cases, seen = [], set()
    for node in functions:
        reason = _unusable(node, known, targets, set(fixtures))
        if reason:
            dropped.append(f"{node.name}: {reason}")
            continue
        name = node.name
        while name in seen:
            name += "_again"
        seen.add(name)
        node.name = name
        helpers = [fixtures[f] for f in sorted({a.arg for a in node.args.args} & set(fixtures))]
        helpers += [constants[c] for c in sorted(_used_names(node) & set(constants))]
        source = "\n\n".join(ast.unparse(part) for part in [*helpers, node])
        cases.append(TestCase(name, source + "\n", LLM))
    return Checked(Suite(cases, imports), dropped)


def _usable_import(node: ast.Import | ast.ImportFrom, targets: set[str]) -> str:
    if isinstance(node, ast.ImportFrom):
        names = {alias.name for alias in node.names}
        if node.level or not node.module or names & targets or not prompts.module_available(node.module):
            return ""  # the code under test, or a module made up by the model
        return ast.unparse(node)
    if all(prompts.module_available(alias.name) for alias in node.names):
        return ast.unparse(node)
    return ""


def _unusable(node: ast.FunctionDef | ast.AsyncFunctionDef, known: set[str], targets: set[str],
              fixtures: set[str]) -> str:
    args = [a.arg for a in node.args.args]
    unknown_args = set(args) - _FIXTURES - fixtures - _parametrized(node)
    if unknown_args:
        return f"needs fixture(s) pytest does not have: {', '.join(sorted(unknown_args))}"
    if not _checks_something(node):
        return "checks nothing (no assert, no pytest.raises)"
    free = _used_names(node) - _assigned_names(node) - known
    if targets:
        if not _called_names(node) & targets:
            return f"does not call {' or '.join(sorted(targets))}"
        missing = free - targets
        if missing:
            return f"uses undefined name(s): {', '.join(sorted(missing))}"
    elif not free:
        return "calls no code under test"
    return ""


def smoke_test(contract, calls: list[str]) -> TestCase:
    """The weakest check, for a run with no other test: the named function exists and runs
    on the task's example inputs (or, with no name, the module imports)."""
    if not contract.name:
        return TestCase("test_module_imports", "def test_module_imports():\n    pass\n", SMOKE)
    body = [f"    assert callable({contract.name})", *(f"    {call}" for call in calls)]
    return TestCase("test_smoke", "def test_smoke():\n" + "\n".join(body) + "\n", SMOKE)


# ---------------------------------------------------------------- reading a run

def outcomes(result: SandboxResult, names: list[str]) -> dict[str, bool]:
    """Pass/fail per test name from the run's per-test outcomes: a test passes when pytest ran
    it (every parameter of it) without a failure or an error. When pytest did not run it (the
    code failed at import, a timeout, the file did not collect), it counts as failed."""
    if any(test.collection_error for test in result.tests):
        return {name: False for name in names}
    passed: dict[str, bool] = {}
    for test in result.tests:
        passed[test.function] = passed.get(test.function, True) and not test.failed
    return {name: passed.get(name, False) for name in names}


def failure_excerpt(output: str, test_name: str, limit: int) -> str:
    """The shortest useful failure: the section pytest printed for one failing test and its
    summary line, or (when pytest never ran) the end of the traceback."""
    sections = re.split(r"^_{3,} (.+?) _{3,}$", output, flags=re.M)
    for index in range(1, len(sections) - 1, 2):
        title = sections[index]
        if title == test_name or title.endswith(f" {test_name}") or title.startswith(f"{test_name}["):
            body = sections[index + 1].split("\n=====")[0].strip("\n")
            excerpt = f"{title}\n{body}"
            return prompts.clip(excerpt, limit)
    return prompts.clip(output.strip("\n"), limit)
