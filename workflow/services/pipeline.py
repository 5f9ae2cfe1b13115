"""The /workflow request: intent → (template | chat | TDD pipeline), as a stream of events.

`workflow_events()` is one async generator used by both endpoints: the SSE view
frames every event, the sync view keeps only the final `done` run. Running
everything inside the generator means a client disconnect (Django cancels the
response iterator) stops the pipeline at its current await: the upstream LLM
request is closed and no further stage starts. The run is stored either way.

The pipeline is built for small local models: the task's own examples are its
most trusted tests, the model's tests are checked one by one, several programs are
sampled and ranked by the tests, programs one edit away from the failing ones are
tried before the model is asked again, and repairs run while any test fails and the
budget (repairs, wall-clock) lasts. A program that passes is then checked beyond its tests
(edge inputs, the other candidates, broken variants of it) before the run says `passed`.
Every run ends with a verdict. The stages are in stages.py, the repairs in repair.py (with
edit_search.py), the checks in evidence.py, the verdict in report.py."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import aclosing
from typing import AsyncIterator

from codegen_site.core.db import db_async
from codegen_site.core.errors import ServiceError
from codegen_site.llm import get_llm
from workflow import selectors
from workflow.config import settings_for
from workflow.models import Intent, WorkflowRun
from workflow.services import evidence, programs, report, stages
from workflow.services.examples import parse_contract
from workflow.services.intent import classify_intent, template_answer
from workflow.services.repair import repair
from workflow.services.state import Event, Job, RunState


async def _tdd(job: Job, state: RunState, previous_code: str) -> AsyncIterator[Event]:
    """plan → research → tests → first attempt → repairs, then the verdict."""
    if job.settings.plan:
        async with aclosing(stages.plan(job, state, previous_code)) as events:
            async for event in events:
                yield event
    started = time.monotonic()
    research = await stages.research(job) if state.in_time() else ""
    state.add_time("research", started)
    for stage in (stages.write_tests(job, state, previous_code, research),
                  stages.write_code(job, state, previous_code, research), repair(job, state)):
        async with aclosing(stage) as events:
            async for event in events:
                yield event
    best = programs.best(state.scored, state.tests, state.counted())
    report.conclude(job, state, best, await evidence.strengthen(job, state, best))


async def workflow_events(task: str, session_id: uuid.UUID | None = None) -> AsyncIterator[tuple[str, object]]:
    """The run's events; the last is ("done", the stored WorkflowRun)."""
    llm = get_llm()
    provider = await llm.provider()
    job = Job(task, session_id or uuid.uuid4(), classify_intent(task), parse_contract(task),
              settings_for(provider.name), llm)
    run = await db_async(WorkflowRun.objects.create)(session_id=job.session_id, task=task,
                                                     intent_kind=job.intent_kind)
    started = time.monotonic()
    state = RunState(run, deadline=started + job.settings.time_limit)
    try:
        if job.intent_kind in (Intent.GREETING, Intent.HELP):
            run.content = template_answer(job.intent_kind, task)
            run.status = WorkflowRun.Status.COMPLETED
        else:
            previous_code = await db_async(selectors.previous_code)(job.session_id, run.pk,
                                                                    job.settings.context_code_chars)
            stage = stages.chat if job.intent_kind == Intent.CHAT else _tdd
            async with aclosing(stage(job, state, previous_code)) as events:
                async for event in events:
                    yield event
        state.timings["total"] = round(time.monotonic() - started, 3)
        await report.save(state)
        yield "done", run
    except ServiceError as exc:
        run.status, run.error = WorkflowRun.Status.ERROR, str(exc.detail)
        raise
    except (asyncio.CancelledError, GeneratorExit):
        if run.status == WorkflowRun.Status.RUNNING:
            run.status = WorkflowRun.Status.CANCELLED
        raise
    except Exception as exc:
        run.status, run.error = WorkflowRun.Status.ERROR, f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if run.finished_at is None:
            state.timings.setdefault("total", round(time.monotonic() - started, 3))
            await report.save(state)


async def run_workflow(task: str, session_id: uuid.UUID | None = None) -> WorkflowRun:
    """The sync endpoint: run to the end and return the stored run (errors propagate)."""
    async with aclosing(workflow_events(task, session_id)) as events:
        async for name, data in events:
            if name == "done":
                return data
    raise RuntimeError("workflow ended without a result")
