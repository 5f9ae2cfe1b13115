from django.contrib import admin
from django.db.models import Count

from chat.models import Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("role", "content", "thinking", "model", "finished", "created_at")
    readonly_fields = ("created_at",)
    ordering = ("id",)


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("title", "id", "message_count", "created_at", "updated_at")
    search_fields = ("title", "messages__content")
    list_filter = ("created_at", "updated_at")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    readonly_fields = ("id", "created_at", "updated_at")
    inlines = [MessageInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(message_count=Count("messages"))

    @admin.display(ordering="message_count", description="messages")
    def message_count(self, conversation):
        return conversation.message_count


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("conversation", "role", "short_content", "model", "finished", "created_at")
    list_filter = ("role", "finished", "created_at")
    search_fields = ("content", "conversation__title")
    list_select_related = ("conversation",)
    ordering = ("-id",)
    raw_id_fields = ("conversation",)

    @admin.display(description="content")
    def short_content(self, message):
        return message.content[:80]
