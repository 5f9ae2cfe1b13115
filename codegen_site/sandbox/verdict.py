"""The verdict on a run, decided outside the run from the evidence it sent.

`run_result` turns the zygote's exit message into the caller's SandboxResult: the limits a run
hit come first (memory, time, output, a signal), then, for a run with tests, the tests.

The zygote forwards only status lines carrying the run's nonce (and counts the
others as forged); _witness.py in the run records each phase's outcome from the
exception pytest caught and, separately, what the reporting path claimed. Here
the two are compared, the tests source is read with `ast` to know which tests
must have an outcome, and pytest's own exit code and summary are believed only
when they make the verdict worse. The same evidence gives each test's outcome.
"""

from __future__ import annotations

import ast
import signal
from dataclasses import dataclass

from codegen_site.sandbox.result import ERROR, FAILED, PASSED, SKIPPED, SandboxResult, TestOutcome, short_name
from codegen_site.sandbox.settings import SandboxSettings

TAMPERING = "Verdict tampering detected"
SECCOMP_MESSAGE = "Blocked by the sandbox: a forbidden system call (seccomp)"
# how good an outcome is for a verdict: 0 counts as passing, 2 fails the run
RANK = {"passed": 0, "xpassed": 0, "skipped": 1, "xfailed": 1, "failed": 2, "error": 2}
MESSAGE_LIMIT = 200  # characters of a test's failure text kept (the witness sends no more)


def is_fixture(node: ast.AST) -> bool:
    """A function pytest takes for a fixture (decorated with `pytest.fixture` in any spelling)."""
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
        and any("fixture" in ast.unparse(decorator) for decorator in node.decorator_list)


def _test_functions(body: list[ast.stmt]) -> list[str]:
    return [node.name for node in body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.name.startswith("test") and not is_fixture(node)]


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


@dataclass(frozen=True)
class Judged:
    error: str | None  # None: the run passed
    passed: int
    failed: int
    tests: tuple[TestOutcome, ...]


def _outcomes(report: dict, problems: list[str]) -> dict[tuple[str, str], str]:
    outcomes = {(record["test"], record["when"]): record["outcome"] for record in report.get("tests", [])}
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


def _seconds(value) -> float:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else 0.0


def _message(value) -> str:
    return value[:MESSAGE_LIMIT] if isinstance(value, str) else ""


def _per_test(report: dict, outcomes: dict[tuple[str, str], str]) -> tuple[TestOutcome, ...]:
    """One outcome per test from its phases' outcomes: a failed call is "failed", a failed setup or
    teardown "error", a skip or xfail "skipped"; the message is the failing (or skipping) phase's."""
    details = {(record["test"], record["when"]): record for record in report.get("tests", [])}
    phases: dict[str, dict[str, str]] = {}
    for (nodeid, when), outcome in outcomes.items():
        phases.setdefault(str(nodeid), {})[when] = outcome
    tests = [TestOutcome(str(record["test"]), ERROR, 0.0, _message(record.get("message")))
             for record in report.get("collect_errors", [])]
    for nodeid, by_phase in phases.items():
        failing = [when for when, outcome in by_phase.items() if RANK.get(outcome, 2) == 2]
        skipping = [when for when, outcome in by_phase.items() if outcome in ("skipped", "xfailed")]
        if failing:
            outcome, told = (FAILED, "call") if "call" in failing else (ERROR, failing[0])
        elif skipping:
            outcome, told = SKIPPED, skipping[0]
        else:
            outcome, told = PASSED, None
        duration = sum(_seconds(details.get((nodeid, when), {}).get("duration")) for when in by_phase)
        message = _message(details.get((nodeid, told), {}).get("message")) if told else ""
        tests.append(TestOutcome(nodeid, outcome, round(duration, 6), message))
    return tuple(tests)


