import json

from django.contrib import admin, messages
from django.utils.html import format_html

from improve.models import AnalysisReport, FileAnalysis, ImprovementRun, ImprovementTask, ProjectChange
from improve.services import queue


@admin.register(AnalysisReport)
class AnalysisReportAdmin(admin.ModelAdmin):
    list_display = ("created_at", "path", "issue_count", "severity_summary", "files", "duration", "cached_files")
    list_filter = ("created_at",)
    search_fields = ("path",)
    date_hierarchy = "created_at"
    exclude = ("issues", "suggestions", "totals", "stats", "options", "llm", "severity_counts")
    readonly_fields = ("path", "created_at", "duration", "issue_count", "pretty_options", "pretty_totals",
                       "pretty_stats", "pretty_llm", "pretty_suggestions", "issue_table")
    list_per_page = 50

    def get_queryset(self, request):
        # The issue list can be large; only the detail page reads it.
        return super().get_queryset(request).defer("issues")

    @admin.display(description="severities")
    def severity_summary(self, report):
        counts = report.severity_counts or {}
        return ", ".join(f"{counts[name]} {name}" for name in ("critical", "high", "medium", "low") if name in counts)

    @admin.display(description="files")
    def files(self, report):
        return (report.totals or {}).get("total_files")

    @admin.display(description="from cache")
    def cached_files(self, report):
        return (report.stats or {}).get("cached")

    def _pretty(self, value):
        return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))

    @admin.display(description="options")
    def pretty_options(self, report):
        return self._pretty(report.options)

    @admin.display(description="totals")
    def pretty_totals(self, report):
        return self._pretty(report.totals)

    @admin.display(description="stats")
    def pretty_stats(self, report):
        return self._pretty(report.stats)

    @admin.display(description="LLM")
    def pretty_llm(self, report):
        return self._pretty(report.llm)

    @admin.display(description="suggestions")
    def pretty_suggestions(self, report):
        return self._pretty(report.suggestions)

    @admin.display(description="issues (first 500)")
    def issue_table(self, report):
        lines = [f"{i['severity']:<8} {i['type']:<11} {i['file']}:{i['line']}  {i['message']}"
                 for i in report.issues[:500]]
        return format_html("<pre>{}</pre>", "\n".join(lines))

    def has_add_permission(self, request):
        return False


@admin.register(FileAnalysis)
class FileAnalysisAdmin(admin.ModelAdmin):
    list_display = ("key", "created_at")
    date_hierarchy = "created_at"
    readonly_fields = ("key", "result", "created_at")
# --- improvement runs and the queue -------------------------------------------------------


@admin.register(ImprovementTask)
class ImprovementTaskAdmin(admin.ModelAdmin):
    list_display = ("created_at", "file_path", "status", "step", "progress", "attempts", "worker", "finished_at")
    list_filter = ("status", "created_at")
    search_fields = ("file_path", "error")
    readonly_fields = ("id", "file_path", "issue", "options", "status", "step", "progress", "attempts", "result",
                       "run", "error", "worker", "lease_until", "created_at", "started_at", "finished_at",
                       "updated_at")
    actions = ["requeue_tasks", "cancel_tasks"]

    @admin.action(description="Requeue (finished tasks back to pending)")
    def requeue_tasks(self, request, queryset):
        count = queue.requeue(queryset)
        self.message_user(request, f"{count} task(s) back to pending.", messages.SUCCESS)

    @admin.action(description="Cancel (pending tasks; a running one finishes)")
    def cancel_tasks(self, request, queryset):
        count = queue.cancel(queryset)
        self.message_user(request, f"{count} pending task(s) cancelled.", messages.SUCCESS)

    def has_add_permission(self, request):
        return False  # tasks come from POST /improve/queue/add


@admin.register(ImprovementRun)
class ImprovementRunAdmin(admin.ModelAdmin):
    list_display = ("created_at", "file_path", "status", "retries", "model", "backup_path")
    list_filter = ("status", "created_at")
    search_fields = ("file_path", "error", "validation_output")
    readonly_fields = ("id", "file_path", "issue", "auto_write", "max_retries", "status", "original_sha256",
                       "proposed_content", "diff", "attempts", "retries", "validation_output", "error",
                       "backup_path", "change", "model", "created_at", "finished_at")

    def has_add_permission(self, request):
        return False


@admin.register(ProjectChange)
class ProjectChangeAdmin(admin.ModelAdmin):
    list_display = ("instruction", "state", "branch", "applied_branch", "created_at")
    list_filter = ("state", "git")
    search_fields = ("instruction", "branch")
    readonly_fields = ("id", "created_at", "finished_at", "applied_at", "undone_at")
