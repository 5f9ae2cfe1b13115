"""The improve app's request serializers (validation) and output serializers (every response
body, the live feed's events and a queued task's stored result)."""

from __future__ import annotations

import re

from rest_framework import serializers

from codegen_site.core.serializers import StrictBooleanField, StrictCharField, StrictIntegerField
from improve.analysis.review import EFFORTS, ISSUE_TYPES, SEVERITIES
from improve.config import change_settings, run_settings
from improve.models import AnalysisReport, ImprovementRun, ImprovementTask, ProjectChange
from improve.selectors import report_page_size
from improve.services.cluster import BROKERS, MODES


class AnalyzeRequestSerializer(serializers.Serializer):
    path = StrictCharField(default=".", max_length=4096,
                           help_text="File or directory, relative to the workspace root")
    include_linter = StrictBooleanField(default=True, help_text="Run ruff over the files")
    use_llm = StrictBooleanField(default=False, help_text="Also ask the LLM about the most flagged files")
    maintainability = StrictBooleanField(
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
    """The filters are optional, but one given blank (?type=) is a 400, as the schema's enum says:
    DRF would read it as not given."""

    limit = serializers.IntegerField(min_value=1, max_value=10000, required=False,
                                     help_text="Issues per page (default: improve.report_page_size)")
    offset = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    type = serializers.ChoiceField(choices=ISSUE_TYPES, required=False)
    severity = serializers.ChoiceField(choices=SEVERITIES, required=False)

    def validate(self, attrs):
        blank = [name for name in self.fields if self.initial_data.get(name) == ""]
        if blank:
            raise serializers.ValidationError({name: ["This field may not be blank."] for name in blank})
        return {**attrs, "limit": attrs.get("limit") or report_page_size()}


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
# --- improvement runs and the queue -------------------------------------------------------

MAX_ISSUE_CHARS = 20_000


class ImproveIssueSerializer(serializers.Serializer):
    message = StrictCharField(max_length=MAX_ISSUE_CHARS)
    severity = serializers.ChoiceField(choices=["low", "medium", "high", "critical"], required=False,
                                       default="medium")
    issue_type = StrictCharField(max_length=64, required=False, default="general")
    line = StrictIntegerField(min_value=1, required=False, allow_null=True)


class ImproveRunRequestSerializer(serializers.Serializer):
    file_path = StrictCharField(max_length=4096)
    issue = ImproveIssueSerializer()
    auto_write = StrictBooleanField(required=False, default=True)
    max_retries = StrictIntegerField(required=False, min_value=0)

    def validate_max_retries(self, value):
        limit = run_settings().max_retries_limit
        if value > limit:
            raise serializers.ValidationError(f"At most {limit} (improve_run.max_retries_limit).")
        return value


class BlankAsNullCharField(serializers.CharField):
    """Text a row keeps as "" when there is none, answered as null."""

    def to_representation(self, value):
        return super().to_representation(value) if value else None


class ProgressField(serializers.FloatField):
    def to_representation(self, value):
        return round(super().to_representation(value), 3)


# The result of one improvement run (also a queued task's stored `result`). Classes that appear in
# the schema carry comments, not docstrings: a docstring would become the component's description.
class ImproveRunResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    file_path = serializers.CharField()
    backup_path = serializers.CharField(allow_null=True, help_text="Backup of the replaced content (when written)")
    validation_output = serializers.CharField(allow_blank=True)
    error = serializers.CharField(allow_null=True)
    retries = serializers.IntegerField(help_text="Attempts after the first")
    run_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=ImprovementRun.Status.values)
    written = serializers.BooleanField()
    diff = serializers.CharField(allow_blank=True, help_text="Unified diff of the proposal against the file as read")
    proposed_content = serializers.CharField(allow_null=True, help_text="The proposal, while not written")
    attempts = serializers.IntegerField()
    change_id = serializers.UUIDField(allow_null=True, required=False,
                                      help_text="Once applied by POST /improve/apply: the one-file project change it "
                                                "was written as (undo: POST /improve/change/{id}/undo)")
    commit = serializers.CharField(allow_null=True, required=False,
                                   help_text="git: the commit that carries it on the user's branch")
    git_reason = serializers.CharField(allow_null=True, required=False,
                                       help_text="Why the apply was a write with a backup and not a commit")


class ImprovementRunResultSerializer(ImproveRunResponseSerializer):
    """ImproveRunResponse read from an ImprovementRun row."""

    success = serializers.BooleanField(source="succeeded")
    backup_path = BlankAsNullCharField(allow_null=True)
    error = BlankAsNullCharField(allow_null=True)
    run_id = serializers.UUIDField(source="pk")
    proposed_content = serializers.CharField(source="unwritten_proposal", allow_null=True)
    attempts = serializers.IntegerField(source="attempt_count")
    change_id = serializers.UUIDField(allow_null=True)
    commit = serializers.SerializerMethodField()
    git_reason = serializers.SerializerMethodField()

    def get_commit(self, run) -> str | None:
        # the change is read only for an applied run (a stream's runs have none: no query there)
        return (run.change.applied_commit or None) if run.change_id else None

    def get_git_reason(self, run) -> str | None:
        return (run.change.evidence.get("git_reason") or None) if run.change_id else None


