"""A turn's storage, in two halves around the model's answer: `start_turn` (or `prepare_turn`
then `store_user_message`) works out the messages to send, fitted to the model's context window
(chat.services.context), and stores the question (and, for a new conversation, the client's
history); `finish_turn` stores the answer, marked unfinished when it was cut off. Sync functions
run on the pooled database threads (codegen_site.core.db)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from chat import selectors
from chat.models import Conversation, Message, title_from
from chat.services.context import (
    Prompt,
    build_prompt,
    codebase_chunks,
    codebase_question,
    history_cap,
    question_of,
    system_prompt,
)
from codegen_site.core.db import db_async
from codegen_site.llm import ContextBudget

Role = Message.Role


@dataclass
class Turn:
    """One user message on its way to the LLM."""

    conversation_id: uuid.UUID
    message: str
    prompt: Prompt
    created: bool = False
    # The client's history, stored with the question when the conversation is new.
    history: list[dict[str, str]] = field(default_factory=list)

    @property
    def llm_messages(self) -> list[dict[str, str]]:
        return self.prompt.messages

    @property
    def sources(self) -> list[dict[str, Any]]:
        """Code search chunks given to the model (@codebase): [{path, start_line, end_line, symbol}]."""
        return self.prompt.sources


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


# Reads happen outside the write transactions: on SQLite a transaction that reads
# first and then writes fails at once ("database is locked") when another writer
# got in between, while one that starts by writing waits its turn.
def prepare_turn_sync(message: str, history: list[dict[str, str]] | None, conversation_id: uuid.UUID | None,
                      budget: ContextBudget) -> Turn:
    """The messages to send, fitted to `budget`. A stored conversation's messages are the history;
    the client's `history` counts only when the conversation is new. Either is first cut to the
    newest persistence.max_context_messages (those cut count as left out)."""
    history = history or []
    cap = history_cap()
    conversation = selectors.find_conversation(conversation_id) if conversation_id else None
    if conversation is None:
        turns = [item for item in history if item["content"]]
        context_history = turns[len(turns) - cap:] if cap else []
        earlier = len(turns) - len(context_history)
    else:
        context_history, earlier = selectors.stored_history(conversation, cap)
    prompt = build_prompt(budget, question_of(message), prompt=system_prompt(), history=context_history,
                          earlier=earlier, chunks=codebase_chunks(message))
    if conversation is None:
        return Turn(conversation_id or uuid.uuid4(), message, prompt, created=True, history=history)
    return Turn(conversation.id, message, prompt)


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


def start_turn_sync(message: str, history: list[dict[str, str]] | None, conversation_id: uuid.UUID | None,
                    budget: ContextBudget) -> Turn:
    turn = prepare_turn_sync(message, history, conversation_id, budget)
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


async def prepare_turn(message: str, history: list[dict[str, str]] | None, conversation_id: uuid.UUID | None,
                       budget: ContextBudget) -> Turn:
    if conversation_id is None and codebase_question(message) is None and not budget.exact:
        # Nothing to read (no stored conversation, no code index) and no tokenizer to run: no thread hop.
        return prepare_turn_sync(message, history, None, budget)
    return await db_async(prepare_turn_sync)(message, history, conversation_id, budget)


start_turn = db_async(start_turn_sync)
store_user_message = db_async(store_user_message_sync)
finish_turn = db_async(finish_turn_sync)
