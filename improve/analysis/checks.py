"""The rule-based checks of one Python file: complexity (radon), size rules, syntax errors,
and the line fingerprints the duplication pass compares across files.

This module runs inside worker processes, so it imports neither Django nor the
project's config: the thresholds arrive as CheckLimits (a frozen dataclass, pickled to the
worker). A result is a plain JSON-able dict, cached by the file's content hash."""

from __future__ import annotations

import ast
import base64
import gc
import zlib
from array import array
from dataclasses import dataclass

from radon.metrics import h_visit_ast, mi_compute, mi_rank
from radon.raw import analyze as raw_metrics
from radon.visitors import ComplexityVisitor

from improve.analysis.thresholds import Thresholds

# (line, type, severity, message, suggestion): compact, cheap to store and to load.
Issue = list

SPLIT_SUGGESTION = "Split it into smaller functions, each doing one step; early returns flatten nested branches"
# Lines the duplication pass ignores: comments, decorators, imports, docstring quotes.
SKIPPED_LINE_STARTS = (b"#", b"@", b"import ", b"from ", b'"""', b"'''")


@dataclass(frozen=True)
class CheckLimits(Thresholds):
    """The thresholds a file's checks use ([improve] settings) and whether to compute the
    maintainability index; part of the cache key (engine.checks_version)."""

    maintainability: bool


def count_lines(source: bytes) -> int:
    if not source:
        return 0
    return source.count(b"\n") + (0 if source.endswith(b"\n") else 1)


def decode(source: bytes) -> str:
    """Text of a file for line-based work; a file in another encoding (a coding cookie) still
    gives its lines, byte for character."""
    try:
        return source.decode("utf-8")
    except UnicodeDecodeError:
        return source.decode("latin-1")


def complexity_severity(value: int, limits: CheckLimits) -> str | None:
    if value >= limits.complexity_critical:
        return "critical"
    if value >= limits.complexity_high:
        return "high"
    if value >= limits.complexity_medium:
        return "medium"
    return None


# Cyclomatic complexity as radon counts it (radon.visitors.ComplexityVisitor), in one walk of the
# tree this module already parsed: a def is 1 plus the decision points in its body, not counting
# the defs and classes nested in it (they have their own), an assert counts 1 and is not looked
# into, a lambda counts nothing but its body does. tests/test_analyze.py checks it against radon.
_OWN_SCOPE = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _match_points(node: ast.Match) -> int:
    wildcard = any(getattr(case.pattern, "pattern", False) is None for case in node.cases)
    return max(0, len(node.cases) - wildcard)


_POINTS = {
    ast.If: lambda node: 1,
    ast.IfExp: lambda node: 1,
    ast.Try: lambda node: len(node.handlers) + bool(node.orelse),
    ast.BoolOp: lambda node: len(node.values) - 1,
    ast.Match: _match_points,
    ast.For: lambda node: 1 + bool(node.orelse),
    ast.AsyncFor: lambda node: 1 + bool(node.orelse),
    ast.While: lambda node: 1 + bool(node.orelse),
    ast.comprehension: lambda node: 1 + len(node.ifs),
}


# Fields that never hold a node with decision points below it: names and numbers kept as text
# or ints, a name's load/store context, an operator, an import's aliases.
_NOT_WALKED = frozenset({"ctx", "op", "ops", "id", "attr", "arg", "name", "asname", "names", "module", "level",
                         "kind", "conversion", "type_comment", "is_async", "rest", "kwd_attrs"})
# Nodes with nothing below them that counts (their other fields hold plain values).
_LEAVES = (ast.Constant, ast.MatchSingleton, ast.Pass, ast.Break, ast.Continue)


def _skip_scope(node) -> int:
    return 0


def _one(node) -> int:
    return 1


# type -> (its decision points or None, the fields walked below it), made on first sight of a type.
_plans: dict[type, tuple] = {}


def _plan(kind: type) -> tuple:
    if issubclass(kind, _OWN_SCOPE):
        plan = (_skip_scope, ())
    elif kind is ast.Assert:
        plan = (_one, ())
    elif issubclass(kind, _LEAVES) or not issubclass(kind, ast.AST):
        plan = (_POINTS.get(kind), ())
    else:
        plan = (_POINTS.get(kind), tuple(name for name in kind._fields if name not in _NOT_WALKED))
    _plans[kind] = plan
    return plan


