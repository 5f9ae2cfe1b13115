"""The pieces of the sandbox that need no sandbox: the verdict rules and the seccomp program."""

from __future__ import annotations

import pytest

from codegen_site.sandbox import TestOutcome, _seccomp
from codegen_site.sandbox.verdict import TAMPERING, expected_tests, judge_tests, short_name

TESTS = (
    "import pytest\n\n"
    "@pytest.fixture\ndef test_data():\n    return 1\n\n"
    "def test_one():\n    pass\n\n"
    "async def test_async():\n    pass\n\n"
    "def helper():\n    pass\n\n"
    "class TestGroup:\n    def test_method(self):\n        pass\n\n    def helper(self):\n        pass\n\n"
    "class TestWithInit:\n    def __init__(self):\n        pass\n\n    def test_never(self):\n        pass\n\n"
    "class NotATest:\n    def test_hidden(self):\n        pass\n"
)


def test_expected_tests_follow_pytest_collection():
    assert expected_tests(TESTS) == {"test_one", "test_async", "TestGroup::test_method"}
    assert expected_tests("def broken(:\n") == set()


def test_test_name_drops_file_and_parameters():
    assert short_name("test_solution.py::test_add[1-2]") == "test_add"
    assert short_name("test_solution.py::TestX::test_y[a::b]") == "TestX::test_y"


def report(tests=(), claims=(), **extra):
    """A zygote report; each test is (nodeid, when, outcome[, duration[, message]])."""
    records = [{"test": test[0], "when": test[1], "outcome": test[2], "duration": (test[3:4] or (0.0,))[0],
                "message": (test[4:5] or ("",))[0]} for test in tests]
    base = {"tests": records, "claims": [list(c) for c in claims], "tamper": [],
            "collect_errors": [], "forged": 0, "done": True, "pytest_exit": 0, "overflow": False}
    return {**base, **extra}


def verdict(judged) -> tuple:
    return judged.error, judged.passed, judged.failed


ONE = "def test_one():\n    pass\n"


def test_trusted_outcomes_decide_not_pytest_exit_code():
    honest = report([("test_solution.py::test_one", "setup", "passed"), ("test_solution.py::test_one", "call", "passed"),
                     ("test_solution.py::test_one", "teardown", "passed")])
    assert verdict(judge_tests(honest, ONE)) == (None, 1, 0)
    failing = report([("test_solution.py::test_one", "call", "failed")])
    assert verdict(judge_tests(failing, ONE)) == ("1 failed", 0, 1)


def test_a_failure_reported_as_passed_is_tampering():
    forged = report([("test_solution.py::test_one", "call", "failed")],
                    [("test_solution.py::test_one", "call", "passed")])
    judged = judge_tests(forged, ONE)
    assert judged.error.startswith(TAMPERING) and "test_one" in judged.error
    assert (judged.passed, judged.failed, judged.tests) == (0, 1, ())  # nothing of it is believed


def test_a_pass_reported_as_failed_counts_as_failed():
    strict_xpass = report([("test_solution.py::test_one", "call", "passed")],
                          [("test_solution.py::test_one", "call", "failed")], pytest_exit=1)
    assert verdict(judge_tests(strict_xpass, ONE)) == ("1 failed", 0, 1)


def test_a_report_without_trusted_evidence_is_tampering():
    fabricated = report([], [("test_solution.py::test_one", "call", "passed")])
    assert judge_tests(fabricated, ONE).error.startswith(TAMPERING)


def test_missing_outcomes_with_a_clean_exit_are_tampering():
    two = ONE + "def test_two():\n    pass\n"
    partial = report([("test_solution.py::test_one", "call", "passed")])
    assert verdict(judge_tests(partial, two)) == (f"{TAMPERING}: no outcome recorded for test_two", 0, 0)


@pytest.mark.parametrize("signal", [{"forged": 1}, {"tamper": ["_pytest.runner.call_and_report was replaced"]},
                                    {"overflow": True}])
