"""Evidence for a test verdict, recorded where patching pytest's reporting does not reach.

Standalone, runs inside the sandboxed child (imported by _zygote.py). The code
under test shares the process with pytest, so it can patch pytest; this module
makes the known ways of doing that visible instead of believed:

- Every status line carries a nonce made in the child before any code runs and
  announced on the first line, so a line the code writes to the status fd is
  recognised as forged (outside the process, by the zygote).
- A trusted `pytest_runtest_makereport` wrapper (outermost) derives each phase's
  outcome from the exception pytest caught, not from the report, and sends it at
  once; a `pytest_runtest_logreport` hook sends the outcome the reporting path
  claims when it differs. The server compares the two.
- The identities of the pytest and pluggy internals a forgery would replace are
  taken before the code is imported and checked at every report and at the end.

What remains possible (code can in principle forge anything it can reach in its
own process) is stated in the README's threat model.
"""

from __future__ import annotations

import builtins
import json
import os

import _pytest._code.code
import _pytest.assertion.rewrite
import _pytest.main
import _pytest.outcomes
import _pytest.python
import _pytest.reports
import _pytest.runner
import _pytest.skipping
import _pytest.terminal
import pluggy._callers
import pluggy._hooks
import pluggy._manager
import pytest

# module -> attributes (dotted through classes, read from the class __dict__ so the
# identity of the stored function is compared, not a fresh bound method)
CRITICAL = {
    _pytest.runner: ("call_and_report", "runtestprotocol", "pytest_runtest_protocol", "pytest_runtest_call",
                     "pytest_runtest_makereport", "check_interactive_exception", "CallInfo",
                     "CallInfo.from_call", "CallInfo.__init__"),
    _pytest.reports: ("TestReport", "TestReport.from_item_and_call", "TestReport.__init__", "BaseReport",
                      "BaseReport.passed", "BaseReport.failed", "BaseReport.skipped", "CollectReport"),
    _pytest.python: ("Function", "Function.runtest", "pytest_pyfunc_call"),
    _pytest.main: ("pytest_runtestloop", "Session"),
    _pytest.skipping: ("pytest_runtest_makereport", "pytest_runtest_setup", "pytest_runtest_call"),
    _pytest.outcomes: ("OutcomeException", "Skipped", "Failed", "XFailed", "Exit", "skip", "fail", "xfail"),
    _pytest.terminal: ("TerminalReporter", "TerminalReporter.pytest_runtest_logreport"),
    _pytest._code.code: ("ExceptionInfo", "ExceptionInfo.from_current", "ExceptionInfo.from_exc_info"),
    pluggy._callers: ("_multicall",),
    pluggy._hooks: ("HookCaller", "HookCaller.__call__", "HookImpl"),
    pluggy._manager: ("PluginManager", "PluginManager._hookexec"),
    pytest: ("main", "hookimpl"),
    builtins: ("isinstance", "getattr", "type", "AssertionError", "BaseException", "Exception", "SystemExit"),
}

# hooks whose implementations decide how a test runs and is reported; a plugin registered
# after collection began (the code is imported during collection) is a forgery
RUN_HOOKS = ("pytest_runtestloop", "pytest_runtest_protocol", "pytest_runtest_setup", "pytest_runtest_call",
             "pytest_runtest_teardown", "pytest_pyfunc_call", "pytest_runtest_makereport",
             "pytest_runtest_logreport", "pytest_report_teststatus", "pytest_collection_modifyitems",
             "pytest_itemcollected", "pytest_exception_interact")

# held here, not looked up at call time: the code may rebind the module attributes
_write = os.write
_dumps = json.dumps
_isinstance = builtins.isinstance
_Skipped = _pytest.outcomes.Skipped
_XFailed = _pytest.outcomes.XFailed
MESSAGE_LIMIT = 200  # characters of a failure text sent (verdict.MESSAGE_LIMIT: as many are kept)


def _resolve(module, dotted: str):
    owner, *rest = dotted.split(".")
    value = vars(module)[owner] if owner in vars(module) else getattr(module, owner)
    for name in rest:
        value = vars(value)[name] if name in vars(value) else getattr(value, name)
    return value


