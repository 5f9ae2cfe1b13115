import json
import uuid

from django.contrib import admin
from django.utils.html import format_html

from workflow.models import WorkflowRun


@admin.register(WorkflowRun)
class WorkflowRunAdmin(admin.ModelAdmin):
    list_display = ("created_at", "short_task", "intent_kind", "status", "passed", "attempts", "total_seconds",
                    "session_id")
    list_filter = ("status", "intent_kind", "passed", "created_at")
    search_fields = ("task", "code", "plan")
    date_hierarchy = "created_at"
    readonly_fields = ("session_id", "task", "intent_kind", "status", "passed", "attempts", "created_at",
                       "finished_at", "content", "plan", "tests", "code", "output", "error", "report", "models_used",
                       "timings_table")
    exclude = ("timings",)
    list_per_page = 50

    @admin.display(description="task")
    def short_task(self, run):
        return run.task if len(run.task) <= 80 else run.task[:77] + "..."

    @admin.display(description="seconds")
    def total_seconds(self, run):
        return (run.timings or {}).get("total")

    @admin.display(description="timings (s)")
    def timings_table(self, run):
        return format_html("<pre>{}</pre>", json.dumps(run.timings or {}, indent=2))

    def get_search_results(self, request, queryset, search_term):
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        try:  # a pasted session id finds the whole session
            session = uuid.UUID(search_term.strip())
        except ValueError:
            return queryset, may_have_duplicates
        return queryset | self.model.objects.filter(session_id=session), may_have_duplicates

    def has_add_permission(self, request):
        return False  # runs are created by the API only
