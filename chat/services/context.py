"""What a turn sends to the model, fitted to the model's context window (a ContextBudget from the LLM
layer): the system prompt and the question always; for a question starting with `@codebase`, the
code index's best chunks that fit, whole and best first, with their `path:line` ranges for the answer
to cite; then the conversation's newest messages that still fit. What is left out is counted
(`history_left_out`, `chunks_left_out`) and the model is told that earlier messages are missing. A
question that cannot fit even alone is refused: ContextTooLarge (413), naming the tokens over."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chat.config import chat_settings, codebase_settings, persistence_settings
from chat.models import Message
from codegen_site.llm import ContextBudget, ContextReport, get_llm
from rag.services import context_text, retrieve

Role = Message.Role

CODEBASE_PREFIX = "@codebase"
CITE_INSTRUCTION = ("Code from the user's indexed codebase follows, each part headed by its path and line range. "
                    "Answer from it where it applies, and cite the parts you use as path:line.")


def left_out_note(count: int) -> str:
    """Told to the model when the conversation's earliest messages are not sent."""
    return (f"The {count} earliest message{'s' if count != 1 else ''} of this conversation "
            f"{'are' if count != 1 else 'is'} left out here, to keep within the context limits.")


@dataclass
class Prompt:
    """The messages of a turn and what was left out of them."""

    messages: list[dict[str, str]]
    prompt_tokens: int = 0
    # Code search chunks given to the model (@codebase): [{path, start_line, end_line, symbol}].
    sources: list[dict[str, Any]] = field(default_factory=list)
    history_left_out: int = 0
    chunks_left_out: int = 0


def history_cap() -> int:
    """The most stored (or client) messages read back as history, besides the system messages."""
    return max(0, persistence_settings().max_context_messages)


def system_prompt() -> str:
    return chat_settings().system_prompt


def codebase_question(message: str) -> str | None:
    """The question of a message that starts with @codebase, else None."""
    if message[:len(CODEBASE_PREFIX)].lower() != CODEBASE_PREFIX:
        return None
    return message[len(CODEBASE_PREFIX):].strip() or message


def question_of(message: str) -> str:
    """What the model is asked: the message, without an @codebase prefix."""
    return codebase_question(message) or message


def _system(prompt: str) -> list[dict[str, str]]:
    return [{"role": Role.SYSTEM.value, "content": prompt}] if prompt else []


async def turn_budget(message: str, model: str | None = None) -> ContextBudget:
    """The budget of the model the turn goes to; ContextTooLarge (413) when the question with the system
    prompt and the answer's share cannot fit its window, before anything is stored or asked."""
    budget = await get_llm().budget(model=model, task=message)
    base = [*_system(system_prompt()), {"role": Role.USER.value, "content": question_of(message)}]
    needed = await budget.acount(base)
    if needed > budget.limit:
        raise budget.too_large(needed, what="The message (with the system prompt)")
    return budget


def build_prompt(budget: ContextBudget, question: str, *, prompt: str = "",
                 history: list[dict[str, str]] | None = None, earlier: int = 0,
                 chunks: list[dict[str, Any]] | None = None) -> Prompt:
    """The turn's messages within `budget`: system messages (the configured prompt, then any from the
    history), the history's newest messages that fit, the @codebase chunks that fit, the question.

    `earlier` counts history messages already left out before this (by persistence.max_context_messages);
    the chunks come best first and go in whole, before the history: they are what the question asks about.
    """
    history, chunks = history or [], chunks or []
    extra_system = [item for item in history if item["role"] == Role.SYSTEM]
    turns = [item for item in history if item["role"] != Role.SYSTEM and item["content"]]
    ask = {"role": Role.USER.value, "content": question}

    def assemble(kept_turns: list[dict[str, str]], kept_chunks: list[dict[str, Any]], left_out: int) -> list:
        head = "\n\n".join(part for part in (prompt, left_out_note(left_out) if left_out else "") if part)
        code = ([{"role": Role.SYSTEM.value, "content": f"{CITE_INSTRUCTION}\n\n{context_text(kept_chunks)}"}]
                if kept_chunks else [])
        return [{"role": str(item["role"]), "content": item["content"]}
                for item in [*_system(head), *extra_system, *kept_turns]] + code + [ask]

    room = budget.limit - budget.count(assemble([], [], 0))
    if room < 0:
        raise budget.too_large(budget.limit - room, what="The message (with the system prompt)")

    kept_chunks: list[dict[str, Any]] = []
    if chunks:
        used = budget.message_tokens({"role": Role.SYSTEM.value, "content": CITE_INSTRUCTION})
        for chunk in chunks:
            cost = budget.text_tokens(context_text([chunk])) + 1  # and the blank line between parts
            if used + cost <= room:
                kept_chunks.append(chunk)
                used += cost
        if kept_chunks:
            room -= used

    note = budget.message_tokens({"role": Role.SYSTEM.value, "content": left_out_note(earlier + len(turns))})
    kept: list[dict[str, str]] = []
    for item in reversed(turns):  # newest first, and none skipped: the kept ones are one stretch
        cost = budget.message_tokens(item)
        left_behind = earlier + len(turns) - len(kept) - 1
        if cost + (note if left_behind else 0) > room:
            break
        kept.append(item)
        room -= cost
    kept.reverse()
    left_out = earlier + len(turns) - len(kept)

    messages = assemble(kept, kept_chunks, left_out)
    total = budget.count(messages)
    # A message's own count is exact for the estimate; a tokenizer's whole prompt can differ at the joins.
    while total > budget.limit and (kept or kept_chunks):
        if kept:
            kept.pop(0)
            left_out += 1
        else:
            kept_chunks.pop()
        messages = assemble(kept, kept_chunks, left_out)
        total = budget.count(messages)
    sources = [{key: chunk.get(key) for key in ("path", "start_line", "end_line", "symbol")} for chunk in kept_chunks]
    return Prompt(messages, total, sources, history_left_out=left_out,
                  chunks_left_out=len(chunks) - len(kept_chunks))


def codebase_chunks(message: str) -> list[dict[str, Any]]:
    """The code index's best chunks for an @codebase question (best first); none for anything else."""
    question = codebase_question(message)
    return retrieve(question, codebase_settings().top_k) if question is not None else []


def context_summary(prompt: Prompt, budget: ContextBudget, report: ContextReport | None) -> dict[str, Any]:
    """What a reply says about the window: its size, the prompt's tokens, the answer's share, and what was
    left out to fit (the turn's own trimming plus anything the LLM layer still had to leave out)."""
    if report is None:  # the request never went (it failed first): what the turn planned
        return {"window": budget.window, "prompt_tokens": prompt.prompt_tokens,
                "answer_tokens": budget.answer_tokens, "history_left_out": prompt.history_left_out,
                "chunks_left_out": prompt.chunks_left_out, "exact": budget.exact}
    return {"window": report.window, "prompt_tokens": report.prompt_tokens, "answer_tokens": report.answer_tokens,
            "history_left_out": prompt.history_left_out + report.messages_left_out,
            "chunks_left_out": prompt.chunks_left_out, "exact": report.exact}
