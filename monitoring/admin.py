"""The Django admin as the monitoring console: the read-only trail, per-user activity, a live tail."""

import uuid
from datetime import timedelta

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import TextField
from django.db.models.functions import Cast
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from rest_framework_simplejwt.tokens import AccessToken

from monitoring.models import Event, EventType
from monitoring.selectors import event_stats, tokens_by_user

LIVE_TAIL_TOKEN_LIFETIME = timedelta(minutes=10)


class SessionFilter(admin.SimpleListFilter):
    """Events of one session (`?session_id=`): the sessions with the most recent activity."""

    title = "session"
    parameter_name = "session_id"

    def lookups(self, request, model_admin):
        recent = (
            Event.objects.exclude(session_id__isnull=True)
            .order_by("-seq")
            .values_list("session_id", flat=True)[:500]
        )
        seen = [str(session_id) for session_id in dict.fromkeys(recent)][:15]
        # The session a link asked for stays a choice, so the filter applies even when that
        # session has no events: Django drops a filter that offers no choices.
        chosen = self._chosen()
        if chosen and chosen not in seen:
            seen.insert(0, chosen)
        return [(session_id, session_id[:8]) for session_id in seen]

    def _chosen(self) -> str | None:
        value = self.value()
        if not value:
            return None
        try:
            return str(uuid.UUID(value))
        except ValueError as exc:
            # The admin's own answer to a bad lookup: back to the list with ?e=1.
            raise IncorrectLookupParameters(exc) from exc

    def queryset(self, request, queryset):
        chosen = self._chosen()
        return queryset.filter(session_id=chosen) if chosen else queryset


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "type", "action", "user_email", "session_link", "ip", "summary"]
    list_filter = ["type", ("user", admin.RelatedOnlyFieldListFilter), SessionFilter, "created_at"]
    # A word inside the data finds the event too; the list filters still apply to a search.
    search_fields = ["action", "user_email", "data_text"]
    date_hierarchy = "created_at"
    list_per_page = 100
    readonly_fields = [
        "uuid",
        "type",
        "action",
        "user",
        "user_email",
        "session_id",
        "data",
        "ip",
        "created_at",
    ]
    change_list_template = "admin/monitoring/event/change_list.html"

    # The trail is evidence: nobody adds, edits or deletes it from the console.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        # `data_text` is searched (`search_fields`) but never selected: an alias costs nothing
        # until a search uses it.
        return super().get_queryset(request).alias(data_text=Cast("data", TextField()))

    @admin.display(description="Session")
    def session_link(self, event):
        if not event.session_id:
            return "-"
        url = reverse("admin:monitoring_event_changelist") + f"?session_id={event.session_id}"
        return format_html('<a href="{}">{}</a>', url, str(event.session_id)[:8])

    @admin.display(description="Data")
    def summary(self, event):
        data = event.data or {}
        for key in ("text", "name", "message", "email", "path", "title"):
            if data.get(key):
                return str(data[key])[:80]
        return ""

    def get_urls(self):
        extra = [
            path(
                "live/",
                self.admin_site.admin_view(self.live_tail_view),
                name="monitoring_event_live",
            ),
            path(
                "activity/",
                self.admin_site.admin_view(self.activity_view),
                name="monitoring_event_activity",
            ),
        ]
        return extra + super().get_urls()

    def live_tail_view(self, request):
        """Events as they happen, over the WebSocket, with a short-lived token for this admin."""
        token = AccessToken.for_user(request.user)
        token.set_exp(lifetime=LIVE_TAIL_TOKEN_LIFETIME)
        token["role"] = request.user.role
        context = {
            **self.admin_site.each_context(request),
            "title": "Live tail",
            "opts": self.model._meta,
            "ws_token": str(token),
            "event_types": EventType.values,
        }
        return TemplateResponse(request, "admin/monitoring/live_tail.html", context)

    def activity_view(self, request):
        """Per user: events by type and tokens used."""
        stats = event_stats()
        tokens = {row["userId"]: row for row in tokens_by_user()}
        rows = [
            {
                **row,
                **{k: v for k, v in tokens.get(row["userId"], {}).items() if k.endswith("Tokens")},
            }
            for row in stats["perUser"]
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Activity per user",
            "opts": self.model._meta,
            "rows": rows,
            "per_type": stats["perType"],
        }
        return TemplateResponse(request, "admin/monitoring/activity.html", context)
