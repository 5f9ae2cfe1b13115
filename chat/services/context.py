"""What a turn sends to the model: the system prompt, the newest history within the budget, the
question; for a question starting with `@codebase`, the best chunks of the code index before it,
with their `path:line` ranges for the answer to cite."""

from __future__ import annotations

from typing import Any

from chat.config import chat_settings, codebase_settings, persistence_settings
from chat.models import Message
from rag.services import context_text, retrieve

Role = Message.Role

CODEBASE_PREFIX = "@codebase"
CITE_INSTRUCTION = ("Code from the user's indexed codebase follows, each part headed by its path and line range. "
                    "Answer from it where it applies, and cite the parts you use as path:line.")


def context_budget() -> int:
    """Stored (or client) messages sent along with a question, besides the system messages."""
    return max(0, persistence_settings().max_context_messages)


def system_prompt() -> str:
    return chat_settings().system_prompt


def build_context(history: list[dict[str, str]], message: str, *, budget: int,
                  prompt: str = "") -> list[dict[str, str]]:
    """System messages first (the configured prompt, then any from the history),
    then the newest `budget` other messages, then the new user message."""
    system = [{"role": Role.SYSTEM, "content": prompt}] if prompt else []
    system += [item for item in history if item["role"] == Role.SYSTEM]
    turns = [item for item in history if item["role"] != Role.SYSTEM and item["content"]]
    kept = turns[len(turns) - budget:] if budget else []
    return [{"role": str(item["role"]), "content": item["content"]} for item in system + kept] + [
        {"role": Role.USER.value, "content": message}]


def codebase_question(message: str) -> str | None:
    """The question of a message that starts with @codebase, else None."""
    if message[:len(CODEBASE_PREFIX)].lower() != CODEBASE_PREFIX:
        return None
    return message[len(CODEBASE_PREFIX):].strip() or message


def with_codebase(message: str, llm_messages: list[dict[str, str]]
                  ) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """For an @codebase question: the messages with the code index's best chunks as a system
    message before the question (asked without its prefix), and those chunks as sources
    [{path, start_line, end_line, symbol}]. Anything else, or no chunk found: as they were."""
    question = codebase_question(message)
    if question is None:
        return llm_messages, []
    chunks = retrieve(question, codebase_settings().top_k)
    if not chunks:
        return llm_messages, []
    sources = [{key: chunk.get(key) for key in ("path", "start_line", "end_line", "symbol")} for chunk in chunks]
    context = {"role": Role.SYSTEM.value, "content": f"{CITE_INSTRUCTION}\n\n{context_text(chunks)}"}
    return [*llm_messages[:-1], context, {"role": Role.USER.value, "content": question}], sources
