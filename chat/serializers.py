"""The chat API's input (a turn, a rename, paging) and output (answers, conversations) shapes."""

from __future__ import annotations

from rest_framework import serializers

from chat.config import chat_settings
from chat.models import MODEL_NAME_LENGTH, TITLE_LENGTH, Message
from codegen_site.core.serializers import OptionalUUIDField, StrictCharField


class HistoryItemSerializer(serializers.Serializer):
    # No "system": the system prompt is the server's ([chat] system_prompt), never a client's.
    role = serializers.ChoiceField(choices=[Message.Role.USER, Message.Role.ASSISTANT])
    content = StrictCharField(allow_blank=True, trim_whitespace=False)


class ChatRequestSerializer(serializers.Serializer):
    message = StrictCharField(trim_whitespace=False, help_text="The user message")
    history = HistoryItemSerializer(many=True, required=False)
    conversation_id = OptionalUUIDField(help_text="Conversation to continue; a new one when absent")
    # Blank: the model the active provider's table picks for the message.
    model = StrictCharField(required=False, allow_blank=True, max_length=MODEL_NAME_LENGTH,
                            help_text="A model of the active provider (see /models) for this turn")

    def validate_message(self, value: str) -> str:
        limit = chat_settings().max_message_chars
        if len(value) > limit:
            raise serializers.ValidationError(f"Ensure this field has no more than {limit} characters.")
        return value

    def validate_history(self, value: list) -> list:
        limit = chat_settings().max_history_items
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


class SourceSerializer(serializers.Serializer):
    path = serializers.CharField()
    start_line = serializers.IntegerField()
    end_line = serializers.IntegerField()
    symbol = serializers.CharField(allow_null=True)


class ContextSerializer(serializers.Serializer):
    """What the model's context window held for the turn, and what was left out to fit it."""

    window = serializers.IntegerField(help_text="The model's context window (tokens)")
    prompt_tokens = serializers.IntegerField(help_text="Tokens of the prompt sent")
    answer_tokens = serializers.IntegerField(help_text="Tokens kept free for the answer (its max_tokens)")
    history_left_out = serializers.IntegerField(
        help_text="Earlier messages of the conversation not sent (the newest that fit were)")
    chunks_left_out = serializers.IntegerField(
        help_text="@codebase chunks found but not sent (the best that fit, whole, were)")
    exact = serializers.BooleanField(
        help_text="Counted with the model's own tokenizer (the bundled model); else a calibrated estimate that errs high")


class ChatResponseSerializer(serializers.Serializer):
    content = serializers.CharField()
    thinking = serializers.CharField(help_text="Reasoning, when the model produced any")
    model = serializers.CharField()
    conversation_id = serializers.UUIDField()
    sources = SourceSerializer(many=True, help_text="Code search chunks given to the model (a message starting "
                                                    "with @codebase); the answer cites them as path:line")
    context = ContextSerializer(help_text="The context window and what was left out to fit it")


class ConversationFieldsSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    title = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ConversationUpdateSerializer(serializers.Serializer):
    """PATCH semantics: what is left out stays as it is."""

    title = StrictCharField(max_length=TITLE_LENGTH, required=False)


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

