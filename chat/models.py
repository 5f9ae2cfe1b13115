"""Conversations and their messages, as sent to and received from the LLM."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

TITLE_LENGTH = 120
MODEL_NAME_LENGTH = 200


def title_from(text: str) -> str:
    """A one-line title from the first message: whitespace collapsed, cut at a word."""
    line = " ".join(text.split())
    if len(line) <= TITLE_LENGTH:
        return line
    cut = line[: TITLE_LENGTH - 1].rsplit(" ", 1)[0] or line[: TITLE_LENGTH - 1]
    return cut + "…"


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=TITLE_LENGTH, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)
    # The user it belongs to in multi-user mode (codegen_site.core.users); null in the single-user
    # mode and for older rows, which then only admins see.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title or str(self.id)


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system"
        USER = "user"
        ASSISTANT = "assistant"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    thinking = models.TextField(blank=True)
    # The model that answered (assistant messages only).
    model = models.CharField(max_length=MODEL_NAME_LENGTH, blank=True)
    # False when the answer was cut off: LLM error mid-way or the client hung up.
    finished = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Insertion order: ids grow monotonically, timestamps may tie.
        ordering = ["conversation", "id"]
        indexes = [models.Index(fields=["conversation", "id"])]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"
