"""Routes under /api/v1/auth/ and /api/v1/users."""

from django.urls import path

from accounts import views

auth_urlpatterns = [
    path("login", views.LoginView.as_view(), name="auth-login"),
    path("refresh", views.RefreshView.as_view(), name="auth-refresh"),
    path("api-key", views.ApiKeyCreateView.as_view(), name="auth-api-key"),
    path("register", views.RegisterView.as_view(), name="auth-register"),
    path("me", views.MeView.as_view(), name="auth-me"),
    path("api-keys", views.ApiKeyListView.as_view(), name="auth-api-keys"),
    path("api-keys/<uuid:key_id>", views.ApiKeyDetailView.as_view(), name="auth-api-key-detail"),
    path(
        "api-keys/<uuid:key_id>/rotate",
        views.ApiKeyRotateView.as_view(),
        name="auth-api-key-rotate",
    ),
]

user_urlpatterns = [
    path("users", views.UserListView.as_view(), name="users"),
    path("users/<uuid:user_id>", views.UserDetailView.as_view(), name="user-detail"),
]
