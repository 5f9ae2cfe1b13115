"""Thin views: validate the request with a serializer, call a service or a selector, answer
through an output serializer (streams too: each event's data goes through one)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from codegen_site.core.apiview import AsyncAPIView
from codegen_site.core.schema import event_stream
from codegen_site.core.serializers import ErrorSerializer, StreamFlagSerializer
from codegen_site.core.sse import sse_response, sse_stream
from codegen_site.core.throttling import ApiRateThrottle, LLMRateThrottle
from improve import selectors
from improve.serializers import (
    AnalyzeRequestSerializer,
    AnalyzeResponseSerializer,
    ChangeApplyRequestSerializer,
    ChangeListQuerySerializer,
    ChangeQueueRequestSerializer,
    ChangeRequestSerializer,
    ChangeSummarySerializer,
    ImproveApplyRequestSerializer,
    ImprovementRunResultSerializer,
    ImproveRunRequestSerializer,
    ImproveRunResponseSerializer,
    ProjectChangeSerializer,
    QueueAddRequestSerializer,
    QueueAddResponseSerializer,
    QueueClearSerializer,
    QueueStartSerializer,
    QueueStatusSerializer,
    QueueStopSerializer,
    QueueSummarySerializer,
    QueueTaskSerializer,
    ReportDetailSerializer,
    ReportIssuesQuerySerializer,
    ReportListQuerySerializer,
    ReportSummarySerializer,
)
from improve.services import analysis, change, change_apply, feed, improvement_apply, proposal, queue

ANALYZE_DESCRIPTION = (
    "Python files under `path` (a file or a directory; .gitignore, .venv, node_modules, .git and the "
    "product's data are skipped): radon complexity, size rules, syntax errors, duplicated blocks, and with "
    "`include_linter` ruff (pyflakes/bugbear → bug, bandit → security, perflint → performance, pycodestyle/"
    "isort → style). `use_llm` adds the LLM's review of the most flagged files; answers that do not parse are "
    "counted in `llm.failed`. Each file's result is cached by content: `stats` says how many files were "
    "analysed and how many came from the cache. Every run is stored (`report_id`)."
)


class AnalyzeView(AsyncAPIView):
    @extend_schema(request=AnalyzeRequestSerializer,
                   responses={200: AnalyzeResponseSerializer, 400: ErrorSerializer, 404: ErrorSerializer,
                              413: ErrorSerializer, 429: ErrorSerializer, 502: ErrorSerializer,
                              503: ErrorSerializer},
                   summary="Analyse a project's Python files: issues and ranked suggestions",
                   description=ANALYZE_DESCRIPTION)
    async def post(self, request):
        serializer = AnalyzeRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data["use_llm"]:
            # Only a review by the LLM counts against the LLM's rate limit.
            throttle = LLMRateThrottle()
            if not throttle.allow_request(request, self):
                self.throttled(request, throttle.wait())
        return Response(AnalyzeResponseSerializer(await analysis.analyze(**serializer.validated_data)).data)


class ReportListView(APIView):
    @extend_schema(parameters=[ReportListQuerySerializer],
                   responses={200: ReportSummarySerializer(many=True), 400: ErrorSerializer},
                   summary="Stored analyses, newest first (without their issues)")
    def get(self, request):
        query = ReportListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        reports = selectors.list_reports(query.validated_data["limit"], query.validated_data["offset"])
        return Response(ReportSummarySerializer(reports, many=True).data)


class ReportDetailView(APIView):
    @extend_schema(parameters=[ReportIssuesQuerySerializer],
                   responses={200: ReportDetailSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
                   summary="One stored analysis with a page of its issues")
    def get(self, request, report_id: int):
        query = ReportIssuesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page = query.validated_data
        report = selectors.report_page(report_id, offset=page["offset"], limit=page["limit"], kind=page.get("type"),
                                       severity=page.get("severity"))
        return Response(ReportDetailSerializer(report).data)

# --- improvement runs and the queue -------------------------------------------------------

RUN_DESCRIPTION = (
    "Ask the LLM for a new version of the file, validate it in the sandbox (it imports; the workspace tests "
    "covering the file pass as they did before), retry with the validation output up to `max_retries`, then "
    "write it with a backup (reason `improve`). `auto_write: false` writes nothing and returns "
    "`proposed_content` and `diff` for POST /improve/apply. A change that turns a passing test red is refused "
    "(`success: false`, the test named in `error`). With `?stream=true` the reply is `text/event-stream`: "
    "`step` ({step: read|generate|validate|retry|write, attempt}), `progress` while the model writes ({step: "
    "generate, attempt, tokens, thinking_tokens, chars}: the tokens so far, one event per group of tokens that "
    "arrives together), `validation` ({attempt, passed, output, broken_tests}), then `done` (the JSON reply) or "
    "`error` ({detail, status}). POST /improve/apply writes a proposal as a one-file project change: in a git "
    "workspace a commit on the user's branch (`commit`), undone with POST /improve/change/{change_id}/undo."
)
ERRORS = {400: ErrorSerializer, 404: ErrorSerializer, 409: ErrorSerializer, 429: ErrorSerializer,
          502: ErrorSerializer, 503: ErrorSerializer}


def _options(data: dict) -> dict:
    return {"auto_write": data["auto_write"], "max_retries": data.get("max_retries")}


async def _run_events(events):
    """The run's events with its `done` run answered as the JSON endpoint answers it."""
    async for event, data in events:
        yield event, ImprovementRunResultSerializer(data).data if event == "done" else data


