"""Routes under /api/v1/sessions."""

from django.urls import path

from sessions_app import views

urlpatterns = [
    path("sessions", views.SessionListView.as_view(), name="sessions"),
    path("sessions/<uuid:session_id>", views.SessionDetailView.as_view(), name="session-detail"),
    path(
        "sessions/<uuid:session_id>/extend",
        views.SessionExtendView.as_view(),
        name="session-extend",
    ),
    path(
        "sessions/<uuid:session_id>/files", views.WorkspaceListView.as_view(), name="session-files"
    ),
    path(
        "sessions/<uuid:session_id>/files/content",
        views.WorkspaceFileView.as_view(),
        name="session-file-content",
    ),
]
