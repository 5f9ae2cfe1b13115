"""The verdict on a run with tests, decided outside the run from the evidence it sent.

The zygote forwards only status lines carrying the run's nonce (and counts the
others as forged); _witness.py in the run records each phase's outcome from the
exception pytest caught and, separately, what the reporting path claimed. Here
the two are compared, the tests source is read with `ast` to know which tests
must have an outcome, and pytest's own exit code and summary are believed only
when they make the verdict worse.
"""

from __future__ import annotations

import ast
import re

TAMPERING = "Verdict tampering detected"
# how good an outcome is for a verdict: 0 counts as passing, 2 fails the run
RANK = {"passed": 0, "xpassed": 0, "skipped": 1, "xfailed": 1, "failed": 2, "error": 2}
_PARAMETERS = re.compile(r"\[.*\]$", re.S)


def _is_fixture(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any("fixture" in ast.unparse(decorator) for decorator in node.decorator_list)


def _test_functions(body: list[ast.stmt]) -> list[str]:
    return [node.name for node in body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.name.startswith("test") and not _is_fixture(node)]


def expected_tests(source: str) -> set[str]:
    """Names pytest must report for this tests source: top-level test functions and
    `Test*` class methods ("TestX::test_y"), as pytest's default collection finds them."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()  # pytest reports the collection error itself
    names = set(_test_functions(tree.body))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            methods = {item.name for item in node.body if isinstance(item, ast.FunctionDef)}
            if "__init__" not in methods:  # pytest does not collect such classes
                names.update(f"{node.name}::{name}" for name in _test_functions(node.body))
    return names


def short_name(nodeid: str) -> str:
    """"test_solution.py::TestX::test_y[1-2]" -> "TestX::test_y"."""
    return _PARAMETERS.sub("", nodeid.split("::", 1)[-1])


def worse(first: str, second: str) -> str:
    return first if RANK.get(first, 2) >= RANK.get(second, 2) else second


def summary(counts: dict[str, int]) -> str:
    """pytest's wording: "2 failed, 1 passed"."""
    parts = []
    for key in ("failed", "passed", "skipped", "xfailed", "xpassed", "error"):
        count = counts.get(key, 0)
        if count:
            parts.append(f"{count} {key}{'s' if key == 'error' and count > 1 else ''}")
    return ", ".join(parts)


def _outcomes(report: dict, problems: list[str]) -> dict[tuple[str, str], str]:
    outcomes = {(nodeid, when): outcome for nodeid, when, outcome in report.get("tests", [])}
    for nodeid, when, claimed in report.get("claims", []):
        trusted = outcomes.get((nodeid, when))
        if trusted is None:
            if RANK.get(claimed, 2) < 2:
                problems.append(f"{short_name(str(nodeid))} was reported {claimed} but never ran through pytest's "
                                "report hook")
        elif RANK.get(claimed, 2) < RANK[trusted] == 2:
            problems.append(f"{short_name(str(nodeid))} was reported {claimed} but its {when} {trusted}")
        else:
            outcomes[(nodeid, when)] = worse(trusted, claimed)
    return outcomes


def _counts(outcomes: dict[tuple[str, str], str], collect_errors: int) -> dict[str, int]:
    counts = {"error": collect_errors}
    for (_nodeid, when), outcome in outcomes.items():
        if when == "call":
            key = outcome
        elif RANK.get(outcome, 2) == 2:
            key = "error"
        elif outcome in ("skipped", "xfailed"):
            key = outcome
        else:
            continue
        counts[key] = counts.get(key, 0) + 1
    return counts


def judge_tests(report: dict, tests_source: str) -> tuple[str | None, int, int]:
    """(error or None, tests passed, tests failed) for a run whose pytest finished."""
    problems: list[str] = []
    if report.get("forged"):
        problems.append(f"{report['forged']} status line(s) were not written by the sandbox")
    if report.get("overflow"):
        problems.append("the status channel overflowed")
    problems.extend(report.get("tamper", []))
    outcomes = _outcomes(report, problems)
    counts = _counts(outcomes, int(report.get("collect_errors", 0)))
    passed = counts.get("passed", 0) + counts.get("xpassed", 0)
    failed = counts.get("failed", 0) + counts.get("error", 0)
    pytest_exit = report.get("pytest_exit")
    seen = {short_name(str(nodeid)) for nodeid, _when in outcomes}
    missing = sorted(expected_tests(tests_source) - seen)
    if problems:
        # no count from a tampered run is believed: it must not look like a near success
        return f"{TAMPERING}: {'; '.join(problems[:3])}", 0, failed
    if failed:
        return summary(counts), passed, failed
    if pytest_exit == 5 or (not outcomes and not missing):
        return "No tests collected", passed, failed
    if missing:
        if pytest_exit == 0:
            return f"{TAMPERING}: no outcome recorded for {', '.join(missing[:5])}", 0, failed
        return f"pytest exit code {pytest_exit}", passed, failed
    if pytest_exit != 0:
        return f"pytest exit code {pytest_exit}", passed, failed
    return None, passed, failed
