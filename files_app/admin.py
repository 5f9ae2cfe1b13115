from django.contrib import admin
from django.template.defaultfilters import filesizeformat

from files_app import selectors
from files_app.models import Backup


@admin.register(Backup)
class BackupAdmin(admin.ModelAdmin):
    list_display = ("path", "reason", "size_shown", "short_sha", "created_at")
    list_filter = ("reason", "created_at")
    search_fields = ("path", "sha256")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    readonly_fields = ("path", "stored_path", "sha256", "size", "reason", "created_at")

    def has_add_permission(self, request):
        return False  # backups are taken by writes, never typed in

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(ordering="size", description="size")
    def size_shown(self, backup):
        return filesizeformat(backup.size)

    @admin.display(description="sha256")
    def short_sha(self, backup):
        return backup.sha256[:12]

    def changelist_view(self, request, extra_context=None):
        totals = selectors.backup_totals()
        totals["version_bytes_shown"] = filesizeformat(totals["version_bytes"])
        totals["stored_bytes_shown"] = filesizeformat(totals["stored_bytes"])
        return super().changelist_view(request, extra_context={**(extra_context or {}), "backup_totals": totals})
