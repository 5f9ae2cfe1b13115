"""Chat turns: build the LLM context from stored or client history, call the LLM,
store both sides of the exchange (read queries are in chat.selectors).

A turn has two halves. `start_turn` stores the user message (and, for a new
conversation, the client's history) and returns the messages to send;
`finish_turn` stores the assistant's answer, marked unfinished when it was cut
off. `reply` (POST /chat) and `turn_events` (the stream) run the LLM in between.

A message starting with `@codebase` asks about the indexed code: the best chunks
from the code search index go to the model with their `path:line` ranges, the
model is asked to cite them, and the reply lists them as `sources`."""

from __future__ import annotations

import logging
import uuid
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from django.db import IntegrityError, transaction
from django.utils import timezone

from chat import selectors
from chat.models import Conversation, Message, title_from
from codegen_site.core.config import get_config
from codegen_site.core.db import db_async
from codegen_site.core.sse import TOKENS, error_event
from codegen_site.llm import LLMError, get_llm
from rag import services as rag_services

logger = logging.getLogger(__name__)

Role = Message.Role


@dataclass
class Turn:
    """One user message on its way to the LLM."""

    conversation_id: uuid.UUID
    message: str
    llm_messages: list[dict[str, str]]
    created: bool = False
    # The client's history, stored with the question when the conversation is new.
    history: list[dict[str, str]] = field(default_factory=list)
    # Code search chunks given to the model (@codebase): [{path, start_line, end_line, symbol}].
    sources: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Answer:
    content: str = ""
    thinking: str = ""
    model: str = ""
    finished: bool = False
    _content: list[str] = field(default_factory=list, repr=False)
    _thinking: list[str] = field(default_factory=list, repr=False)

    def extend(self, deltas) -> None:
        content, thinking = self._content, self._thinking
        for delta in deltas:
            (content if delta.kind == "content" else thinking).append(delta.text)

    def close(self, model: str, finished: bool) -> "Answer":
        self.content, self.thinking = "".join(self._content), "".join(self._thinking)
        self.model, self.finished = model, finished
        return self


# --- context -----------------------------------------------------------------
def context_budget() -> int:
    return max(0, int(get_config()["persistence"]["max_context_messages"]))


def system_prompt() -> str:
    return str(get_config()["chat"]["system_prompt"])


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


CODEBASE_PREFIX = "@codebase"
CITE_INSTRUCTION = ("Code from the user's indexed codebase follows, each part headed by its path and line range. "
                    "Answer from it where it applies, and cite the parts you use as path:line.")


def codebase_question(message: str) -> str | None:
    """The question of a message that starts with @codebase, else None."""
    if message[:len(CODEBASE_PREFIX)].lower() != CODEBASE_PREFIX:
        return None
    return message[len(CODEBASE_PREFIX):].strip() or message


def add_codebase_context(turn: Turn) -> None:
    """For an @codebase question: the best chunks of the code index as a system message before the question."""
    question = codebase_question(turn.message)
    if question is None:
        return
    chunks = rag_services.retrieve(question, int(get_config()["rag"]["top_k"]))
    if not chunks:
        return
    turn.sources = [{key: chunk.get(key) for key in ("path", "start_line", "end_line", "symbol")}
                    for chunk in chunks]
    context = {"role": Role.SYSTEM.value, "content": f"{CITE_INSTRUCTION}\n\n{rag_services.context_text(chunks)}"}
    turn.llm_messages = [*turn.llm_messages[:-1], context, {"role": Role.USER.value, "content": question}]


# --- storage (sync; called through sync_to_async) ------------------------------
# Reads happen outside the write transactions: on SQLite a transaction that reads
# first and then writes fails at once ("database is locked") when another writer
# got in between, while one that starts by writing waits its turn.
def prepare_turn_sync(message: str, history: list[dict[str, str]] | None = None,
                      conversation_id: uuid.UUID | None = None) -> Turn:
    """The messages to send. A stored conversation's messages are the history;
    the client's `history` counts only when the conversation is new."""
    history = history or []
    budget = context_budget()
    conversation = selectors.find_conversation(conversation_id) if conversation_id else None
    if conversation is None:
        turn = Turn(conversation_id or uuid.uuid4(), message, [], created=True, history=history)
        context_history = history
    else:
        turn = Turn(conversation.id, message, [])
        context_history = selectors.stored_history(conversation, budget)
    turn.llm_messages = build_context(context_history, message, budget=budget, prompt=system_prompt())
    add_codebase_context(turn)
    return turn


def store_user_message_sync(turn: Turn) -> None:
    """Store the question (with the client's history when the conversation is new)."""
    if turn.created:
        first_user = next((item["content"] for item in turn.history if item["role"] == Role.USER), turn.message)
        try:
            with transaction.atomic():
                conversation = Conversation.objects.create(id=turn.conversation_id, title=title_from(first_user))
                # Kept so the conversation reads as the model saw it and can be continued by id.
                Message.objects.bulk_create(Message(conversation=conversation, role=item["role"],
                                                    content=item["content"]) for item in turn.history)
                Message.objects.create(conversation=conversation, role=Role.USER, content=turn.message)
            return
        except IntegrityError:  # the same new id arrived twice at once: add to the stored one
            pass
    with transaction.atomic():
        Message.objects.create(conversation_id=turn.conversation_id, role=Role.USER, content=turn.message)
        Conversation.objects.filter(id=turn.conversation_id).update(updated_at=timezone.now())