def complexity(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A def's cyclomatic complexity, radon's number."""
    total = 1
    stack = list(node.body)
    plans, make_plan = _plans, _plan
    while stack:
        current = stack.pop()
        plan = plans.get(current.__class__)
        if plan is None:
            plan = make_plan(current.__class__)
        counted, fields = plan
        if counted is not None:
            total += counted(current)
        for name in fields:
            value = getattr(current, name, None)
            if value.__class__ is list:
                stack.extend(value)
            elif value is not None:
                # a node, as the plan leaves out the fields that hold text or numbers (anything
                # else pushed has no fields and counts nothing)
                stack.append(value)
    return total


_COMPOUND_BODIES = ("body", "orelse", "finalbody", "handlers", "cases")
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)
# statement type -> its fields that hold statements (in _COMPOUND_BODIES' order), made on first sight
_statement_lists: dict[type, tuple[str, ...]] = {}


def _definitions(body: list, prefix: str, in_class: bool, out: list) -> None:
    """Every def and class under these statements, with qualified names, without
    walking expressions (defs only sit in statement lists)."""
    lists_of = _statement_lists
    for node in body:
        kind = node.__class__
        if kind in _DEFS:
            out.append(("def", node, prefix + node.name, in_class))
            _definitions(node.body, f"{prefix}{node.name}.", False, out)
        elif kind is ast.ClassDef:
            out.append(("class", node, prefix + node.name, False))
            _definitions(node.body, f"{prefix}{node.name}.", True, out)
        else:
            fields = lists_of.get(kind)
            if fields is None:
                fields = lists_of[kind] = tuple(name for name in _COMPOUND_BODIES
                                                if name in getattr(kind, "_fields", ()))
            for field in fields:
                inner = getattr(node, field, None)
                if inner:
                    _definitions(inner, prefix, False, out)


def _parameter_count(node: ast.FunctionDef | ast.AsyncFunctionDef, is_method: bool) -> int:
    args = node.args
    names = [a.arg for a in (*args.posonlyargs, *args.args)]
    count = len(names) + len(args.kwonlyargs)
    if is_method and names and names[0] in ("self", "cls"):
        count -= 1
    return count


def fingerprints(source: bytes, window: int) -> dict:
    """Normalised lines (whitespace collapsed; blank, comment, decorator, import and
    docstring-quote lines dropped) and a hash per window of `window` consecutive ones, both
    packed as base64 arrays: a file's fingerprints are one short string each in the cache
    and in the reply from a worker, not thousands of numbers. Lines are compared as bytes
    (no decoding needed); tuple hashes of ints are the same in every process, so windows
    compare across workers."""
    numbers: list[int] = []
    line_hashes: list[int] = []
    crc32 = zlib.crc32
    # split(b"\n"), not splitlines(): line numbers as Python counts them (form feeds are not breaks)
    for number, line in enumerate(source.split(b"\n"), 1):
        stripped = line.strip()
        if len(stripped) < 4 or stripped.startswith(SKIPPED_LINE_STARTS):
            continue
        numbers.append(number)
        line_hashes.append(crc32(b" ".join(stripped.split())))
    # the shortest of the shifted copies ends the windows: strict=False is the point
    shifted = [line_hashes[i:] for i in range(window)]
    hashes = [hash(window_lines) for window_lines in zip(*shifted, strict=False)]
    return {"lines": _pack("I", numbers), "hashes": _pack("q", hashes)}


def _pack(kind: str, values: list[int]) -> str:
    return base64.b64encode(array(kind, values).tobytes()).decode("ascii")


def unpack(kind: str, packed: str) -> array:
    values = array(kind)
    values.frombytes(base64.b64decode(packed))
    return values


def failed_result(source: bytes, message: str) -> dict:
    """The result for a file the checks could not finish; never cached."""
    return {"lines": count_lines(source), "functions": 0, "classes": 0, "complexity_sum": 0, "failed": True,
            "issues": [[1, "bug", "critical", message, "Check the file for extreme nesting or size"]],
            "dup": {"lines": "", "hashes": ""}}


def analyse_source(source: bytes, limits: CheckLimits) -> dict:
    """Metrics, issues and fingerprints of one file's bytes; never raises."""
    try:
        return _analyse(source, limits)
    except Exception as exc:  # a checker's own bug must not end the whole analysis
        return failed_result(source, f"The analysis of this file failed: {type(exc).__name__}: {exc}")


def _class_issues(node: ast.ClassDef, name: str, limits: CheckLimits) -> list[Issue]:
    methods = sum(isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) for item in node.body)
    if methods <= limits.max_class_methods:
        return []
    return [[node.lineno, "refactor", "medium",
             f"Class '{name}' has {methods} methods (limit {limits.max_class_methods})",
             "Split its responsibilities into smaller classes or helpers"]]


