"""The sandbox's part in a run: each program validated against the run's tests (and scored by
them), and the first attempt's candidates compared on variations of the task's examples."""

from __future__ import annotations

import asyncio
import time

from codegen_site.sandbox import SandboxResult, arun_python
from workflow.services import examples, programs, prompts, suite
from workflow.services.programs import Scored
from workflow.services.state import Event, Job, RunState


def validation_output(result: SandboxResult) -> str:
    output = (result.output or "").strip("\n")
    if result.error and result.error not in output:
        output = f"{output}\n{result.error}" if output else result.error
    return output


async def validate(job: Job, state: RunState, code: str, candidate: int, attempt: int) -> Scored:
    """One sandbox run of `code` against the run's tests: the program, scored test by test."""
    tests = state.tests
    runnable = prompts.normalize_test_imports(tests.source(), code)
    timeout = state.run_timeout(job.settings.validation_timeout)
    started = time.monotonic()
    result = await arun_python(code, runnable, timeout=timeout)
    state.add_time("validation", started)
    output = validation_output(result)
    if tests.names() == tests.names(suite.SMOKE):
        output = (f"No tests were generated, so the code could not be validated (the code "
                  f"{'ran' if result.success else 'failed'}; a smoke test checked that it runs)\n{output}")
    return Scored(candidate, attempt, code, output, result.error, suite.outcomes(result, tests.names()))


def validation_event(state: RunState, scored: Scored) -> Event:
    """The program's `validation` event; numbers the program by it (`chosen_run` names one)."""
    tests = state.tests
    state.validations += 1
    scored.run = state.validations
    return "validation", {
        "passed": not scored.failing(state.counted()), "output": scored.output, "attempt": scored.attempt,
        "candidate": scored.candidate, "run": scored.run, "tests_passed": scored.count(tests),
        "tests_failed": len(tests.names()) - scored.count(tests),
        "task_tests_passed": scored.count(tests, suite.TASK), "edit": scored.edit,
        "tests": [{"name": name, "passed": scored.passed.get(name, False)} for name in tests.names()]}


async def compare_candidates(job: Job, state: RunState, scored: list[Scored]) -> None:
    """Run every candidate on variations of the task's example inputs; the majority's
    behaviour breaks ties between candidates that pass the same tests (`Scored.agreement`)."""
    probes = programs.probe_calls(examples.example_calls(job.task, job.contract))
    if not probes or not state.in_time():
        return
    timeout = state.run_timeout(job.settings.validation_timeout)
    started = time.monotonic()
    results = await asyncio.gather(*[arun_python(programs.probe_program(item.code, probes), timeout=timeout)
                                     for item in scored])
    state.add_time("agreement", started)
    behaviours = [programs.read_probes(result.output) for result in results]
    for item, score in zip(scored, programs.agreement(behaviours), strict=True):
        item.agreement = score