def start_turn_sync(message: str, history: list[dict[str, str]] | None = None,
                    conversation_id: uuid.UUID | None = None) -> Turn:
    turn = prepare_turn_sync(message, history, conversation_id)
    store_user_message_sync(turn)
    return turn


def finish_turn_sync(conversation_id: uuid.UUID, answer: Answer) -> Message | None:
    """Store the assistant's answer; an answer with no text at all is not stored."""
    if not answer.content and not answer.thinking:
        return None
    with transaction.atomic():
        stored = Message.objects.create(conversation_id=conversation_id, role=Role.ASSISTANT,
                                        content=answer.content, thinking=answer.thinking,
                                        model=answer.model, finished=answer.finished)
        Conversation.objects.filter(id=conversation_id).update(updated_at=timezone.now())
    return stored


async def prepare_turn(message: str, history: list[dict[str, str]] | None = None,
                       conversation_id: uuid.UUID | None = None) -> Turn:
    if conversation_id is None and codebase_question(message) is None:
        return prepare_turn_sync(message, history, None)  # nothing to read: skip the hop to the database thread
    return await db_async(prepare_turn_sync)(message, history, conversation_id)


start_turn = db_async(start_turn_sync)
store_user_message = db_async(store_user_message_sync)
finish_turn = db_async(finish_turn_sync)


# --- LLM ---------------------------------------------------------------------
async def reply(message: str, history: list[dict[str, str]] | None = None,
                conversation_id: uuid.UUID | None = None, model: str | None = None) -> dict:
    """POST /chat: the whole answer at once."""
    turn = await start_turn(message, history, conversation_id)
    completion = await get_llm().complete(turn.llm_messages, model=model, task=message)
    answer = Answer(content=completion.content, thinking=completion.thinking, model=completion.model,
                    finished=True)
    await finish_turn(turn.conversation_id, answer)
    return {"content": answer.content, "thinking": answer.thinking, "model": answer.model,
            "conversation_id": str(turn.conversation_id), "sources": turn.sources}


async def turn_events(message: str, history: list[dict[str, str]] | None = None,
                      conversation_id: uuid.UUID | None = None,
                      model: str | None = None) -> AsyncIterator[tuple[str, Any]]:
    """One turn as events: TOKENS batches (`thinking` / `content` deltas as the
    LLM sent them together), then `done`, or `error` when the LLM fails. The user
    message is stored before the LLM is asked. Whatever arrived is stored even
    when the client hangs up (this generator is then cancelled or closed at an
    await point); closing the delta iterator closes the upstream request."""
    turn = await prepare_turn(message, history, conversation_id)
    # Stored before the LLM is asked: asking it meanwhile let a fast stream's
    # first chunks arrive during the write, and the event loop parsed them while
    # the database thread waited for the GIL, delaying the first chunk
    # (measured with bench/sse_relay.py).
    await store_user_message(turn)
    answer = Answer()
    chat = None
    saved = False

    async def save(finished: bool) -> None:
        nonlocal saved
        if not saved:
            saved = True
            # chat.model names the model that answered, after any fallback.
            await finish_turn(turn.conversation_id, answer.close(chat.model if chat else "", finished))

    try:
        chat = await get_llm().stream(turn.llm_messages, model=model, task=turn.message)
        async with aclosing(chat.batches()) as batches:
            async for batch in batches:
                answer.extend(batch)
                yield TOKENS, batch
        await save(finished=True)
        yield "done", {"conversation_id": str(turn.conversation_id), "model": chat.model, "sources": turn.sources}
    except LLMError as exc:
        logger.warning("Chat stream for %s failed: %s", turn.conversation_id, exc.detail)
        await save(finished=False)
        yield error_event(exc, conversation_id=str(turn.conversation_id))
    finally:
        if not saved:  # client gone (cancelled or closed mid-stream)
            try:
                await save(finished=False)
            except BaseException:  # never mask what is ending the stream
                logger.exception("Could not store the cut-off answer of %s", turn.conversation_id)


# --- conversations -----------------------------------------------------------
def update_conversation(conversation_id: uuid.UUID, title: str | None = None) -> dict | None:
    """Give a conversation a new title (None: leave it); None when there is no such conversation."""
    if title is not None:
        Conversation.objects.filter(id=conversation_id).update(title=title, updated_at=timezone.now())
    return selectors.conversation_fields(conversation_id)


def delete_conversation(conversation_id: uuid.UUID) -> bool:
    deleted, _ = Conversation.objects.filter(id=conversation_id).delete()
    return bool(deleted)
