"""Chat turns: build the LLM context from stored or client history, call the LLM,
store both sides of the exchange.

A turn has two halves. `start_turn` stores the user message (and, for a new
conversation, the client's history) and returns the messages to send;
`finish_turn` stores the assistant's answer, marked unfinished when it was cut
off. `reply` (POST /chat) and `stream_reply` (SSE) run the LLM in between."""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import AsyncIterator

from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone

from chat.models import Conversation, Message, title_from
from codegen_site.core.config import get_config
from codegen_site.core.db import db_async
from codegen_site.core.sse import sse_error_frame, sse_frame, sse_text_frames
from codegen_site.llm import LLMError, get_llm

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


def _stored_history(conversation: Conversation, budget: int) -> list[dict[str, str]]:
    messages = conversation.messages
    system = list(messages.filter(role=Role.SYSTEM).values("role", "content"))
    newest = (messages.exclude(role=Role.SYSTEM).exclude(content="")
              .order_by("-id").values("role", "content")[:budget]) if budget else []
    return system + list(reversed(list(newest)))


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
    conversation = Conversation.objects.filter(id=conversation_id).first() if conversation_id else None
    if conversation is None:
        turn = Turn(conversation_id or uuid.uuid4(), message, [], created=True, history=history)
        context_history = history
    else:
        turn = Turn(conversation.id, message, [])
        context_history = _stored_history(conversation, budget)
    turn.llm_messages = build_context(context_history, message, budget=budget, prompt=system_prompt())
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
    if conversation_id is None:  # nothing to read: skip the hop to the database thread
        return prepare_turn_sync(message, history, None)
    return await db_async(prepare_turn_sync)(message, history, conversation_id)


start_turn = db_async(start_turn_sync)
store_user_message = db_async(store_user_message_sync)
finish_turn = db_async(finish_turn_sync)


# --- LLM ---------------------------------------------------------------------
async def reply(message: str, history: list[dict[str, str]] | None = None,
                conversation_id: uuid.UUID | None = None) -> dict:
    """POST /chat: the whole answer at once."""
    turn = await start_turn(message, history, conversation_id)
    completion = await get_llm().complete(turn.llm_messages, task=message)
    answer = Answer(content=completion.content, thinking=completion.thinking, model=completion.model,
                    finished=True)
    await finish_turn(turn.conversation_id, answer)
    return {"content": answer.content, "thinking": answer.thinking, "model": answer.model,
            "conversation_id": str(turn.conversation_id)}


async def _let_server_write() -> None:
    """Give the event loop two turns. Daphne (Twisted) writes a response chunk to
    the socket only when the loop next polls it for writing, and reading the next
    batch from a full buffer never returns to the loop: without this, a fast
    stream's first chunk waited until the next batch had been parsed too."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def turn_frames(message: str, history: list[dict[str, str]] | None = None,
                      conversation_id: uuid.UUID | None = None) -> AsyncIterator[bytes]:
    """SSE frames for one turn: `thinking` / `content` chunks, then `done`, or
    `error` when the LLM fails. The user message is stored before the first
    frame goes out. Whatever arrived is stored even when the client hangs up (this
    generator is then cancelled or closed at an await point); closing the delta
    iterator closes the upstream request."""
    turn = await prepare_turn(message, history, conversation_id)
    # Stored before the LLM is asked. Asking it meanwhile was measured
    # (bench/sse_relay.py): a fast stream's first chunks then arrive during the
    # write, the event loop parses them while the database thread waits for the
    # GIL, and the first chunk went out 1-3 ms later than when storing first.
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
        chat = await get_llm().stream(turn.llm_messages, task=turn.message)
        # Deltas come in batches (what the upstream sent together); each still
        # becomes its own event, and a batch goes out as one write.
        async with aclosing(chat.batches()) as batches:
            async for batch in batches:
                answer.extend(batch)
                yield sse_text_frames(batch)
                await _let_server_write()
        await save(finished=True)
        yield sse_frame("done", {"conversation_id": str(turn.conversation_id), "model": chat.model})
    except LLMError as exc:
        logger.warning("Chat stream for %s failed: %s", turn.conversation_id, exc.detail)
        await save(finished=False)
        yield sse_error_frame(exc, conversation_id=str(turn.conversation_id))
    finally:
        if not saved:  # client gone (cancelled or closed mid-stream)
            try:
                await save(finished=False)
            except BaseException:  # never mask what is ending the stream
                logger.exception("Could not store the cut-off answer of %s", turn.conversation_id)


async def stream_chat(message: str, history: list[dict[str, str]] | None = None,
                      conversation_id: uuid.UUID | None = None) -> AsyncIterator[bytes]:
    """The response body of /chat/stream. Tokens that arrive together are
    already grouped by the LLM layer, so a fast model costs one write per
    group rather than per token, while a slow one gets each token out at once."""
    try:
        async for frames in turn_frames(message, history, conversation_id):
            yield frames
    except Exception as exc:
        yield sse_error_frame(exc)


# --- conversations -----------------------------------------------------------
def list_conversations(limit: int, offset: int = 0) -> list[dict]:
    rows = (Conversation.objects.annotate(message_count=Count("messages"))
            .order_by("-created_at", "-id")[offset:offset + limit])
    return [{"id": str(row.id), "title": row.title, "created_at": row.created_at, "updated_at": row.updated_at,
             "message_count": row.message_count} for row in rows]


def get_conversation(conversation_id: uuid.UUID) -> dict | None:
    conversation = Conversation.objects.filter(id=conversation_id).first()
    if conversation is None:
        return None
    messages = conversation.messages.order_by("id").values("role", "content", "thinking", "model", "finished",
                                                           "created_at")
    return {"id": str(conversation.id), "title": conversation.title, "created_at": conversation.created_at,
            "updated_at": conversation.updated_at, "messages": list(messages)}


def delete_conversation(conversation_id: uuid.UUID) -> bool:
    deleted, _ = Conversation.objects.filter(id=conversation_id).delete()
    return bool(deleted)