def _function_issues(node, name: str, is_method: bool, complexity: int, limits: CheckLimits) -> list[Issue]:
    issues = []
    severity = complexity_severity(complexity, limits)
    if severity:
        issues.append([node.lineno, "complexity", severity,
                       f"Function '{name}' has high complexity ({complexity})", SPLIT_SUGGESTION])
    length = (node.end_lineno or node.lineno) - node.lineno + 1
    if length > limits.max_function_lines:
        issues.append([node.lineno, "refactor", "medium",
                       f"Function '{name}' is {length} lines long (limit {limits.max_function_lines})",
                       "Extract its steps into well-named helper functions"])
    parameters = _parameter_count(node, is_method)
    if parameters > limits.max_parameters:
        issues.append([node.lineno, "refactor", "medium",
                       f"Function '{name}' takes {parameters} parameters (limit {limits.max_parameters})",
                       "Group related parameters into a dataclass or split the function"])
    return issues


def _analyse(source: bytes, limits: CheckLimits) -> dict:
    result = {"lines": count_lines(source), "functions": 0, "classes": 0, "complexity_sum": 0,
              "issues": [], "dup": {"lines": "", "hashes": ""}}
    issues: list[Issue] = result["issues"]
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        issues.append([exc.lineno or 1, "bug", "critical", f"Syntax error: {exc.msg}",
                       "Fix the syntax so the file can be imported (and analysed)"])
        return result
    except (ValueError, RecursionError, MemoryError) as exc:
        issues.append([1, "bug", "critical", f"File cannot be parsed: {type(exc).__name__}: {exc}",
                       "Make it valid Python source"])
        return result

    definitions: list = []
    _definitions(tree.body, "", False, definitions)
    for kind, node, name, is_method in definitions:
        if kind == "class":
            result["classes"] += 1
            issues.extend(_class_issues(node, name, limits))
        else:
            value = complexity(node)
            result["functions"] += 1
            result["complexity_sum"] += value
            issues.extend(_function_issues(node, name, is_method, value, limits))

    result["dup"] = fingerprints(source, limits.duplicate_min_lines)
    if limits.maintainability and issues:
        # radon's maintainability index costs more than everything above: only for flagged files.
        index = maintainability_index(tree, source)
        result["maintainability"] = round(index, 1)
        if index < limits.maintainability_min:
            issues.append([1, "refactor", "medium",
                           f"Maintainability index {index:.1f} (rank {mi_rank(index)})",
                           "Reduce complexity and length; the flagged functions above are the place to start"])
    return result


def maintainability_index(tree: ast.Module, source: bytes) -> float:
    """radon's mi_visit(text, multi=True), from the tree already parsed (mi_visit parses again)."""
    raw = raw_metrics(decode(source))
    comments = (raw.comments + raw.multi) / float(raw.sloc) * 100 if raw.sloc != 0 else 0
    return mi_compute(h_visit_ast(tree).total.volume, ComplexityVisitor.from_ast(tree).total_complexity, raw.lloc,
                      comments)


def ready() -> bool:
    """A no-op a new worker runs first: importing this module (radon included) is the warm-up."""
    return True


def analyse_batch(batch: list[tuple[str, bytes]], limits: CheckLimits) -> list[tuple[str, dict]]:
    """Worker entry: (key, source) pairs in, (key, result) pairs out. The cyclic collector
    is off meanwhile: syntax trees hold no cycles, and collections while building them
    only rescan the same objects."""
    gc.disable()
    try:
        return [(key, analyse_source(source, limits)) for key, source in batch]
    finally:
        gc.enable()