async def _queue_feed(events):
    """The feed's tasks and summaries answered as GET /improve/queue/task/{id} and /status answer them."""
    async for event, data in events:
        yield event, QueueTaskSerializer(data).data if event == "task" else QueueSummarySerializer(data).data


class ImproveRunView(AsyncAPIView):
    throttle_classes = [ApiRateThrottle, LLMRateThrottle]
    streams = True  # with ?stream=true (codegen_site.core.apiview)

    @extend_schema(
        request=ImproveRunRequestSerializer,
        parameters=[StreamFlagSerializer],
        responses={(200, "application/json"): OpenApiResponse(ImproveRunResponseSerializer,
                                                               description=RUN_DESCRIPTION),
                   (200, "text/event-stream"): event_stream(["step", "progress", "validation", "done", "error"],
                                                                 RUN_DESCRIPTION),
                   **ERRORS},
        summary="Improve one file: propose, prove in the sandbox, retry, write with a backup",
    )
    async def post(self, request):
        query = StreamFlagSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        serializer = ImproveRunRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if query.validated_data["stream"]:
            return sse_response(sse_stream(_run_events(proposal.improvement_events(
                data["file_path"], dict(data["issue"]), **_options(data)))))
        run = await proposal.run_improvement(data["file_path"], dict(data["issue"]), **_options(data))
        return Response(ImprovementRunResultSerializer(run).data)


class ImproveApplyView(APIView):
    @extend_schema(request=ImproveApplyRequestSerializer,
                   responses={200: ImproveRunResponseSerializer, 400: ErrorSerializer, 404: ErrorSerializer,
                              409: ErrorSerializer},
                   summary="Write a proposal kept by auto_write=false: in a git workspace a commit on the user's "
                           "branch, else a write with a backup; undo: POST /improve/change/{change_id}/undo (409 "
                           "when the file changed since)")
    def post(self, request):
        serializer = ImproveApplyRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = improvement_apply.apply_proposal(serializer.validated_data["run_id"])
        return Response(ImprovementRunResultSerializer(run).data)


