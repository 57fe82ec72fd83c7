"""The admin for conversations: every stored message, read-only."""

from django.contrib import admin

from chat.models import Checkpoint, Message


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["created_at", "session", "role", "short_text", "total_tokens", "finish_reason"]
    list_filter = ["role", "created_at"]
    search_fields = ["text", "session__id", "session__user__email"]
    list_select_related = ["session"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "id",
        "session",
        "role",
        "parts",
        "text",
        "created_at",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "finish_reason",
    ]

    def lookup_allowed(self, lookup, value, request=None):
        # Links from a session open its messages: ?session__id__exact=<id>.
        return lookup == "session__id__exact" or super().lookup_allowed(lookup, value, request)

    @admin.display(description="Text")
    def short_text(self, message):
        return (message.text or "")[:100]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = ["tag", "session", "created_at"]
    search_fields = ["tag", "session__id"]
    readonly_fields = ["session", "tag", "history", "created_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
