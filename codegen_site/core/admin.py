"""The settings' history in the admin: every change with its author, read-only (a change is
made through PATCH /config or the Settings page, which keep the version and the record)."""

from django.contrib import admin

from codegen_site.core.models import SavedSettings, SettingsChange


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(SettingsChange)
class SettingsChangeAdmin(ReadOnlyAdmin):
    list_display = ("version", "author", "user", "created_at", "patch")
    list_filter = ("author",)
    search_fields = ("author",)


@admin.register(SavedSettings)
class SavedSettingsAdmin(ReadOnlyAdmin):
    list_display = ("version", "updated_at")
    readonly_fields = ("version", "values", "updated_at")
