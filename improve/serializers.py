from __future__ import annotations

from rest_framework import serializers

from improve.analysis.review import EFFORTS, ISSUE_TYPES, SEVERITIES
from improve.analysis.service import analysis_page_size
from improve.models import AnalysisReport


class StrictTextField(serializers.CharField):
    """A JSON string only: numbers and objects are refused, not coerced."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class AnalyzeRequestSerializer(serializers.Serializer):
    path = StrictTextField(default=".", max_length=4096,
                           help_text="File or directory, relative to the workspace root")
    include_linter = serializers.BooleanField(default=True, help_text="Run ruff over the files")
    use_llm = serializers.BooleanField(default=False, help_text="Also ask the LLM about the most flagged files")
    maintainability = serializers.BooleanField(
        default=False, help_text="Compute radon's maintainability index for the files that have issues")


class IssueSerializer(serializers.Serializer):
    file = serializers.CharField(help_text="Relative to the workspace root")
    line = serializers.IntegerField()
    type = serializers.ChoiceField(choices=ISSUE_TYPES)
    severity = serializers.ChoiceField(choices=SEVERITIES)
    message = serializers.CharField()
    suggestion = serializers.CharField()


class SuggestionSerializer(serializers.Serializer):
    priority = serializers.IntegerField(help_text="1 = fix first")
    title = serializers.CharField()
    description = serializers.CharField()
    estimated_effort = serializers.ChoiceField(choices=EFFORTS)


class TotalsSerializer(serializers.Serializer):
    total_files = serializers.IntegerField()
    total_lines = serializers.IntegerField()
    total_functions = serializers.IntegerField(help_text="Functions and methods, nested ones included")
    total_classes = serializers.IntegerField()
    avg_complexity = serializers.FloatField(help_text="Mean cyclomatic complexity over all functions")


class StatsSerializer(serializers.Serializer):
    files = serializers.IntegerField()
    analysed = serializers.IntegerField(help_text="Files whose checks ran in this request")
    cached = serializers.IntegerField(help_text="Files whose check results came from the cache")
    linted = serializers.IntegerField(help_text="Files ruff read in this request")
    lint_cached = serializers.IntegerField(help_text="Files whose lint results came from the cache")
    unreadable = serializers.IntegerField(help_text="Files not read (too large or unreadable)")
    workers = serializers.IntegerField(help_text="Processes that ran the checks (0: everything was cached)")
    linter = serializers.CharField(help_text='"ok", "off", or "failed: <reason>"')


class LLMSummarySerializer(serializers.Serializer):
    used = serializers.IntegerField(help_text="Files whose LLM answer was used")
    failed = serializers.IntegerField(help_text="Files whose answer did not parse or whose request failed")
    files = serializers.ListField(child=serializers.CharField())
    model = serializers.CharField()
    note = serializers.CharField()


class AnalyzeResponseSerializer(TotalsSerializer):
    issues = IssueSerializer(many=True)
    suggestions = SuggestionSerializer(many=True)
    report_id = serializers.IntegerField()
    duration = serializers.FloatField(help_text="Seconds")
    stats = StatsSerializer()
    llm = LLMSummarySerializer(allow_null=True, help_text="Null unless use_llm was asked for")


class ReportListQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=50)
    offset = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)


class ReportIssuesQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=10000, required=False,
                                     help_text="Issues per page (default: improve.report_page_size)")
    offset = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    type = serializers.ChoiceField(choices=ISSUE_TYPES, required=False)
    severity = serializers.ChoiceField(choices=SEVERITIES, required=False)

    def validate(self, attrs):
        return {**attrs, "limit": attrs.get("limit") or analysis_page_size()}


class ReportSummarySerializer(serializers.ModelSerializer):
    totals = TotalsSerializer()
    stats = StatsSerializer()

    class Meta:
        model = AnalysisReport
        fields = ("id", "path", "options", "totals", "issue_count", "severity_counts", "stats", "duration",
                  "created_at")


class ReportDetailSerializer(ReportSummarySerializer):
    suggestions = SuggestionSerializer(many=True)
    llm = LLMSummarySerializer(allow_null=True)
    issues = IssueSerializer(many=True, help_text="One page of the issues (offset, limit, type, severity)")
    matching_issues = serializers.IntegerField(help_text="Issues matching the filters, all pages")
    offset = serializers.IntegerField()
    limit = serializers.IntegerField()

    class Meta(ReportSummarySerializer.Meta):
        fields = ReportSummarySerializer.Meta.fields + ("suggestions", "llm", "issues", "matching_issues",
                                                        "offset", "limit")
