"""The /workflow request: intent → (template | chat | TDD pipeline), as a stream of events.

`workflow_events()` is one async generator used by both endpoints: the SSE view
frames every event, the sync view keeps only the final `done` payload. Running
everything inside the generator means a client disconnect (Django cancels the
response iterator) stops the pipeline at its current await: the upstream LLM
request is closed and no further stage starts. The run is stored either way."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import logging
import time
import uuid
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import AsyncIterator

from asgiref.sync import sync_to_async
from django.utils import timezone

from codegen_site.core.config import get_config
from codegen_site.core.errors import ServiceError
from codegen_site.llm import classify_task, get_llm
from codegen_site.sandbox import SandboxResult, arun_python
from workflow.models import WorkflowRun
from workflow.services import intent as intents
from workflow.services import prompts

logger = logging.getLogger(__name__)

Event = tuple[str, dict]

DEFAULTS = {
    "max_repairs": 3, "validation_timeout": 30, "plan_max_tokens": 0, "tests_max_tokens": 0,
    "code_max_tokens": 0, "chat_max_tokens": 0, "repair_output_chars": 4000, "context_code_chars": 6000,
    "research_top_k": 4,
}
_TIER_UP = {"simple": "medium", "medium": "complex", "complex": "complex"}


def workflow_settings() -> dict:
    return {**DEFAULTS, **(get_config().get("workflow") or {})}


@dataclass
class _Generated:
    """What one streamed LLM call produced (async generators cannot return values)."""
    text: str = ""
    thinking: str = ""
    model: str = ""


@dataclass
class _Attempt:
    number: int
    code: str
    result: SandboxResult
    output: str


@dataclass
class _State:
    run: WorkflowRun
    timings: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)

    def add_time(self, stage: str, started: float) -> None:
        self.timings[stage] = round(self.timings.get(stage, 0.0) + time.monotonic() - started, 3)


def _validation_output(result: SandboxResult) -> str:
    output = (result.output or "").strip("\n")
    if result.error and result.error not in output:
        output = f"{output}\n{result.error}" if output else result.error
    return output


def _test_function_count(tests: str) -> int:
    try:
        tree = ast.parse(tests)
    except SyntaxError:
        return 0
    return sum(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test")
               or isinstance(node, ast.ClassDef) and node.name.startswith("Test") for node in tree.body)


class Workflow:
    def __init__(self, task: str, session_id: uuid.UUID | None = None, settings: dict | None = None):
        self.task = task
        self.session_id = session_id or uuid.uuid4()
        self.settings = settings or workflow_settings()
        self.intent_kind = intents.classify_intent(task)
        self.llm = get_llm()

    # ------------------------------------------------------------------ helpers
    def _max_tokens(self, stage: str) -> int | None:
        return int(self.settings.get(f"{stage}_max_tokens") or 0) or None

    async def _previous_code(self, exclude_pk: int) -> str:
        previous = await (WorkflowRun.objects.filter(session_id=self.session_id).exclude(pk=exclude_pk)
                          .exclude(code="").order_by("-created_at", "-id").afirst())
        if previous is None:
            return ""
        limit = int(self.settings["context_code_chars"])
        return previous.code if len(previous.code) <= limit else previous.code[:limit] + "\n# ... (truncated)\n"

    async def _research(self) -> str:
        top_k = int(self.settings.get("research_top_k") or 0)
        if top_k <= 0:
            return ""
        from rag import services as rag_services

        try:
            chunks = await sync_to_async(rag_services.retrieve, thread_sensitive=False)(self.task, top_k)
        except Exception:  # research is an optional aid; a broken index must not fail the task
            logger.exception("RAG retrieval failed; continuing without research")
            return ""
        return prompts.research_context(chunks or [])

    async def _generate(self, messages: list[dict], out: _Generated, event: str, *, tier: str | None = None,
                        max_tokens: int | None = None, extra: dict | None = None) -> AsyncIterator[Event]:
        """Stream one LLM call as `event` / `event_thinking` chunks, collecting the text into `out`."""
        chat = await self.llm.stream(messages, task=None if tier else self.task, tier=tier, max_tokens=max_tokens)
        async with aclosing(aiter(chat)) as deltas:  # closing it closes the upstream request
            async for delta in deltas:
                if delta.kind == "content":
                    out.text += delta.text
                    yield event, {"content": delta.text, **(extra or {})}
                else:
                    out.thinking += delta.text
                    yield f"{event}_thinking", {"content": delta.text, **(extra or {})}
        out.model = chat.model

    async def _validate(self, code: str, tests: str) -> SandboxResult:
        runnable_tests = prompts.normalize_test_imports(tests, code) if tests.strip() else None
        result = await arun_python(code, runnable_tests, timeout=float(self.settings["validation_timeout"]))
        if runnable_tests is None:
            # Code that merely runs is not validated: without tests there is no pass verdict.
            note = "No tests were generated, so the code could not be validated"
            result = dataclasses.replace(result, success=False,
                                         error=f"{note} (the code {'ran' if result.success else 'failed'}"
                                               f"{'' if result.success else ': ' + (result.error or '')})")
        return result

    def _payload(self, run: WorkflowRun) -> dict:
        return {"session_id": str(self.session_id), "content": run.content, "intent_kind": run.intent_kind,
                "plan": run.plan, "tests": run.tests, "code": run.code, "validation_passed": run.passed,
                "validation_output": run.output, "attempts": run.attempts}

    # ------------------------------------------------------------------ stages
    async def _chat(self, state: _State, previous_code: str) -> AsyncIterator[Event]:
        messages = [{"role": "system", "content": prompts.CHAT_SYSTEM}]
        if previous_code:
            messages.append({"role": "system",
                             "content": f"Code from earlier in this session:\n```python\n{previous_code}```"})
        messages.append({"role": "user", "content": self.task})
        answer, started = _Generated(), time.monotonic()
        async with aclosing(self._generate(messages, answer, "content",
                                           max_tokens=self._max_tokens("chat"))) as events:
            async for name, data in events:
                # chat/stream's event names: `content` and `thinking`
                yield ("thinking" if name == "content_thinking" else name), data
        state.add_time("chat", started)
        state.models["chat"] = answer.model
        state.run.content = answer.text.strip()
        state.run.status = WorkflowRun.Status.COMPLETED

    async def _pipeline(self, state: _State, previous_code: str) -> AsyncIterator[Event]:
        run, settings = state.run, self.settings

        plan, started = _Generated(), time.monotonic()
        async with aclosing(self._generate(prompts.plan_messages(self.task, previous_code=previous_code),
                                           plan, "plan", max_tokens=self._max_tokens("plan"))) as events:
            async for event in events:
                yield event
        run.plan = plan.text.strip()
        state.models["plan"] = plan.model
        state.add_time("plan", started)

        started = time.monotonic()
        research = await self._research()
        state.add_time("research", started)

        tests_reply, started = _Generated(), time.monotonic()
        messages = prompts.tests_messages(self.task, run.plan, previous_code=previous_code, research=research)
        async with aclosing(self._generate(messages, tests_reply, "tests",
                                           max_tokens=self._max_tokens("tests"))) as events:
            async for event in events:
                yield event
        run.tests = prompts.extract_code(tests_reply.text)
        state.models["tests"] = tests_reply.model
        state.add_time("tests", started)

        code_reply, started = _Generated(), time.monotonic()
        messages = prompts.code_messages(self.task, run.plan, run.tests, previous_code=previous_code,
                                         research=research)
        async with aclosing(self._generate(messages, code_reply, "code", max_tokens=self._max_tokens("code"),
                                           extra={"attempt": 1})) as events:
            async for event in events:
                yield event
        code = prompts.extract_code(code_reply.text)
        state.models["code"] = code_reply.model
        state.add_time("code", started)

        max_attempts = 1 + max(0, int(settings["max_repairs"]))
        repair_tier = _TIER_UP[classify_task(self.task)]
        best: _Attempt | None = None
        attempt = 1
        while True:
            started = time.monotonic()
            result = await self._validate(code, run.tests)
            state.add_time("validation", started)
            current = _Attempt(attempt, code, result, _validation_output(result))
            if best is None or result.success or result.tests_passed >= best.result.tests_passed:
                best = current
            run.attempts = attempt
            yield "validation", {"passed": result.success, "output": current.output, "attempt": attempt,
                                 "tests_passed": result.tests_passed, "tests_failed": result.tests_failed}
            if result.success or attempt >= max_attempts:
                break
            if _test_function_count(run.tests) == 0:
                # New code cannot fix tests that do not parse or contain no test functions.
                break
            attempt += 1
            reason = result.error or "tests failed"
            yield "repair", {"attempt": attempt, "max_attempts": max_attempts, "reason": reason,
                             "tests_passed": result.tests_passed, "tests_failed": result.tests_failed}
            repair, started = _Generated(), time.monotonic()
            failure = prompts.clip(current.output, int(settings["repair_output_chars"]))
            messages = prompts.repair_messages(self.task, run.tests, code, failure, attempt=attempt)
            async with aclosing(self._generate(messages, repair, "code", tier=repair_tier,
                                               max_tokens=self._max_tokens("code"),
                                               extra={"attempt": attempt})) as events:
                async for event in events:
                    yield event
            code = prompts.extract_code(repair.text) or code
            state.models[f"repair_{attempt}"] = repair.model
            state.add_time("repair", started)

        run.code, run.output, run.passed = best.code, best.output, best.result.success
        run.status = WorkflowRun.Status.COMPLETED if run.passed else WorkflowRun.Status.FAILED
        if run.passed:
            run.content = (f"The code passes its tests ({best.result.tests_passed} passed) "
                           f"on attempt {best.number} of {max_attempts}.")
        else:
            run.content = (f"The code did not pass its tests after {run.attempts} attempt(s); returning the best "
                           f"attempt ({best.number}: {best.result.tests_passed} passed, "
                           f"{best.result.tests_failed} failed).")

    # ------------------------------------------------------------------ entry point
    async def events(self) -> AsyncIterator[Event]:
        run = await WorkflowRun.objects.acreate(session_id=self.session_id, task=self.task,
                                                intent_kind=self.intent_kind)
        state = _State(run)
        started = time.monotonic()
        try:
            if self.intent_kind in (intents.GREETING, intents.HELP):
                run.content = intents.template_answer(self.intent_kind, self.task)
                run.status = WorkflowRun.Status.COMPLETED
            else:
                previous_code = await self._previous_code(run.pk)
                stage = self._chat if self.intent_kind == intents.CHAT else self._pipeline
                async with aclosing(stage(state, previous_code)) as events:
                    async for event in events:
                        yield event
            state.timings["total"] = round(time.monotonic() - started, 3)
            await self._save(state)
            yield "done", self._payload(run)
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
                await self._save(state)

    async def _save(self, state: _State) -> None:
        run = state.run
        run.timings, run.models_used, run.finished_at = state.timings, state.models, timezone.now()
        try:
            # shielded: a second cancellation must not lose the record of the first
            await asyncio.shield(run.asave())
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Could not store workflow run %s", run.pk)


def workflow_events(task: str, session_id: uuid.UUID | None = None) -> AsyncIterator[Event]:
    return Workflow(task, session_id).events()


async def run_workflow(task: str, session_id: uuid.UUID | None = None) -> dict:
    """The sync endpoint: run to the end and return the `done` payload (errors propagate)."""
    async with aclosing(workflow_events(task, session_id)) as events:
        async for name, data in events:
            if name == "done":
                return data
    raise RuntimeError("workflow ended without a result")
