"""Changes to stored conversations: rename, delete. NotFound (404) for an unknown id."""

from __future__ import annotations

import uuid

from django.utils import timezone

from chat import selectors
from chat.models import Conversation
from chat.selectors import CONVERSATION_NOT_FOUND
from codegen_site.core.errors import NotFound
from codegen_site.core.users import visible


def update_conversation(conversation_id: uuid.UUID, title: str | None = None) -> dict:
    """Give a conversation a new title (None: leave it); its fields after the change."""
    if title is not None:
        visible(Conversation.objects).filter(id=conversation_id).update(title=title, updated_at=timezone.now())
    return selectors.conversation_fields(conversation_id)


def delete_conversation(conversation_id: uuid.UUID) -> None:
    deleted, _ = visible(Conversation.objects).filter(id=conversation_id).delete()
    if not deleted:
        raise NotFound(CONVERSATION_NOT_FOUND)
