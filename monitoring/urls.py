"""Routes under /api/v1/monitoring/."""

from django.urls import path

from monitoring import views

urlpatterns = [
    path("monitoring/events", views.EventListView.as_view(), name="monitoring-events"),
    path("monitoring/stream", views.EventStreamView.as_view(), name="monitoring-stream"),
    path("monitoring/stats", views.StatsView.as_view(), name="monitoring-stats"),
    path("monitoring/sessions", views.ActiveSessionsView.as_view(), name="monitoring-sessions"),
]
