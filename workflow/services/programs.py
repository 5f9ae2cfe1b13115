"""The model's programs: kept to the task's contract, scored by the tests, ranked.

A candidate is one of the programs sampled for the first attempt (`[workflow] candidates`);
every later program of a run (an edit, a repair) descends from one and carries its number.

Small models drop the imports of the signature they were given, rename the function,
or leave demo calls and their own asserts at module level (which fail the import
before any test runs). `keep_contract` repairs those mechanically, so the tests judge
the algorithm rather than the packaging."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field

from workflow.services.examples import Contract
from workflow.services.suite import LLM, TASK, Suite

# Module-level statements that belong in a library module; others (demo calls, asserts,
# loops reading input) run at import and are dropped when the code defines something.
_DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
                ast.AnnAssign, ast.AugAssign, ast.Try)


def _is_main_guard(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "__name__" in ast.unparse(node.test)


def _bound_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def _unbound_modules(tree: ast.Module, bound: set[str]) -> list[str]:
    """Standard-library modules the code uses as `module.attr` without importing them."""
    used = {node.value.id for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and isinstance(node.value.ctx, ast.Load)}
    return sorted(name for name in used - bound if name in sys.stdlib_module_names)


def _assigns_name(node: ast.stmt, name: str) -> bool:
    if isinstance(node, ast.Assign):
        return any(isinstance(target, ast.Name) and target.id == name for target in node.targets)
    return isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name) \
        and node.target.id == name


_TYPING_NAMES = {"List", "Dict", "Tuple", "Set", "Optional", "Union", "Any", "Callable", "Iterable", "Iterator",
                 "Sequence", "Mapping", "FrozenSet", "Deque", "DefaultDict", "Generator"}


def keep_contract(code: str, contract: Contract) -> str:
    """The code with the task's imports present, the task's function name defined, and no
    module-level demo code; code that does not parse is returned unchanged (the tests and
    the repair loop deal with it)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return code
    lines = code.split("\n")
    defines = any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for node in tree.body)
    drop: list[tuple[int, int]] = []
    defined_at = next((index for index, node in enumerate(tree.body) if isinstance(
        node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == contract.name), None)
    for index, node in enumerate(tree.body):
        docstring = index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        is_test = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
        # `f = lambda n: ...` after `def f`: a small model's second attempt, which replaces the first
        rebinds = defined_at is not None and index > defined_at and _assigns_name(node, contract.name)
        if defines and not docstring and (is_test or rebinds or _is_main_guard(node)
                                          or not isinstance(node, _DEFINITIONS)):
            start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
            drop.append((start, node.end_lineno or node.lineno))
    for start, end in reversed(drop):
        del lines[start - 1:end]
    kept = "\n".join(lines).strip("\n") + "\n"
    try:
        tree = ast.parse(kept)
    except (SyntaxError, ValueError):
        return code
    bound = _bound_names(tree)
    header = []
    for line in contract.imports:
        try:
            wanted = _bound_names(ast.parse(line))
        except SyntaxError:
            continue
        if not wanted <= bound:
            header.append(line)
            bound |= wanted
    header += [f"import {name}" for name in _unbound_modules(tree, bound)]
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    missing_typing = sorted((used & _TYPING_NAMES) - bound)
    if missing_typing:
        header.append(f"from typing import {', '.join(missing_typing)}")
    footer = []
    if contract.name and contract.name not in bound:
        functions = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and not node.name.startswith("_")]
        if len(functions) == 1:
            # the model renamed the function; the task's name must still work
            footer.append(f"\n\n{contract.name} = {functions[0]}")
    return ("\n".join(header) + "\n\n" if header else "") + kept + "".join(footer) + ("\n" if footer else "")


# ---------------------------------------------------------------- scoring

