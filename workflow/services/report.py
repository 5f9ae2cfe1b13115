"""How a run ends: the verdict on its best program, the text that says so, the stored report
and the row saved whatever happened (a cancelled run is stored too)."""

from __future__ import annotations

import asyncio
import logging

from django.utils import timezone

from codegen_site.core.db import db_async
from workflow.models import Verdict, WorkflowRun
from workflow.services import evidence, programs, suite
from workflow.services.state import Job, RunState

logger = logging.getLogger(__name__)


def _origins(tests: dict[str, dict[str, int]]) -> str:
    """`2 task examples, 9 edge inputs` from the evidence's counts (origins that ran)."""
    words = {suite.TASK: "task example", suite.LLM: "model-written test", evidence.PROBE: "edge input",
             suite.SMOKE: "smoke test"}
    parts = [f"{count['passed']} of {count['ran']} {words[origin]}{'s' if count['ran'] != 1 else ''}"
             for origin, count in tests.items() if count["ran"]]
    return ", ".join(parts)


def conclude(job: Job, state: RunState, best: programs.Scored, found: evidence.Evidence) -> None:
    """The verdict and its text on the run, from the best program by the counted tests and
    the evidence gathered for it."""
    run, tests, counted = state.run, state.tests, state.counted()
    failing = best.failing(counted)
    if not failing:
        if tests.names() == tests.names(suite.SMOKE):
            verdict = Verdict.UNVERIFIED
        else:
            verdict = Verdict.PASSED_EXAMPLES_ONLY if found.weak else Verdict.PASSED
    else:
        verdict = Verdict.OUT_OF_TIME if state.out_of_time else Verdict.FAILED
    run.code, run.output, run.passed = best.code, best.output, not failing and verdict != Verdict.UNVERIFIED
    run.status = WorkflowRun.Status.COMPLETED if run.passed else WorkflowRun.Status.FAILED
    passed = best.count(tests, among=counted)
    if verdict == Verdict.PASSED:
        checks = (f"; {found.mutants_rejected} of {found.mutants_tried} broken variants of it fail them"
                  if found.mutants_tried else "")
        run.content = (f"The code passes its tests ({_origins(found.tests)}) on attempt {best.attempt} "
                       f"of {job.settings.max_attempts}{checks}.")
    elif verdict == Verdict.PASSED_EXAMPLES_ONLY:
        run.content = (f"The code passes its tests ({_origins(found.tests)}) on attempt {best.attempt} of "
                       f"{job.settings.max_attempts}, but they are weak evidence: {'; '.join(found.reasons)}. "
                       f"Check it on inputs of your own before relying on it.")
    elif verdict == Verdict.UNVERIFIED:
        run.content = "No usable tests were written; the code runs, but nothing checked what it returns."
    else:
        why = "the time limit ended the run" if verdict == Verdict.OUT_OF_TIME else f"{run.attempts} attempt(s)"
        run.content = (f"The code did not pass its tests after {why}; returning the best attempt "
                       f"({best.attempt}: {passed} passed, {len(failing)} failed).")
    if best.edit:
        run.content += f" The program is the model's with an edit the tests chose: {best.edit}."
    if state.suspects:
        run.content += (f" Set aside as suspect (every candidate failed them, so the test is more likely "
                        f"wrong than the code): {', '.join(state.suspects)}.")
    run.report = {"verdict": verdict.value, "candidates": state.candidates, "chosen_candidate": best.candidate,
                  "chosen_attempt": best.attempt, "chosen_run": best.run or None,
                  "evidence": found.as_dict(),
                  "test_sources": [case.describe() for case in tests.cases], "suspect_tests": state.suspects,
                  "dropped_tests": state.dropped_tests, "edit_searches": state.edit_searches,
                  "scores": [{"candidate": item.candidate, "attempt": item.attempt, "run": item.run,
                              "task_tests_passed": item.count(tests, suite.TASK),
                              "tests_passed": item.count(tests), "agreement": item.agreement,
                              "edit": item.edit}
                             for item in state.scored]}


async def save(state: RunState) -> None:
    """Store the run with its timings and models; never raises but for a cancellation."""
    run = state.run
    run.timings, run.models_used, run.finished_at = state.timings, state.models, timezone.now()
    try:
        # shielded: a second cancellation must not lose the record of the first
        await asyncio.shield(db_async(run.save)())
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("Could not store workflow run %s", run.pk)
