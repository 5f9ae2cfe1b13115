from django.contrib import admin, messages

from improve import queue
from improve.models import ImprovementRun, ImprovementTask

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
                       "backup_path", "model", "created_at", "finished_at")

    def has_add_permission(self, request):
        return False