class QueueAddView(APIView):
    @extend_schema(request=QueueAddRequestSerializer,
                   responses={201: QueueAddResponseSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
                   summary="Queue an improvement (runs once the queue is started)")
    def post(self, request):
        serializer = QueueAddRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        task = queue.add_task(data["file_path"], dict(data["issue"]), _options(data))
        return Response(QueueAddResponseSerializer(task).data, status=201)


class QueueStatusView(APIView):
    @extend_schema(responses={200: QueueStatusSerializer},
                   summary="The queue: counts, the running task, recent tasks (in multi-user mode of the caller's "
                           "own tasks; an admin's: all)")
    def get(self, request):
        return Response(QueueStatusSerializer(selectors.queue_status()).data)


class QueueTaskView(APIView):
    @extend_schema(responses={200: QueueTaskSerializer, 404: ErrorSerializer}, summary="One queued task")
    def get(self, request, task_id):
        return Response(QueueTaskSerializer(selectors.get_task(task_id)).data)


class QueueStartView(APIView):
    @extend_schema(request=None, responses={200: QueueStartSerializer},
                   summary="Let workers take tasks (and start the queue's qcluster when the server manages it)")
    def post(self, request):
        return Response(QueueStartSerializer(queue.start()).data)


class QueueStopView(APIView):
    @extend_schema(request=None, responses={200: QueueStopSerializer},
                   summary="No new task starts; a running one finishes")
    def post(self, request):
        return Response(QueueStopSerializer(queue.stop()).data)


class QueueClearView(APIView):
    @extend_schema(request=None, responses={200: QueueClearSerializer},
                   summary="Remove finished tasks (completed, failed, cancelled)")
    def post(self, request):
        return Response(QueueClearSerializer({"cleared": queue.clear()}).data)


class QueueEventsView(AsyncAPIView):
    streams = True

    @extend_schema(responses={(200, "text/event-stream"): event_stream(["status", "task", "error"], (
        "text/event-stream: `status` (the counts, as GET /improve/queue/status without `tasks`) first and "
        "after every change, `task` (one task, as GET /improve/queue/task/{id}) for each task that changed; "
        "`error` ({detail, status}) if the stream fails."))},
        summary="Live task updates for the UI (server-sent events)")
    async def get(self, request):
        return sse_response(sse_stream(_queue_feed(feed.queue_events())))


# --- project changes ---------------------------------------------------------------------

CHANGE_DESCRIPTION = (
    "Change the project as `instruction` says, across several files: the context (the named `paths`, the "
    "files defining the names the instruction mentions, their imports and importers, within "
    "the model's context window; what did not fit is named in `evidence.left_out_files`), the model's edits (whole files for short files, search/replace blocks for "
    "long ones, applied tolerantly; a block that does not apply goes back to the model), proof in the sandbox "
    "(every changed module imports; the tests covering the changed modules and their importers, and the changed "
    "tests, run before and after; a test green before and red after, a new test that fails, or a new ruff "
    "error refuses the change), repairs up to `max_repairs`. Nothing is written: the result is `state: "
    "proposed` with each file's diff and hunks and the evidence (per-test outcomes before and after); in a "
    "git workspace also a commit on its own branch `codegen/<id>`. `auto_apply: true` applies it at once. "
    "A refused change (`state: refused`) writes nothing and leaves no branch. With `?stream=true` the reply "
    "is `text/event-stream`: `step` ({step: context|generate|apply|validate|repair|commit|apply_change, "
    "attempt}), `plan` ({change_id, context, left_out, symbols, git}), `edit` ({attempt, applied, path, format, "
    "status} or {attempt, applied: false, error}), `validation` ({attempt, passed, output, broken_tests, "
    "tests, ruff}), then `done` (the JSON reply) or `error` ({detail, status})."
)


async def _change_events(events):
    async for event, data in events:
        yield event, ProjectChangeSerializer(data).data if event == "done" else data


class ChangeView(AsyncAPIView):
    throttle_classes = [ApiRateThrottle, LLMRateThrottle]
    streams = True

    @extend_schema(
        request=ChangeRequestSerializer,
        parameters=[StreamFlagSerializer],
        responses={(200, "application/json"): OpenApiResponse(ProjectChangeSerializer,
                                                               description=CHANGE_DESCRIPTION),
                   (200, "text/event-stream"): event_stream(["step", "plan", "edit", "validation", "done", "error"],
                                                            CHANGE_DESCRIPTION),
                   **ERRORS},
        summary="Change several files from one instruction: proven by the project's tests, kept on a branch",
    )
    async def post(self, request):
        query = StreamFlagSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        serializer = ChangeRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        options = {"max_repairs": data.get("max_repairs"), "auto_apply": data["auto_apply"]}
        if query.validated_data["stream"]:
            return sse_response(sse_stream(_change_events(change.change_events(
                data["instruction"], data["paths"], **options))))
        result = await change.run_change(data["instruction"], data["paths"], **options)
        return Response(ProjectChangeSerializer(result).data)


class ChangeListView(APIView):
    @extend_schema(parameters=[ChangeListQuerySerializer],
                   responses={200: ChangeSummarySerializer(many=True), 400: ErrorSerializer},
                   summary="Project changes, newest first (without their diffs and evidence)")
    def get(self, request):
        query = ChangeListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        changes = selectors.list_changes(query.validated_data["limit"], query.validated_data["offset"])
        return Response(ChangeSummarySerializer(changes, many=True).data)


class ChangeDetailView(APIView):
    @extend_schema(responses={200: ProjectChangeSerializer, 404: ErrorSerializer}, summary="One project change")
    def get(self, request, change_id):
        return Response(ProjectChangeSerializer(change_apply.get_change(change_id)).data)


class ChangeApplyView(APIView):
    @extend_schema(request=ChangeApplyRequestSerializer,
                   responses={200: ProjectChangeSerializer, 400: ErrorSerializer, 404: ErrorSerializer,
                              409: ErrorSerializer},
                   summary="Apply a proposed change (or some of its files) onto the user's branch or files; "
                           "409 when a file changed since the proposal")
    def post(self, request, change_id):
        serializer = ChangeApplyRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = change_apply.apply_change(change_id, data["files"] or None, data["hunks"] or None,
                                           data["edits"] or None)
        return Response(ProjectChangeSerializer(result).data)


class ChangeUndoView(APIView):
    @extend_schema(request=None, responses={200: ProjectChangeSerializer, 404: ErrorSerializer,
                                            409: ErrorSerializer},
                   summary="Undo an applied change in one step (git: revert; else every backup); 409 when later "
                           "work depends on it")
    def post(self, request, change_id):
        return Response(ProjectChangeSerializer(change_apply.undo_change(change_id)).data)


class QueueChangeView(APIView):
    @extend_schema(request=ChangeQueueRequestSerializer,
                   responses={201: QueueAddResponseSerializer, 400: ErrorSerializer},
                   summary="Queue a project change (runs once the queue is started; the task's result is the change)")
    def post(self, request):
        serializer = ChangeQueueRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        task = queue.add_change_task(data["instruction"], data["paths"],
                                     {"max_repairs": data.get("max_repairs"), "auto_apply": data["auto_apply"]})
        return Response(QueueAddResponseSerializer(task).data, status=201)
