"""Routes under /api/v1/chat/ and /api/v1/tools."""

from django.urls import path

from chat import views

urlpatterns = [
    path("chat/message", views.ChatMessageView.as_view(), name="chat-message"),
    path("chat/stream", views.ChatStreamView.as_view(), name="chat-stream"),
    path("chat/confirm", views.ChatConfirmView.as_view(), name="chat-confirm"),
    path("chat/cancel", views.ChatCancelView.as_view(), name="chat-cancel"),
    path("chat/history", views.ChatHistoryView.as_view(), name="chat-history"),
    path("chat/clear", views.ChatClearView.as_view(), name="chat-clear"),
    path("chat/save", views.ChatSaveView.as_view(), name="chat-save"),
    path("chat/load", views.ChatLoadView.as_view(), name="chat-load"),
    path("chat/checkpoints", views.ChatCheckpointsView.as_view(), name="chat-checkpoints"),
    path("tools", views.ToolListView.as_view(), name="tools"),
    path("tools/execute", views.ToolExecuteView.as_view(), name="tools-execute"),
]