def test_channel_signals_are_tampering(signal):
    honest = report([("test_solution.py::test_one", "call", "passed")], **signal)
    assert judge_tests(honest, ONE).error.startswith(TAMPERING)


def test_collection_errors_and_empty_runs():
    broken = report([], collect_errors=[{"test": "test_solution.py", "message": "NameError: name 'x' is not defined"}],
                    pytest_exit=2)
    judged = judge_tests(broken, ONE)
    assert verdict(judged) == ("1 error", 0, 1)
    assert judged.tests == (TestOutcome("test_solution.py", "error", 0.0, "NameError: name 'x' is not defined"),)
    assert judged.tests[0].collection_error and judged.tests[0].failed
    assert judge_tests(report([], pytest_exit=5), "x = 1\n").error == "No tests collected"


def test_each_test_has_one_outcome_from_its_phases():
    tests = ("def test_ok():\n    pass\n\ndef test_bad():\n    pass\n\ndef test_setup():\n    pass\n\n"
             "def test_skip():\n    pass\n\ndef test_table():\n    pass\n")
    phases = [("test_solution.py::test_ok", "setup", "passed", 0.001), ("test_solution.py::test_ok", "call", "passed", 0.5),
              ("test_solution.py::test_ok", "teardown", "passed", 0.001),
              ("test_solution.py::test_bad", "setup", "passed", 0.0),
              ("test_solution.py::test_bad", "call", "failed", 0.25, "assert 3 == 4"),
              ("test_solution.py::test_bad", "teardown", "error", 0.0, "RuntimeError: teardown"),
              ("test_solution.py::test_setup", "setup", "error", 0.1, "fixture 'x' not found"),
              ("test_solution.py::test_skip", "setup", "skipped", 0.0, "Skipped: not today"),
              ("test_solution.py::test_table[1-2]", "call", "xpassed", 0.0),
              ("test_solution.py::test_table[2-3]", "call", "xfailed", 0.0, "assert 2 == 3")]
    judged = judge_tests(report(phases, pytest_exit=1), tests)
    assert [(test.name, test.outcome, test.message) for test in judged.tests] == [
        ("test_solution.py::test_ok", "passed", ""),
        ("test_solution.py::test_bad", "failed", "assert 3 == 4"),
        ("test_solution.py::test_setup", "error", "fixture 'x' not found"),
        ("test_solution.py::test_skip", "skipped", "Skipped: not today"),
        ("test_solution.py::test_table[1-2]", "passed", ""),
        ("test_solution.py::test_table[2-3]", "skipped", "assert 2 == 3")]
    assert judged.tests[0].duration == pytest.approx(0.502)
    assert [test.function for test in judged.tests][-1] == "test_table"
    # the counts stay pytest's, per phase: test_bad's call failed and its teardown errored
    assert (judged.passed, judged.failed) == (2, 3)


def test_details_of_the_wrong_type_are_dropped_not_believed():
    odd = report([("test_solution.py::test_one", "call", "failed", "slow", ["not", "text"])], pytest_exit=1)
    assert judge_tests(odd, ONE).tests == (TestOutcome("test_solution.py::test_one", "failed", 0.0, ""),)


@pytest.mark.parametrize("arch", sorted(_seccomp.SYSCALLS))
def test_seccomp_program_assembles_for_each_architecture(arch):
    program = _seccomp.build_filter(arch, (1,))
    assert program[0] == (_seccomp.BPF_LD_W_ABS, 0, 0, _seccomp.OFFSET_ARCH)
    assert program[-1] == (_seccomp.BPF_RET_K, 0, 0, _seccomp.SECCOMP_RET_KILL_PROCESS)
    for index, (code, when_true, when_false, _value) in enumerate(program):
        if code in (_seccomp.BPF_JEQ_K, _seccomp.BPF_JSET_K):
            assert index + 1 + max(when_true, when_false) < len(program)
    killed = {value for code, _t, _f, value in program if code == _seccomp.BPF_JEQ_K}
    assert {_seccomp.SYSCALLS[arch][name] for name in _seccomp.KILLED} <= killed
