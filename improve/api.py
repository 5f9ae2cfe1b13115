"""Thin views for project analysis: validate, call improve.analysis.service, serialize."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from codegen_site.core.apiview import AsyncAPIView
from codegen_site.core.errors import NotFound
from codegen_site.core.serializers import ErrorSerializer
from codegen_site.core.throttling import LLMRateThrottle
from improve.analysis import service
from improve.serializers import (
    AnalyzeRequestSerializer,
    AnalyzeResponseSerializer,
    ReportDetailSerializer,
    ReportIssuesQuerySerializer,
    ReportListQuerySerializer,
    ReportSummarySerializer,
)

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
        return Response(await service.analyze(**serializer.validated_data))


class ReportListView(APIView):
    @extend_schema(parameters=[ReportListQuerySerializer],
                   responses={200: ReportSummarySerializer(many=True), 400: ErrorSerializer},
                   summary="Stored analyses, newest first (without their issues)")
    def get(self, request):
        query = ReportListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        reports = service.list_reports(query.validated_data["limit"], query.validated_data["offset"])
        return Response(ReportSummarySerializer(reports, many=True).data)


class ReportDetailView(APIView):
    @extend_schema(parameters=[ReportIssuesQuerySerializer],
                   responses={200: ReportDetailSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
                   summary="One stored analysis with a page of its issues")
    def get(self, request, report_id: int):
        query = ReportIssuesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        report = service.get_report(report_id)
        if report is None:
            raise NotFound("Report not found")
        page = query.validated_data
        matching, issues = service.report_issues(report, offset=page["offset"], limit=page["limit"],
                                                 kind=page.get("type"), severity=page.get("severity"))
        serializer = ReportDetailSerializer({**{name: getattr(report, name) for name in (
            "id", "path", "options", "totals", "issue_count", "severity_counts", "stats", "duration", "created_at",
            "suggestions", "llm")}, "issues": issues, "matching_issues": matching, "offset": page["offset"],
            "limit": page["limit"]})
        return Response(serializer.data)