class ImproveApplyRequestSerializer(serializers.Serializer):
    run_id = serializers.UUIDField()


class QueueAddRequestSerializer(ImproveRunRequestSerializer):
    pass


class QueueAddResponseSerializer(serializers.Serializer):
    task_id = serializers.UUIDField(source="pk")
    status = serializers.CharField()


# One ImprovementTask row.
class QueueTaskSerializer(serializers.Serializer):
    task_id = serializers.UUIDField(source="pk")
    file_path = serializers.CharField()
    issue = serializers.DictField()
    options = serializers.DictField()
    status = serializers.ChoiceField(choices=ImprovementTask.Status.values)
    step = serializers.CharField(allow_blank=True)
    progress = ProgressField(min_value=0, max_value=1)
    attempts = serializers.IntegerField()
    result = ImproveRunResponseSerializer(allow_null=True)
    error = BlankAsNullCharField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()


class QueueWorkersSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=MODES,
                                   help_text="managed: the server starts one qcluster; external: they run on their own")
    broker = serializers.ChoiceField(choices=BROKERS)
    cluster_pid = serializers.IntegerField(allow_null=True)


class ReconciliationSerializer(serializers.Serializer):
    at = serializers.DateTimeField(help_text="When the last round ran (any server or queue worker)")
    recovered = serializers.IntegerField(help_text="Running tasks whose lease ran out, put back or failed")
    resent = serializers.IntegerField(help_text="Pending tasks whose broker message was gone, sent again")
    interrupted = serializers.IntegerField(help_text="Runs left running by a dead attempt, ended interrupted")


class QueueStatusSerializer(serializers.Serializer):
    running = serializers.BooleanField(help_text="Workers may take tasks (after start, until stop)")
    total_tasks = serializers.IntegerField()
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()
    pending = serializers.IntegerField()
    in_progress = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    current_task = QueueTaskSerializer(allow_null=True)
    tasks = QueueTaskSerializer(many=True)
    workers = QueueWorkersSerializer()
    reconciliation = ReconciliationSerializer(
        allow_null=True, help_text="The last round of the queue's reconciliation (null before the first)")


class QueueSummarySerializer(QueueStatusSerializer):
    """The status without its task list: the live feed's `status` event."""

    tasks = None
    reconciliation = None


class QueueStartSerializer(serializers.Serializer):
    running = serializers.BooleanField()
    enqueued = serializers.IntegerField(help_text="Pending tasks handed to the workers")
    workers = QueueWorkersSerializer()


class QueueStopSerializer(serializers.Serializer):
    running = serializers.BooleanField()
    in_progress = serializers.IntegerField(help_text="Tasks still finishing")


class QueueClearSerializer(serializers.Serializer):
    cleared = serializers.IntegerField()


# --- project changes (POST /improve/change) ---------------------------------------------------

HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def hunks(diff: str) -> list[dict]:
    """A unified diff's hunks: where each starts and ends in the old and new file, and its lines."""
    found: list[dict] = []
    for line in diff.splitlines():
        match = HUNK.match(line)
        if match:
            old_start, old_lines, new_start, new_lines = match.groups()
            found.append({"header": line, "old_start": int(old_start), "old_lines": int(old_lines or 1),
                          "new_start": int(new_start), "new_lines": int(new_lines or 1), "lines": []})
        elif found and not line.startswith(("--- ", "+++ ")):
            found[-1]["lines"].append(line)
    return found


class ChangeRequestSerializer(serializers.Serializer):
    instruction = StrictCharField(max_length=20000, help_text="What to change, in words")
    paths = serializers.ListField(child=StrictCharField(max_length=4096), required=False, default=list,
                                  max_length=100, help_text="Files to read and change first (workspace paths)")
    auto_apply = StrictBooleanField(required=False, default=False,
                                    help_text="Apply the proven change at once (else POST .../apply later)")
    max_repairs = StrictIntegerField(required=False, min_value=0,
                                     help_text="Repairs after the first attempt (improve_change.max_repairs)")

    def validate_instruction(self, value):
        if not value.strip():
            raise serializers.ValidationError("The instruction is empty.")
        return value

    def validate_max_repairs(self, value):
        limit = change_settings().max_repairs_limit
        if value > limit:
            raise serializers.ValidationError(f"At most {limit} (improve_change.max_repairs_limit).")
        return value


