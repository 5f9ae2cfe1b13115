"""A change to the user's project from one instruction (POST /improve/change, a queued change task).

context (services.change_context) → the model's edits, whole files or search/replace blocks
(services.change_edits) → proof in the sandbox (services.change_validation) → repairs within
`max_repairs` (a block that does not apply and a refused proof both go back to the model) → the
result: a multi-file diff with its evidence and, in a git workspace, a commit on its own branch
`codegen/<id>` (services.change_git), never on the user's branch. Nothing in the workspace is
written until the change is applied (services.change_apply); a refused change leaves no branch.

`change_events()` is one async generator of (event, data) for the plain and the streaming
endpoint: `step`, `plan`, `edit`, `validation` carry dicts; the last, `done`, the ProjectChange."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from dataclasses import dataclass
from typing import AsyncIterator

from django.utils import timezone

from codegen_site.core import workspace
from codegen_site.core.db import db_async
from codegen_site.core.errors import ServiceError
from codegen_site.llm import ContextBudget, estimate_tokens, get_llm
from files_app.services import unified_diff
from improve.config import change_settings, run_settings
from improve.models import ProjectChange
from improve.services.apply import sha256_text
from improve.services.change_context import Context, SymbolMap, gather, read_text
from improve.services.change_edits import EditError, apply_edit, parse
from improve.services.change_git import Repo, open_repo
from improve.services.change_validation import prove

Event = tuple[str, object]
State = ProjectChange.State
# The prompt names this many of the files left out of it (the result names them all).
LEFT_OUT_NAMED = 10

SYSTEM_PROMPT = (
    "You change a Python project as the user instructs, across as many files as it takes (code and its "
    "tests). Existing tests must keep passing unless the instruction changes the behaviour they pin down. "
    "Reply with one section per file you change, nothing else:\n\n"
    "For a file marked [whole] (or a new file):\nFILE: path/to/file.py\n```python\n<complete new content>\n```\n\n"
    "For a file marked [blocks]:\nEDIT: path/to/file.py\n<<<<<<< SEARCH\n<lines copied exactly from the file>\n"
    "=======\n<what they become>\n>>>>>>> REPLACE\n(as many blocks as needed, each SEARCH matching once)."
)


def _format(text: str) -> str:
    return "whole" if text.count("\n") <= change_settings().whole_file_max_lines else "blocks"


@dataclass(frozen=True)
class FilesBudget:
    """The tokens the project's files may take in the prompt, and the feedback a repair may send."""

    tokens: int
    feedback_chars: int
    report: dict


