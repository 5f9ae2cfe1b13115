"""/workflow (sync and SSE) and /code/run: validate, call a service, shape the reply."""

from __future__ import annotations

from contextlib import aclosing
from typing import AsyncIterator

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response

from codegen_site.core.apiview import AsyncAPIView
from codegen_site.core.schema import event_stream
from codegen_site.core.serializers import ErrorSerializer, StreamFlagSerializer
from codegen_site.core.sse import sse_response, sse_stream
from codegen_site.core.throttling import ApiRateThrottle, LLMRateThrottle
from workflow import services
from workflow.serializers import (
    CodeRunRequestSerializer,
    CodeRunResponseSerializer,
    WorkflowRequestSerializer,
    WorkflowResponseSerializer,
)

SSE_DESCRIPTION = (
    "With `?stream=true` the reply is `text/event-stream`. Events: `plan`, `plan_thinking`, `tests`, "
    "`tests_thinking`, `code`, `code_thinking` (chunks: {\"content\": ...}; code chunks carry `attempt`), "
    "`validation` ({passed, output, attempt, candidate, run, tests_passed, tests_failed}) after each sandbox run, "
    "`repair` ({attempt, max_attempts, reason, ...}) when a repair round starts, `content`/`thinking` chunks for "
    "a chat answer, `done` (the same payload as the JSON reply: `verdict`, `evidence`, `chosen_run` naming the "
    "kept program's `validation` event) and `error` ({detail, status})."
)

STREAM_EVENTS = ["plan", "plan_thinking", "tests", "tests_thinking", "code", "code_thinking", "validation", "repair",
                 "content", "thinking", "done", "error"]


async def _answered(events: AsyncIterator[tuple[str, object]]) -> AsyncIterator[tuple[str, object]]:
    """The run's events with the last, `done`, as the JSON reply's payload."""
    async with aclosing(events) as source:
        async for name, data in source:
            yield name, WorkflowResponseSerializer(data).data if name == "done" else data


class WorkflowView(AsyncAPIView):
    throttle_classes = [ApiRateThrottle, LLMRateThrottle]
    streams = True  # with ?stream=true (codegen_site.core.apiview)

    @extend_schema(
        request=WorkflowRequestSerializer,
        parameters=[StreamFlagSerializer],
        responses={(200, "application/json"): OpenApiResponse(WorkflowResponseSerializer, description=SSE_DESCRIPTION),
                   (200, "text/event-stream"): event_stream(STREAM_EVENTS, SSE_DESCRIPTION),
                   400: ErrorSerializer, 429: ErrorSerializer, 502: ErrorSerializer, 503: ErrorSerializer},
        summary="TDD workflow: plan → research → tests → code → validate → repair",
    )
    async def post(self, request):
        query = StreamFlagSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        serializer = WorkflowRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        task, session_id = serializer.validated_data["task"], serializer.validated_data.get("session_id")
        if query.validated_data["stream"]:
            return sse_response(sse_stream(_answered(services.workflow_events(task, session_id))))
        return Response(WorkflowResponseSerializer(await services.run_workflow(task, session_id)).data)


class CodeRunView(AsyncAPIView):
    @extend_schema(
        request=CodeRunRequestSerializer,
        responses={200: CodeRunResponseSerializer, 400: ErrorSerializer, 429: ErrorSerializer},
        summary="Run Python code (and optional pytest tests) in the sandbox",
    )
    async def post(self, request):
        serializer = CodeRunRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = await services.run_code(data["code"], data.get("tests"), data["timeout"])
        return Response(CodeRunResponseSerializer(result).data)
