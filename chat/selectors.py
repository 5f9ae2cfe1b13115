"""Read queries on stored conversations: the lists and details the API shows, and
the history a turn sends to the model. Writes live in chat.services."""

from __future__ import annotations

import uuid

from django.db.models import Count

from chat.models import Conversation, Message
from codegen_site.core.errors import NotFound
from codegen_site.core.users import visible

Role = Message.Role

CONVERSATION_NOT_FOUND = "Conversation not found"


def list_conversations(limit: int, offset: int = 0) -> list[dict]:
    rows = (visible(Conversation.objects).annotate(message_count=Count("messages"))
            .order_by("-created_at", "-id")[offset:offset + limit])
    return [{"id": str(row.id), "title": row.title, "created_at": row.created_at, "updated_at": row.updated_at,
             "message_count": row.message_count} for row in rows]


def get_conversation(conversation_id: uuid.UUID) -> dict:
    """The conversation with its messages in order; NotFound (404) when there is none."""
    conversation = find_conversation(conversation_id)
    if conversation is None:
        raise NotFound(CONVERSATION_NOT_FOUND)
    messages = conversation.messages.order_by("id").values("role", "content", "thinking", "model", "finished",
                                                           "created_at")
    return {"id": str(conversation.id), "title": conversation.title, "created_at": conversation.created_at,
            "updated_at": conversation.updated_at, "messages": list(messages)}


def conversation_fields(conversation_id: uuid.UUID) -> dict:
    """The conversation's own fields; NotFound (404) when there is none."""
    fields = visible(Conversation.objects).filter(id=conversation_id).values("id", "title", "created_at", "updated_at").first()
    if fields is None:
        raise NotFound(CONVERSATION_NOT_FOUND)
    return fields


def find_conversation(conversation_id: uuid.UUID) -> Conversation | None:
    """The conversation, or None: a turn with an unknown id starts a conversation with it.
    Another user's is NotFound (404), as if there were none; its id is taken all the same."""
    conversation = Conversation.objects.filter(id=conversation_id).first()
    if conversation is not None and not visible(Conversation.objects).filter(pk=conversation.pk).exists():
        raise NotFound(CONVERSATION_NOT_FOUND)
    return conversation


def stored_history(conversation: Conversation, cap: int) -> tuple[list[dict[str, str]], int]:
    """Its system messages, then the newest `cap` others with text, oldest first; and how many older
    ones with text were not read."""
    messages = conversation.messages
    system = list(messages.filter(role=Role.SYSTEM).values("role", "content"))
    others = messages.exclude(role=Role.SYSTEM).exclude(content="")
    newest = list(others.order_by("-id").values("role", "content")[:cap]) if cap else []
    older = others.count() - len(newest) if len(newest) == cap else 0
    return system + list(reversed(newest)), older
