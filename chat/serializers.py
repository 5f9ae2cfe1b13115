from __future__ import annotations

from rest_framework import serializers

from chat.models import TITLE_LENGTH, Message
from codegen_site.core.config import get_config
from codegen_site.core.serializers import OptionalUUIDField

MODEL_NAME_LENGTH = 200


def chat_limits() -> dict:
    section = get_config()["chat"]
    return {"message": int(section["max_message_chars"]), "history": int(section["max_history_items"])}


class TextField(serializers.CharField):
    """A JSON string only: numbers, lists and objects are refused, not coerced."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class HistoryItemSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Message.Role.choices)
    content = TextField(allow_blank=True, trim_whitespace=False)


class ChatRequestSerializer(serializers.Serializer):
    message = TextField(trim_whitespace=False, allow_blank=True)
    history = HistoryItemSerializer(many=True, required=False)
    # Empty or null: a new conversation.
    conversation_id = OptionalUUIDField(required=False, allow_null=True)
    # Empty: the model the active provider's table picks for the message.
    model = TextField(required=False, allow_blank=True, max_length=MODEL_NAME_LENGTH,
                      help_text="A model of the active provider (see /models) for this turn")

    def validate_message(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("This field may not be blank.")
        limit = chat_limits()["message"]
        if len(value) > limit:
            raise serializers.ValidationError(f"Ensure this field has no more than {limit} characters.")
        return value

    def validate_history(self, value: list) -> list:
        limit = chat_limits()["history"]
        if len(value) > limit:
            raise serializers.ValidationError(f"Ensure this field has no more than {limit} items.")
        return [{"role": item["role"], "content": item["content"]} for item in value]

    @property
    def chat_arguments(self) -> dict:
        data = self.validated_data
        return {"message": data["message"], "history": data.get("history") or [],
                "conversation_id": data.get("conversation_id"), "model": data.get("model") or None}


class StreamQuerySerializer(ChatRequestSerializer):
    """GET /chat/stream takes the message and conversation id as query parameters."""

    history = None


class ChatResponseSerializer(serializers.Serializer):
    content = serializers.CharField()
    thinking = serializers.CharField(help_text="Reasoning, when the model produced any")
    model = serializers.CharField()
    conversation_id = serializers.UUIDField()


class ConversationFieldsSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    title = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ConversationRenameSerializer(serializers.Serializer):
    title = TextField(max_length=TITLE_LENGTH)


class ConversationSummarySerializer(ConversationFieldsSerializer):
    message_count = serializers.IntegerField()


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Message.Role.choices)
    content = serializers.CharField()
    thinking = serializers.CharField()
    model = serializers.CharField()
    finished = serializers.BooleanField(help_text="False when the answer was cut off")
    created_at = serializers.DateTimeField()


class ConversationSerializer(ConversationFieldsSerializer):
    messages = MessageSerializer(many=True)


class ConversationListQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=100)
    # Bounded: the database rejects offsets past a 64-bit integer.
    offset = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)

