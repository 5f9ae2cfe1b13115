"""What a sandbox run answers: the run as a whole and, for a run with tests, each test's outcome.

The outcomes come from the run's witness (see verdict.py), not from pytest's printed summary,
so a caller asks `result.tests` which tests failed instead of reading the output."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARAMETERS = re.compile(r"\[.*\]$", re.S)

PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"


def short_name(nodeid: str) -> str:
    """"test_solution.py::TestX::test_y[1-2]" -> "TestX::test_y"."""
    return _PARAMETERS.sub("", nodeid.split("::", 1)[-1])


@dataclass(frozen=True)
class TestOutcome:
    """One test of a run: pytest's node id, how it ended, its time and why it did not pass.

    `outcome` is "passed", "failed" (its call failed), "error" (its setup or teardown failed, or
    pytest could not collect the file) or "skipped" (xfail counts as skipped, xpass as passed).
    A file pytest could not collect is one outcome "error" named by the file alone."""

    __test__ = False  # not a pytest class

    name: str  # "test_solution.py::test_add[1-2]"
    outcome: str
    duration: float  # seconds: setup, call and teardown together
    message: str  # the short failure text pytest's summary shows ("assert 3 == 4"); "" when it passed

    @property
    def function(self) -> str:
        """The test as its source names it: "test_add", "TestX::test_y" (no file, no parameters)."""
        return short_name(self.name)

    @property
    def failed(self) -> bool:
        return self.outcome in (FAILED, ERROR)

    @property
    def collection_error(self) -> bool:
        return "::" not in self.name


@dataclass(frozen=True)
class SandboxResult:
    success: bool
    output: str
    error: str | None
    exit_code: int | None
    timed_out: bool
    duration: float
    # counted per phase, as pytest's summary counts them ("1 failed, 1 error" for a test whose
    # call and teardown both failed)
    tests_passed: int = 0
    tests_failed: int = 0
    # every test pytest reported, in the order they ran; empty when the run has no believable
    # verdict (no tests, the run ended before pytest reported, or its evidence was tampered with)
    tests: tuple[TestOutcome, ...] = ()
