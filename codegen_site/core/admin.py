"""The settings' history and the audit log in the admin, read-only; API tokens issued and revoked.

The settings' history: every change with its author, read-only (a change is
made through PATCH /config or the Settings page, which keep the version and the record)."""

from django.contrib import admin, messages

from codegen_site.core import users
from codegen_site.core.models import ApiToken, AuditEntry, SavedSettings, SettingsChange


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


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor", "action", "status", "path")
    list_filter = ("action", "actor")
    search_fields = ("actor", "path")
    readonly_fields = ("created_at", "user", "actor", "action", "method", "path", "status", "detail")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """An admin issues and revokes any user's tokens; a new token is shown once, in the message
    after saving (only its digest is kept)."""

    list_display = ("name", "user", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "user__username")
    actions = ("revoke",)

    def get_fields(self, request, obj=None):
        return ("user", "name") if obj is None else ("user", "name", "prefix", "created_at", "last_used_at",
                                                    "revoked_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("user", "prefix", "created_at", "last_used_at", "revoked_at")

    def has_delete_permission(self, request, obj=None):
        return False  # revoked, not deleted: the record of a token stays

    def save_model(self, request, obj, form, change):
        if not change:
            token = users.fill_new_token(obj)
            messages.warning(request, f"The new token (shown this once, copy it now): {token}")
            if not users.users_mode():
                messages.warning(request, "Multi-user mode is off (security.users): the API takes no personal "
                                          "token until it is on.")
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        for row in queryset.filter(revoked_at__isnull=True):
            users.revoke_token(row)