def files_budget(budget: ContextBudget, instruction: str, repairs: int) -> FilesBudget:
    """The model's prompt limit (its window less the answer's tokens) less the prompt without files and
    the room for a repair's feedback; capped by improve_change.context_tokens when that is set."""
    settings, feedback = change_settings(), run_settings().feedback_chars
    bare = budget.count(_prompt(instruction, Context({}, {}, [], 0, SymbolMap()), None, feedback))
    # the note naming the files left out, at its longest (paths of a typical length), as the estimate counts it
    bare += estimate_tokens(", ".join(["x" * 48] * LEFT_OUT_NAMED) + " and 99999 more")
    room = budget.limit - bare
    # both halves of the feedback at their longest, as the estimate counts them (it errs high)
    reserve = min(2 * estimate_tokens("x" * feedback) + 64, int(room * settings.repair_share)) if repairs else 0
    tokens = max(0, room - reserve)
    if settings.context_tokens:
        tokens = min(tokens, settings.context_tokens)
    feedback_chars = min(feedback, max(0, reserve - 64) * 3 // 2) if repairs else feedback
    report = {"window": budget.window, "answer_tokens": budget.answer_tokens, "prompt_limit": budget.limit,
              "instruction_tokens": bare, "repair_tokens": reserve, "files_tokens": tokens, "exact": budget.exact,
              "model": budget.model}
    return FilesBudget(tokens, feedback_chars, report)


def _prompt(instruction: str, context: Context, repair: tuple[str, str] | None, feedback: int) -> list[dict]:
    parts = [f"Instruction: {instruction}\n\nProject files:"]
    for path, text in context.files.items():
        parts.append(f"\n--- {path} [{_format(text)}] ({text.count(chr(10))} lines; {context.reasons[path]})\n"
                     f"```python\n{text}```")
    if context.left_out:
        named = context.left_out[:LEFT_OUT_NAMED]
        more = len(context.left_out) - len(named)
        parts.append(f"\nNot shown (over the budget): {', '.join(named)}" + (f" and {more} more" if more else ""))
    if repair:
        reply, problem = repair
        parts.append(f"\nYour previous answer:\n{reply[-feedback:]}\n\nIt could not be accepted:\n{problem[-feedback:]}"
                     "\n\nReply again with the corrected sections (every file the change needs; files are as shown "
                     "above, your previous edits were not applied).")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n".join(parts)}]


def _resolved(path: str) -> str:
    """The workspace path of an edit's file (400 for one out of reach, as for any client path)."""
    return workspace.relative(workspace.resolve(path))


def _edits(reply: str, context: Context) -> tuple[dict[str, str | None], dict[str, str], dict[str, str]]:
    """(originals, new contents, formats) of the reply's edits; EditError for any that does not apply."""
    settings = change_settings()
    originals: dict[str, str | None] = {}
    changes: dict[str, str] = {}
    formats: dict[str, str] = {}
    problems: list[str] = []
    edits = parse(reply)
    if len(edits) > settings.max_files:
        raise EditError(f"The change touches {len(edits)} files; at most {settings.max_files} may change.")
    for edit in edits:
        try:
            path = _resolved(edit.path)
        except ServiceError as exc:
            problems.append(f"{edit.path}: {exc.detail}")
            continue
        current = context.files.get(path)
        if current is None:
            current = read_text(path)
        try:
            new = apply_edit(edit, current, near_ratio=settings.near_match_ratio)
        except EditError as exc:
            problems.append(str(exc))
            continue
        if current is not None and new == current:
            continue
        originals[path], changes[path], formats[path] = current, new, edit.kind
    if problems:
        raise EditError("\n\n".join(problems))
    if not changes:
        raise EditError("The edits leave every file as it is; nothing would change.")
    return originals, changes, formats


def _files(originals: dict[str, str | None], changes: dict[str, str], formats: dict[str, str]) -> list[dict]:
    return [{"path": path, "status": "modified" if originals[path] is not None else "added",
             "format": formats[path], "original": originals[path], "original_sha256":
             sha256_text(originals[path]) if originals[path] is not None else "",
             "proposed": text, "proposed_sha256": sha256_text(text),
             "diff": unified_diff(originals[path] or "", text, path)} for path, text in changes.items()]


def commit_on_branch(repo: Repo, change: ProjectChange) -> None:
    """The proven change as a commit on HEAD, on its own new branch codegen/<id>."""
    head = repo.head()
    entries = {}
    for item in change.files:
        existing = repo.blob(head, item["path"])
        entries[item["path"]] = (existing[0] if existing else "100644",
                                 repo.hash_text(item["proposed"], write=True))
        working = repo.hash_text(item["original"], write=False) if item["original"] is not None else None
        item["uncommitted"] = working != (existing[1] if existing else None)
    message = f"codegen: {change.instruction.strip().splitlines()[0][:72]}\n\n{change.instruction.strip()}\n\n" \
              f"CodeGen-Change: {change.pk}\n"
    commit = repo.commit(head, entries, message)
    branch = f"codegen/{change.pk}"
    repo.create_branch(branch, commit)
    change.base_commit, change.commit, change.branch = head, commit, branch


async def change_events(instruction: str, paths: list[str] | None = None, *, max_repairs: int | None = None,
                        auto_apply: bool = False, task_id=None) -> AsyncIterator[Event]:
    """Events: step (context, generate, apply, validate, repair, commit, apply_change), plan, edit,
    validation, then done (the ProjectChange)."""
    settings = change_settings()
    max_repairs = min(settings.max_repairs, settings.max_repairs_limit) if max_repairs is None else max_repairs
    named = [_resolved(path) for path in paths or []]
    timings = {"context": 0.0, "model": 0.0, "apply": 0.0, "validation": 0.0, "commit": 0.0}
    started = time.perf_counter()
    yield "step", {"step": "context"}
    llm = get_llm()
    window = await llm.budget(tier="medium", max_tokens=settings.max_tokens or None)
    fit = await asyncio.to_thread(files_budget, window, instruction, max_repairs)
    context = await db_async(gather)(instruction, named, budget=fit.tokens, max_files=settings.symbol_map_max_files,
                                     count=window.text_tokens)
    repo = await asyncio.to_thread(open_repo, workspace.root())
    timings["context"] = time.perf_counter() - started
    change = await db_async(ProjectChange.objects.create)(instruction=instruction, paths=named,
                                                          max_repairs=max_repairs, git=repo is not None,
                                                          task_id=task_id)
    yield "plan", {"change_id": str(change.pk), "context": context.summary(), "left_out": context.left_out,
                   "left_out_files": context.left_out_summary(), "budget": fit.report, "symbols": context.symbols,
                   "git": repo is not None}
    repair = None
    attempts: list[dict] = []
    proof = None
    try:
        for number in range(1, max_repairs + 2):
            if number > 1:
                yield "step", {"step": "repair", "attempt": number, "max_attempts": max_repairs + 1}
            yield "step", {"step": "generate", "attempt": number, "change_id": str(change.pk)}
            mark = time.perf_counter()
            answer = await llm.complete(_prompt(instruction, context, repair, fit.feedback_chars), tier="medium",
                                        max_tokens=settings.max_tokens or None)
            timings["model"] += time.perf_counter() - mark
            change.model = answer.model
            yield "step", {"step": "apply", "attempt": number}
            mark = time.perf_counter()
            try:
                originals, changes, formats = await db_async(_edits)(answer.content, context)
            except EditError as exc:
                timings["apply"] += time.perf_counter() - mark
                attempts.append({"number": number, "applied": False, "error": str(exc)})
                yield "edit", {"attempt": number, "applied": False, "error": str(exc)}
                repair = (answer.content, str(exc))
                continue
            timings["apply"] += time.perf_counter() - mark
            for path in changes:
                yield "edit", {"attempt": number, "applied": True, "path": path, "format": formats[path],
                               "status": "modified" if originals[path] is not None else "added"}
            yield "step", {"step": "validate", "attempt": number}
            mark = time.perf_counter()
            proof = await prove(originals, changes, context.project)
            timings["validation"] += time.perf_counter() - mark
            attempts.append({"number": number, "applied": True, "files": sorted(changes), **proof.as_dict()})
            yield "validation", {"attempt": number, **proof.as_dict()}
            if proof.passed:
                change.files = _files(originals, changes, formats)
                change.diff = "".join(item["diff"] for item in change.files)
                break
            repair = (answer.content, proof.output)
        else:
            change.state = State.REFUSED
            last = attempts[-1] if attempts else {}
            change.error = (f"Refused: the change breaks passing tests: {', '.join(last['broken_tests'])}"
                            if last.get("broken_tests") else
                            f"No proven change after {len(attempts)} attempt(s): "
                            f"{(last.get('error') or last.get('output') or '')[:2000]}")
        if change.state == State.RUNNING:
            if repo is not None:
                yield "step", {"step": "commit"}
                mark = time.perf_counter()
                await asyncio.to_thread(commit_on_branch, repo, change)
                timings["commit"] = time.perf_counter() - mark
            change.state = State.PROPOSED
    except BaseException as exc:
        change.state = State.FAILED
        change.error = change.error or str(getattr(exc, "detail", "") or exc) or type(exc).__name__
        raise
    finally:
        timings["total"] = time.perf_counter() - started
        change.evidence = {"context": context.summary(), "left_out": context.left_out,
                           "left_out_files": context.left_out_summary(), "budget": fit.report, "attempts": attempts,
                           "tests": proof.tests if proof and proof.passed else [],
                           "ruff": proof.ruff if proof else [], "timings": timings}
        change.finished_at = timezone.now()
        await asyncio.shield(db_async(change.save)())
    if auto_apply and change.state == State.PROPOSED:
        from improve.services.change_apply import apply_change

        yield "step", {"step": "apply_change"}
        change = await db_async(apply_change)(change.pk)
    yield "done", change


async def run_change(instruction: str, paths: list[str] | None = None, **options) -> ProjectChange:
    """The same change without its progress: the finished ProjectChange."""
    async with aclosing(change_events(instruction, paths, **options)) as events:
        async for name, data in events:
            if name == "done":
                return data
    raise RuntimeError("the change ended without a result")

