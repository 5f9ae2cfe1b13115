"""Thin views: validate with a serializer, call chat.services or chat.selectors, answer through
an output serializer (the streams through codegen_site.core.sse)."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import selectors, services
from chat.serializers import (
    ChatRequestSerializer,
    ChatResponseSerializer,
    ConversationFieldsSerializer,
    ConversationListQuerySerializer,
    ConversationSerializer,
    ConversationSummarySerializer,
    ConversationUpdateSerializer,
    StreamQuerySerializer,
)
from codegen_site.core.apiview import AsyncAPIView
from codegen_site.core.schema import event_stream
from codegen_site.core.serializers import ErrorSerializer
from codegen_site.core.sse import sse_response, sse_stream
from codegen_site.core.throttling import ApiRateThrottle, LLMRateThrottle

ERRORS = {400: ErrorSerializer, 413: ErrorSerializer, 429: ErrorSerializer, 502: ErrorSerializer,
          503: ErrorSerializer}

SSE_DESCRIPTION = (
    "text/event-stream. Events: `thinking` and `content` (JSON string chunks), then `done` "
    '({"conversation_id", "model", "sources", "context"}), or `error` ({"detail", "status", "conversation_id"}) '
    "when the LLM fails. `context` says what the model's window held and what was left out to fit it "
    '({"window", "prompt_tokens", "answer_tokens", "history_left_out", "chunks_left_out", "exact"}). '
    "A message that cannot fit the window is refused with 413 before the stream starts. "
    "The user message is stored before streaming; the answer when the stream ends (marked unfinished if cut off)."
)
SSE_RESPONSES = {(200, "text/event-stream"): event_stream(["thinking", "content", "done", "error"], SSE_DESCRIPTION),
                 400: ErrorSerializer, 413: ErrorSerializer, 429: ErrorSerializer}


class ChatView(AsyncAPIView):
    throttle_classes = [ApiRateThrottle, LLMRateThrottle]

    @extend_schema(request=ChatRequestSerializer, responses={200: ChatResponseSerializer, **ERRORS},
                   summary="Chat with the LLM (whole answer)",
                   description="With a stored `conversation_id` its messages are the history; `history` is used "
                               "only when the conversation is new. An unknown well-formed id starts a conversation "
                               "with that id. The history sent is the newest that fits the model's context window "
                               "(`context` says how many messages and @codebase chunks were left out); a message "
                               "that cannot fit it is 413, saying by how many tokens.")
    async def post(self, request):
        serializer = ChatRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(ChatResponseSerializer(await services.reply(**serializer.chat_arguments)).data)


class ChatStreamView(AsyncAPIView):
    throttle_classes = [ApiRateThrottle, LLMRateThrottle]
    streams = True  # codegen_site.core.apiview

    async def _stream(self, serializer):
        serializer.is_valid(raise_exception=True)
        arguments = serializer.chat_arguments
        # Only the check that the message fits the model's window comes first (a 413 is a JSON
        # answer); the work (storing, the LLM) runs as the body is sent: nothing is started for a
        # client that is gone before the response begins.
        budget = await services.turn_budget(arguments["message"], arguments["model"])
        return sse_response(sse_stream(services.turn_events(**arguments, budget=budget)))

    @extend_schema(parameters=[StreamQuerySerializer], responses=SSE_RESPONSES, summary="Chat with the LLM over server-sent events")
    async def get(self, request):
        return await self._stream(StreamQuerySerializer(data=request.query_params))

    @extend_schema(request=ChatRequestSerializer, responses=SSE_RESPONSES,
                   summary="Chat over server-sent events, taking the same JSON body as POST /chat")
    async def post(self, request):
        return await self._stream(ChatRequestSerializer(data=request.data))


class ConversationListView(APIView):
    @extend_schema(parameters=[ConversationListQuerySerializer],
                   responses={200: ConversationSummarySerializer(many=True), 400: ErrorSerializer},
                   summary="Stored conversations, newest first")
    def get(self, request):
        query = ConversationListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = selectors.list_conversations(query.validated_data["limit"], query.validated_data["offset"])
        return Response(ConversationSummarySerializer(rows, many=True).data)


class ConversationDetailView(APIView):
    @extend_schema(responses={200: ConversationSerializer, 404: ErrorSerializer},
                   summary="One conversation with its messages in order")
    def get(self, request, conversation_id: uuid.UUID):
        return Response(ConversationSerializer(selectors.get_conversation(conversation_id)).data)

    @extend_schema(request=ConversationUpdateSerializer,
                   responses={200: ConversationFieldsSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
                   summary="Rename a conversation (its title)")
    def patch(self, request, conversation_id: uuid.UUID):
        serializer = ConversationUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        conversation = services.update_conversation(conversation_id, **serializer.validated_data)
        return Response(ConversationFieldsSerializer(conversation).data)

    @extend_schema(responses={204: None, 404: ErrorSerializer}, summary="Delete a conversation and its messages")
    def delete(self, request, conversation_id: uuid.UUID):
        services.delete_conversation(conversation_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
