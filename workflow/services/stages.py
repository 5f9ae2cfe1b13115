"""The stages before the repairs: a chat answer, or plan → research → tests → first attempt.

The task's own examples are its most trusted tests; the model's tests are checked one by one;
several candidates are sampled for the first attempt, validated and compared."""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from typing import AsyncIterator

from codegen_site.core.db import db_async
from rag.services import context_text, retrieve
from workflow.config import TESTS_WITHOUT_EXAMPLES
from workflow.models import WorkflowRun
from workflow.services import examples, programs, prompts, suite
from workflow.services.generation import Generated, generate, merge
from workflow.services.programs import Scored
from workflow.services.state import Event, Job, RunState
from workflow.services.suite import Suite
from workflow.services.validation import compare_candidates, validate, validation_event

logger = logging.getLogger(__name__)


async def chat(job: Job, state: RunState, previous_code: str) -> AsyncIterator[Event]:
    """A general question: one answer, with the session's code as context."""
    messages = [{"role": "system", "content": prompts.CHAT_SYSTEM}]
    if previous_code:
        messages.append({"role": "system",
                         "content": f"Code from earlier in this session:\n```python\n{previous_code}```"})
    messages.append({"role": "user", "content": job.task})
    answer = Generated()
    async with aclosing(generate(job, state, "chat", messages, answer, event="content")) as events:
        async for name, data in events:
            # chat/stream's event names: `content` and `thinking`
            yield ("thinking" if name == "content_thinking" else name), data
    state.run.content = answer.text.strip()
    state.run.status = WorkflowRun.Status.COMPLETED


async def plan(job: Job, state: RunState, previous_code: str) -> AsyncIterator[Event]:
    written = Generated()
    messages = prompts.plan_messages(job.task, previous_code=previous_code)
    async with aclosing(generate(job, state, "plan", messages, written)) as events:
        async for event in events:
            yield event
    state.run.plan = written.text.strip()


async def research(job: Job) -> str:
    """Chunks of the indexed project for the prompts ("" without an index or with research off)."""
    if job.settings.research_top_k <= 0:
        return ""
    try:
        chunks = await db_async(retrieve)(job.task, job.settings.research_top_k)
    except Exception:  # research is an optional aid; a broken index must not fail the task
        logger.exception("RAG retrieval failed; continuing without research")
        return ""
    return context_text(chunks or [])


async def write_tests(job: Job, state: RunState, previous_code: str, research_text: str) -> AsyncIterator[Event]:
    """Task examples first; the model's tests checked one by one and added; asked again
    (bounded) when none is usable; a smoke test when nothing else exists."""
    settings = job.settings
    task_cases = examples.example_tests(job.task, job.contract)
    targets = set(job.contract.names)
    model_tests = Suite([], [])
    rounds = 1 + max(0, settings.tests_retries)
    if task_cases and settings.model_tests == TESTS_WITHOUT_EXAMPLES:
        rounds = 0
    for round_number in range(1, rounds + 1):
        if not state.in_time():
            break
        reply = Generated()
        messages = prompts.tests_messages(job.task, state.run.plan, signature=job.contract.signature,
                                          previous_code=previous_code, research=research_text)
        retry = round_number > 1
        async with aclosing(generate(
                job, state, "tests", messages, reply, model_key="tests" if not retry else f"tests_{round_number}",
                temperature=settings.candidate_temperature if retry else None,
                extra={"round": round_number} if retry else None)) as events:
            async for event in events:
                yield event
        checked = suite.check_model_tests(prompts.extract_code(reply.text), targets)
        state.dropped_tests += checked.dropped
        if checked.suite.cases:
            model_tests = checked.suite
            break
        state.dropped_tests.append(f"tests round {round_number}: no usable test function")
    taken = {case.name for case in task_cases}
    for case in model_tests.cases:
        if case.name in taken:  # a model test named like a task example
            case.source = case.source.replace(f"def {case.name}(", f"def {case.name}_model(", 1)
            case.name += "_model"
    cases = task_cases + model_tests.cases or [suite.smoke_test(job.contract,
                                                                examples.example_calls(job.task, job.contract))]
    state.tests = Suite(cases, model_tests.imports)
    state.run.tests = state.tests.source()
    yield "tests", {"content": "", "tests": [case.describe() for case in cases], "dropped": state.dropped_tests}


async def write_code(job: Job, state: RunState, previous_code: str, research_text: str) -> AsyncIterator[Event]:
    """The first attempt: `candidates` programs (generated concurrently), each kept to the
    contract and validated."""
    settings = job.settings
    count = max(1, settings.candidates)
    # The first candidate is the model's most likely program (llm.temperature); the others explore.
    temperatures = [None] + [settings.candidate_temperature] * (count - 1)
    messages = prompts.code_messages(job.task, state.run.plan, state.run.tests,
                                     signature=job.contract.signature, imports=job.contract.imports,
                                     previous_code=previous_code, research=research_text)
    if not state.in_time():
        state.scored.append(Scored(0, 1, "", "The time limit ended the run before any code was written.",
                                   "out of time"))
        return
    # With several candidates the first answers the task as written (what asking once gives);
    # the others see the tests.
    direct = prompts.direct_messages(job.task, previous_code=previous_code, research=research_text)
    prompts_used = [direct if count > 1 else messages] + [messages] * (count - 1)
    replies = [Generated() for _ in range(count)]
    streams = [generate(job, state, "code", prompts_used[index], reply, temperature=temperatures[index],
                        extra={"attempt": 1, "candidate": index + 1})
               for index, reply in enumerate(replies)]
    async with aclosing(streams[0] if count == 1 else merge(streams)) as events:
        async for event in events:
            yield event
    state.candidates = count
    codes = [programs.keep_contract(prompts.extract_code(reply.text), job.contract) for reply in replies]
    scored = list(await asyncio.gather(*[validate(job, state, code, index + 1, 1)
                                         for index, code in enumerate(codes)]))
    if count > 1:
        await compare_candidates(job, state, scored)
    state.scored.extend(scored)
    state.suspects = programs.suspect_tests(state.scored, state.tests)
    for item in scored:
        yield validation_event(state, item)