@dataclass
class Scored:
    """One validated program."""
    candidate: int  # the first-attempt candidate it is, or descends from (0: no program was written)
    attempt: int
    code: str
    output: str
    error: str | None
    passed: dict[str, bool] = field(default_factory=dict)
    # how many (probe, other candidate) pairs behave the same as this one: breaks ties between
    # candidates the tests cannot tell apart
    agreement: int = 0
    # what an edit search changed in the program it came from ("" for the model's own program)
    edit: str = ""
    # the 1-based place of its `validation` event among the run's (0: it had none)
    run: int = 0

    def count(self, suite: Suite, origin: str | None = None, among: set[str] | None = None) -> int:
        names = suite.names(origin)
        return sum(self.passed.get(name, False) for name in names if among is None or name in among)

    def rank(self, suite: Suite, counted: set[str]) -> tuple[int, int]:
        """Task tests first (the user wrote them), then every other counted test."""
        return self.count(suite, TASK, counted), self.count(suite, None, counted)

    def failing(self, counted: set[str]) -> list[str]:
        return [name for name in counted if not self.passed.get(name, False)]


def best(scored: list[Scored], suite: Suite, counted: set[str]) -> Scored:
    # max keeps the first of equals: the earlier candidate or attempt
    return max(scored, key=lambda item: (*item.rank(suite, counted), item.agreement))


# ---------------------------------------------------------------- agreement between candidates

PROBE_MARK = "@@workflow-probes@@"
_MAX_PROBES = 16


def _variants(value) -> list:
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [0, 1, -value, value + 7]
    if isinstance(value, float):
        return [0.0, -value, value * 2]
    if isinstance(value, str):
        return ["", value[::-1], value.upper(), value + value[:1]]
    if isinstance(value, (list, tuple)):
        return [type(value)(), value[::-1], value[:1], value + value[:1]]
    if isinstance(value, dict):
        return [{}]
    return []


def probe_calls(calls: list[str]) -> list[str]:
    """The task's example calls and variations of their literal arguments (empty, reversed,
    negated, ...): inputs on which candidates that pass the same tests can still differ."""
    probes = list(calls)
    for call in calls:
        try:
            node = ast.parse(call, mode="eval").body
            values = [ast.literal_eval(arg) for arg in node.args]
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError, AttributeError):
            continue
        for index, value in enumerate(values):
            for variant in _variants(value):
                args = [repr(v) for v in values]
                args[index] = repr(variant)
                probe = f"{ast.unparse(node.func)}({', '.join(args)})"
                if probe not in probes:
                    probes.append(probe)
    return probes[:_MAX_PROBES]


def probe_program(code: str, probes: list[str]) -> str:
    """The code followed by a harness printing each probe's repr (or its exception's name)."""
    return (f"{code.rstrip()}\n\n\ndef _workflow_probe():\n    import json\n    seen = []\n"
            f"    for call in {probes!r}:\n        try:\n            seen.append(repr(eval(call)))\n"
            f"        except BaseException as exc:\n            seen.append('error:' + type(exc).__name__)\n"
            f"    print({PROBE_MARK!r} + json.dumps(seen))\n\n\n_workflow_probe()\n")


def marked(output: str, mark: str) -> list:
    """The JSON values a harness printed after `mark`, one per line, in order (lines that do
    not parse are skipped: the program under test shares the output)."""
    import json

    values = []
    for line in (output or "").split("\n"):
        if line.startswith(mark):
            try:
                values.append(json.loads(line[len(mark):]))
            except ValueError:
                continue
    return values


def read_probes(output: str) -> list[str] | None:
    found = marked(output, PROBE_MARK)
    return found[-1] if found else None


def agreement(behaviours: list[list[str] | None]) -> list[int]:
    """For each candidate: on how many probes, summed over the other candidates, it returned the
    same value (errors never count as agreeing)."""
    scores = []
    for index, mine in enumerate(behaviours):
        score = 0
        for other_index, other in enumerate(behaviours):
            if other_index == index or mine is None or other is None:
                continue
            score += sum(a == b and not a.startswith("error:") for a, b in zip(mine, other, strict=True))
        scores.append(score)
    return scores


def suspect_tests(scored: list[Scored], suite: Suite) -> list[str]:
    """Model-written tests that every one of several candidates fails while some candidate
    passes other tests: more likely a wrong expectation than wrong code."""
    if len({item.candidate for item in scored}) < 2:
        return []
    llm_tests = suite.names(LLM)
    suspects = [name for name in llm_tests if not any(item.passed.get(name, False) for item in scored)]
    others = set(suite.names()) - set(suspects)
    if not any(any(item.passed.get(name, False) for name in others) for item in scored):
        return []  # nothing passes anything: the code is broken, not the tests
    return suspects
