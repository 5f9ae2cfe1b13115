"""The repair loop: while counted tests fail and the budget (attempts, wall clock) lasts, an
edit search over the failing programs (no model), then a model repair of the best program so far."""

from __future__ import annotations

from contextlib import aclosing
from typing import AsyncIterator

from codegen_site.llm import classify_task
from workflow.services import programs, prompts, suite
from workflow.services.edit_search import search_edits
from workflow.services.generation import Generated, generate
from workflow.services.programs import Scored
from workflow.services.state import Event, Job, RunState
from workflow.services.validation import validate, validation_event

# a repair asks a model one tier above the task's own: the first try at this tier already failed
_TIER_UP = {"simple": "medium", "medium": "complex", "complex": "complex"}


def failure_text(job: Job, scored: Scored, failing: list[str]) -> str:
    """The shortest useful failure: the run's one-line result and the first failing test's
    section of the output (or the traceback when pytest never ran)."""
    limit = job.settings.repair_output_chars
    excerpt = suite.failure_excerpt(scored.output, failing[0], limit) if failing else scored.output
    return f"Result: {scored.error or 'tests failed'}\n{excerpt}"


async def repair(job: Job, state: RunState) -> AsyncIterator[Event]:
    counted = state.counted()
    max_attempts = job.settings.max_attempts
    repair_tier = _TIER_UP[classify_task(job.task)]
    best = programs.best(state.scored, state.tests, counted)
    attempt = 1
    state.run.attempts = 1
    failing_programs = [item for item in sorted(state.scored, key=lambda item: item.rank(state.tests, counted),
                                                reverse=True) if item.failing(counted)]
    while best.failing(counted):
        searched = len(state.scored)
        async with aclosing(search_edits(job, state, failing_programs[:3], attempt)) as events:
            async for event in events:
                yield event
        for edited in state.scored[searched:]:
            if edited.rank(state.tests, counted) >= best.rank(state.tests, counted):
                best = edited
        if not (best.failing(counted) and attempt < max_attempts and state.in_time()):
            break
        attempt += 1
        failing = [name for name in state.tests.names() if name in set(best.failing(counted))]
        yield "repair", {"attempt": attempt, "max_attempts": max_attempts, "candidate": best.candidate,
                         "reason": best.error or "tests failed", "failing_tests": failing,
                         "tests_passed": best.count(state.tests), "tests_failed": len(failing)}
        reply = Generated()
        messages = prompts.repair_messages(
            job.task, state.tests.source(set(failing[:3])), best.code, failure_text(job, best, failing),
            attempt=attempt, signature=job.contract.signature, imports=job.contract.imports)
        # The first repair at the model's usual temperature; a repeat of much the same prompt at
        # that temperature mostly returns the same program, so later ones sample.
        temperature = None if attempt == 2 else job.settings.candidate_temperature
        async with aclosing(generate(job, state, "code", messages, reply, timing="repair",
                                     model_key=f"repair_{attempt}", tier=repair_tier, temperature=temperature,
                                     extra={"attempt": attempt, "candidate": best.candidate})) as events:
            async for event in events:
                yield event
        code = programs.keep_contract(prompts.extract_code(reply.text) or best.code, job.contract)
        repaired = await validate(job, state, code, best.candidate, attempt)
        state.scored.append(repaired)
        state.run.attempts = attempt
        yield validation_event(state, repaired)
        if repaired.rank(state.tests, counted) >= best.rank(state.tests, counted):
            best = repaired  # on a tie the newer program: the loop moves on
        failing_programs = [best] if best.failing(counted) else []