class ChangeApplyRequestSerializer(serializers.Serializer):
    files = serializers.ListField(child=StrictCharField(max_length=4096), required=False, default=list,
                                  help_text="Apply only these files of the change (all when empty)")
    hunks = serializers.DictField(child=serializers.ListField(child=StrictIntegerField(min_value=0), min_length=1,
                                                              max_length=10000),
                                  required=False, default=dict,
                                  help_text="Apply only these hunks (0-based, in the order of the file's `hunks`) "
                                            "of a file: {path: [index, ...]}; a file not named here is applied "
                                            "whole")
    edits = serializers.DictField(child=StrictCharField(allow_blank=True, trim_whitespace=False), required=False,
                                  default=dict,
                                  help_text="The user's own content for files of the change, edited before applying: "
                                            "{path: content}, written instead of the proposal (not with `hunks` for "
                                            "the same file). The tests are not run again: those files are marked "
                                            "`edited` and listed in `evidence.edited_by_user`; a Python file that "
                                            "does not parse is a 400")


class ChangeHunkSerializer(serializers.Serializer):
    header = serializers.CharField()
    old_start = serializers.IntegerField()
    old_lines = serializers.IntegerField()
    new_start = serializers.IntegerField()
    new_lines = serializers.IntegerField()
    lines = serializers.ListField(child=serializers.CharField(allow_blank=True))


class ChangeFileSerializer(serializers.Serializer):
    path = serializers.CharField()
    status = serializers.ChoiceField(choices=["added", "modified"])
    format = serializers.ChoiceField(choices=["whole", "blocks"], help_text="How the model gave the edit")
    diff = serializers.CharField(allow_blank=True)
    hunks = serializers.SerializerMethodField()
    uncommitted = serializers.BooleanField(required=False, help_text="git: the file had uncommitted edits when "
                                           "the change was made (apply is refused until they are committed)")
    applied_hunks = serializers.ListField(child=serializers.IntegerField(), required=False,
                                          help_text="When only some hunks were applied: their indexes")
    proposed = serializers.CharField(allow_blank=True, help_text="The file's whole proposed content (to edit it "
                                     "before applying)")
    edited = serializers.BooleanField(required=False, help_text="Applied with the user's own edit of the proposal "
                                      "(not tested again)")

    def get_hunks(self, item) -> list[dict]:
        return ChangeHunkSerializer(hunks(item["diff"]), many=True).data


class ChangeGitSerializer(serializers.Serializer):
    branch = serializers.CharField(allow_blank=True, help_text="codegen/<id>, the change's own branch")
    commit = serializers.CharField(allow_blank=True)
    base_commit = serializers.CharField(allow_blank=True)
    applied_branch = serializers.CharField(allow_blank=True)
    applied_commit = serializers.CharField(allow_blank=True)
    undo_commit = serializers.CharField(allow_blank=True)


class ProjectChangeSerializer(serializers.Serializer):
    change_id = serializers.UUIDField(source="pk")
    state = serializers.ChoiceField(choices=ProjectChange.State.values)
    success = serializers.SerializerMethodField()
    instruction = serializers.CharField()
    paths = serializers.ListField(child=serializers.CharField())
    files = ChangeFileSerializer(many=True)
    applied_files = serializers.ListField(child=serializers.CharField())
    diff = serializers.CharField(allow_blank=True)
    evidence = serializers.DictField(help_text="context, attempts (each with its validation and per-test "
                                     "outcomes before and after), tests, ruff, timings (seconds)")
    error = BlankAsNullCharField(allow_null=True)
    model = serializers.CharField(allow_blank=True)
    git = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    applied_at = serializers.DateTimeField(allow_null=True)
    undone_at = serializers.DateTimeField(allow_null=True)

    def get_success(self, change) -> bool:
        return change.state in (ProjectChange.State.PROPOSED, ProjectChange.State.APPLIED,
                                ProjectChange.State.UNDONE)

    def get_git(self, change) -> dict | None:
        return ChangeGitSerializer(change).data if change.git else None


class ChangeQueueRequestSerializer(ChangeRequestSerializer):
    pass


class ChangeListQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=50)
    offset = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)


class ChangeSummarySerializer(serializers.Serializer):
    """A project change in the history (GET /improve/changes): no diffs, no evidence."""

    change_id = serializers.UUIDField(source="pk")
    state = serializers.ChoiceField(choices=ProjectChange.State.values)
    instruction = serializers.CharField()
    files = serializers.SerializerMethodField()
    applied_files = serializers.ListField(child=serializers.CharField())
    error = BlankAsNullCharField(allow_null=True)
    git = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    applied_at = serializers.DateTimeField(allow_null=True)
    undone_at = serializers.DateTimeField(allow_null=True)

    def get_files(self, change) -> list[str]:
        return [item["path"] for item in change.files]
