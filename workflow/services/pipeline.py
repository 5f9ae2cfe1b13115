"""The /workflow request: intent → (template | chat | TDD pipeline), as a stream of events.

`workflow_events()` is one async generator used by both endpoints: the SSE view
frames every event, the sync view keeps only the final `done` payload. Running
everything inside the generator means a client disconnect (Django cancels the
response iterator) stops the pipeline at its current await: the upstream LLM
request is closed and no further stage starts. The run is stored either way.

The pipeline is built for small local models: the task's own examples are its
most trusted tests, the model's tests are checked one by one, several programs are
sampled and ranked by the tests, programs one edit away from the failing ones are
tried before the model is asked again, and repairs run while any test fails and the
budget (repairs, wall-clock) lasts. Every run ends with a verdict."""

from __future__ import annotations

import asyncio
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
from workflow.services import candidates as programs
from workflow.services import edits, examples, prompts, suite
from workflow.services import intent as intents
from workflow.services.candidates import Scored
from workflow.services.suite import Suite

logger = logging.getLogger(__name__)

Event = tuple[str, dict]

_TIER_UP = {"simple": "medium", "medium": "complex", "complex": "complex"}

# Verdicts: every run that reaches the end of the pipeline has one.
PASSED = "passed"  # every counted test passes
FAILED = "failed"  # repairs used up with tests still failing
OUT_OF_TIME = "out_of_time"  # the wall-clock limit ended the run with tests still failing
UNVERIFIED = "unverified"  # no usable tests: only a smoke test could run


def workflow_settings() -> dict:
    return dict(get_config()["workflow"])


def for_provider(settings: dict, provider: str) -> dict:
    """[workflow] with the provider's own table laid over it ([workflow.embedded] for the
    bundled model): a very small model is served best by other settings than a large one."""
    overrides = settings.get(provider)
    return {**settings, **overrides} if isinstance(overrides, dict) else settings


@dataclass
class _Generated:
    """What one streamed LLM call produced (async generators cannot return values)."""
    text: str = ""
    thinking: str = ""
    model: str = ""


@dataclass
class _State:
    run: WorkflowRun
    deadline: float
    timings: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    out_of_time: bool = False
    tests: Suite = field(default_factory=lambda: Suite([], []))
    dropped_tests: list[str] = field(default_factory=list)
    scored: list[Scored] = field(default_factory=list)
    suspects: list[str] = field(default_factory=list)
    candidates: int = 0
    edited: set[str] = field(default_factory=set)  # programs an edit search started from
    edit_searches: list[dict] = field(default_factory=list)

    def add_time(self, stage: str, started: float) -> None:
        self.timings[stage] = round(self.timings.get(stage, 0.0) + time.monotonic() - started, 3)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def in_time(self) -> bool:
        if self.remaining() <= 0:
            self.out_of_time = True
        return not self.out_of_time


def _validation_output(result: SandboxResult) -> str:
    output = (result.output or "").strip("\n")
    if result.error and result.error not in output:
        output = f"{output}\n{result.error}" if output else result.error
    return output


