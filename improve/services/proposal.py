"""One improvement of one file, proven before it is written (POST /improve/run, a queued task).

read → ask the LLM for the whole new file → validate in the sandbox (services.validation) →
on failure send the validation output back and retry (up to max_retries) → write through the
files service (services.apply), or keep the proposal for a later POST /improve/apply.

`improvement_events()` is one async generator of (event, data) for both endpoints, like the
workflow's: `step`, `progress` and `validation` events carry plain dicts; the model's answer is
streamed, and each group of tokens that arrives together is one `progress` event ({step: generate,
attempt, tokens, thinking_tokens, chars}: the tokens so far), so a long generation shows it is
moving; the last event, `done`, carries
the ImprovementRun, which the API (and the queue's task) answers with through
improve.serializers.ImprovementRunResultSerializer."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import AsyncIterator

from django.utils import timezone

from codegen_site.core import workspace
from codegen_site.core.db import db_async
from codegen_site.llm import get_llm
from codegen_site.sandbox import strip_code_fences
from files_app.services import read_file, unified_diff
from improve.config import run_settings
from improve.models import ImprovementRun
from improve.services.apply import sha256_text, write_if_unchanged
from improve.services.validation import Validation, Validator, plan_validation

Event = tuple[str, object]
Status = ImprovementRun.Status

SYSTEM_PROMPT = (
    "You improve one Python file of a project. Fix the issue you are given without changing what the "
    "file's functions and classes do for their callers: existing tests must keep passing. Reply with the "
    "complete new content of the file in a single ```python block and nothing else."
)


def _prompt(shown: str, issue: dict, original: str, previous: tuple[str, str] | None) -> list[dict]:
    where = f" (line {issue['line']})" if issue.get("line") else ""
    text = (f"File: {shown}\nIssue{where}: [{issue.get('severity', 'medium')}/{issue.get('issue_type', 'general')}] "
            f"{issue.get('message', '')}\n\nCurrent content:\n```python\n{original}```\n")
    if previous:
        proposal, output = previous
        feedback_chars = run_settings().feedback_chars
        text += (f"\nYour previous version failed validation:\n```python\n{proposal}```\n"
                 f"Validation output:\n{output[-feedback_chars:]}\n\nReturn a corrected complete file.")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]


def extract_code(reply: str) -> str:
    code = strip_code_fences(reply or "")
    return code if code.endswith("\n") or not code else code + "\n"


def _failure(run: ImprovementRun) -> str:
    broken = run.attempts[-1]["broken_tests"]
    if broken:
        return f"Refused: the change breaks passing tests: {', '.join(broken)}"
    return f"Validation failed after {len(run.attempts)} attempt(s)"


async def improvement_events(file_path: str, issue: dict, *, auto_write: bool = True,
                             max_retries: int | None = None) -> AsyncIterator[Event]:
    """Events: step (read, generate, validate, retry, write), progress (while generating), validation,
    then done (the run)."""
    limits = run_settings()
    max_retries = limits.max_retries if max_retries is None else max_retries
    target = workspace.resolve(file_path, must_exist=True)
    shown = workspace.relative(target)
    yield "step", {"step": "read", "file_path": shown}
    original = (await db_async(read_file)(shown)).content
    plan = await db_async(plan_validation)(target)
    run = await db_async(ImprovementRun.objects.create)(file_path=shown, issue=issue, auto_write=auto_write,
                                                        max_retries=max_retries,
                                                        original_sha256=sha256_text(original))
    validator = Validator(shown, original, plan)
    llm = get_llm()
    previous = None
    try:
        for number in range(1, max_retries + 2):
            if number > 1:
                yield "step", {"step": "retry", "attempt": number, "max_attempts": max_retries + 1}
            yield "step", {"step": "generate", "attempt": number, "run_id": str(run.pk)}
            chat = await llm.stream(_prompt(shown, issue, original, previous), tier="medium",
                                    max_tokens=limits.max_tokens or None)
            content: list[str] = []
            tokens = thinking = chars = 0
            async for batch in chat.batches():
                for delta in batch:
                    tokens += 1
                    if delta.kind == "content":
                        content.append(delta.text)
                        chars += len(delta.text)
                    else:
                        thinking += 1
                yield "progress", {"step": "generate", "attempt": number, "tokens": tokens,
                                   "thinking_tokens": thinking, "chars": chars}
            run.model = chat.model
            proposal = extract_code("".join(content))
            yield "step", {"step": "validate", "attempt": number}
            if proposal.strip():
                validation = await validator.validate(proposal)
            else:
                validation = Validation(False, "The model returned no code.")
            run.attempts = [*run.attempts, {"number": number, "content": proposal, "passed": validation.passed,
                                            "validation_output": validation.output,
                                            "broken_tests": validation.broken_tests}]
            run.retries, run.validation_output = number - 1, validation.output
            yield "validation", {"attempt": number, "passed": validation.passed, "output": validation.output,
                                 "broken_tests": validation.broken_tests}
            if validation.passed:
                run.proposed_content, run.diff = proposal, unified_diff(original, proposal, shown)
                await db_async(run.save)()  # kept before the write, so a retry can tell the write happened
                break
            previous = (proposal, validation.output)
        else:
            run.status = Status.FAILED
            run.error = _failure(run)
        if run.status == Status.RUNNING:
            if auto_write:
                yield "step", {"step": "write"}
                await db_async(write_if_unchanged)(run, shown, run.proposed_content)
            else:
                run.status = Status.PROPOSED
    except BaseException as exc:
        run.status = Status.FAILED
        run.error = run.error or str(getattr(exc, "detail", "") or exc) or type(exc).__name__
        raise
    finally:
        run.finished_at = timezone.now()
        await asyncio.shield(db_async(run.save)())
    yield "done", run


async def run_improvement(file_path: str, issue: dict, **options) -> ImprovementRun:
    """The same run without its progress: the finished ImprovementRun."""
    async with aclosing(improvement_events(file_path, issue, **options)) as events:
        async for name, data in events:
            if name == "done":
                return data
    raise RuntimeError("the improvement ended without a result")