def judge_tests(report: dict, tests_source: str) -> Judged:
    """The verdict, the counts and each test's outcome, for a run whose pytest finished."""
    problems: list[str] = []
    if report.get("forged"):
        problems.append(f"{report['forged']} status line(s) were not written by the sandbox")
    if report.get("overflow"):
        problems.append("the status channel overflowed")
    problems.extend(report.get("tamper", []))
    outcomes = _outcomes(report, problems)
    counts = _counts(outcomes, len(report.get("collect_errors", [])))
    passed = counts.get("passed", 0) + counts.get("xpassed", 0)
    failed = counts.get("failed", 0) + counts.get("error", 0)
    pytest_exit = report.get("pytest_exit")
    seen = {short_name(str(nodeid)) for nodeid, _when in outcomes}
    missing = sorted(expected_tests(tests_source) - seen)
    if problems:
        # nothing from a tampered run is believed: it must not look like a near success
        return Judged(f"{TAMPERING}: {'; '.join(problems[:3])}", 0, failed, ())
    tests = _per_test(report, outcomes)
    if failed:
        return Judged(summary(counts), passed, failed, tests)
    if pytest_exit == 5 or (not outcomes and not missing):
        return Judged("No tests collected", passed, failed, tests)
    if missing and pytest_exit == 0:
        return Judged(f"{TAMPERING}: no outcome recorded for {', '.join(missing[:5])}", 0, failed, ())
    if missing or pytest_exit != 0:
        return Judged(f"pytest exit code {pytest_exit}", passed, failed, tests)
    return Judged(None, passed, failed, tests)


# ---------------------------------------------------------------- the whole run

def _signal_error(number: int, message: dict, limits: SandboxSettings) -> str:
    if number == signal.SIGXCPU or (number == signal.SIGKILL and message.get("cpu", 0) >= limits.cpu_seconds - 0.05):
        return f"CPU time limit exceeded ({limits.cpu_seconds} s)"
    if number == signal.SIGSYS:
        return SECCOMP_MESSAGE
    name = signal.Signals(number).name if number in signal.valid_signals() else str(number)
    return f"Killed by signal {name}"


@dataclass(frozen=True)
class RunEnd:
    """How the runner saw a run end, besides the zygote's exit message."""
    output: str
    output_bytes: int  # all the run wrote, kept or not
    timed_out: bool
    output_killed: bool  # ended for writing more than kill_output_bytes
    timeout: float
    duration: float


def run_result(message: dict, end: RunEnd, tests: str | None, limits: SandboxSettings) -> SandboxResult:
    """The result of a run from the zygote's exit message ("exit", or "dead"/"lost" when the
    runner went away) and what the runner saw."""
    if message.get("event") != "exit" or message.get("status") is None:
        reason = message.get("error") or "sandbox runner crashed"
        return SandboxResult(False, end.output, f"Sandbox error: {reason}", None, end.timed_out, end.duration)
    report = message.get("report") or {}
    signal_number = message.get("signal")
    exit_code = -signal_number if signal_number else message.get("exit_code")
    judged = Judged(None, 0, 0, ())
    error: str | None = None
    if message.get("oom"):
        # the run's cgroup hit memory_mb: the run was ended whole, whatever it was doing
        error = f"Memory limit exceeded ({limits.memory_mb} MB for the run's processes together)"
    elif end.timed_out:
        error = f"Timed out after {end.timeout:g} s"
    elif end.output_killed:
        error = f"Output limit exceeded (killed after {end.output_bytes} bytes)"
    elif signal_number:
        error = _signal_error(signal_number, message, limits)
    elif report.get("exc") == "MemoryError":
        error = "Memory limit exceeded"
    elif tests is not None and report.get("done"):
        judged = judge_tests(report, tests)
        error = judged.error
    elif tests is not None and exit_code == 0:
        # the code ended the process (os._exit, a patched exit) before pytest reported
        error = f"{TAMPERING}: the run ended before pytest reported a result"
    elif exit_code != 0:
        error = f"Exit code {exit_code}"
        if report.get("exc"):
            error += f" ({report['exc']})"
    elif report.get("forged"):
        error = f"{TAMPERING}: {report['forged']} status line(s) were not written by the sandbox"
    if error is not None and message.get("pids_refused"):
        error += f"; the run reached its process limit ({limits.max_processes} processes and threads)"
    return SandboxResult(
        success=error is None, output=end.output, error=error, exit_code=exit_code, timed_out=end.timed_out,
        duration=end.duration, tests_passed=judged.passed, tests_failed=judged.failed, tests=judged.tests)