async def _merge(streams: list[AsyncIterator[Event]]) -> AsyncIterator[Event]:
    """The events of several streams as they come; closing the merge cancels every stream
    (and so closes their upstream requests)."""
    queue: asyncio.Queue = asyncio.Queue()
    finished = object()

    async def pump(stream: AsyncIterator[Event]) -> None:
        try:
            async with aclosing(stream) as events:
                async for event in events:
                    queue.put_nowait(event)
        except Exception as exc:
            queue.put_nowait((finished, exc))
            return
        queue.put_nowait((finished, None))

    tasks = [asyncio.create_task(pump(stream)) for stream in streams]
    try:
        running = len(tasks)
        while running:
            item = await queue.get()
            if item[0] is finished:
                running -= 1
                if item[1] is not None:
                    raise item[1]
                continue
            yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Workflow:
    def __init__(self, task: str, session_id: uuid.UUID | None = None, settings: dict | None = None):
        self.task = task
        self.session_id = session_id or uuid.uuid4()
        self.settings = settings or workflow_settings()
        self.intent_kind = intents.classify_intent(task)
        self.contract = examples.parse_contract(task)
        self.llm = get_llm()

    # ------------------------------------------------------------------ helpers
    async def _previous_code(self, exclude_pk: int) -> str:
        previous = await (WorkflowRun.objects.filter(session_id=self.session_id).exclude(pk=exclude_pk)
                          .exclude(code="").order_by("-created_at", "-id").afirst())
        if previous is None:
            return ""
        limit = int(self.settings["context_code_chars"])
        return previous.code if len(previous.code) <= limit else previous.code[:limit] + "\n# ... (truncated)\n"

    async def _research(self) -> str:
        top_k = int(self.settings["research_top_k"])
        if top_k <= 0:
            return ""
        from rag import services as rag_services

        try:
            chunks = await sync_to_async(rag_services.retrieve, thread_sensitive=False)(self.task, top_k)
        except Exception:  # research is an optional aid; a broken index must not fail the task
            logger.exception("RAG retrieval failed; continuing without research")
            return ""
        return rag_services.context_text(chunks or [])

    async def _stage(self, state: _State, stage: str, messages: list[dict], out: _Generated, *,
                     event: str | None = None, timing: str | None = None, model_key: str | None = None,
                     tier: str | None = None, temperature: float | None = None,
                     extra: dict | None = None) -> AsyncIterator[Event]:
        """One LLM call of a stage, streamed as `event` / `event_thinking` chunks and collected
        into `out`; records the model that answered and the time spent. A call still running
        at the run's deadline is cut short (the upstream request is closed)."""
        event = event or stage
        started = time.monotonic()
        max_tokens = int(self.settings[f"{stage}_max_tokens"]) or None
        chat = await self.llm.stream(messages, task=None if tier else self.task, tier=tier, max_tokens=max_tokens,
                                     temperature=temperature)
        async with aclosing(aiter(chat)) as deltas:  # closing it closes the upstream request
            async for delta in deltas:
                if delta.kind == "content":
                    out.text += delta.text
                    yield event, {"content": delta.text, **(extra or {})}
                else:
                    out.thinking += delta.text
                    yield f"{event}_thinking", {"content": delta.text, **(extra or {})}
                if not state.in_time():
                    break
                if stage in ("tests", "code") and prompts.fenced_block_closed(out.text):
                    break  # only the block is used; the prose models add after it costs time
        out.model = chat.model
        state.models[model_key or stage] = chat.model
        state.add_time(timing or stage, started)

    def _run_timeout(self, state: _State) -> float:
        """A sandbox run's limit: the validation timeout, cut to what is left of the run's time."""
        return min(float(self.settings["validation_timeout"]), max(1.0, state.remaining()))

    async def _validate(self, state: _State, code: str, candidate: int, attempt: int) -> Scored:
        tests = state.tests
        runnable = prompts.normalize_test_imports(tests.source(), code)
        timeout = self._run_timeout(state)
        started = time.monotonic()
        result = await arun_python(code, runnable, timeout=timeout)
        state.add_time("validation", started)
        output = _validation_output(result)
        if tests.names() == tests.names(suite.SMOKE):
            output = (f"No tests were generated, so the code could not be validated (the code "
                      f"{'ran' if result.success else 'failed'}; a smoke test checked that it runs)\n{output}")
        return Scored(candidate, attempt, code, output, result.error, suite.outcomes(result, tests.names()))

    def _validation_event(self, state: _State, scored: Scored) -> Event:
        counted = self._counted(state)
        tests = state.tests
        return "validation", {
            "passed": not scored.failing(counted), "output": scored.output, "attempt": scored.attempt,
            "candidate": scored.candidate, "tests_passed": scored.count(tests),
            "tests_failed": len(tests.names()) - scored.count(tests),
            "task_tests_passed": scored.count(tests, suite.TASK), "edit": scored.edit,
            "tests": [{"name": name, "passed": scored.passed.get(name, False)} for name in tests.names()]}

    @staticmethod
    def _counted(state: _State) -> set[str]:
        return set(state.tests.names()) - set(state.suspects)

    def _payload(self, run: WorkflowRun) -> dict:
        report = run.report or {}
        return {"session_id": str(self.session_id), "content": run.content, "intent_kind": run.intent_kind,
                "plan": run.plan, "tests": run.tests, "code": run.code, "validation_passed": run.passed,
                "validation_output": run.output, "attempts": run.attempts,
                "verdict": report.get("verdict", ""), "test_sources": report.get("test_sources", []),
                "suspect_tests": report.get("suspect_tests", []), "candidates": report.get("candidates", 0)}

    # ------------------------------------------------------------------ stages
    async def _chat(self, state: _State, previous_code: str) -> AsyncIterator[Event]:
        messages = [{"role": "system", "content": prompts.CHAT_SYSTEM}]
        if previous_code:
            messages.append({"role": "system",
                             "content": f"Code from earlier in this session:\n```python\n{previous_code}```"})
        messages.append({"role": "user", "content": self.task})
        answer = _Generated()
        async with aclosing(self._stage(state, "chat", messages, answer, event="content")) as events:
            async for name, data in events:
                # chat/stream's event names: `content` and `thinking`
                yield ("thinking" if name == "content_thinking" else name), data
        state.run.content = answer.text.strip()
        state.run.status = WorkflowRun.Status.COMPLETED

    async def _write_tests(self, state: _State, previous_code: str, research: str) -> AsyncIterator[Event]:
        """Task examples first; the model's tests checked one by one and added; asked again
        (bounded) when none is usable; a smoke test when nothing else exists."""
        task_cases = examples.example_tests(self.task, self.contract)
        targets = set(self.contract.names)
        model_tests = Suite([], [])
        rounds = 1 + max(0, int(self.settings["tests_retries"]))
        if task_cases and self.settings["model_tests"] == "without_examples":
            rounds = 0
        for round_number in range(1, rounds + 1):
            if not state.in_time():
                break
            reply = _Generated()
            messages = prompts.tests_messages(self.task, state.run.plan, signature=self.contract.signature,
                                              previous_code=previous_code, research=research)
            retry = round_number > 1
            async with aclosing(self._stage(
                    state, "tests", messages, reply, model_key="tests" if not retry else f"tests_{round_number}",
                    temperature=float(self.settings["candidate_temperature"]) if retry else None,
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
        cases = task_cases + model_tests.cases or [suite.smoke_test(self.contract,
                                                                    examples.example_calls(self.task, self.contract))]
        state.tests = Suite(cases, model_tests.imports)
        state.run.tests = state.tests.source()
        yield "tests", {"content": "", "tests": [case.describe() for case in cases], "dropped": state.dropped_tests}

    async def _write_code(self, state: _State, previous_code: str, research: str) -> AsyncIterator[Event]:
        """The first attempt: `candidates` programs (generated concurrently), each kept to the
        contract and validated."""
        count = max(1, int(self.settings["candidates"]))
        # The first candidate is the model's most likely program (llm.temperature); the others explore.
        temperatures = [None] + [float(self.settings["candidate_temperature"])] * (count - 1)
        messages = prompts.code_messages(self.task, state.run.plan, state.run.tests,
                                         signature=self.contract.signature, imports=self.contract.imports,
                                         previous_code=previous_code, research=research)
        if not state.in_time():
            state.scored.append(Scored(0, 1, "", "The time limit ended the run before any code was written.",
                                       "out of time"))
            return
        # With several candidates the first answers the task as written (what asking once gives);
        # the others see the tests.
        direct = prompts.direct_messages(self.task, previous_code=previous_code, research=research)
        prompts_used = [direct if count > 1 else messages] + [messages] * (count - 1)
        replies = [_Generated() for _ in range(count)]
        streams = [self._stage(state, "code", prompts_used[index], reply, temperature=temperatures[index],
                               extra={"attempt": 1, "candidate": index + 1})
                   for index, reply in enumerate(replies)]
        async with aclosing(streams[0] if count == 1 else _merge(streams)) as events:
            async for event in events:
                yield event
        state.candidates = count
        codes = [programs.keep_contract(prompts.extract_code(reply.text), self.contract) for reply in replies]
        scored = await asyncio.gather(*[self._validate(state, code, index + 1, 1) for index, code in enumerate(codes)])
        if count > 1:
            await self._agreement(state, scored)
        state.scored.extend(scored)
        state.suspects = programs.suspect_tests(state.scored, state.tests)
        for item in scored:
            yield self._validation_event(state, item)

    async def _agreement(self, state: _State, scored: list[Scored]) -> None:
        """Run every candidate on variations of the task's example inputs; the majority's
        behaviour breaks ties between candidates that pass the same tests."""
        probes = programs.probe_calls(examples.example_calls(self.task, self.contract))
        if not probes or not state.in_time():
            return
        timeout = self._run_timeout(state)
        started = time.monotonic()
        results = await asyncio.gather(*[arun_python(programs.probe_program(item.code, probes), timeout=timeout)
                                         for item in scored])
        state.add_time("agreement", started)
        behaviours = [programs.read_probes(result.output) for result in results]
        for item, score in zip(scored, programs.agreement(behaviours), strict=True):
            item.agreement = score

    async def _edit(self, state: _State, sources: list[Scored], attempt: int) -> AsyncIterator[Event]:
        """Edit search (no model): single edits of the failing `sources` tried against the counted
        tests in one sandbox run, then edits of the edits that got closer (`edit_rounds` in all).
        The best edited program that beats its source is validated like any other program."""
        counted = self._counted(state)
        names = edits.plain_tests(state.tests, [name for name in state.tests.names() if name in counted])
        sources = [item for item in sources if item.code.strip() and item.code not in state.edited]
        limit = int(self.settings["edit_programs"])
        if int(self.settings["edit_rounds"]) <= 0 or limit <= 0 or not names or not sources or not state.in_time():
            return
        state.edited.update(item.code for item in sources)
        task_names = set(state.tests.names(suite.TASK))

        def score(passed: set[str] | None) -> tuple[int, int]:
            return (len(passed & task_names), len(passed)) if passed is not None else (-1, -1)

        started = time.monotonic()
        parents = [(item.code, "", item) for item in sources]
        found = None  # (score, code, change, source)
        tried = 0
        for _ in range(int(self.settings["edit_rounds"])):
            share = max(1, limit // len(parents))
            trial = [(edit.code, f"{change}; {edit.change}" if change else edit.change, source, code)
                     for code, change, source in parents for edit in edits.single_edits(code, share)]
            if not trial or not state.in_time():
                break
            codes = [code for code, _, _ in parents] + [code for code, *_ in trial]
            timeout = self._run_timeout(state)
            result = await arun_python(edits.trial_program(codes, state.tests.source(set(names)), names),
                                       timeout=timeout)
            tried += len(trial)
            passed = edits.read_trial(result.output, names, len(codes))
            before = {code: score(outcome) for (code, _, _), outcome in zip(parents, passed[:len(parents)], strict=True)}
            closer = sorted([(score(outcome), code, change, source) for (code, change, source, parent), outcome
                             in zip(trial, passed[len(parents):], strict=True) if score(outcome) > before[parent]],
                            key=lambda item: item[0], reverse=True)  # stable: the first edit of equals
            if not closer:
                break
            if found is None or closer[0][0] > found[0]:
                found = closer[0]
            if found[0][1] == len(names):
                break  # passes every test a trial can run
            parents = [(code, change, source) for _, code, change, source in closer[:3]]
        state.add_time("edits", started)
        state.edit_searches.append({"attempt": attempt, "tried": tried, "found": found[2] if found else ""})
        if found is None:
            return
        _, code, change, source = found
        edited = await self._validate(state, code, source.candidate, attempt)
        edited.edit = change
        state.scored.append(edited)
        yield self._validation_event(state, edited)

    async def _repair(self, state: _State) -> AsyncIterator[Event]:
        """While counted tests fail and the budget lasts: an edit search over the failing
        programs (no model), then a model repair of the best program so far."""
        counted = self._counted(state)
        max_attempts = 1 + max(0, int(self.settings["max_repairs"]))
        repair_tier = _TIER_UP[classify_task(self.task)]
        best = programs.best(state.scored, state.tests, counted)
        attempt = 1
        state.run.attempts = 1
        failing_programs = [item for item in sorted(state.scored, key=lambda item: item.rank(state.tests, counted),
                                                    reverse=True) if item.failing(counted)]
        while best.failing(counted):
            searched = len(state.scored)
            async with aclosing(self._edit(state, failing_programs[:3], attempt)) as events:
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
            reply = _Generated()
            messages = prompts.repair_messages(
                self.task, state.tests.source(set(failing[:3])), best.code, self._failure(best, failing),
                attempt=attempt, signature=self.contract.signature, imports=self.contract.imports)
            # The first repair at the model's usual temperature; a repeat of much the same prompt at
            # that temperature mostly returns the same program, so later ones sample.
            temperature = None if attempt == 2 else float(self.settings["candidate_temperature"])
            async with aclosing(self._stage(state, "code", messages, reply, timing="repair",
                                            model_key=f"repair_{attempt}", tier=repair_tier, temperature=temperature,
                                            extra={"attempt": attempt, "candidate": best.candidate})) as events:
                async for event in events:
                    yield event
            code = programs.keep_contract(prompts.extract_code(reply.text) or best.code, self.contract)
            repaired = await self._validate(state, code, best.candidate, attempt)
            state.scored.append(repaired)
            state.run.attempts = attempt
            yield self._validation_event(state, repaired)
            if repaired.rank(state.tests, counted) >= best.rank(state.tests, counted):
                best = repaired  # on a tie the newer program: the loop moves on
            failing_programs = [best] if best.failing(counted) else []

    def _failure(self, scored: Scored, failing: list[str]) -> str:
        """The shortest useful failure: the run's one-line result and the first failing test's
        section of the output (or the traceback when pytest never ran)."""
        limit = int(self.settings["repair_output_chars"])
        excerpt = suite.failure_excerpt(scored.output, failing[0], limit) if failing else scored.output
        return f"Result: {scored.error or 'tests failed'}\n{excerpt}"

    async def _pipeline(self, state: _State, previous_code: str) -> AsyncIterator[Event]:
        run = state.run
        if self.settings["plan"]:
            plan = _Generated()
            async with aclosing(self._stage(state, "plan", prompts.plan_messages(self.task,
                                                                                  previous_code=previous_code),
                                            plan)) as events:
                async for event in events:
                    yield event
            run.plan = plan.text.strip()

        started = time.monotonic()
        research = await self._research() if state.in_time() else ""
        state.add_time("research", started)

        for stage in (self._write_tests(state, previous_code, research),
                      self._write_code(state, previous_code, research), self._repair(state)):
            async with aclosing(stage) as events:
                async for event in events:
                    yield event
        self._conclude(state)

    def _conclude(self, state: _State) -> None:
        run, tests, counted = state.run, state.tests, self._counted(state)
        best = programs.best(state.scored, tests, counted)
        failing = best.failing(counted)
        if not failing:
            verdict = UNVERIFIED if tests.names() == tests.names(suite.SMOKE) else PASSED
        else:
            verdict = OUT_OF_TIME if state.out_of_time else FAILED
        max_attempts = 1 + max(0, int(self.settings["max_repairs"]))
        run.code, run.output, run.passed = best.code, best.output, verdict == PASSED
        run.status = WorkflowRun.Status.COMPLETED if run.passed else WorkflowRun.Status.FAILED
        passed = best.count(tests, among=counted)
        if verdict == PASSED:
            run.content = f"The code passes its tests ({passed} passed) on attempt {best.attempt} of {max_attempts}."
        elif verdict == UNVERIFIED:
            run.content = "No usable tests were written; the code runs, but nothing checked what it returns."
        else:
            why = "the time limit ended the run" if verdict == OUT_OF_TIME else f"{run.attempts} attempt(s)"
            run.content = (f"The code did not pass its tests after {why}; returning the best attempt "
                           f"({best.attempt}: {passed} passed, {len(failing)} failed).")
        if best.edit:
            run.content += f" The program is the model's with an edit the tests chose: {best.edit}."
        if state.suspects:
            run.content += (f" Set aside as suspect (every candidate failed them, so the test is more likely "
                            f"wrong than the code): {', '.join(state.suspects)}.")
        run.report = {"verdict": verdict, "candidates": state.candidates, "chosen_candidate": best.candidate,
                      "test_sources": [case.describe() for case in tests.cases], "suspect_tests": state.suspects,
                      "dropped_tests": state.dropped_tests, "edit_searches": state.edit_searches,
                      "scores": [{"candidate": item.candidate, "attempt": item.attempt,
                                  "task_tests_passed": item.count(tests, suite.TASK),
                                  "tests_passed": item.count(tests), "agreement": item.agreement,
                                  "edit": item.edit}
                                 for item in state.scored]}

    # ------------------------------------------------------------------ entry point
    async def events(self) -> AsyncIterator[Event]:
        self.settings = for_provider(self.settings, (await self.llm.provider()).name)
        run = await WorkflowRun.objects.acreate(session_id=self.session_id, task=self.task,
                                                intent_kind=self.intent_kind)
        started = time.monotonic()
        state = _State(run, deadline=started + float(self.settings["time_limit"]))
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
