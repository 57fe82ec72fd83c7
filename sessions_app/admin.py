"""The admin for sessions: who works where, how much, and links to their messages and events."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from sessions_app.models import Session


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "title",
        "user_link",
        "model",
        "created_at",
        "last_activity_at",
        "expires_at",
        "total_tokens",
        "links",
    ]
    list_filter = [("user", admin.RelatedOnlyFieldListFilter), "created_at", "expires_at"]
    search_fields = ["id", "title", "user__email"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "id",
        "user",
        "config",
        "created_at",
        "last_activity_at",
        "expires_at",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "always_allowed_tools",
        "turn_id",
        "turn_heartbeat_at",
        "turn_worker",
        "links",
    ]
    fields = ["title", *readonly_fields]

    def has_add_permission(self, request):
        return False  # sessions are made through the API, which also makes their workspace

    @admin.display(description="User", ordering="user__email")
    def user_link(self, session):
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:accounts_user_change", args=[session.user_id]),
            session.user.email,
        )

    @admin.display(description="Model")
    def model(self, session):
        return session.model_name

    @admin.display(description="Links")
    def links(self, session):
        messages = reverse("admin:chat_message_changelist") + f"?session__id__exact={session.pk}"
        events = reverse("admin:monitoring_event_changelist") + f"?session_id={session.pk}"
        return format_html('<a href="{}">messages</a> · <a href="{}">events</a>', messages, events)

    def delete_model(self, request, obj):
        from sessions_app.services import session_delete

        session_delete(session=obj, actor=request.user, force=True)

    def delete_queryset(self, request, queryset):
        from sessions_app.services import session_delete

        for session in queryset:
            session_delete(session=session, actor=request.user, force=True)