def snapshot() -> tuple:
    """(module, name, object) for every critical attribute, plus the sys.modules entries."""
    import sys
    return tuple((module, name, _resolve(module, name)) for module, names in CRITICAL.items() for name in names) \
        + tuple((None, module.__name__, module) for module in CRITICAL if module.__name__ in sys.modules)


def changed(taken: tuple) -> list[str]:
    """Names whose object is no longer the one in the snapshot."""
    import sys
    out = []
    for module, name, original in taken:
        try:
            current = sys.modules.get(name) if module is None else _resolve(module, name)
        except Exception:  # noqa: BLE001 - a deleted attribute is a change too
            current = None
        if current is not original:
            out.append(name if module is None else f"{module.__name__}.{name}")
    return out


def open_channel(fd: int):
    """A sender of status records on `fd`; the nonce lives only in its closure and the first line."""
    nonce = os.urandom(16).hex()

    def send(record: dict) -> None:
        record["nonce"] = nonce
        try:
            _write(fd, (_dumps(record) + "\n").encode())
        except (OSError, ValueError, TypeError):
            pass  # a closed or replaced fd loses records; a missing record fails the verdict

    send({"hello": 1})
    return send


def trusted_outcome(item, call) -> str:
    """The phase's outcome from the exception pytest caught (or did not)."""
    excinfo = call.excinfo
    if excinfo is None:
        return "passed"
    if _isinstance(excinfo.value, _Skipped):
        return "skipped"
    if _isinstance(excinfo.value, _XFailed) or (call.when == "call" and item.get_closest_marker("xfail")):
        return "xfailed"
    return "failed" if call.when == "call" else "error"


def short_message(report) -> str:
    """What pytest's short summary shows after a test's name: the first line of the crash
    message ("assert 3 == 4"), a skip's reason, or the last `E` line of a collection error.
    Informational only (the verdict never reads it), so it is taken from the report as is."""
    try:
        longrepr = report.longrepr
        crash = getattr(longrepr, "reprcrash", None)
        if _isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
            text = str(longrepr[2])
        elif crash is not None:
            text = str(crash.message)
        else:  # a collection error's text: a traceback whose `E` lines say what went wrong
            text = str(longrepr)
            errors = [line[1:].strip() for line in text.split("\n") if line.startswith("E ")]
            text = errors[-1] if errors else text
    except Exception:  # noqa: BLE001 - whatever the code made of the report, the outcome still goes out
        return ""
    return text.strip().split("\n", 1)[0][:MESSAGE_LIMIT]


def claimed_outcome(report) -> str:
    outcome = report.outcome
    if hasattr(report, "wasxfail"):
        return {"skipped": "xfailed", "passed": "xpassed"}.get(outcome, outcome)
    if outcome == "failed" and report.when != "call":
        return "error"
    return outcome


class Witness:
    """The pytest plugin that records the evidence; see the module docstring."""

    def __init__(self, send, taken: tuple) -> None:
        self.send = send
        self.taken = taken
        self.trusted: dict[tuple[str, str], str] = {}
        self.reported_changes: set[str] = set()
        self.hook = None
        self.hooks_taken: dict[str, tuple] = {}

    def hook_implementations(self) -> dict[str, tuple]:
        return {name: tuple(impl.function for impl in getattr(self.hook, name).get_hookimpls())
                for name in RUN_HOOKS}

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session) -> None:
        self.hook = session.config.hook
        self.hooks_taken = self.hook_implementations()

    def check(self) -> None:
        names = changed(self.taken)
        if self.hook is not None:
            now = self.hook_implementations()
            names += [f"the {name} hook implementations" for name in RUN_HOOKS
                      if now[name] != self.hooks_taken[name]]
        for name in names:
            if name not in self.reported_changes:
                self.reported_changes.add(name)
                self.send({"tamper": f"{name} changed while the tests ran"})

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        outcome = trusted_outcome(item, call)
        self.trusted[(item.nodeid, call.when)] = outcome
        record = {"test": item.nodeid, "when": call.when, "outcome": outcome, "duration": call.duration}
        if outcome != "passed":
            record["message"] = short_message(report)
        self.send(record)
        self.check()
        return report

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report) -> None:
        claimed = claimed_outcome(report)
        if self.trusted.get((report.nodeid, report.when)) != claimed:
            self.send({"test": report.nodeid, "when": report.when, "claimed": claimed})

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.send({"collect_error": report.nodeid, "message": short_message(report)})

